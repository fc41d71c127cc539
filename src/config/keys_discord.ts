/** Configuration keys of the Discord connection: the token, events, intents, shards, API, IDENTIFY. */
import { type Compression, COMPRESSIONS } from "../discord/identify.ts";
import { intentNames, NON_PRIVILEGED_INTENTS } from "../discord/intents.ts";
import { Secret } from "../util/secret.ts";
import { defineKey } from "./key.ts";
import * as p from "./parsers.ts";

export const token = defineKey({
  path: "token",
  env: ["DISCORD_TOKEN"],
  default: "",
  parser: p.botToken,
  secret: true,
  set: (c, v) => (c.token = new Secret(v)),
  get: (c) => c.token.reveal(),
  docs: {
    default: "(required)",
    notes: "the bot token; the ends and a leading `Bot` are trimmed, and whitespace or control characters " +
      "inside it are an error. No flag: command lines show in `ps`",
    comment:
      'The bot token (required). Prefer the environment: DISCORD_TOKEN. The ends and a leading "Bot " ' +
      "are trimmed; whitespace or control characters inside it are an error (a copy-and-paste with a line " +
      "break).\nThere is deliberately no flag: command lines are visible to every user in `ps`.",
  },
});

export const events = defineKey({
  path: "events",
  env: ["DISCORD_EVENTS"],
  flag: {
    option: "events",
    arg: "names",
    help: "comma-separated event names to forward (default: all)",
  },
  default: null,
  parser: p.events,
  set: (c, v) => (c.events = v),
  get: (c) => c.events,
  docs: {
    default: "every event",
    toml: "[]",
    notes: "event names to forward (comma-separated in env/flag); unknown names only warn; gatehouse's " +
      "`GATEHOUSE_*` events are filtered by the same list",
    comment:
      "Event names to forward; empty = every event (including names Discord has not documented yet). " +
      "gatehouse's own events (GATEHOUSE_SESSION_INVALIDATED) are filtered by the same list. Comma-separated " +
      "in env and flag.",
  },
});

export const intents = defineKey({
  path: "intents",
  env: ["DISCORD_RAW_INTENTS", "DISCORD_INTENTS"],
  flag: { option: "intents", arg: "names|bits", help: "comma-separated intent names or a bitfield" },
  default: NON_PRIVILEGED_INTENTS,
  parser: p.intents,
  set: (c, v) => (c.intents = v),
  get: (c) => c.intents,
  docs: {
    default: `all non-privileged (${NON_PRIVILEGED_INTENTS})`,
    toml: `[${intentNames(NON_PRIVILEGED_INTENTS).map((name) => JSON.stringify(name)).join(", ")}]`,
    notes: "names (case-insensitive; old names such as `GUILD_BANS` accepted) or a bitfield; " +
      "`DISCORD_RAW_INTENTS` (a bitfield) wins over `DISCORD_INTENTS` (names). `GUILD_MEMBERS`, " +
      "`GUILD_PRESENCES`, `MESSAGE_CONTENT` are privileged: enable them in the developer portal",
    comment: "Gateway intents: a list of names (case-insensitive; GUILD_BANS, GUILD_EMOJIS and other old " +
      `names are accepted) or an integer bitfield. Default: every non-privileged intent (${NON_PRIVILEGED_INTENTS}).` +
      "\nGUILD_MEMBERS, GUILD_PRESENCES and MESSAGE_CONTENT are privileged: enable them for the application " +
      "in the Discord developer portal first, or Discord closes with 4014 and gatehouse exits with code 4." +
      "\nDISCORD_RAW_INTENTS takes a bitfield and wins over DISCORD_INTENTS (comma-separated names).",
  },
});

export const shardCount = defineKey({
  path: "shards.count",
  env: ["DISCORD_SHARD_COUNT"],
  flag: { option: "shard-count", arg: "n", help: "total shard count (default: Discord's recommendation)" },
  default: null,
  parser: p.positiveInteger,
  set: (c, v) => (c.shards.count = v),
  get: (c) => c.shards.count,
  docs: {
    default: "Discord's recommendation",
    example: "16",
    notes: "total shard count",
    comment: "Total shard count. Unset (the default) = Discord's recommendation from GET /gateway/bot.",
  },
});

export const shardIds = defineKey({
  path: "shards.ids",
  env: ["DISCORD_SHARD_IDS"],
  flag: { option: "shard-ids", arg: "ids", help: "shard ids to run here, e.g. 0-3,8 (default: all)" },
  default: null,
  parser: p.shardIds,
  set: (c, v) => (c.shards.ids = v),
  get: (c) => c.shards.ids,
  docs: {
    default: "every id",
    example: "[0, 1, 2, 3]",
    notes: "ids run by this process; env/flag accept ranges: `0-3,8`",
    comment:
      'Shard ids this process runs. Unset (the default) = every id from 0 to count-1. Env and flag take ranges: "0-3,8".',
  },
});

export const apiVersion = defineKey({
  path: "api.version",
  env: ["DISCORD_API_VERSION"],
  flag: { option: "api-version", arg: "n", help: "Discord API version, 9 or 10" },
  default: 10,
  parser: p.apiVersion,
  set: (c, v) => (c.api.version = v),
  get: (c) => c.api.version,
  docs: { notes: "9 or 10", comment: "The API version: 9 or 10." },
});

export const apiScheme = defineKey({
  path: "api.scheme",
  env: ["DISCORD_API_SCHEME", "DISCORD_API_PROTOCOL"],
  flag: { option: "api-scheme", arg: "scheme", help: "Discord API scheme, http or https" },
  default: "https" as "http" | "https",
  parser: p.oneOf(["http", "https"], "http or https", true),
  set: (c, v) => (c.api.scheme = v),
  get: (c) => c.api.scheme,
  docs: {
    notes: "http or https (`DISCORD_API_PROTOCOL` is Spectacles' name)",
    comment: "http or https (DISCORD_API_PROTOCOL is Spectacles' name).",
  },
});

export const apiHost = defineKey({
  path: "api.host",
  env: ["DISCORD_API_HOST"],
  flag: { option: "api-host", arg: "host", help: "Discord API host[:port]" },
  default: "discord.com",
  parser: p.apiHost,
  set: (c, v) => (c.api.host = v),
  get: (c) => c.api.host,
  docs: {
    notes: "host[:port] of a Discord-compatible API (port 1–65535); the gateway URL comes from its " +
      "`GET /gateway/bot`",
    comment: "host or host:port (port 1-65535).",
  },
});

export const presence = defineKey({
  path: "presence",
  env: ["DISCORD_PRESENCE"],
  default: null,
  parser: p.presence,
  set: (c, v) => (c.presence = v),
  get: (c) => c.presence,
  docs: {
    table: true,
    example: '[presence]\nstatus = "online"\nafk = false\nsince = 0\n' +
      'activities = [{ name = "the gateway", type = 3 }]',
    notes: "`status`, `afk`, `since`, `activities = [{name, type, url, state}]`; Spectacles' " +
      "`[presence.game]` is accepted; a JSON object in env",
    comment:
      "Presence sent with IDENTIFY. Unset (the default) = none; a JSON object in env.\nstatus: online, " +
      "dnd, idle, invisible or offline; activity type: 0 playing, 1 streaming, 2 listening, 3 watching, " +
      "4 custom (text in state), 5 competing. Spectacles' [presence.game] is accepted too.",
  },
});

export const compression = defineKey({
  path: "gateway.compression",
  env: ["GATEHOUSE_COMPRESSION"],
  flag: { option: "compression", arg: "mode", help: "transport compression", choices: COMPRESSIONS },
  default: "zlib-stream" as Compression,
  parser: p.oneOf(COMPRESSIONS, COMPRESSIONS.join(", ")),
  set: (c, v) => (c.gateway.compression = v),
  get: (c) => c.gateway.compression,
  docs: {
    notes: "`zlib-stream`, `zstd-stream` or `none`",
    comment: 'Transport compression: "zlib-stream", "zstd-stream" or "none".',
  },
});

export const largeThreshold = defineKey({
  path: "gateway.large_threshold",
  env: ["GATEHOUSE_LARGE_THRESHOLD"],
  flag: { option: "large-threshold", arg: "n", help: "IDENTIFY large_threshold, 50-250" },
  default: 50,
  parser: p.integer(50, 250, "an integer from 50 to 250"),
  set: (c, v) => (c.gateway.largeThreshold = v),
  get: (c) => c.gateway.largeThreshold,
  docs: {
    notes: "50–250",
    comment:
      "IDENTIFY large_threshold (50-250): above this member count, GUILD_CREATE lists only online members.",
  },
});

export const identifyReserve = defineKey({
  path: "gateway.identify_reserve",
  env: ["GATEHOUSE_IDENTIFY_RESERVE"],
  default: 10,
  parser: p.integer(0, 100_000, "a non-negative integer"),
  set: (c, v) => (c.gateway.identifyReserve = v),
  get: (c) => c.gateway.identifyReserve,
  docs: {
    notes: "session starts of the daily `session_start_limit` never spent: shards wait for the reset " +
      "instead, and the log says so",
    comment:
      "Session starts (IDENTIFYs) always kept back from Discord's daily session_start_limit: when only " +
      "this many are left, shards wait for the limit to reset rather than risk the token being reset.",
  },
});

/** In the order of the README's table (and of error messages). */
export const DISCORD_KEYS = [
  token,
  events,
  intents,
  shardCount,
  shardIds,
  apiVersion,
  apiScheme,
  apiHost,
  presence,
  compression,
  largeThreshold,
  identifyReserve,
] as const;
