/**
 * Gateway commands checked against Discord's documented payloads before anything is sent: Discord
 * closes the whole connection (4001/4002) for a bad payload of a known op, which would cost every guild
 * of the shard a resume, so a bad command is refused here with a reason that names the field. A good
 * command is split into the parts each shard of the bot must send (see `parseCommand`).
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

/** What one shard sends for a command. */
export interface CommandPart {
  readonly shard: number;
  readonly d: unknown;
}

export type ParsedCommand =
  | {
    ok: true;
    op: number;
    /** One part per shard of the bot that sends it (several for op 3 and op 31), ordered by shard. */
    parts: CommandPart[];
    /** Op 3 without `shard`: every shard of the bot; a process sends it on the shards it runs. */
    everyShard: boolean;
  }
  | { ok: false; reason: string; shard: number | null };

const SNOWFLAKE = /^\d{1,20}$/;
const STATUSES = ["online", "dnd", "idle", "invisible", "offline"];
const CHANNEL_INFO_FIELDS = ["status", "voice_start_time"];
const encoder = new TextEncoder();

/**
 * Reads one command (`{op, d, shard?}` as JSON text) and routes it over all `shardCount` shards of the
 * bot — not only those of this process, so a process can pass a command on to the shard's owner:
 * op 3 to every shard (or to `shard`), guild commands to `shardForGuild`, op 31 split by the guilds'
 * shards (one op 31 per shard with its guild ids).
 */
export function parseCommand(text: string, shardCount: number): ParsedCommand {
  const bytes = encoder.encode(text).length;
  if (bytes > MAX_PAYLOAD_BYTES) {
    return refuse(`command is ${bytes} bytes; Discord accepts at most ${MAX_PAYLOAD_BYTES}`);
  }
  let command: unknown;
  try {
    command = JSON.parse(text);
  } catch (error) {
    return refuse(`not JSON: ${(error as Error).message}`);
  }
  if (!isObject(command)) return refuse("a command is a JSON object {op, d}");
  const { op, d, shard } = command as { op?: unknown; d?: unknown; shard?: unknown };
  if (typeof op !== "number" || !COMMAND_OPS.has(op)) {
    const allowed = [...COMMAND_OPS].map(([n, name]) => `${n} (${name})`).join(", ");
    return refuse(`op ${JSON.stringify(op)} is not a command; allowed: ${allowed}`);
  }
  if (!isObject(d)) return refuse(`op ${op} needs an object d`);
  if (
    shard !== undefined &&
    (!Number.isInteger(shard) || (shard as number) < 0 || shard as number >= shardCount)
  ) {
    return refuse(
      `shard ${JSON.stringify(shard)} is not a shard of this bot: it has ${shardCount} (0-${shardCount - 1})`,
    );
  }
  const wrong = checkPayload(op, d as Record<string, unknown>);
  if (wrong !== null) return refuse(`op ${op} ${wrong}`);

  if (op === 3) {
    const shards = shard === undefined ? Array.from({ length: shardCount }, (_, i) => i) : [shard as number];
    return { ok: true, op, parts: shards.map((s) => ({ shard: s, d })), everyShard: shard === undefined };
  }
  if (op === 31) {
    const byShard = new Map<number, string[]>();
    for (const guildId of (d as { guild_ids: string[] }).guild_ids) {
      const owner = shardForGuild(guildId, shardCount);
      if (shard !== undefined && owner !== shard) {
        return refuse(`guild ${guildId} belongs to shard ${owner}, not ${shard}`, owner);
      }
      const ids = byShard.get(owner) ?? [];
      if (!ids.includes(guildId)) ids.push(guildId);
      byShard.set(owner, ids);
    }
    const parts = [...byShard].sort(([a], [b]) => a - b).map(([s, ids]) => ({
      shard: s,
      d: { ...(d as object), guild_ids: ids },
    }));
    return { ok: true, op, parts, everyShard: false };
  }
  const guildId = (d as { guild_id: string }).guild_id;
  const owner = shardForGuild(guildId, shardCount);
  if (shard !== undefined && shard !== owner) {
    return refuse(`guild ${guildId} belongs to shard ${owner}, not ${shard}`, owner);
  }
  return { ok: true, op, parts: [{ shard: owner, d }], everyShard: false };
}

function refuse(reason: string, shard: number | null = null): ParsedCommand {
  return { ok: false, reason, shard };
}

/** What is wrong with `d` for `op` (after "op N "), or null; Discord's documented fields. */
function checkPayload(op: number, d: Record<string, unknown>): string | null {
  if (op === 3) return checkPresence(d);
  if (op === 31) {
    const ids = d.guild_ids;
    if (!Array.isArray(ids) || ids.length === 0 || !ids.every(isSnowflake)) {
      return "needs d.guild_ids, a non-empty list of snowflake strings";
    }
    return null;
  }
  if (!isSnowflake(d.guild_id)) return "needs d.guild_id, a snowflake string";
  if (op === 4) {
    if (d.channel_id !== null && !isSnowflake(d.channel_id)) {
      return "needs d.channel_id, a snowflake string (or null to leave the voice channel)";
    }
    if (typeof d.self_mute !== "boolean") return "needs d.self_mute, a boolean";
    if (typeof d.self_deaf !== "boolean") return "needs d.self_deaf, a boolean";
    return null;
  }
  if (op === 8) return checkRequestMembers(d);
  // op 43
  const fields = d.fields;
  const allowed = `a non-empty list of: ${CHANNEL_INFO_FIELDS.join(", ")}`;
  if (!Array.isArray(fields) || fields.length === 0) return `needs d.fields, ${allowed}`;
  for (const field of fields) {
    if (typeof field !== "string" || !CHANNEL_INFO_FIELDS.includes(field)) {
      return `needs d.fields, ${allowed} (not ${JSON.stringify(field)})`;
    }
  }
  if (new Set(fields).size !== fields.length) return `needs d.fields, ${allowed}, each at most once`;
  return null;
}

function checkPresence(d: Record<string, unknown>): string | null {
  if (d.since !== null && !Number.isInteger(d.since)) {
    return "needs d.since, a Unix time in milliseconds (an integer) or null";
  }
  const activities = d.activities;
  if (!Array.isArray(activities)) return "needs d.activities, a list of activities ({name, type})";
  for (const [i, activity] of activities.entries()) {
    if (!isObject(activity)) return `d.activities[${i}] must be an object {name, type}`;
    const { name, type } = activity as { name?: unknown; type?: unknown };
    if (typeof name !== "string") return `d.activities[${i}] needs name, a string`;
    if (!Number.isInteger(type) || (type as number) < 0 || (type as number) > 6) {
      return `d.activities[${i}] needs type, an integer from 0 to 6`;
    }
  }
  if (typeof d.status !== "string" || !STATUSES.includes(d.status)) {
    return `needs d.status, one of: ${STATUSES.join(", ")}`;
  }
  if (typeof d.afk !== "boolean") return "needs d.afk, a boolean";
  return null;
}

function checkRequestMembers(d: Record<string, unknown>): string | null {
  const hasQuery = d.query !== undefined;
  const hasUsers = d.user_ids !== undefined;
  if (hasQuery && hasUsers) return "takes d.query or d.user_ids, not both";
  if (!hasQuery && !hasUsers) return "needs d.query (a string, with d.limit) or d.user_ids";
  if (hasQuery && typeof d.query !== "string") return "needs d.query, a string";
  if (d.limit !== undefined || hasQuery) {
    if (!Number.isInteger(d.limit) || (d.limit as number) < 0) {
      return "needs d.limit, an integer ≥ 0 (0 with an empty query: every member)";
    }
  }
  if (hasUsers) {
    const ids = d.user_ids;
    const ok = isSnowflake(ids) ||
      (Array.isArray(ids) && ids.length > 0 && ids.length <= 100 && ids.every(isSnowflake));
    if (!ok) return "needs d.user_ids, a snowflake string or a list of 1 to 100 of them";
  }
  if (d.presences !== undefined && typeof d.presences !== "boolean") return "d.presences must be a boolean";
  if (d.nonce !== undefined && (typeof d.nonce !== "string" || encoder.encode(d.nonce).length > 32)) {
    return "d.nonce must be a string of at most 32 bytes";
  }
  return null;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function isSnowflake(value: unknown): value is string {
  return typeof value === "string" && SNOWFLAKE.test(value);
}
