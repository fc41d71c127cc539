/**
 * Every configuration key, declared once: its TOML path, environment variable(s), flag, default and
 * validation. Loading (`load.ts`) collects raw values with their source; this file turns them into a
 * typed `GatehouseConfig` and explains every bad value with the key, the source, the value and what is
 * allowed.
 */
import { z } from "zod";
import {
  ALL_INTENTS,
  type Compression,
  COMPRESSIONS,
  INTENTS,
  NON_PRIVILEGED_INTENTS,
  type Presence,
} from "../gateway/protocol.ts";
import { type Secret, urlProblem } from "../util/secret.ts";
import { parseRedisUrl } from "../redis/url.ts";

export type LogLevel = "trace" | "debug" | "info" | "warning" | "error" | "fatal";
export const LOG_LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warning", "error", "fatal"];

export interface GatehouseConfig {
  /** Required; a leading "Bot " is stripped. */
  token: Secret;
  /** Allow-list of event names; null = every event. */
  events: string[] | null;
  intents: number;
  /** null = Discord's recommendation / every id. */
  shards: { count: number | null; ids: number[] | null };
  api: { version: number; scheme: "http" | "https"; host: string };
  presence: Presence | null;
  gateway: { compression: Compression; largeThreshold: number; identifyReserve: number };
  store: {
    path: string;
    /** false = keep sessions, cursors and ids but not events. */
    journal: boolean;
    /** Delivered events older than this are pruned (ms; 0 = keep). */
    maxAgeMs: number;
    /** Delivered events are pruned, oldest first, while the store uses more than this (bytes; 0 = no limit). */
    maxSizeBytes: number;
    /** The store never grows past this: writes stop (and wait) and, if that is not enough, even undelivered events are pruned (bytes; 0 = none). */
    hardMaxSizeBytes: number;
    /** Group commit: at most one journal transaction per this many ms (0 = one per event-loop turn). */
    commitIntervalMs: number;
  };
  /** Where events go: one or more sinks, each with its own cursor. */
  broker: { types: SinkType[]; group: string };
  redis: {
    /** May hold a password. */
    url: Secret;
    prefix: string;
    streams: "per-event" | "single";
    maxLen: number;
    /** Commands another process read but did not acknowledge for this long are taken over (ms). */
    commandClaimIdleMs: number;
    /** PEM file of the CA(s) that sign the server's certificate (rediss://); null = the system's. */
    tlsCa: string | null;
    /**
     * That file's text, read while loading (so a file that cannot be read is an error naming where
     * `tls_ca` was set); null when `tls_ca` is not set, Redis is not a sink, or broker files were not read.
     */
    tlsCaPem: string | null;
  };
  /** The URL may hold a password. */
  amqp: { url: Secret; exchange: string };
  /** The URL may hold a password or a token in its query; the header is a credential. */
  http: { url: Secret | null; authorization: Secret | null };
  /** The control listener: metrics, health, status, actions (with `token`). */
  control: { address: ListenAddress; token: Secret | null; metricsPath: string };
  log: { level: LogLevel };
}

export type SinkType = "stdout" | "redis" | "amqp" | "http";

/** Where the control listener binds; null = off. */
export type ListenAddress = { hostname: string; port: number } | null;

/**
 * `host:port`, `[v6]:port`, `:port` (every interface, as Spectacles writes it) or `off`; undefined when
 * the text is none of these.
 */
export function parseListenAddress(text: string): ListenAddress | undefined {
  const trimmed = text.trim();
  if (trimmed === "off" || trimmed === "") return null;
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([\w.-]*)):(\d{1,5})$/.exec(trimmed);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  const hostname = match[1] ?? (match[2] === "" ? "0.0.0.0" : match[2]);
  return { hostname, port };
}

/** Whether `hostname` can only be reached from this machine. */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** Where a value came from, for messages: `gatehouse.toml`, `env DISCORD_TOKEN`, `flag --events`. */
export type Source = { kind: "file"; path: string } | { kind: "env"; name: string } | {
  kind: "flag";
  name: string;
};

export function describeSource(source: Source): string {
  switch (source.kind) {
    case "file":
      return source.path;
    case "env":
      return `env ${source.name}`;
    case "flag":
      return `flag --${source.name}`;
  }
}

/** Flag names as commander gives them (camelCase). */
export type FlagName =
  | "events"
  | "intents"
  | "shardCount"
  | "shardIds"
  | "apiVersion"
  | "apiScheme"
  | "apiHost"
  | "compression"
  | "largeThreshold"
  | "store"
  | "journal"
  | "controlAddress"
  | "logLevel";

/**
 * One key. `env` lists environment variables in priority order (the first set one wins). `fromText`
 * turns an env/flag string into the value the TOML file would hold, so one validator serves all sources.
 */
export interface KeyDef {
  key: string;
  env: string[];
  flag?: { name: FlagName; option: string };
  fromText: (text: string) => unknown;
  /** Validates a raw value; returns the parsed value or an "allowed" description. */
  parse: (raw: unknown) => { ok: true; value: unknown } | { ok: false; allowed: string };
  /** Printed in messages instead of the value (the token). */
  secret?: boolean;
}

/** Longest value (in characters) an error message quotes: a 1 MB typo must not become a 1 MB message. */
export const MAX_SHOWN = 100;

/**
 * `text` cut to MAX_SHOWN characters, saying how long it was: `"xxxx… (1000000 characters)"`. `length`
 * is the length reported (default: of `text`).
 */
export function bounded(text: string, length = text.length): string {
  if (text.length <= MAX_SHOWN) return text;
  let end = MAX_SHOWN - 1;
  // Do not split a surrogate pair.
  if (/[\uD800-\uDBFF]/.test(text[end - 1])) end--;
  return `${text.slice(0, end)}… (${length} characters)`;
}

/** A value as an error message quotes it: JSON (strings in quotes), bounded. */
export function showValue(value: unknown): string {
  let text: string;
  try {
    text = typeof value === "bigint" ? value.toString() : JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return bounded(text, typeof value === "string" ? value.length : text.length);
}

const asList = (text: string) => text.split(",").map((part) => part.trim()).filter((part) => part.length > 0);
const asIs = (text: string) => text;

/** A number given as text stays text when it is not a number, so the error shows what was typed. */
const asNumber = (text: string) => (/^-?\d+(\.\d+)?$/.test(text.trim()) ? Number(text.trim()) : text);

function fromZod<T>(schema: z.ZodType<T>, allowed: string) {
  return (raw: unknown) => {
    const result = schema.safeParse(raw);
    return result.success
      ? { ok: true as const, value: result.data as unknown }
      : { ok: false as const, allowed };
  };
}

/** The 79 dispatch names of API v10 (protocol doc §10); other names only warn. */
export const KNOWN_EVENTS: ReadonlySet<string> = new Set(
  (
    "APPLICATION_COMMAND_PERMISSIONS_UPDATE AUTO_MODERATION_ACTION_EXECUTION AUTO_MODERATION_RULE_CREATE " +
    "AUTO_MODERATION_RULE_DELETE AUTO_MODERATION_RULE_UPDATE CHANNEL_CREATE CHANNEL_DELETE CHANNEL_INFO " +
    "CHANNEL_PINS_UPDATE CHANNEL_UPDATE ENTITLEMENT_CREATE ENTITLEMENT_DELETE ENTITLEMENT_UPDATE " +
    "GUILD_AUDIT_LOG_ENTRY_CREATE GUILD_BAN_ADD GUILD_BAN_REMOVE GUILD_CREATE GUILD_DELETE GUILD_EMOJIS_UPDATE " +
    "GUILD_INTEGRATIONS_UPDATE GUILD_MEMBERS_CHUNK GUILD_MEMBER_ADD GUILD_MEMBER_REMOVE GUILD_MEMBER_UPDATE " +
    "GUILD_ROLE_CREATE GUILD_ROLE_DELETE GUILD_ROLE_UPDATE GUILD_SCHEDULED_EVENT_CREATE " +
    "GUILD_SCHEDULED_EVENT_DELETE GUILD_SCHEDULED_EVENT_UPDATE GUILD_SCHEDULED_EVENT_USER_ADD " +
    "GUILD_SCHEDULED_EVENT_USER_REMOVE GUILD_SOUNDBOARD_SOUNDS_UPDATE GUILD_SOUNDBOARD_SOUND_CREATE " +
    "GUILD_SOUNDBOARD_SOUND_DELETE GUILD_SOUNDBOARD_SOUND_UPDATE GUILD_STICKERS_UPDATE GUILD_UPDATE " +
    "INTEGRATION_CREATE INTEGRATION_DELETE INTEGRATION_UPDATE INTERACTION_CREATE INVITE_CREATE INVITE_DELETE " +
    "MESSAGE_CREATE MESSAGE_DELETE MESSAGE_DELETE_BULK MESSAGE_POLL_VOTE_ADD MESSAGE_POLL_VOTE_REMOVE " +
    "MESSAGE_REACTION_ADD MESSAGE_REACTION_REMOVE MESSAGE_REACTION_REMOVE_ALL MESSAGE_REACTION_REMOVE_EMOJI " +
    "MESSAGE_UPDATE PRESENCE_UPDATE RATE_LIMITED READY RESUMED SOUNDBOARD_SOUNDS STAGE_INSTANCE_CREATE " +
    "STAGE_INSTANCE_DELETE STAGE_INSTANCE_UPDATE SUBSCRIPTION_CREATE SUBSCRIPTION_DELETE SUBSCRIPTION_UPDATE " +
    "THREAD_CREATE THREAD_DELETE THREAD_LIST_SYNC THREAD_MEMBERS_UPDATE THREAD_MEMBER_UPDATE THREAD_UPDATE " +
    "TYPING_START USER_UPDATE VOICE_CHANNEL_EFFECT_SEND VOICE_CHANNEL_START_TIME_UPDATE " +
    "VOICE_CHANNEL_STATUS_UPDATE VOICE_SERVER_UPDATE VOICE_STATE_UPDATE WEBHOOKS_UPDATE"
  ).split(" "),
);

const INTENT_LIST = Object.keys(INTENTS).join(", ");

/** Intents as names (case-insensitive, aliases accepted) or a bitfield. */
function parseIntents(raw: unknown): { ok: true; value: number } | { ok: false; allowed: string } {
  if (typeof raw === "string") raw = raw.trim();
  if (typeof raw === "number" || (typeof raw === "string" && /^\d+$/.test(raw))) {
    const bits = Number(raw);
    if (!Number.isSafeInteger(bits) || bits < 0) {
      return { ok: false, allowed: "a non-negative integer bitfield" };
    }
    const unknown = bits & ~ALL_INTENTS;
    if (unknown !== 0 || bits > 0x7fffffff) {
      return {
        ok: false,
        allowed: `only defined intent bits (0-16, 20, 21, 24, 25; all = ${ALL_INTENTS}); ` +
          `undefined bits set: ${unknown}`,
      };
    }
    return { ok: true, value: bits };
  }
  const names = typeof raw === "string" ? asList(raw) : raw;
  if (!Array.isArray(names) || names.some((name) => typeof name !== "string")) {
    return { ok: false, allowed: `a list of intent names (${INTENT_LIST}) or an integer bitfield` };
  }
  let bits = 0;
  const unknownNames: string[] = [];
  for (const name of names as string[]) {
    const bit = INTENTS[name.trim().toUpperCase()];
    if (bit === undefined) unknownNames.push(name);
    else bits |= bit;
  }
  if (unknownNames.length > 0) {
    return {
      ok: false,
      allowed: `intent names among ${INTENT_LIST} (unknown: ${bounded(unknownNames.join(", "))})`,
    };
  }
  return { ok: true, value: bits };
}

/** Shard ids as a list, or text like `0-3,8`. */
function parseShardIds(raw: unknown): { ok: true; value: number[] } | { ok: false; allowed: string } {
  const allowed = "a list of unique non-negative integers (ranges like 0-3,8 in env and flags)";
  let ids: unknown[];
  if (typeof raw === "string") {
    ids = [];
    for (const part of asList(raw)) {
      const range = /^(\d+)\s*-\s*(\d+)$/.exec(part);
      if (range) {
        const [from, to] = [Number(range[1]), Number(range[2])];
        if (to < from || to - from > 100_000) return { ok: false, allowed };
        for (let id = from; id <= to; id++) ids.push(id);
      } else if (/^\d+$/.test(part)) {
        ids.push(Number(part));
      } else {
        return { ok: false, allowed };
      }
    }
  } else if (Array.isArray(raw)) {
    ids = raw;
  } else {
    return { ok: false, allowed };
  }
  if (ids.length === 0 || ids.some((id) => !Number.isSafeInteger(id) || (id as number) < 0)) {
    return { ok: false, allowed };
  }
  if (new Set(ids).size !== ids.length) return { ok: false, allowed: `${allowed}; ids repeat` };
  return { ok: true, value: ids as number[] };
}

function parseEvents(raw: unknown): { ok: true; value: string[] | null } | { ok: false; allowed: string } {
  const allowed = "a list of event names in upper case, like MESSAGE_CREATE (empty = every event)";
  const list = typeof raw === "string" ? asList(raw) : raw;
  if (
    !Array.isArray(list) || list.some((name) => typeof name !== "string" || !/^[A-Z][A-Z0-9_]*$/.test(name))
  ) {
    return { ok: false, allowed };
  }
  return { ok: true, value: list.length === 0 ? null : [...new Set(list as string[])] };
}

const activity = z.object({
  name: z.string().min(1),
  type: z.number().int().min(0).max(5).default(0),
  url: z.string().nullish(),
  state: z.string().nullish(),
}).strict();

const presenceSchema = z.object({
  status: z.enum(["online", "dnd", "idle", "invisible", "offline"]).default("online"),
  afk: z.boolean().default(false),
  since: z.number().int().nullable().default(null),
  activities: z.array(activity).default([]),
  game: activity.optional(),
}).strict();

function parsePresence(raw: unknown): { ok: true; value: Presence | null } | { ok: false; allowed: string } {
  const allowed = "a table with status (online, dnd, idle, invisible, offline), afk (boolean), since " +
    "(integer or null), activities (list of {name, type 0-5, url, state}) or Spectacles' game {name, type, url}";
  if (typeof raw === "string") {
    try {
      raw = JSON.parse(raw);
    } catch {
      return { ok: false, allowed: `a JSON object: ${allowed}` };
    }
  }
  const result = presenceSchema.safeParse(raw);
  if (!result.success) return { ok: false, allowed };
  const { game, ...rest } = result.data;
  const activities = [...rest.activities, ...(game ? [game] : [])].map((a) => {
    const out: Presence["activities"][number] = { name: a.name, type: a.type };
    if (a.url != null) out.url = a.url;
    if (a.state != null) out.state = a.state;
    return out;
  });
  return { ok: true, value: { since: rest.since, activities, status: rest.status, afk: rest.afk } };
}

const positiveInt = fromZod(z.number().int().positive().max(1_000_000), "a positive integer");

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};
const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** "7d", "12h", "90m", "0" → ms. */
export function parseDuration(raw: unknown): { ok: true; value: number } | { ok: false; allowed: string } {
  const allowed = 'a duration like "7d", "12h", "30m", "45s" (units ms, s, m, h, d, w), or 0 for none';
  if (raw === 0 || raw === "0") return { ok: true, value: 0 };
  if (typeof raw !== "string") return { ok: false, allowed };
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$/i.exec(raw);
  if (!match) return { ok: false, allowed };
  return { ok: true, value: Math.round(Number(match[1]) * DURATION_UNITS[match[2].toLowerCase()]) };
}

/** "1GB", "500MB", "2GiB", "0" → bytes. */
export function parseSize(raw: unknown): { ok: true; value: number } | { ok: false; allowed: string } {
  const allowed =
    'a size like "500MB", "2GB", "1GiB" (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), or 0 for none';
  if (raw === 0 || raw === "0") return { ok: true, value: 0 };
  if (typeof raw === "number" && Number.isInteger(raw) && raw > 0) return { ok: true, value: raw };
  if (typeof raw !== "string") return { ok: false, allowed };
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)\s*$/i.exec(raw);
  if (!match) return { ok: false, allowed };
  return { ok: true, value: Math.round(Number(match[1]) * SIZE_UNITS[match[2].toLowerCase()]) };
}

const SINK_TYPES = ["stdout", "redis", "amqp", "http"];

/** `"redis"`, `"stdout,redis"` or `["stdout", "redis"]`: at least one, no repeats. */
function parseSinkTypes(raw: unknown): { ok: true; value: SinkType[] } | { ok: false; allowed: string } {
  const allowed = `one or more of ${SINK_TYPES.join(", ")}`;
  const list = typeof raw === "string" ? raw.split(",").map((s) => s.trim()).filter((s) => s !== "") : raw;
  if (!Array.isArray(list) || list.length === 0) return { ok: false, allowed };
  const types = list.map((t) => String(t).toLowerCase());
  if (types.some((t) => !SINK_TYPES.includes(t)) || new Set(types).size !== types.length) {
    return { ok: false, allowed };
  }
  return { ok: true, value: types as SinkType[] };
}

/**
 * Why a token cannot be right, or null: whitespace or control characters inside it come from a copy
 * and paste or a file with a line break, and a line break would also break the escaping of log lines.
 */
function tokenProblem(token: string): string | null {
  if (/[\r\n\u2028\u2029]/.test(token)) return "the token contains a line break";
  if (/\s/.test(token)) return "the token contains whitespace";
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(token)) return "the token contains a control character";
  return null;
}

/** The bot token: the ends and a leading "Bot " are trimmed; nothing else may be whitespace. */
function parseToken(raw: unknown): { ok: true; value: string } | { ok: false; allowed: string } {
  const allowed = "a non-empty bot token string";
  if (typeof raw !== "string") return { ok: false, allowed };
  const token = raw.trim().replace(/^Bot\s+/i, "");
  if (token.length === 0) return { ok: false, allowed };
  const problem = tokenProblem(token);
  return problem ? { ok: false, allowed: `${allowed} (${problem})` } : { ok: true, value: token };
}

function parseControlToken(raw: unknown): { ok: true; value: string } | { ok: false; allowed: string } {
  const allowed = "a bearer token of at least 16 characters";
  if (typeof raw !== "string" || raw.trim().length < 16) return { ok: false, allowed };
  const problem = tokenProblem(raw.trim());
  return problem ? { ok: false, allowed: `${allowed} (${problem})` } : { ok: true, value: raw.trim() };
}

/** A header value: spaces are part of it ("Bearer …"), line breaks and control characters are not. */
function parseAuthorization(raw: unknown): { ok: true; value: string } | { ok: false; allowed: string } {
  const allowed = 'the Authorization header\'s value, e.g. "Bearer …"';
  if (typeof raw !== "string" || raw.trim().length === 0) return { ok: false, allowed };
  const value = raw.trim();
  if (/[\r\n]/.test(value)) return { ok: false, allowed: `${allowed} (it contains a line break)` };
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) {
    return { ok: false, allowed: `${allowed} (it contains a control character)` };
  }
  return { ok: true, value };
}

/** A URL checked at load time, so a library never fails on it later (printing it, password and all). */
function urlKey(schemes: readonly string[], allowed: string) {
  return (raw: unknown): { ok: true; value: string } | { ok: false; allowed: string } => {
    if (typeof raw !== "string") return { ok: false, allowed };
    const problem = urlProblem(raw, schemes);
    return problem ? { ok: false, allowed: `${allowed} (${problem})` } : { ok: true, value: raw };
  };
}

/** `host[:port]` of the Discord API: a name or address, a port from 1 to 65535. */
function parseApiHost(raw: unknown): { ok: true; value: string } | { ok: false; allowed: string } {
  const allowed = "a host name or address with an optional :port from 1 to 65535, without scheme or path " +
    "(e.g. discord.com)";
  const match = typeof raw === "string"
    ? /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::(\d{1,5}))?$/.exec(raw)
    : null;
  // A DNS name has at most 253 characters.
  if (!match || match[1].length > 253) return { ok: false, allowed };
  if (match[2] !== undefined && (Number(match[2]) < 1 || Number(match[2]) > 65535)) {
    return { ok: false, allowed };
  }
  return { ok: true, value: raw as string };
}

function parseBool(raw: unknown): { ok: true; value: boolean } | { ok: false; allowed: string } {
  if (typeof raw === "boolean") return { ok: true, value: raw };
  if (typeof raw === "string" && /^(true|false|1|0|yes|no|on|off)$/i.test(raw.trim())) {
    return { ok: true, value: /^(true|1|yes|on)$/i.test(raw.trim()) };
  }
  return { ok: false, allowed: "true or false" };
}

export const KEYS: readonly KeyDef[] = [
  {
    key: "token",
    env: ["DISCORD_TOKEN"],
    fromText: asIs,
    parse: parseToken,
    secret: true,
  },
  {
    key: "events",
    env: ["DISCORD_EVENTS"],
    flag: { name: "events", option: "events" },
    fromText: asIs,
    parse: parseEvents,
  },
  {
    key: "intents",
    env: ["DISCORD_RAW_INTENTS", "DISCORD_INTENTS"],
    flag: { name: "intents", option: "intents" },
    fromText: (text) => text.trim(),
    parse: parseIntents,
  },
  {
    key: "shards.count",
    env: ["DISCORD_SHARD_COUNT"],
    flag: { name: "shardCount", option: "shard-count" },
    fromText: asNumber,
    parse: positiveInt,
  },
  {
    key: "shards.ids",
    env: ["DISCORD_SHARD_IDS"],
    flag: { name: "shardIds", option: "shard-ids" },
    fromText: asIs,
    parse: parseShardIds,
  },
  {
    key: "api.version",
    env: ["DISCORD_API_VERSION"],
    flag: { name: "apiVersion", option: "api-version" },
    fromText: asNumber,
    parse: fromZod(z.union([z.literal(9), z.literal(10)]), "9 or 10"),
  },
  {
    key: "api.scheme",
    env: ["DISCORD_API_SCHEME", "DISCORD_API_PROTOCOL"],
    flag: { name: "apiScheme", option: "api-scheme" },
    fromText: (text) => text.trim().toLowerCase(),
    parse: fromZod(z.enum(["http", "https"]), "http or https"),
  },
  {
    key: "api.host",
    env: ["DISCORD_API_HOST"],
    flag: { name: "apiHost", option: "api-host" },
    fromText: (text) => text.trim(),
    parse: parseApiHost,
  },
  {
    key: "presence",
    env: ["DISCORD_PRESENCE"],
    fromText: asIs,
    parse: parsePresence,
  },
  {
    key: "gateway.compression",
    env: ["GATEHOUSE_COMPRESSION"],
    flag: { name: "compression", option: "compression" },
    fromText: (text) => text.trim(),
    parse: fromZod(z.enum(COMPRESSIONS as [Compression, ...Compression[]]), COMPRESSIONS.join(", ")),
  },
  {
    key: "gateway.large_threshold",
    env: ["GATEHOUSE_LARGE_THRESHOLD"],
    flag: { name: "largeThreshold", option: "large-threshold" },
    fromText: asNumber,
    parse: fromZod(z.number().int().min(50).max(250), "an integer from 50 to 250"),
  },
  {
    key: "gateway.identify_reserve",
    env: ["GATEHOUSE_IDENTIFY_RESERVE"],
    fromText: asNumber,
    parse: fromZod(z.number().int().min(0).max(100_000), "a non-negative integer"),
  },
  {
    key: "store.path",
    env: ["GATEHOUSE_STORE"],
    flag: { name: "store", option: "store" },
    fromText: asIs,
    parse: fromZod(z.string().min(1), "a non-empty file path"),
  },
  {
    key: "store.journal",
    env: ["GATEHOUSE_JOURNAL"],
    flag: { name: "journal", option: "journal" },
    fromText: (text) => text.trim(),
    parse: parseBool,
  },
  {
    key: "store.max_age",
    env: ["GATEHOUSE_STORE_MAX_AGE"],
    fromText: (text) => text.trim(),
    parse: parseDuration,
  },
  {
    key: "store.max_size",
    env: ["GATEHOUSE_STORE_MAX_SIZE"],
    fromText: (text) => text.trim(),
    parse: parseSize,
  },
  {
    key: "store.hard_max_size",
    env: ["GATEHOUSE_STORE_HARD_MAX_SIZE"],
    fromText: (text) => text.trim(),
    parse: parseSize,
  },
  {
    key: "store.commit_interval_ms",
    env: ["GATEHOUSE_COMMIT_INTERVAL_MS"],
    fromText: asNumber,
    parse: fromZod(z.number().int().min(0).max(1000), "an integer from 0 to 1000 (milliseconds)"),
  },
  {
    key: "broker.type",
    env: ["BROKER_TYPE"],
    fromText: asIs,
    parse: parseSinkTypes,
  },
  {
    key: "broker.group",
    env: ["BROKER_GROUP"],
    fromText: asIs,
    parse: fromZod(z.string().regex(/^[\w.:-]{1,64}$/), "a consumer group name (letters, digits, _ . : -)"),
  },
  {
    key: "redis.url",
    env: ["REDIS_URL"],
    fromText: asIs,
    parse: (raw) => {
      const allowed =
        "a redis:// or rediss:// URL, redis+sentinel://host:26379[,host:port…]/master, or redis+cluster://host:port[,host:port…]";
      if (typeof raw !== "string") return { ok: false, allowed };
      try {
        parseRedisUrl(raw);
      } catch (error) {
        return { ok: false, allowed: `${allowed} (${(error as Error).message})` };
      }
      return { ok: true, value: raw };
    },
    secret: true,
  },
  {
    key: "redis.prefix",
    env: ["GATEHOUSE_REDIS_PREFIX"],
    fromText: asIs,
    parse: fromZod(z.string().regex(/^[\w.:-]{1,64}$/), "a key prefix (letters, digits, _ . : -)"),
  },
  {
    key: "redis.streams",
    env: ["GATEHOUSE_REDIS_STREAMS"],
    fromText: (text) => text.trim(),
    parse: fromZod(z.enum(["per-event", "single"]), '"per-event" or "single"'),
  },
  {
    key: "redis.max_len",
    env: ["GATEHOUSE_REDIS_MAX_LEN"],
    fromText: asNumber,
    parse: fromZod(z.number().int().min(0), "a non-negative integer (0 = no trimming)"),
  },
  {
    key: "redis.command_claim_idle_ms",
    env: ["GATEHOUSE_COMMAND_CLAIM_IDLE_MS"],
    fromText: asNumber,
    parse: fromZod(
      z.number().int().min(100).max(86_400_000),
      "an integer from 100 to 86400000 (milliseconds)",
    ),
  },
  {
    key: "redis.tls_ca",
    env: ["GATEHOUSE_REDIS_TLS_CA"],
    fromText: asIs,
    parse: fromZod(
      z.string().min(1),
      "the path of a PEM file with the CA certificate(s) of the Redis servers",
    ),
  },
  {
    key: "amqp.url",
    env: ["AMQP_URL"],
    fromText: asIs,
    parse: urlKey(["amqp", "amqps"], "an amqp:// or amqps:// URL like amqp://user:password@host:5672/vhost"),
    secret: true,
  },
  {
    key: "amqp.exchange",
    env: ["GATEHOUSE_AMQP_EXCHANGE"],
    fromText: asIs,
    parse: fromZod(z.string().regex(/^[\w.:-]{1,127}$/), "an exchange name (letters, digits, _ . : -)"),
  },
  {
    key: "http.url",
    env: ["GATEHOUSE_HTTP_URL"],
    fromText: asIs,
    parse: urlKey(["http", "https"], "an http:// or https:// URL"),
    secret: true,
  },
  {
    key: "http.authorization",
    env: ["GATEHOUSE_HTTP_AUTHORIZATION"],
    fromText: asIs,
    parse: parseAuthorization,
    secret: true,
  },
  {
    key: "control.address",
    env: ["GATEHOUSE_CONTROL_ADDRESS"],
    flag: { name: "controlAddress", option: "control-address" },
    fromText: asIs,
    parse: (raw) => {
      const address = typeof raw === "string" ? parseListenAddress(raw) : undefined;
      return address === undefined
        ? { ok: false, allowed: 'host:port (e.g. "127.0.0.1:7979"; port 0 = any free port), or "off"' }
        : { ok: true, value: address };
    },
  },
  {
    key: "control.token",
    env: ["GATEHOUSE_CONTROL_TOKEN"],
    fromText: asIs,
    parse: parseControlToken,
    secret: true,
  },
  {
    key: "prometheus.address",
    env: ["PROMETHEUS_ADDRESS"],
    fromText: asIs,
    parse: (raw) => {
      const address = typeof raw === "string" ? parseListenAddress(raw) : undefined;
      return address === undefined
        ? { ok: false, allowed: 'host:port or :port (an alias of control.address), or "off"' }
        : { ok: true, value: address };
    },
  },
  {
    key: "prometheus.endpoint",
    env: ["PROMETHEUS_ENDPOINT"],
    fromText: asIs,
    parse: fromZod(z.string().regex(/^\/[\w\-./]*$/), 'a path starting with "/" (default "/metrics")'),
  },
  {
    key: "log.level",
    env: ["GATEHOUSE_LOG_LEVEL"],
    flag: { name: "logLevel", option: "log-level" },
    fromText: (text) => text.trim().toLowerCase(),
    parse: fromZod(z.enum(LOG_LEVELS as [LogLevel, ...LogLevel[]]), LOG_LEVELS.join(", ")),
  },
];

export const DEFAULTS = {
  events: null,
  intents: NON_PRIVILEGED_INTENTS,
  shards: { count: null, ids: null },
  api: { version: 10, scheme: "https" as const, host: "discord.com" },
  presence: null,
  gateway: { compression: "zlib-stream" as Compression, largeThreshold: 50, identifyReserve: 10 },
  store: {
    path: "gatehouse.db",
    journal: true,
    maxAgeMs: 7 * 86_400_000,
    maxSizeBytes: 1e9,
    hardMaxSizeBytes: 0,
    commitIntervalMs: 50,
  },
  broker: { types: ["stdout"] as SinkType[], group: "gatehouse" },
  redis: {
    url: "redis://127.0.0.1:6379",
    prefix: "gatehouse",
    streams: "per-event" as "per-event" | "single",
    maxLen: 0,
    commandClaimIdleMs: 30_000,
    tlsCa: null as string | null,
    tlsCaPem: null as string | null,
  },
  amqp: { url: "amqp://guest:guest@127.0.0.1:5672", exchange: "gatehouse" },
  http: { url: null as string | null, authorization: null as string | null },
  control: {
    address: { hostname: "127.0.0.1", port: 7979 } as ListenAddress,
    token: null as string | null,
    metricsPath: "/metrics",
  },
  log: { level: "info" as LogLevel },
};

/** Spectacles keys and variables this version accepts but does not act on yet. */
export const NOT_YET_SUPPORTED = {
  tables: ["shard_store"],
  /** Keys of supported tables that this version ignores. */
  keys: ["broker.message_timeout", "redis.pool_size"],
  env: [
    "BROKER_MESSAGE_TIMEOUT",
    "SHARD_STORE_TYPE",
    "SHARD_STORE_PREFIX",
    "REDIS_POOL_SIZE",
  ],
};
