/**
 * Gateway commands from the bot (DESIGN.md, Commands): validated, then routed — by guild id to the
 * shard that owns the guild, presence (op 3) to every local shard unless `shard` names one — and queued
 * on the shard under its send limiter (120 per 60 s, room kept for heartbeats; over-budget commands
 * wait, they are not dropped). A bad command is rejected with a reason; nothing throws.
 */
import { MAX_PAYLOAD_BYTES, shardForGuild } from "../gateway/protocol.ts";

/** Commands a bot may send: presence, voice state, request guild members, soundboard, channel info. */
export const COMMAND_OPS: ReadonlyMap<number, string> = new Map([
  [3, "presence update"],
  [4, "voice state update"],
  [8, "request guild members"],
  [31, "request soundboard sounds"],
  [43, "request channel info"],
]);

export interface CommandTarget {
  readonly id: number;
  /** Queues the command; returns an error text when the shard refuses it. `onSent`: once written. */
  send(op: number, d: unknown, onSent?: () => void): string | null;
}

export type CommandResult =
  | {
    ok: true;
    op: number;
    shards: number[]; /** Resolves once every shard wrote it to Discord. */
    sent: Promise<void>;
  }
  | { ok: false; reason: string; shard: number | null };

const SNOWFLAKE = /^\d{1,20}$/;
const encoder = new TextEncoder();

export class CommandRouter {
  readonly #shards: Map<number, CommandTarget>;
  readonly #shardCount: number;

  constructor(shards: CommandTarget[], shardCount: number) {
    this.#shards = new Map(shards.map((s) => [s.id, s]));
    this.#shardCount = shardCount;
  }

  /** One command as text (an NDJSON line). */
  handle(text: string): CommandResult {
    const bytes = encoder.encode(text).length;
    if (bytes > MAX_PAYLOAD_BYTES) {
      return {
        ok: false,
        reason: `command is ${bytes} bytes; Discord accepts at most ${MAX_PAYLOAD_BYTES}`,
        shard: null,
      };
    }
    let command: unknown;
    try {
      command = JSON.parse(text);
    } catch (error) {
      return { ok: false, reason: `not JSON: ${(error as Error).message}`, shard: null };
    }
    if (typeof command !== "object" || command === null || Array.isArray(command)) {
      return { ok: false, reason: "a command is a JSON object {op, d}", shard: null };
    }
    const { op, d, shard } = command as { op?: unknown; d?: unknown; shard?: unknown };
    if (typeof op !== "number" || !COMMAND_OPS.has(op)) {
      const allowed = [...COMMAND_OPS].map(([n, name]) => `${n} (${name})`).join(", ");
      return {
        ok: false,
        reason: `op ${JSON.stringify(op)} is not a command; allowed: ${allowed}`,
        shard: null,
      };
    }
    if (typeof d !== "object" || d === null || Array.isArray(d)) {
      return { ok: false, reason: `op ${op} needs an object d`, shard: null };
    }
    if (shard !== undefined && (!Number.isInteger(shard) || !this.#shards.has(shard as number))) {
      return {
        ok: false,
        reason: `shard ${JSON.stringify(shard)} is not run by this process (it runs ${
          [...this.#shards.keys()].join(", ")
        })`,
        shard: null,
      };
    }
    let targets: CommandTarget[];
    if (op === 3) {
      targets = shard === undefined ? [...this.#shards.values()] : [this.#shards.get(shard as number)!];
    } else {
      const guildId = (d as { guild_id?: unknown }).guild_id;
      if (typeof guildId !== "string" || !SNOWFLAKE.test(guildId)) {
        return { ok: false, reason: `op ${op} needs d.guild_id, a snowflake string`, shard: null };
      }
      const owner = shardForGuild(guildId, this.#shardCount);
      const target = this.#shards.get(owner);
      if (!target) {
        return {
          ok: false,
          reason: `guild ${guildId} belongs to shard ${owner}, which this process does not run`,
          shard: null,
        };
      }
      if (shard !== undefined && shard !== owner) {
        return {
          ok: false,
          reason: `guild ${guildId} belongs to shard ${owner}, not ${shard}`,
          shard: owner,
        };
      }
      targets = [target];
    }
    const sends: Promise<void>[] = [];
    for (const target of targets) {
      let done!: () => void;
      const sent = new Promise<void>((resolve) => (done = resolve));
      const refused = target.send(op, d, done);
      if (refused !== null) return { ok: false, reason: refused, shard: target.id };
      sends.push(sent);
    }
    return { ok: true, op, shards: targets.map((t) => t.id), sent: Promise.all(sends).then(() => {}) };
  }
}

/**
 * Reads NDJSON commands from a stream (stdin in a pipe) until it ends; each line goes to `onLine`.
 * A line longer than `maxLine` bytes is reported whole as too long instead of being buffered.
 */
export async function readLines(
  stream: ReadableStream<Uint8Array>,
  onLine: (line: string) => void,
  maxLine = 64 * 1024,
): Promise<void> {
  const decoder = new TextDecoder();
  let rest = "";
  let skipping = false;
  for await (const chunk of stream) {
    rest += decoder.decode(chunk, { stream: true });
    let newline: number;
    while ((newline = rest.indexOf("\n")) !== -1) {
      const line = rest.slice(0, newline).trim();
      rest = rest.slice(newline + 1);
      if (skipping) {
        skipping = false;
        continue;
      }
      if (line !== "") onLine(line);
    }
    if (rest.length > maxLine) {
      onLine(rest.slice(0, maxLine));
      rest = "";
      skipping = true;
    }
  }
  const last = rest.trim();
  if (last !== "" && !skipping) onLine(last);
}
