/**
 * Process exit codes for the gateway's fatal close codes: CLI policy, kept out of the gateway (which
 * only says that a close code forbids reconnecting, and why). The README's "Exit codes" table lists
 * them with the codes the CLI uses for other failures.
 */

/** Exit code when Discord closes a shard with a close code that forbids reconnecting. */
export const FATAL_CLOSE_EXIT_CODES: Readonly<Record<number, number>> = {
  /** Authentication failed: the same code as an HTTP 401 for the token. */
  4004: 3,
  /** Invalid intents, disallowed (privileged) intents. */
  4013: 4,
  4014: 4,
  /** The shard layout: invalid shard, sharding required. */
  4010: 5,
  4011: 5,
  /** Invalid API version: a configuration error. */
  4012: 2,
};

/** The process exit code for a fatal close `code`: 1 (unexpected failure) for one not in the table. */
export function closeExitCode(code: number): number {
  return FATAL_CLOSE_EXIT_CODES[code] ?? 1;
}
