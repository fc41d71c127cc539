/**
 * What to do when the gateway closes a connection: one pure table (docs/protocol.md §4), tested row by
 * row. "resume" keeps the session and RESUMEs on a new socket; "identify" drops the session and starts
 * a new one; "fatal" stops the shard for good, because reconnecting cannot help (the CLI turns the code
 * into the process's exit code: `src/cli/exit_codes.ts`).
 */

export type CloseAction = "resume" | "identify" | "fatal";

export interface CloseRule {
  action: CloseAction;
  meaning: string;
}

export const CLOSE_CODES: Readonly<Record<number, CloseRule>> = {
  4000: { action: "resume", meaning: "unknown error" },
  4001: { action: "resume", meaning: "unknown opcode or bad payload for an opcode" },
  4002: { action: "resume", meaning: "decode error (invalid or oversized payload)" },
  4003: { action: "identify", meaning: "not authenticated" },
  4004: { action: "fatal", meaning: "authentication failed: Discord rejected the token" },
  4005: { action: "resume", meaning: "already authenticated" },
  4007: { action: "identify", meaning: "invalid seq in RESUME" },
  4008: { action: "resume", meaning: "rate limited (too many sends)" },
  4009: { action: "identify", meaning: "session timed out" },
  4010: { action: "fatal", meaning: "invalid shard" },
  4011: { action: "fatal", meaning: "sharding required: too many guilds for this shard count" },
  4012: { action: "fatal", meaning: "invalid API version" },
  4013: { action: "fatal", meaning: "invalid intents" },
  4014: { action: "fatal", meaning: "disallowed intents" },
};

/**
 * The rule for a close code. Anything not in the table (1000, 1001, 1006 for a dropped connection,
 * 1011, other 4xxx) resumes: if the session is gone, Discord answers the RESUME with op 9.
 */
export function closeRule(code: number): CloseRule {
  return CLOSE_CODES[code] ??
    { action: "resume", meaning: code === 1006 ? "connection lost" : `connection closed (code ${code})` };
}
