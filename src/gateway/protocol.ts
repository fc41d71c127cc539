/**
 * Discord gateway protocol constants (API v10), from `docs/discord-gateway.md`.
 * Kept in one place so the shard, the fake Discord and the config all agree on the numbers.
 */

/** Gateway opcodes (§2). */
export const Op = {
  Dispatch: 0,
  Heartbeat: 1,
  Identify: 2,
  PresenceUpdate: 3,
  VoiceStateUpdate: 4,
  Resume: 6,
  Reconnect: 7,
  RequestGuildMembers: 8,
  InvalidSession: 9,
  Hello: 10,
  HeartbeatAck: 11,
  RequestSoundboardSounds: 31,
  RequestChannelInfo: 43,
} as const;

/** Ops a bot may send through gatehouse (§9); 1, 2 and 6 belong to the shard itself. */
export const COMMAND_OPS: ReadonlySet<number> = new Set([3, 4, 8, 31, 43]);

/** A payload the client sends must serialise to at most this many bytes (§5), else close 4002. */
export const MAX_PAYLOAD_BYTES = 4096;

/** Sends allowed per connection per window (§5). */
export const SEND_LIMIT = 120;
export const SEND_WINDOW_MS = 60_000;

/** One IDENTIFY per rate-limit key per this many ms (§5). */
export const IDENTIFY_INTERVAL_MS = 5_000;

export {
  ALL_INTENTS,
  intentNames,
  INTENTS,
  NON_PRIVILEGED_INTENTS,
  PRIVILEGED_INTENTS,
} from "../discord/intents.ts";

/** The shard that owns a guild (§7). Snowflakes exceed 2^53, hence BigInt. */
export function shardForGuild(guildId: string, shardCount: number): number {
  return Number((BigInt(guildId) >> 22n) % BigInt(shardCount));
}

export { type Compression, COMPRESSIONS, type Presence } from "../discord/identify.ts";

/** `GET /gateway/bot` response (§1). */
export interface GatewayBotInfo {
  url: string;
  shards: number;
  session_start_limit: {
    total: number;
    remaining: number;
    reset_after: number;
    max_concurrency: number;
  };
}
