/**
 * How a store fails: one error class whose `kind` says what happened, and SQLite's errors sorted into
 * it.
 */

/** A store that cannot be used; `kind` picks the message and whether waiting can help. */
export class StoreError extends Error {
  override name = "StoreError";
  readonly kind: "corrupt" | "locked" | "readonly" | "full" | "busy" | "io" | "missing";
  constructor(kind: StoreError["kind"], message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.kind = kind;
  }
}

/** SQLite error codes we tell apart (primary codes; node:sqlite reports extended ones too). */
export function classify(error: unknown, path: string, doing: string): StoreError {
  const e = error as { errcode?: number; message?: string };
  const code = (e.errcode ?? -1) & 0xff;
  const message = e.message ?? String(error);
  const at = `store ${path}`;
  if (code === 13 || /disk is full/.test(message)) {
    return new StoreError("full", `${at} is full while ${doing} (${message})`, { cause: error });
  }
  if (code === 8 || /readonly|read-only/.test(message)) {
    return new StoreError("readonly", `${at} is read-only while ${doing} (${message})`, { cause: error });
  }
  if (code === 5 || code === 6 || /locked|busy/.test(message)) {
    return new StoreError("busy", `${at} is locked by another process while ${doing} (${message})`, {
      cause: error,
    });
  }
  if (code === 11 || code === 26 || /malformed|not a database/.test(message)) {
    return new StoreError("corrupt", `${at} is corrupt or not a gatehouse store (${message})`, {
      cause: error,
    });
  }
  if (code === 14 || /unable to open/.test(message)) {
    return new StoreError("io", `cannot open ${at} (${message})`, { cause: error });
  }
  return new StoreError("io", `${at}: ${doing} failed (${message})`, { cause: error });
}
