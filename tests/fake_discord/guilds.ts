/**
 * The bot's guilds as one fixed set (the fake's `guilds` option), for resharding tests.
 *
 * Without it the fake makes up guilds per session (`guildsPerShard` ids built for that shard and
 * count), so two shard sets of different counts would see unrelated guilds. Resharding without downtime
 * needs what Discord has: one set of guilds, each owned by `(guild_id >> 22) % count` under whatever
 * count a session identified with, so a 4-shard and an 8-shard set both see every guild, and an event
 * happens once per guild and reaches every session that owns it. `GuildEvent` records each such event
 * (its global number and where it went), so a test can check that every event reached downstream
 * exactly once after de-duplication.
 */
import { guildIdFor } from "./events.ts";

/** One event generated for one guild of the fixed set, and every session it was sent to. */
export interface GuildEvent {
  /** Global event number, 1, 2, 3… across all guilds. */
  n: number;
  guildId: string;
  t: string;
  /** The sessions that own the guild under their count, each with the `s` the event got there. */
  deliveries: Array<{ sessionId: string; shard: number; count: number; s: number }>;
}

export class GuildSet {
  /** Guild ids in a fixed order; consecutive timestamps, so `(id >> 22) % count` spreads them for any count. */
  readonly ids: readonly string[];
  /** `id >> 22` of each guild, so ownership needs no parsing per event. */
  readonly #keys: bigint[];

  constructor(total: number) {
    if (!Number.isInteger(total) || total < 1) {
      throw new RangeError(
        `Cannot build the fake's guilds with guilds = ${total}: a positive integer is required`,
      );
    }
    this.ids = Array.from({ length: total }, (_, i) => guildIdFor(0, 1, i));
    this.#keys = this.ids.map((id) => BigInt(id) >> 22n);
  }

  get size(): number {
    return this.ids.length;
  }

  /** The shard of `count` that owns guild number `index`: `(guild_id >> 22) % count`. */
  ownerOf(index: number, count: number): number {
    return Number(this.#keys[index] % BigInt(count));
  }

  /** The ids of the guilds `shard` owns under `count`, in the set's order. */
  owned(shard: number, count: number): string[] {
    return this.ids.filter((_, i) => this.ownerOf(i, count) === shard);
  }

  /** The most guilds any shard of `count` owns (for the 4011 "sharding required" check). */
  largestShare(count: number): number {
    return Math.ceil(this.ids.length / count);
  }
}
