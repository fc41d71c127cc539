/**
 * Proxy mode's cache: what a bot needs to start without Discord — the bot's user and application, and per
 * guild what a GUILD_CREATE holds — kept current from the dispatches in journal order.
 *
 * Every entity is kept as its JSON text (V8 keeps ASCII strings at one byte a character, several times
 * less than the parsed objects), and a GUILD_CREATE is put together from those texts without parsing or
 * serialising the guild again. An event is parsed only when its `t` changes the cache; anything else costs
 * one set lookup. Malformed events are counted and ignored, never thrown.
 */
import { shardForGuild } from "../gateway/protocol.ts";

/** What is cached, per kind. The guild objects themselves always are. */
export interface CacheKinds {
  channels: boolean;
  threads: boolean;
  roles: boolean;
  emojis: boolean;
  stickers: boolean;
  members: boolean;
  presences: boolean;
  voiceStates: boolean;
  stageInstances: boolean;
  scheduledEvents: boolean;
  /** false: cached members and presences keep only `user: {"id": …}`. */
  users: boolean;
}

export type CacheKind = keyof CacheKinds;

export const DEFAULT_CACHE_KINDS: CacheKinds = Object.freeze({
  channels: true,
  threads: true,
  roles: true,
  emojis: true,
  stickers: true,
  members: true,
  presences: false,
  voiceStates: true,
  stageInstances: true,
  scheduledEvents: true,
  users: true,
});

/** The collections of a guild: the kind that turns each on, and its GUILD_CREATE field. */
const COLLECTIONS = [
  ["channels", "channels"],
  ["threads", "threads"],
  ["roles", "roles"],
  ["emojis", "emojis"],
  ["stickers", "stickers"],
  ["members", "members"],
  ["presences", "presences"],
  ["voiceStates", "voice_states"],
  ["stageInstances", "stage_instances"],
  ["scheduledEvents", "guild_scheduled_events"],
] as const;

type Collection = (typeof COLLECTIONS)[number][0];
type Entities = Map<string, string>;

interface CachedGuild {
  /** The guild's own fields as a JSON object text (collections, member_count and unavailable left out). */
  base: string;
  memberCount: number | null;
  unavailable: boolean;
  collections: Record<Collection, Entities>;
}

/** The events that change the cache. */
const HANDLED: ReadonlySet<string> = new Set([
  "READY",
  "USER_UPDATE",
  "GUILD_CREATE",
  "GUILD_UPDATE",
  "GUILD_DELETE",
  "CHANNEL_CREATE",
  "CHANNEL_UPDATE",
  "CHANNEL_DELETE",
  "THREAD_CREATE",
  "THREAD_UPDATE",
  "THREAD_DELETE",
  "THREAD_LIST_SYNC",
  "GUILD_ROLE_CREATE",
  "GUILD_ROLE_UPDATE",
  "GUILD_ROLE_DELETE",
  "GUILD_EMOJIS_UPDATE",
  "GUILD_STICKERS_UPDATE",
  "GUILD_MEMBER_ADD",
  "GUILD_MEMBER_UPDATE",
  "GUILD_MEMBER_REMOVE",
  "GUILD_MEMBERS_CHUNK",
  "PRESENCE_UPDATE",
  "VOICE_STATE_UPDATE",
  "STAGE_INSTANCE_CREATE",
  "STAGE_INSTANCE_UPDATE",
  "STAGE_INSTANCE_DELETE",
  "GUILD_SCHEDULED_EVENT_CREATE",
  "GUILD_SCHEDULED_EVENT_UPDATE",
  "GUILD_SCHEDULED_EVENT_DELETE",
]);

/** Fields of a guild that are not its own (kept apart, or not at all). */
const NOT_BASE = new Set([
  ...COLLECTIONS.map(([, field]) => field),
  "member_count",
  "unavailable",
]);

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function idOf(value: unknown): string | null {
  return typeof value === "string" && value.length > 0 ? value : null;
}

export class GuildCache {
  readonly #kinds: CacheKinds;
  readonly #guilds = new Map<string, CachedGuild>();
  #user: string | null = null;
  #application: string | null = null;
  /** Events that could not be read (not JSON, missing ids): ignored. */
  malformed = 0;
  /** Entries and bytes per kind, kept as they change (stats() is read at every metrics scrape). */
  readonly #sizes = Object.fromEntries(
    ["guilds", ...COLLECTIONS.map(([kind]) => kind)].map((kind) => [kind, { entries: 0, bytes: 0 }]),
  ) as Record<"guilds" | Collection, { entries: number; bytes: number }>;
  #unavailable = 0;

  constructor(kinds: CacheKinds = DEFAULT_CACHE_KINDS) {
    this.#kinds = kinds;
  }

  get user(): string | null {
    return this.#user;
  }

  get application(): string | null {
    return this.#application;
  }

  /** Whether events named `t` change the cache (the rest need not be read). */
  handles(t: string): boolean {
    return HANDLED.has(t);
  }

  /** One dispatch, `d` as Discord sent it. */
  apply(t: string, d: string): void {
    if (!HANDLED.has(t)) return;
    let value: unknown;
    try {
      value = JSON.parse(d);
    } catch {
      this.malformed++;
      return;
    }
    if (!isObject(value) || !this.#apply(t, value)) this.malformed++;
  }

  /** false: the event lacked what it needs. */
  #apply(t: string, d: Json): boolean {
    switch (t) {
      case "READY":
        return this.#ready(d);
      case "USER_UPDATE":
        if (idOf(d.id) === null) return false;
        this.#user = JSON.stringify(d);
        return true;
      case "GUILD_CREATE":
        return this.#guildCreate(d);
      case "GUILD_UPDATE":
        return this.#guildUpdate(d);
      case "GUILD_DELETE": {
        const id = idOf(d.id);
        if (id === null) return false;
        const guild = this.#guilds.get(id);
        if (d.unavailable === true) {
          if (guild) this.#markUnavailable(guild);
        } else if (guild) this.#setGuild(id, null);
        return true;
      }
    }
    const guildId = idOf(d.guild_id);
    // Events of DMs (no guild) change nothing here.
    if (guildId === null) return t.startsWith("CHANNEL_") || t === "PRESENCE_UPDATE";
    const guild = this.#guilds.get(guildId);
    if (!guild) return true;
    const c = guild.collections;
    switch (t) {
      case "CHANNEL_CREATE":
      case "CHANNEL_UPDATE":
        return this.#set(c, "channels", d, d.id);
      case "CHANNEL_DELETE": {
        const id = idOf(d.id);
        if (id === null) return false;
        this.#delete(c, "channels", id);
        for (const [threadId, text] of [...c.threads]) {
          if ((JSON.parse(text) as Json).parent_id === id) this.#delete(c, "threads", threadId);
        }
        return true;
      }
      case "THREAD_CREATE":
      case "THREAD_UPDATE":
        return this.#set(c, "threads", d, d.id);
      case "THREAD_DELETE":
        return this.#remove(c, "threads", d.id);
      case "THREAD_LIST_SYNC": {
        if (!Array.isArray(d.threads)) return false;
        const channels = Array.isArray(d.channel_ids) ? new Set(d.channel_ids) : null;
        for (const [threadId, text] of [...c.threads]) {
          if (channels === null || channels.has((JSON.parse(text) as Json).parent_id)) {
            this.#delete(c, "threads", threadId);
          }
        }
        for (const thread of d.threads) if (isObject(thread)) this.#set(c, "threads", thread, thread.id);
        return true;
      }
      case "GUILD_ROLE_CREATE":
      case "GUILD_ROLE_UPDATE":
        return isObject(d.role) && this.#set(c, "roles", d.role, d.role.id);
      case "GUILD_ROLE_DELETE":
        return this.#remove(c, "roles", d.role_id);
      case "GUILD_EMOJIS_UPDATE":
        return Array.isArray(d.emojis) && this.#replace(c, "emojis", d.emojis, (e) => e.id);
      case "GUILD_STICKERS_UPDATE":
        return Array.isArray(d.stickers) && this.#replace(c, "stickers", d.stickers, (e) => e.id);
      case "GUILD_MEMBER_ADD": {
        const { guild_id: _, ...member } = d;
        if (!this.#setMember(c, member)) return false;
        if (guild.memberCount !== null) guild.memberCount++;
        return true;
      }
      case "GUILD_MEMBER_UPDATE": {
        const { guild_id: _, ...update } = d;
        const userId = isObject(update.user) ? idOf(update.user.id) : null;
        if (userId === null) return false;
        const known = c.members.get(userId);
        return this.#setMember(c, known ? { ...JSON.parse(known), ...update } : update);
      }
      case "GUILD_MEMBER_REMOVE": {
        const userId = isObject(d.user) ? idOf(d.user.id) : null;
        if (userId === null) return false;
        this.#delete(c, "members", userId);
        this.#delete(c, "presences", userId);
        if (guild.memberCount !== null) guild.memberCount = Math.max(0, guild.memberCount - 1);
        return true;
      }
      case "GUILD_MEMBERS_CHUNK": {
        if (!Array.isArray(d.members)) return false;
        for (const member of d.members) if (isObject(member)) this.#setMember(c, member);
        if (Array.isArray(d.presences)) {
          for (const presence of d.presences) if (isObject(presence)) this.#setPresence(c, presence);
        }
        return true;
      }
      case "PRESENCE_UPDATE": {
        const { guild_id: _, ...presence } = d;
        return this.#setPresence(c, presence);
      }
      case "VOICE_STATE_UPDATE": {
        const userId = idOf(d.user_id);
        if (userId === null) return false;
        if (d.channel_id === null || d.channel_id === undefined) {
          this.#delete(c, "voiceStates", userId);
          return true;
        }
        const { guild_id: _, member: _member, ...state } = d;
        return this.#set(c, "voiceStates", state, userId);
      }
      case "STAGE_INSTANCE_CREATE":
      case "STAGE_INSTANCE_UPDATE":
        return this.#set(c, "stageInstances", d, d.id);
      case "STAGE_INSTANCE_DELETE":
        return this.#remove(c, "stageInstances", d.id);
      case "GUILD_SCHEDULED_EVENT_CREATE":
      case "GUILD_SCHEDULED_EVENT_UPDATE":
        return this.#set(c, "scheduledEvents", d, d.id);
      case "GUILD_SCHEDULED_EVENT_DELETE":
        return this.#remove(c, "scheduledEvents", d.id);
    }
    return true;
  }

  #ready(d: Json): boolean {
    if (!isObject(d.user) || !Array.isArray(d.guilds)) return false;
    this.#user = JSON.stringify(d.user);
    if (isObject(d.application)) this.#application = JSON.stringify(d.application);
    const [shard, count] = Array.isArray(d.shard) && d.shard.length === 2 ? d.shard as number[] : [0, 1];
    if (!Number.isInteger(shard) || !Number.isInteger(count) || count < 1) return false;
    const listed = new Set<string>();
    for (const g of d.guilds) {
      const id = isObject(g) ? idOf(g.id) : null;
      if (id !== null) listed.add(id);
    }
    // This shard's guilds are those of its READY: the others left while it was away.
    for (const id of this.#guilds.keys()) {
      if (!listed.has(id) && safeShard(id, count) === shard) this.#setGuild(id, null);
    }
    for (const id of listed) {
      if (!this.#guilds.has(id)) this.#setGuild(id, this.#empty(`{"id":${JSON.stringify(id)}}`, true));
    }
    return true;
  }

  #empty(base: string, unavailable: boolean): CachedGuild {
    const collections = {} as Record<Collection, Entities>;
    for (const [kind] of COLLECTIONS) collections[kind] = new Map();
    return { base, memberCount: null, unavailable, collections };
  }

  #guildCreate(d: Json): boolean {
    const id = idOf(d.id);
    if (id === null) return false;
    if (d.unavailable === true) {
      const known = this.#guilds.get(id);
      if (known) this.#markUnavailable(known);
      else this.#setGuild(id, this.#empty(`{"id":${JSON.stringify(id)}}`, true));
      return true;
    }
    // The guild is replaced, and moves to the end of the order, as a new one.
    this.#setGuild(id, null);
    const guild = this.#empty(baseOf(d), false);
    guild.memberCount = typeof d.member_count === "number" ? d.member_count : null;
    const c = guild.collections;
    for (const [kind, field] of COLLECTIONS) {
      const list = d[field];
      if (!Array.isArray(list)) continue;
      for (const item of list) {
        if (!isObject(item)) continue;
        if (kind === "members") this.#setMember(c, item);
        else if (kind === "presences") this.#setPresence(c, item);
        else if (kind === "voiceStates") {
          const { member: _, ...state } = item;
          this.#set(c, kind, state, item.user_id);
        } else this.#set(c, kind, item, item.id);
      }
    }
    this.#setGuild(id, guild);
    return true;
  }

  #guildUpdate(d: Json): boolean {
    const id = idOf(d.id);
    if (id === null) return false;
    const guild = this.#guilds.get(id);
    if (!guild) return true;
    const base = baseOf({ ...JSON.parse(guild.base), ...d });
    this.#sizes.guilds.bytes += base.length - guild.base.length;
    guild.base = base;
    if (typeof d.member_count === "number") guild.memberCount = d.member_count;
    const c = guild.collections;
    if (Array.isArray(d.roles)) this.#replace(c, "roles", d.roles, (r) => r.id);
    if (Array.isArray(d.emojis)) this.#replace(c, "emojis", d.emojis, (e) => e.id);
    if (Array.isArray(d.stickers)) this.#replace(c, "stickers", d.stickers, (s) => s.id);
    return true;
  }

  #set(c: Record<Collection, Entities>, kind: Collection, value: Json, key: unknown): boolean {
    const id = idOf(key);
    if (id === null) return false;
    if (this.#kinds[kind]) this.#put(c, kind, id, JSON.stringify(value));
    return true;
  }

  #put(c: Record<Collection, Entities>, kind: Collection, id: string, text: string): void {
    const size = this.#sizes[kind];
    const old = c[kind].get(id);
    if (old === undefined) size.entries++;
    else size.bytes -= old.length;
    size.bytes += text.length;
    c[kind].set(id, text);
  }

  #delete(c: Record<Collection, Entities>, kind: Collection, id: string): void {
    const old = c[kind].get(id);
    if (old === undefined) return;
    this.#sizes[kind].entries--;
    this.#sizes[kind].bytes -= old.length;
    c[kind].delete(id);
  }

  #remove(c: Record<Collection, Entities>, kind: Collection, key: unknown): boolean {
    const id = idOf(key);
    if (id === null) return false;
    this.#delete(c, kind, id);
    return true;
  }

  #replace(
    c: Record<Collection, Entities>,
    kind: Collection,
    list: unknown[],
    key: (e: Json) => unknown,
  ): boolean {
    for (const id of [...c[kind].keys()]) this.#delete(c, kind, id);
    for (const item of list) if (isObject(item)) this.#set(c, kind, item, key(item));
    return true;
  }

  /** Adds or replaces a guild (counted), or with null removes it. */
  #setGuild(id: string, guild: CachedGuild | null): void {
    const old = this.#guilds.get(id);
    if (old) {
      this.#sizes.guilds.entries--;
      this.#sizes.guilds.bytes -= old.base.length;
      if (old.unavailable) this.#unavailable--;
      for (const [kind] of COLLECTIONS) {
        for (const id of [...old.collections[kind].keys()]) this.#delete(old.collections, kind, id);
      }
      this.#guilds.delete(id);
    }
    if (guild === null) return;
    this.#sizes.guilds.entries++;
    this.#sizes.guilds.bytes += guild.base.length;
    if (guild.unavailable) this.#unavailable++;
    this.#guilds.set(id, guild);
  }

  #markUnavailable(guild: CachedGuild): void {
    if (!guild.unavailable) this.#unavailable++;
    guild.unavailable = true;
  }

  #withUser(value: Json): Json | null {
    if (!isObject(value.user) || idOf(value.user.id) === null) return null;
    return this.#kinds.users ? value : { ...value, user: { id: value.user.id } };
  }

  #setMember(c: Record<Collection, Entities>, member: Json): boolean {
    const kept = this.#withUser(member);
    if (kept === null) return false;
    return this.#set(c, "members", kept, (member.user as Json).id);
  }

  #setPresence(c: Record<Collection, Entities>, presence: Json): boolean {
    const kept = this.#withUser(presence);
    if (kept === null) return false;
    const userId = (presence.user as Json).id as string;
    if (presence.status === "offline") {
      this.#delete(c, "presences", userId);
      return true;
    }
    return this.#set(c, "presences", kept, userId);
  }

  /** Ids of every known guild (available or not), in order, for which `keep(id)` holds. */
  guildIds(keep?: (guildId: string) => boolean): string[] {
    const ids = [...this.#guilds.keys()];
    return keep ? ids.filter(keep) : ids;
  }

  available(guildId: string): boolean {
    return this.#guilds.get(guildId)?.unavailable === false;
  }

  /** The `d` of a GUILD_CREATE for the guild, from the cache; null when unknown or unavailable. */
  guildCreate(guildId: string): string | null {
    const guild = this.#guilds.get(guildId);
    if (!guild || guild.unavailable) return null;
    const parts: string[] = [];
    if (guild.memberCount !== null) parts.push(`"member_count":${guild.memberCount}`);
    parts.push('"unavailable":false');
    for (const [kind, field] of COLLECTIONS) {
      parts.push(`"${field}":[${[...guild.collections[kind].values()].join(",")}]`);
    }
    const base = guild.base;
    const inner = base.slice(1, -1).trim();
    return `{${inner}${inner.length > 0 ? "," : ""}${parts.join(",")}}`;
  }

  /** Guilds known and unavailable, and per kind its entries and the bytes of their JSON. */
  stats(): {
    guilds: number;
    unavailable: number;
    bytes: number;
    kinds: Record<"guilds" | Collection, { entries: number; bytes: number }>;
  } {
    const kinds = {} as Record<"guilds" | Collection, { entries: number; bytes: number }>;
    let bytes = 0;
    for (const [kind, size] of Object.entries(this.#sizes)) {
      kinds[kind as "guilds" | Collection] = { ...size };
      bytes += size.bytes;
    }
    return { guilds: this.#guilds.size, unavailable: this.#unavailable, bytes, kinds };
  }
}

/** The guild's own fields as JSON text. */
function baseOf(d: Json): string {
  const base: Json = {};
  for (const [key, value] of Object.entries(d)) if (!NOT_BASE.has(key)) base[key] = value;
  return JSON.stringify(base);
}

function safeShard(id: string, count: number): number {
  try {
    return shardForGuild(id, count);
  } catch {
    return -1;
  }
}
