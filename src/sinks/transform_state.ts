/**
 * What the transforms (transforms.ts) remember between events, as two small state machines over plain
 * facts (a shard's READY listed these guilds, guild G was created, message M has this content), so they
 * can be fed the same way from live batches and from the journal (transform_warmup.ts). Both depend
 * only on the events in journal order and on the time each was received (stored with it): never on the
 * wall clock or on a connection's state, so the same event gets the same verdict on every delivery.
 */

/** Why a GUILD_CREATE came: the annotation's values. */
export type GuildCreateKind = "loading" | "available" | "joined";

/** One shard's guilds that a GUILD_CREATE is still expected for. */
interface ShardGuilds {
  /** Listed in the session's READY, no GUILD_CREATE yet: the start-up's. */
  loading: Set<string>;
  /** Marked unavailable by GUILD_DELETE `unavailable: true` (an outage), not back yet. */
  unavailable: Set<string>;
}

/**
 * Per shard: which guilds a GUILD_CREATE is expected for, and why. A READY (a new session) starts the
 * shard afresh with its guild list; a RESUME keeps everything (it is no event here). Only guilds waiting
 * for a GUILD_CREATE are kept (at most the shard's guilds, usually none once loaded): a GUILD_CREATE of
 * any other guild is a guild the bot just joined.
 */
export class GuildBook {
  readonly #shards = new Map<number, ShardGuilds>();

  /** The shard's new session lists these guilds (READY): each GUILD_CREATE of them is the start-up's. */
  ready(shard: number, guildIds: Iterable<string>): void {
    this.#shards.set(shard, { loading: new Set(guildIds), unavailable: new Set() });
  }

  /** A GUILD_CREATE of `guildId` on `shard`, classified (and the guild no longer expected). */
  created(shard: number, guildId: string): GuildCreateKind {
    const guilds = this.#shards.get(shard);
    if (guilds === undefined) return "joined";
    // The first GUILD_CREATE of a READY guild is the start-up's, even when an outage came in between.
    if (guilds.loading.delete(guildId)) return "loading";
    if (guilds.unavailable.delete(guildId)) return "available";
    return "joined";
  }

  /** A GUILD_DELETE: an outage (`unavailable`: the guild comes back later) or the bot left. */
  deleted(shard: number, guildId: string, unavailable: boolean): void {
    let guilds = this.#shards.get(shard);
    if (unavailable) {
      if (guilds === undefined) {
        this.#shards.set(shard, guilds = { loading: new Set(), unavailable: new Set() });
      }
      if (!guilds.loading.has(guildId)) guilds.unavailable.add(guildId);
    } else if (guilds !== undefined) {
      guilds.loading.delete(guildId);
      guilds.unavailable.delete(guildId);
    }
  }

  /** Guilds a GUILD_CREATE is expected for, all shards (what this holds in memory). */
  get size(): number {
    let n = 0;
    for (const guilds of this.#shards.values()) n += guilds.loading.size + guilds.unavailable.size;
    return n;
  }
}

/** A message's content as last seen, hashed, and when (the event's received time). */
interface Seen {
  hash: number;
  at: number;
}

/**
 * Per message id: a hash of the content last seen (of its JSON text, `contentHash`) (MESSAGE_CREATE, and every MESSAGE_UPDATE that carries
 * `content`) and when it was seen. An entry is forgotten `windowMs` after it was written, and the
 * least recently written go first when more than `maxEntries` are kept: memory stays bounded whatever
 * the traffic. Both rules follow the events' own times and order, so replaying the same events gives
 * the same entries.
 */
export class MessageBook {
  readonly #windowMs: number;
  readonly #maxEntries: number;
  /** In order of writing (a write moves the entry to the end): the oldest first. */
  readonly #seen = new Map<string, Seen>();

  constructor(windowMs: number, maxEntries: number) {
    if (!(windowMs > 0)) {
      throw new RangeError(`Cannot keep message contents for ${windowMs} ms: above 0 needed`);
    }
    if (!Number.isInteger(maxEntries) || maxEntries < 1) {
      throw new RangeError(`Cannot keep ${maxEntries} message contents: a positive integer is needed`);
    }
    this.#windowMs = windowMs;
    this.#maxEntries = maxEntries;
  }

  /** A MESSAGE_CREATE, with the hash of its content (`NO_CONTENT` when it has none). */
  created(messageId: string, hash: number, at: number): void {
    this.#write(messageId, hash, at);
  }

  /**
   * A MESSAGE_UPDATE: true when it changes nothing of the content (no `content`, or the one remembered)
   * and the message was seen within the window — an embed unfurling, not an edit. An update that
   * carries `content` is remembered either way.
   */
  updated(messageId: string, hash: number | undefined, at: number): boolean {
    const seen = this.#seen.get(messageId);
    const within = seen !== undefined && at - seen.at <= this.#windowMs;
    if (hash === undefined) return within;
    const unchanged = within && seen.hash === hash;
    this.#write(messageId, hash, at);
    return unchanged;
  }

  /** Messages remembered now (what this holds in memory). */
  get size(): number {
    return this.#seen.size;
  }

  #write(messageId: string, hash: number, at: number): void {
    const seen = this.#seen;
    seen.delete(messageId);
    seen.set(messageId, { hash, at });
    // The oldest written first: past the window, or past the bound.
    for (const [id, entry] of seen) {
      if (seen.size <= this.#maxEntries && at - entry.at <= this.#windowMs) break;
      seen.delete(id);
    }
  }
}

/**
 * A 53-bit hash (cyrb53) of a content's JSON text, quotes and escapes as Discord wrote them: what is
 * remembered instead of the content itself (up to 4000 characters), so an entry costs the same whatever
 * the message, and nothing is decoded. Discord writes the same content the same way; a content written
 * otherwise would only count as changed (delivered). Two different contents share a hash about once in
 * 2^53 comparisons; then an edit within the window would be taken for an unfurl.
 */
export function contentHash(json: Uint8Array): number {
  let h1 = 0xdeadbeef, h2 = 0x41c6ce57;
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  return 4294967296 * (2097151 & h2) + (h1 >>> 0);
}

/** The hash of a message without content (remembered as the empty string). */
export const NO_CONTENT: number = contentHash(new TextEncoder().encode('""'));
