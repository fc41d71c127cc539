/**
 * Proxy mode's cache: what a bot needs to start without Discord — the bot's user and application, and per
 * guild what a GUILD_CREATE holds — kept current from the dispatches in journal order. On IDENTIFY the proxy
 * answers with a READY and one GUILD_CREATE per cached guild built from it.
 *
 * Memory is what matters (bots with 100k+ guilds), so every entity is kept as its JSON text (V8 keeps a
 * string of Latin-1 characters at one byte a character, several times less than the parsed object), and a
 * GUILD_CREATE is put together by concatenating those texts, never by parsing or serialising the guild
 * again. A guild holds a map only for the collections that have something in them (an empty Map costs
 * some 180 bytes, and most guilds are small).
 *
 * An event is parsed only when its `t` changes what the enabled kinds keep (`handles`); anything else —
 * MESSAGE_CREATE, TYPING_START, PRESENCE_UPDATE while presences are off — costs one set lookup. Events of
 * guilds the cache does not know (other than GUILD_CREATE) are ignored. Malformed events (not JSON, missing
 * ids, wrong types) are counted in `malformed` and ignored, never thrown.
 */
import { shardForGuild } from "../gateway/protocol.ts";

/** What is cached, per kind. `guilds` always is (the guild object itself). */
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
  /** false: cached members (and presences) keep only `user: {"id": …}` instead of the whole user object. */
  users: boolean;
}

export type CacheKind = keyof CacheKinds;

/** Everything but presences (the most frequent event by far, and what bots need least). */
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

/** Entries and bytes (the sum of the cached texts' lengths) of one kind. */
export interface CacheSize {
  entries: number;
  bytes: number;
}

/**
 * What the cache holds. `kinds.guilds` is the guild objects themselves (their own fields); `kinds.users` is
 * always 0 entries and 0 bytes: user objects live inside the members' and presences' texts and are counted
 * there (counting them apart would cost a serialisation per member). `bytes` is the sum over the kinds.
 */
export interface CacheStats {
  /** Guilds known, available or not. */
  guilds: number;
  /** Of those, unavailable. */
  unavailable: number;
  bytes: number;
  kinds: Record<"guilds" | CacheKind, CacheSize>;
}

/** The collections of a guild: the kind that turns each on, and its GUILD_CREATE field, in output order. */
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
/** Entity id → its JSON text, in insertion order. */
type Entities = Map<string, string>;

interface CachedGuild {
  /** The guild's own fields as a JSON object text (collections, member_count and unavailable left out). */
  base: string;
  memberCount: number | null;
  unavailable: boolean;
  /** Only the collections that hold something. */
  c: { [kind in Collection]?: Entities };
}

/**
 * The events that change the cache, and the kinds they change: an event is read when any of its kinds is
 * on, or always when it has none listed (the guild itself, the bot's user, member_count).
 */
const EVENT_KINDS: Readonly<Record<string, readonly Collection[]>> = {
  READY: [],
  USER_UPDATE: [],
  GUILD_CREATE: [],
  GUILD_UPDATE: [],
  GUILD_DELETE: [],
  // member_count, whatever is cached.
  GUILD_MEMBER_ADD: [],
  GUILD_MEMBER_REMOVE: [],
  CHANNEL_CREATE: ["channels"],
  CHANNEL_UPDATE: ["channels"],
  CHANNEL_DELETE: ["channels", "threads"],
  THREAD_CREATE: ["threads"],
  THREAD_UPDATE: ["threads"],
  THREAD_DELETE: ["threads"],
  THREAD_LIST_SYNC: ["threads"],
  GUILD_ROLE_CREATE: ["roles"],
  GUILD_ROLE_UPDATE: ["roles"],
  GUILD_ROLE_DELETE: ["roles"],
  GUILD_EMOJIS_UPDATE: ["emojis"],
  GUILD_STICKERS_UPDATE: ["stickers"],
  GUILD_MEMBER_UPDATE: ["members"],
  GUILD_MEMBERS_CHUNK: ["members", "presences"],
  PRESENCE_UPDATE: ["presences"],
  VOICE_STATE_UPDATE: ["voiceStates"],
  STAGE_INSTANCE_CREATE: ["stageInstances"],
  STAGE_INSTANCE_UPDATE: ["stageInstances"],
  STAGE_INSTANCE_DELETE: ["stageInstances"],
  GUILD_SCHEDULED_EVENT_CREATE: ["scheduledEvents"],
  GUILD_SCHEDULED_EVENT_UPDATE: ["scheduledEvents"],
  GUILD_SCHEDULED_EVENT_DELETE: ["scheduledEvents"],
};

/** Events that may come without a guild (DMs, private calls): ignored then, not malformed. */
const MAY_LACK_GUILD: ReadonlySet<string> = new Set([
  "CHANNEL_CREATE",
  "CHANNEL_UPDATE",
  "CHANNEL_DELETE",
  "PRESENCE_UPDATE",
  "VOICE_STATE_UPDATE",
]);

/** Fields of a guild that are not its own (kept apart, or not at all). */
const NOT_BASE: ReadonlySet<string> = new Set([
  ...COLLECTIONS.map(([, field]) => field),
  "member_count",
  "unavailable",
]);

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** An entity's id: a non-empty string. */
function idOf(value: unknown): string | null {
  return typeof value === "string" && value.length > 0 ? value : null;
}

/** A guild's id: a snowflake (callers compute its shard from it, which must not throw). */
function snowflakeOf(value: unknown): string | null {
  return typeof value === "string" && /^[0-9]{1,20}$/.test(value) ? value : null;
}

/** The id of the `user` inside a member or presence. */
function userIdOf(value: Json): string | null {
  return isObject(value.user) ? idOf(value.user.id) : null;
}

/** `value` without `guild_id`, which the GUILD_CREATE's own entities lack. */
function withoutGuildId(value: Json): Json {
  const { guild_id: _, ...rest } = value;
  return rest;
}

/** The guild's own fields as JSON text (defined, not assigned: a `__proto__` key stays a key). */
function baseOf(d: Json): string {
  return JSON.stringify(Object.fromEntries(Object.entries(d).filter(([key]) => !NOT_BASE.has(key))));
}

export class GuildCache {
  readonly #kinds: Readonly<CacheKinds>;
  /** The events read with these kinds (see EVENT_KINDS). */
  readonly #relevant: ReadonlySet<string>;
  readonly #guilds = new Map<string, CachedGuild>();
  #user: string | null = null;
  #application: string | null = null;
  #unavailable = 0;
  /** Entries and bytes per kind, kept as they change (stats() is read at every metrics scrape). */
  readonly #sizes = Object.fromEntries(
    ["guilds", ...COLLECTIONS.map(([kind]) => kind)].map((kind) => [kind, { entries: 0, bytes: 0 }]),
  ) as Record<"guilds" | Collection, CacheSize>;
  /** Events that were read but could not be used (not JSON, missing ids, wrong types): ignored. */
  malformed = 0;

  constructor(kinds: CacheKinds = DEFAULT_CACHE_KINDS) {
    this.#kinds = Object.freeze({ ...kinds });
    this.#relevant = new Set(
      Object.entries(EVENT_KINDS)
        .filter(([, of]) => of.length === 0 || of.some((kind) => this.#kinds[kind]))
        .map(([t]) => t),
    );
  }

  /** The bot's user (READY's `user`, then USER_UPDATE) as JSON text; null before any READY. */
  get user(): string | null {
    return this.#user;
  }

  /** READY's `application` as JSON text; null before any READY. */
  get application(): string | null {
    return this.#application;
  }

  /**
   * Whether events named `t` change the cache with its kinds (the rest need not be read, and a GUILD_CREATE
   * from the cache does not hold their effect).
   */
  handles(t: string): boolean {
    return this.#relevant.has(t);
  }

  /** One dispatch: `t`, and `d` as JSON text exactly as Discord sent it (parsed only when `handles(t)`). */
  apply(t: string, d: string): void {
    if (!this.#relevant.has(t)) return;
    let ok = false;
    try {
      const value: unknown = JSON.parse(d);
      ok = isObject(value) && this.#apply(t, value);
    } catch {
      // Not JSON (nothing else here throws; caught all the same, as apply must not).
    }
    if (!ok) this.malformed++;
  }

  /** false: the event lacks what it needs. */
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
        const id = snowflakeOf(d.id);
        if (id === null) return false;
        const guild = this.#guilds.get(id);
        if (guild === undefined) return true;
        if (d.unavailable === true) this.#markUnavailable(guild);
        else this.#removeGuild(id);
        return true;
      }
    }
    if (d.guild_id === undefined || d.guild_id === null) return MAY_LACK_GUILD.has(t);
    const guildId = idOf(d.guild_id);
    if (guildId === null) return false;
    const guild = this.#guilds.get(guildId);
    if (guild === undefined) return true;
    switch (t) {
      case "CHANNEL_CREATE":
      case "CHANNEL_UPDATE":
        return this.#setOne(guild, "channels", d.id, d);
      case "CHANNEL_DELETE": {
        const id = idOf(d.id);
        if (id === null) return false;
        this.#delete(guild, "channels", id);
        this.#deleteThreads(guild, (parent) => parent === id);
        return true;
      }
      case "THREAD_CREATE":
      case "THREAD_UPDATE":
        return this.#setOne(guild, "threads", d.id, d);
      case "THREAD_DELETE":
        return this.#remove(guild, "threads", d.id);
      case "THREAD_LIST_SYNC": {
        if (!Array.isArray(d.threads)) return false;
        if (d.channel_ids !== undefined && !Array.isArray(d.channel_ids)) return false;
        const channels = Array.isArray(d.channel_ids) ? new Set<unknown>(d.channel_ids) : null;
        this.#deleteThreads(guild, (parent) => channels === null || channels.has(parent));
        for (const thread of d.threads) {
          if (isObject(thread)) this.#setOne(guild, "threads", thread.id, thread);
        }
        return true;
      }
      case "GUILD_ROLE_CREATE":
      case "GUILD_ROLE_UPDATE":
        return isObject(d.role) && this.#setOne(guild, "roles", d.role.id, d.role);
      case "GUILD_ROLE_DELETE":
        return this.#remove(guild, "roles", d.role_id);
      case "GUILD_EMOJIS_UPDATE":
        return Array.isArray(d.emojis) && this.#replace(guild, "emojis", d.emojis);
      case "GUILD_STICKERS_UPDATE":
        return Array.isArray(d.stickers) && this.#replace(guild, "stickers", d.stickers);
      case "GUILD_MEMBER_ADD": {
        if (!this.#setMember(guild, withoutGuildId(d))) return false;
        if (guild.memberCount !== null) guild.memberCount++;
        return true;
      }
      case "GUILD_MEMBER_UPDATE": {
        const userId = userIdOf(d);
        if (userId === null) return false;
        const known = guild.c.members?.get(userId);
        const update = withoutGuildId(d);
        return this.#setMember(guild, known === undefined ? update : { ...JSON.parse(known), ...update });
      }
      case "GUILD_MEMBER_REMOVE": {
        const userId = userIdOf(d);
        if (userId === null) return false;
        this.#delete(guild, "members", userId);
        this.#delete(guild, "presences", userId);
        if (guild.memberCount !== null) guild.memberCount = Math.max(0, guild.memberCount - 1);
        return true;
      }
      case "GUILD_MEMBERS_CHUNK": {
        if (!Array.isArray(d.members)) return false;
        for (const member of d.members) if (isObject(member)) this.#setMember(guild, member);
        if (Array.isArray(d.presences)) {
          for (const presence of d.presences) if (isObject(presence)) this.#setPresence(guild, presence);
        }
        return true;
      }
      case "PRESENCE_UPDATE":
        return this.#setPresence(guild, withoutGuildId(d));
      case "VOICE_STATE_UPDATE":
        return this.#setVoiceState(guild, d);
      case "STAGE_INSTANCE_CREATE":
      case "STAGE_INSTANCE_UPDATE":
        return this.#setOne(guild, "stageInstances", d.id, d);
      case "STAGE_INSTANCE_DELETE":
        return this.#remove(guild, "stageInstances", d.id);
      case "GUILD_SCHEDULED_EVENT_CREATE":
      case "GUILD_SCHEDULED_EVENT_UPDATE":
        return this.#setOne(guild, "scheduledEvents", d.id, d);
      case "GUILD_SCHEDULED_EVENT_DELETE":
        return this.#remove(guild, "scheduledEvents", d.id);
    }
    return true;
  }

  // ---- guilds ----

  #ready(d: Json): boolean {
    if (!isObject(d.user) || idOf(d.user.id) === null || !Array.isArray(d.guilds)) return false;
    let shard = 0;
    let count = 1;
    if (d.shard !== undefined && d.shard !== null) {
      if (!Array.isArray(d.shard) || d.shard.length !== 2) return false;
      [shard, count] = d.shard;
      if (!Number.isInteger(shard) || !Number.isInteger(count) || shard < 0 || shard >= count) return false;
    }
    const listed = new Set<string>();
    for (const g of d.guilds) {
      const id = isObject(g) ? snowflakeOf(g.id) : null;
      if (id !== null) listed.add(id);
    }
    this.#user = JSON.stringify(d.user);
    if (isObject(d.application)) this.#application = JSON.stringify(d.application);
    // This shard's guilds are those of its READY: the others left while it was away. Other shards' stay.
    for (const id of [...this.#guilds.keys()]) {
      if (!listed.has(id) && shardForGuild(id, count) === shard) this.#removeGuild(id);
    }
    // Known ones keep their data until their GUILD_CREATE comes.
    for (const id of listed) if (!this.#guilds.has(id)) this.#putGuild(id, idOnly(id));
    return true;
  }

  #guildCreate(d: Json): boolean {
    const id = snowflakeOf(d.id);
    if (id === null) return false;
    if (d.unavailable === true) {
      const known = this.#guilds.get(id);
      if (known !== undefined) this.#markUnavailable(known);
      else this.#putGuild(id, idOnly(id));
      return true;
    }
    const guild: CachedGuild = {
      base: baseOf(d),
      memberCount: typeof d.member_count === "number" ? d.member_count : null,
      unavailable: false,
      c: {},
    };
    for (const [kind, field] of COLLECTIONS) {
      const list = d[field];
      if (!this.#kinds[kind] || !Array.isArray(list)) continue;
      for (const item of list) {
        if (!isObject(item)) continue;
        if (kind === "members") this.#setMember(guild, item);
        else if (kind === "presences") this.#setPresence(guild, item);
        else if (kind === "voiceStates") this.#setVoiceState(guild, item);
        else this.#setOne(guild, kind, item.id, item);
      }
    }
    // Replaces what was known, in the same place of the order.
    this.#putGuild(id, guild);
    return true;
  }

  #guildUpdate(d: Json): boolean {
    const id = snowflakeOf(d.id);
    if (id === null) return false;
    const guild = this.#guilds.get(id);
    if (guild === undefined) return true;
    // Over the known fields: GUILD_UPDATE lacks GUILD_CREATE's own (joined_at, large, …).
    const base = baseOf({ ...JSON.parse(guild.base), ...d });
    this.#sizes.guilds.bytes += base.length - guild.base.length;
    guild.base = base;
    if (typeof d.member_count === "number") guild.memberCount = d.member_count;
    if (Array.isArray(d.roles)) this.#replace(guild, "roles", d.roles);
    if (Array.isArray(d.emojis)) this.#replace(guild, "emojis", d.emojis);
    if (Array.isArray(d.stickers)) this.#replace(guild, "stickers", d.stickers);
    return true;
  }

  /** Adds a guild, or replaces the known one (keeping its place in the order). */
  #putGuild(id: string, guild: CachedGuild): void {
    const old = this.#guilds.get(id);
    if (old !== undefined) this.#uncount(old);
    this.#sizes.guilds.entries++;
    this.#sizes.guilds.bytes += guild.base.length;
    if (guild.unavailable) this.#unavailable++;
    this.#guilds.set(id, guild);
  }

  #removeGuild(id: string): void {
    const old = this.#guilds.get(id);
    if (old === undefined) return;
    this.#uncount(old);
    this.#guilds.delete(id);
  }

  /** Takes a guild and everything in it out of the sizes. */
  #uncount(guild: CachedGuild): void {
    this.#sizes.guilds.entries--;
    this.#sizes.guilds.bytes -= guild.base.length;
    if (guild.unavailable) this.#unavailable--;
    for (const [kind] of COLLECTIONS) {
      const entities = guild.c[kind];
      if (entities === undefined) continue;
      const size = this.#sizes[kind];
      size.entries -= entities.size;
      for (const text of entities.values()) size.bytes -= text.length;
    }
  }

  #markUnavailable(guild: CachedGuild): void {
    if (!guild.unavailable) this.#unavailable++;
    guild.unavailable = true;
  }

  // ---- entities ----

  /** Sets one entity by its id; false when the id is missing. Kinds that are off keep nothing. */
  #setOne(guild: CachedGuild, kind: Collection, key: unknown, value: Json): boolean {
    const id = idOf(key);
    if (id === null) return false;
    if (this.#kinds[kind]) this.#put(guild, kind, id, JSON.stringify(value));
    return true;
  }

  #put(guild: CachedGuild, kind: Collection, id: string, text: string): void {
    const entities = guild.c[kind] ??= new Map();
    const size = this.#sizes[kind];
    const old = entities.get(id);
    if (old === undefined) size.entries++;
    else size.bytes -= old.length;
    size.bytes += text.length;
    entities.set(id, text);
  }

  #delete(guild: CachedGuild, kind: Collection, id: string): void {
    const entities = guild.c[kind];
    const old = entities?.get(id);
    if (entities === undefined || old === undefined) return;
    this.#sizes[kind].entries--;
    this.#sizes[kind].bytes -= old.length;
    entities.delete(id);
    if (entities.size === 0) delete guild.c[kind];
  }

  #remove(guild: CachedGuild, kind: Collection, key: unknown): boolean {
    const id = idOf(key);
    if (id === null) return false;
    this.#delete(guild, kind, id);
    return true;
  }

  /** The whole collection becomes `list` (items without an id left out). */
  #replace(guild: CachedGuild, kind: Collection, list: unknown[]): boolean {
    for (const id of [...(guild.c[kind]?.keys() ?? [])]) this.#delete(guild, kind, id);
    for (const item of list) if (isObject(item)) this.#setOne(guild, kind, item.id, item);
    return true;
  }

  /** Deletes the threads whose `parent_id` passes `match` (rare events: each thread is read back). */
  #deleteThreads(guild: CachedGuild, match: (parentId: unknown) => boolean): void {
    const threads = guild.c.threads;
    if (threads === undefined) return;
    for (const [id, text] of [...threads]) {
      if (match((JSON.parse(text) as Json).parent_id)) this.#delete(guild, "threads", id);
    }
  }

  /** A member or presence as kept: with `users` off, its user reduced to the id. */
  #withUser(value: Json, userId: string): Json {
    return this.#kinds.users ? value : { ...value, user: { id: userId } };
  }

  #setMember(guild: CachedGuild, member: Json): boolean {
    const userId = userIdOf(member);
    if (userId === null) return false;
    if (this.#kinds.members) {
      this.#put(guild, "members", userId, JSON.stringify(this.#withUser(member, userId)));
    }
    return true;
  }

  /** A presence by its user's id; "offline" is no presence (Discord's GUILD_CREATE leaves those out). */
  #setPresence(guild: CachedGuild, presence: Json): boolean {
    const userId = userIdOf(presence);
    if (userId === null) return false;
    if (presence.status === "offline") this.#delete(guild, "presences", userId);
    else if (this.#kinds.presences) {
      this.#put(guild, "presences", userId, JSON.stringify(this.#withUser(presence, userId)));
    }
    return true;
  }

  /** A voice state by its user's id, without `guild_id` and `member`; no channel: left the voice channel. */
  #setVoiceState(guild: CachedGuild, state: Json): boolean {
    const userId = idOf(state.user_id);
    if (userId === null) return false;
    if (state.channel_id === null) this.#delete(guild, "voiceStates", userId);
    else if (idOf(state.channel_id) === null) return false;
    else if (this.#kinds.voiceStates) {
      const { guild_id: _, member: _member, ...kept } = state;
      this.#put(guild, "voiceStates", userId, JSON.stringify(kept));
    }
    return true;
  }

  // ---- reading ----

  /** Ids of every guild known (available or not), in insertion order, for which `keep(id)` is true. */
  guildIds(keep?: (guildId: string) => boolean): string[] {
    const ids: string[] = [];
    for (const id of this.#guilds.keys()) if (keep === undefined || keep(id)) ids.push(id);
    return ids;
  }

  /** Whether the guild is known and available (its GUILD_CREATE seen, not deleted as unavailable since). */
  available(guildId: string): boolean {
    return this.#guilds.get(guildId)?.unavailable === false;
  }

  /** The `d` of a GUILD_CREATE for this guild from the cache, as JSON text; null if unknown or unavailable. */
  guildCreate(guildId: string): string | null {
    const guild = this.#guilds.get(guildId);
    if (guild === undefined || guild.unavailable) return null;
    const inner = guild.base.slice(1, -1);
    let out = inner.length > 0 ? `{${inner},` : "{";
    if (guild.memberCount !== null) out += `"member_count":${guild.memberCount},`;
    out += '"unavailable":false';
    for (const [kind, field] of COLLECTIONS) {
      const entities = guild.c[kind];
      out += entities === undefined ? `,"${field}":[]` : `,"${field}":[${[...entities.values()].join(",")}]`;
    }
    return out + "}";
  }

  /** Guilds known and unavailable, and per kind its entries and the bytes of their JSON (see CacheStats). */
  stats(): CacheStats {
    const kinds = { users: { entries: 0, bytes: 0 } } as Record<"guilds" | CacheKind, CacheSize>;
    let bytes = 0;
    for (const [kind, size] of Object.entries(this.#sizes)) {
      kinds[kind as "guilds" | Collection] = { ...size };
      bytes += size.bytes;
    }
    return { guilds: this.#guilds.size, unavailable: this.#unavailable, bytes, kinds };
  }
}

/** A guild known by its id alone (from READY, or an unavailable GUILD_CREATE). */
function idOnly(id: string): CachedGuild {
  return { base: `{"id":${JSON.stringify(id)}}`, memberCount: null, unavailable: true, c: {} };
}
