/**
 * Secrets (the bot token, the control token, the HTTP sink's Authorization header, broker URLs that may
 * hold a password) and the URL helpers that handle them without ever quoting them.
 *
 * A `Secret` cannot leak by accident: it prints as `<redacted>` through String(), template strings,
 * JSON.stringify(), Deno.inspect() and console.log (and node:util's inspect). Only `reveal()` gives the
 * value, at the few places that must hand it to Discord or a broker library.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  get isEmpty(): boolean {
    return this.#value.length === 0;
  }

  toString(): string {
    return "<redacted>";
  }

  toJSON(): string {
    return "<redacted>";
  }

  /** Template strings and `"" + secret` come here. */
  [Symbol.toPrimitive](): string {
    return "<redacted>";
  }

  /** Deno.inspect and console.log. */
  [Symbol.for("Deno.customInspect")](): string {
    return "<redacted>";
  }

  /** node:util's inspect, which npm libraries use to print their arguments. */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return "<redacted>";
  }
}

/**
 * What is wrong with a single-host URL (`scheme://[user[:password]@]host[:port][/path][?query]`), or
 * null when it is fine: whitespace, another scheme, no host, a port outside 1–65535, or a URL the WHATWG
 * parser refuses. The answer never quotes any part of the URL, which may hold a password: the caller
 * can put it in an error message as it is.
 */
export function urlProblem(text: string, schemes: readonly string[]): string | null {
  if (/\s/.test(text)) return "it contains whitespace";
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(text)) return "it contains a control character";
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(text)?.[1].toLowerCase();
  if (scheme === undefined || !schemes.includes(scheme)) {
    return `the scheme is not ${schemes.map((s) => `${s}://`).join(" or ")}`;
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return diagnose(text);
  }
  if (url.hostname === "") return "it has no host";
  if (url.port === "0") return PORT_PROBLEM;
  return null;
}

const PORT_PROBLEM = "the port is not a number from 1 to 65535";

/** Why `new URL` refused `text` (its message quotes the URL, so it is not used). */
function diagnose(text: string): string {
  const rest = text.slice(text.indexOf("//") + 2);
  const end = rest.search(/[/?#\\]/);
  const authority = end < 0 ? rest : rest.slice(0, end);
  if (end >= 0 && !authority.includes("@") && rest.indexOf("@", end) >= 0) {
    return "it is not a valid URL (a / ? # or @ in the user name or password must be percent-encoded: " +
      "%2F %3F %23 %40)";
  }
  const hostPort = authority.slice(authority.lastIndexOf("@") + 1);
  const parts = hostPort.startsWith("[")
    ? /^(\[[^\]]*\])(?::(.*))?$/.exec(hostPort)
    : /^([^:]*)(?::(.*))?$/.exec(hostPort);
  if (parts) {
    if (parts[1] === "") return "it has no host";
    const port = parts[2];
    if (port !== undefined && port !== "" && !(/^\d{1,5}$/.test(port) && Number(port) <= 65535)) {
      return PORT_PROBLEM;
    }
  }
  return "it is not a valid URL (characters such as / ? # @ : in the user name or password must be " +
    "percent-encoded)";
}

/**
 * The parts of a single-host URL that are secret on their own, for the log redactor: the userinfo and
 * the password as written, and the password decoded (libraries print either). Empty when the URL has no
 * userinfo or does not parse.
 */
export function urlSecretParts(text: string): string[] {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return [];
  }
  const parts: string[] = [];
  const start = text.indexOf("//") + 2;
  const rest = text.slice(start);
  const end = rest.search(/[/?#\\]/);
  const authority = end < 0 ? rest : rest.slice(0, end);
  const at = authority.lastIndexOf("@");
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    parts.push(userinfo);
    const colon = userinfo.indexOf(":");
    if (colon >= 0) parts.push(...decodedForms(userinfo.slice(colon + 1)));
  }
  if (url.password) parts.push(...decodedForms(url.password));
  return [...new Set(parts)].filter((part) => part.length > 0);
}

/** `text` and, when it holds valid percent-encoding, its decoded form. */
export function decodedForms(text: string): string[] {
  try {
    return [text, decodeURIComponent(text)];
  } catch {
    return [text];
  }
}
