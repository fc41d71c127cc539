/**
 * What a Redis command source holds: the entries it read or claimed and has not acknowledged, by
 * stream, and of those the commands queued on a shard and not seen written yet. Each queued command
 * remembers the shard object (the target) it was queued on, because the pool changes under the source
 * (cluster mode): a shard that is removed, or removed and started again as a new object, never writes
 * what its old object had queued (a stopped shard keeps its queue and calls nothing). Such commands are
 * orphans: their entries are handed back to the group, for whoever runs the shard now, instead of
 * waiting for a `sent` that never comes; a `sent` that does come after that is ignored (another process
 * may be sending it: no acknowledgement). The per-shard count also bounds reading (`maxInFlight`;
 * reading resumes at half).
 */
import type { Logger } from "../util/log.ts";
import type { CommandGroup } from "./redis_group.ts";
import type { CommandTarget } from "./router.ts";

/** One queued command; `finish` takes it once, whichever comes first (written, or orphaned). */
export interface Sending {
  readonly key: string;
  readonly id: string;
  readonly shard: number;
  readonly target: CommandTarget;
}

export class HeldCommands {
  readonly #group: CommandGroup;
  /** The inbox: its entries are acknowledged, not deleted (other groups may read it). */
  readonly #inbox: string;
  readonly #maxInFlight: number;
  readonly #logger: Logger | undefined;
  /** Entry ids held, by stream (kept for streams no longer read: their acknowledgements finish). */
  readonly byStream = new Map<string, Set<string>>();
  readonly #sending = new Map<string, Map<string, Sending>>();
  readonly #count = new Map<number, number>();
  /** Acknowledgements that failed (connection lost): retried by `retryAcks`. */
  #failedAcks: Array<{ key: string; id: string }> = [];
  /** Shards whose stream is not read until half of their commands went out. */
  readonly paused = new Set<number>();

  constructor(group: CommandGroup, inbox: string, maxInFlight: number, logger?: Logger) {
    this.#group = group;
    this.#inbox = inbox;
    this.#maxInFlight = maxInFlight;
    this.#logger = logger;
  }

  /** The ids held of stream `key`. */
  ids(key: string): Set<string> {
    let ids = this.byStream.get(key);
    if (!ids) this.byStream.set(key, ids = new Set());
    return ids;
  }

  /** Commands that may still be read for `shard`. */
  room(shard: number): number {
    return this.#maxInFlight - (this.#count.get(shard) ?? 0);
  }

  /** A command queued on `target` (or about to be: a refusal is finished at once). */
  add(key: string, id: string, shard: number, target: CommandTarget): Sending {
    const sending = { key, id, shard, target };
    let entries = this.#sending.get(key);
    if (!entries) this.#sending.set(key, entries = new Map());
    entries.set(id, sending);
    const count = (this.#count.get(shard) ?? 0) + 1;
    this.#count.set(shard, count);
    if (count >= this.#maxInFlight) this.paused.add(shard);
    return sending;
  }

  /** Takes `sending` out; false when it was taken already (orphaned: its entry was handed back). */
  finish(sending: Sending): boolean {
    const entries = this.#sending.get(sending.key);
    if (entries?.get(sending.id) !== sending) return false;
    entries.delete(sending.id);
    const count = (this.#count.get(sending.shard) ?? 1) - 1;
    this.#count.set(sending.shard, count);
    if (count <= this.#maxInFlight / 2) this.paused.delete(sending.shard);
    return true;
  }

  /**
   * Takes out the commands whose shard is run by another object now, or by none (`targetOf` looks a
   * shard up in the pool): their entry ids, by stream.
   */
  orphans(targetOf: (shard: number) => CommandTarget | undefined): Map<string, string[]> {
    const out = new Map<string, string[]>();
    for (const [key, entries] of this.#sending) {
      for (const sending of [...entries.values()]) {
        if (targetOf(sending.shard) === sending.target || !this.finish(sending)) continue;
        out.set(key, [...out.get(key) ?? [], sending.id]);
      }
    }
    return out;
  }

  /** XACK (and, for a shard's stream, XDEL: nobody else reads it); the entry is no longer held after. */
  async ack(key: string, id: string, remove: boolean): Promise<void> {
    try {
      await this.#group.ack(key, id, remove && key !== this.#inbox);
      this.ids(key).delete(id);
    } catch (error) {
      // Still held, so a claim round does not hand it out again; acknowledged on the next round.
      this.#failedAcks.push({ key, id });
      this.#logger?.debug("acknowledging command {id} failed: {error}", {
        id,
        error: (error as Error).message,
      });
    }
  }

  async retryAcks(): Promise<void> {
    const retry = this.#failedAcks;
    this.#failedAcks = [];
    for (const { key, id } of retry) await this.ack(key, id, true);
  }

  /** Entries this process will not send: claimable by any process at once, and no longer held. */
  async giveBack(key: string, ids: string[], why: string): Promise<void> {
    const held = this.ids(key);
    for (const id of ids) held.delete(id);
    try {
      await this.#group.giveBack(key, ids);
      this.#logger?.info("handed {n} command(s) of {stream} back: {why}", {
        n: ids.length,
        stream: key,
        why,
      });
    } catch (error) {
      // Not refreshed any more: claimed by whoever runs the shard after claimIdleMs.
      this.#logger?.debug("handing commands of {stream} back failed: {error}", {
        stream: key,
        error: (error as Error).message,
      });
    }
  }
}
