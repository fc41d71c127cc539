/**
 * The one error the CLI edge turns into an exit code (README, "Exit codes"): 1 unexpected failure,
 * 2 configuration or usage, 3 token rejected, 4 intents, 5 shard layout, 6 store unusable (corrupt,
 * locked by another gatehouse, read-only, full).
 */
export class ExitError extends Error {
  override name = "ExitError";
  readonly code: number;
  /** The message was already logged; print nothing more. */
  readonly logged: boolean;

  constructor(code: number, message: string, options: { logged?: boolean; cause?: unknown } = {}) {
    super(message, { cause: options.cause });
    this.code = code;
    this.logged = options.logged ?? false;
  }
}
