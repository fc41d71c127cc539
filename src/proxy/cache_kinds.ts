/**
 * The kinds the proxy's cache keeps, as the configuration names them (`[proxy.cache] voice_states`), and
 * the parser of `[proxy.cache]`: a TOML table of booleans over the defaults, or (env) the kinds to cache.
 */
import type { Parser } from "../config/parsers.ts";
import { type CacheKind, type CacheKinds, DEFAULT_CACHE_KINDS } from "./cache.ts";

export { type CacheKinds, DEFAULT_CACHE_KINDS };

/** The configuration's name of each kind (TOML keys, env list items), in the order they are documented. */
export const CACHE_KIND_FIELDS = {
  channels: "channels",
  threads: "threads",
  roles: "roles",
  emojis: "emojis",
  stickers: "stickers",
  members: "members",
  presences: "presences",
  voice_states: "voiceStates",
  stage_instances: "stageInstances",
  scheduled_events: "scheduledEvents",
  users: "users",
} as const satisfies Record<string, CacheKind>;

export type CacheKindName = keyof typeof CACHE_KIND_FIELDS;
export const CACHE_KIND_NAMES = Object.keys(CACHE_KIND_FIELDS) as CacheKindName[];

/** `voice_states` → `voiceStates`. */
export function cacheKindField(name: CacheKindName): CacheKind {
  return CACHE_KIND_FIELDS[name];
}

const allowed = `a table of booleans over ${CACHE_KIND_NAMES.join(", ")} (in env: the kinds to cache, ` +
  'comma-separated, or "none")';

/** `[proxy.cache]`: a table `{ presences = true }` over the defaults; env: `channels,roles,members` or `none`. */
export const cacheKindsParser: Parser<CacheKinds> = {
  fromText: (text) => {
    const names = text.split(",").map((part) => part.trim()).filter((part) => part !== "");
    if (names.length === 1 && names[0] === "none") return { list: [] };
    return { list: names };
  },
  parse: (raw) => {
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return { ok: false, allowed };
    const out: CacheKinds = { ...DEFAULT_CACHE_KINDS };
    const list = (raw as { list?: unknown }).list;
    if (Array.isArray(list)) {
      // From env: exactly the kinds listed.
      for (const name of CACHE_KIND_NAMES) out[cacheKindField(name)] = false;
      for (const name of list) {
        if (!(CACHE_KIND_NAMES as string[]).includes(name)) {
          return { ok: false, allowed: `${allowed}; "${String(name).slice(0, 40)}" is no kind` };
        }
        out[cacheKindField(name as CacheKindName)] = true;
      }
      return { ok: true, value: out };
    }
    for (const [name, value] of Object.entries(raw)) {
      if (!(CACHE_KIND_NAMES as string[]).includes(name)) {
        return { ok: false, allowed: `${allowed}; "${name.slice(0, 40)}" is no kind` };
      }
      if (typeof value !== "boolean") return { ok: false, allowed: `${allowed}; ${name} is not a boolean` };
      out[cacheKindField(name as CacheKindName)] = value;
    }
    return { ok: true, value: out };
  },
};
