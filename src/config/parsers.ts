/**
 * The value checks of configuration keys. A `Parser` pairs how an env or flag string becomes the value a
 * TOML file would hold (`fromText`) with one check for every source (`parse`), which returns the typed
 * value or a description of what is allowed for the error message.
 *
 * The checks are plain functions: a schema library (zod) costs ~6 MB of RSS for the few checks made here.
 */
import { ALL_INTENTS, INTENTS } from "../discord/intents.ts";
import type { Presence } from "../discord/identify.ts";
import { parseRedisUrl } from "../redis/url.ts";
import { urlProblem } from "../util/secret.ts";
import type { ListenAddress, SinkType } from "./schema.ts";
import { bounded } from "./show.ts";

export type Parsed<T> = { ok: true; value: T } | { ok: false; allowed: string };

export interface Parser<T> {
  readonly fromText: (text: string) => unknown;
  readonly parse: (raw: unknown) => Parsed<T>;
}

const asList = (text: string) => text.split(",").map((part) => part.trim()).filter((part) => part.length > 0);
const asIs = (text: string) => text;
const trimmed = (text: string) => text.trim();
const lowered = (text: string) => text.trim().toLowerCase();
/** A number given as text stays text when it is not a number, so the error shows what was typed. */
const asNumber = (text: string) => (/^-?\d+(\.\d+)?$/.test(text.trim()) ? Number(text.trim()) : text);

/** A check: the typed value, or undefined when `raw` is not allowed. */
type Check<T> = (raw: unknown) => { value: T } | undefined;

function checked<T>(fromText: (text: string) => unknown, check: Check<T>, allowed: string): Parser<T> {
  return {
    fromText,
    parse: (raw) => {
      const result = check(raw);
      return result ? { ok: true, value: result.value } : { ok: false, allowed };
    },
  };
}

const isInteger = (raw: unknown): raw is number => typeof raw === "number" && Number.isSafeInteger(raw);
const isIntegerIn = (raw: unknown, min: number, max: number): raw is number =>
  isInteger(raw) && raw >= min && raw <= max;

/** An integer from `min` to `max`. */
export function integer(min: number, max: number, allowed: string): Parser<number> {
  return checked(asNumber, (raw) => (isIntegerIn(raw, min, max) ? { value: raw } : undefined), allowed);
}

/** A number above 0 and at most 1. */
export function fraction(allowed: string): Parser<number> {
  return checked(
    asNumber,
    (raw) => (typeof raw === "number" && raw > 0 && raw <= 1 ? { value: raw } : undefined),
    allowed,
  );
}

export const positiveInteger: Parser<number> = checked(
  asNumber,
  (raw) => (isIntegerIn(raw, 1, 1_000_000) ? { value: raw } : undefined),
  "a positive integer",
);

/** One of `values`; env and flag text is trimmed (and lowered when `lower`). */
export function oneOf<const T extends string>(
  values: readonly T[],
  allowed: string,
  lower = false,
): Parser<T> {
  return checked(
    lower ? lowered : trimmed,
    (raw) => ((values as readonly unknown[]).includes(raw) ? { value: raw as T } : undefined),
    allowed,
  );
}

/** A string matching `pattern`. */
export function matching(pattern: RegExp, allowed: string): Parser<string> {
  return checked(asIs, (raw) => {
    if (typeof raw !== "string") return undefined;
    pattern.lastIndex = 0;
    return pattern.test(raw) ? { value: raw } : undefined;
  }, allowed);
}

export function nonEmpty(allowed: string): Parser<string> {
  return checked(
    asIs,
    (raw) => (typeof raw === "string" && raw.length > 0 ? { value: raw } : undefined),
    allowed,
  );
}

export const apiVersion: Parser<9 | 10> = checked(
  asNumber,
  (raw) => (raw === 9 || raw === 10 ? { value: raw } : undefined),
  "9 or 10",
);

const INTENT_LIST = Object.keys(INTENTS).join(", ");

/** Intents as names (case-insensitive, aliases accepted) or a bitfield. */
export const intents: Parser<number> = {
  fromText: trimmed,
  parse: (raw) => {
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
  },
};

/** Shard ids as a list, or text like `0-3,8`. */
export const shardIds: Parser<number[]> = {
  fromText: asIs,
  parse: (raw) => {
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
  },
};

/** Event names; an empty list is every event (null). */
export const events: Parser<string[] | null> = {
  fromText: asIs,
  parse: (raw) => {
    const allowed = "a list of event names in upper case, like MESSAGE_CREATE (empty = every event)";
    const list = typeof raw === "string" ? asList(raw) : raw;
    if (
      !Array.isArray(list) ||
      list.some((name) => typeof name !== "string" || !/^[A-Z][A-Z0-9_]*$/.test(name))
    ) {
      return { ok: false, allowed };
    }
    return { ok: true, value: list.length === 0 ? null : [...new Set(list as string[])] };
  },
};

interface Activity {
  name: string;
  type: number;
  url?: string | null;
  state?: string | null;
}

const isTable = (raw: unknown): raw is Record<string, unknown> =>
  typeof raw === "object" && raw !== null && !Array.isArray(raw);
/** Every key of `table` is one of `keys` (no unknown keys). */
const onlyKeys = (table: Record<string, unknown>, keys: readonly string[]) =>
  Object.keys(table).every((key) => keys.includes(key));
const isNullishString = (raw: unknown) => raw === undefined || raw === null || typeof raw === "string";

/** `{name, type 0-5 (default 0), url, state}`, no other keys. */
function activityOf(raw: unknown): Activity | undefined {
  if (!isTable(raw) || !onlyKeys(raw, ["name", "type", "url", "state"])) return undefined;
  const { name, type = 0, url, state } = raw;
  if (typeof name !== "string" || name.length === 0 || !isIntegerIn(type, 0, 5)) return undefined;
  if (!isNullishString(url) || !isNullishString(state)) return undefined;
  const activity: Activity = { name, type };
  if (url !== undefined) activity.url = url as string | null;
  if (state !== undefined) activity.state = state as string | null;
  return activity;
}

const STATUSES: readonly string[] = [
  "online",
  "dnd",
  "idle",
  "invisible",
  "offline",
] satisfies Presence["status"][];

/** The presence table with its defaults, or undefined when it is not one. */
function presenceOf(raw: unknown):
  | {
    status: Presence["status"];
    afk: boolean;
    since: number | null;
    activities: Activity[];
    game?: Activity;
  }
  | undefined {
  if (!isTable(raw) || !onlyKeys(raw, ["status", "afk", "since", "activities", "game"])) return undefined;
  const { status = "online", afk = false, since = null, activities = [], game } = raw;
  if (typeof status !== "string" || !STATUSES.includes(status)) return undefined;
  if (typeof afk !== "boolean") return undefined;
  if (since !== null && !isInteger(since)) return undefined;
  if (!Array.isArray(activities)) return undefined;
  const list = activities.map(activityOf);
  if (list.some((a) => a === undefined)) return undefined;
  const out = { status: status as Presence["status"], afk, since, activities: list as Activity[] } as {
    status: Presence["status"];
    afk: boolean;
    since: number | null;
    activities: Activity[];
    game?: Activity;
  };
  if (game !== undefined) {
    const one = activityOf(game);
    if (one === undefined) return undefined;
    out.game = one;
  }
  return out;
}

/** A presence table (a JSON object in env), Spectacles' `game` folded into `activities`. */
export const presence: Parser<Presence | null> = {
  fromText: asIs,
  parse: (raw) => {
    const allowed = "a table with status (online, dnd, idle, invisible, offline), afk (boolean), since " +
      "(integer or null), activities (list of {name, type 0-5, url, state}) or Spectacles' game {name, type, url}";
    if (typeof raw === "string") {
      try {
        raw = JSON.parse(raw);
      } catch {
        return { ok: false, allowed: `a JSON object: ${allowed}` };
      }
    }
    const result = presenceOf(raw);
    if (result === undefined) return { ok: false, allowed };
    const { game, ...rest } = result;
    const activities = [...rest.activities, ...(game ? [game] : [])].map((a) => {
      const out: Presence["activities"][number] = { name: a.name, type: a.type };
      if (a.url != null) out.url = a.url;
      if (a.state != null) out.state = a.state;
      return out;
    });
    return { ok: true, value: { since: rest.since, activities, status: rest.status, afk: rest.afk } };
  },
};

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
export function parseDuration(raw: unknown): Parsed<number> {
  const allowed = 'a duration like "7d", "12h", "30m", "45s" (units ms, s, m, h, d, w), or 0 for none';
  if (raw === 0 || raw === "0") return { ok: true, value: 0 };
  if (typeof raw !== "string") return { ok: false, allowed };
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$/i.exec(raw);
  if (!match) return { ok: false, allowed };
  return { ok: true, value: Math.round(Number(match[1]) * DURATION_UNITS[match[2].toLowerCase()]) };
}

/** "1GB", "500MB", "2GiB", "0" → bytes. */
export function parseSize(raw: unknown): Parsed<number> {
  const allowed =
    'a size like "500MB", "2GB", "1GiB" (units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB), or 0 for none';
  if (raw === 0 || raw === "0") return { ok: true, value: 0 };
  if (typeof raw === "number" && Number.isInteger(raw) && raw > 0) return { ok: true, value: raw };
  if (typeof raw !== "string") return { ok: false, allowed };
  const match = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)\s*$/i.exec(raw);
  if (!match) return { ok: false, allowed };
  return { ok: true, value: Math.round(Number(match[1]) * SIZE_UNITS[match[2].toLowerCase()]) };
}

export const duration: Parser<number> = { fromText: trimmed, parse: parseDuration };
export const size: Parser<number> = { fromText: trimmed, parse: parseSize };

export const bool: Parser<boolean> = {
  fromText: trimmed,
  parse: (raw) => {
    if (typeof raw === "boolean") return { ok: true, value: raw };
    if (typeof raw === "string" && /^(true|false|1|0|yes|no|on|off)$/i.test(raw.trim())) {
      return { ok: true, value: /^(true|1|yes|on)$/i.test(raw.trim()) };
    }
    return { ok: false, allowed: "true or false" };
  },
};

export const SINK_TYPES: readonly SinkType[] = ["stdout", "redis", "amqp", "http"];

/** `"redis"`, `"stdout,redis"` or `["stdout", "redis"]`: at least one, no repeats. */
export const sinkTypes: Parser<SinkType[]> = {
  fromText: asIs,
  parse: (raw) => {
    const allowed = `one or more of ${SINK_TYPES.join(", ")}`;
    const list = typeof raw === "string" ? raw.split(",").map((s) => s.trim()).filter((s) => s !== "") : raw;
    if (!Array.isArray(list) || list.length === 0) return { ok: false, allowed };
    const types = list.map((t) => String(t).toLowerCase());
    if (types.some((t) => !(SINK_TYPES as string[]).includes(t)) || new Set(types).size !== types.length) {
      return { ok: false, allowed };
    }
    return { ok: true, value: types as SinkType[] };
  },
};

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
export const botToken: Parser<string> = {
  fromText: asIs,
  parse: (raw) => {
    const allowed = "a non-empty bot token string";
    if (typeof raw !== "string") return { ok: false, allowed };
    const token = raw.trim().replace(/^Bot\s+/i, "");
    if (token.length === 0) return { ok: false, allowed };
    const problem = tokenProblem(token);
    return problem ? { ok: false, allowed: `${allowed} (${problem})` } : { ok: true, value: token };
  },
};

export const bearerToken: Parser<string> = {
  fromText: asIs,
  parse: (raw) => {
    const allowed = "a bearer token of at least 16 characters";
    if (typeof raw !== "string" || raw.trim().length < 16) return { ok: false, allowed };
    const problem = tokenProblem(raw.trim());
    return problem ? { ok: false, allowed: `${allowed} (${problem})` } : { ok: true, value: raw.trim() };
  },
};

/** A header value: spaces are part of it ("Bearer …"), line breaks and control characters are not. */
export const authorization: Parser<string> = {
  fromText: asIs,
  parse: (raw) => {
    const allowed = 'the Authorization header\'s value, e.g. "Bearer …"';
    if (typeof raw !== "string" || raw.trim().length === 0) return { ok: false, allowed };
    const value = raw.trim();
    if (/[\r\n]/.test(value)) return { ok: false, allowed: `${allowed} (it contains a line break)` };
    // deno-lint-ignore no-control-regex
    if (/[\x00-\x08\x0a-\x1f\x7f]/.test(value)) {
      return { ok: false, allowed: `${allowed} (it contains a control character)` };
    }
    return { ok: true, value };
  },
};

/** A URL checked at load time, so a library never fails on it later (printing it, password and all). */
export function url(schemes: readonly string[], allowed: string): Parser<string> {
  return {
    fromText: asIs,
    parse: (raw) => {
      if (typeof raw !== "string") return { ok: false, allowed };
      const problem = urlProblem(raw, schemes);
      return problem ? { ok: false, allowed: `${allowed} (${problem})` } : { ok: true, value: raw };
    },
  };
}

export const redisUrl: Parser<string> = {
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
};

/** `host[:port]` of the Discord API: a name or address, a port from 1 to 65535. */
export const apiHost: Parser<string> = {
  fromText: trimmed,
  parse: (raw) => {
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
  },
};

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

export function listenAddress(allowed: string): Parser<ListenAddress> {
  return {
    fromText: asIs,
    parse: (raw) => {
      const address = typeof raw === "string" ? parseListenAddress(raw) : undefined;
      return address === undefined ? { ok: false, allowed } : { ok: true, value: address };
    },
  };
}
