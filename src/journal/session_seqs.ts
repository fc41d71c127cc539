/**
 * The journal's book of sessions and sequence numbers: which session each shard's events belong to, the
 * highest seq seen since the last batch (stored or filtered out), which of those seqs no session row
 * holds yet, and the sessions that started or ended. The journal asks it, at each commit, what the
 * transaction must write so that after any crash the stored seq is exactly the last stored event.
 *
 * A seq that came with a stored event is recorded by that event's row; any other (a filtered-out event,
 * or every event when events are not kept) goes into one small meta row (`seqs`) in the same
 * transaction; every `SEQ_CHECKPOINT_MS` every session's row is brought up to date (a checkpoint). One
 * row update per session per commit was the cost that dominated commits (see `SqliteSessionStore.load`).
 */
import type { SessionRecord } from "./write.ts";

/** How often every session's seq is written to its row. */
export const SEQ_CHECKPOINT_MS = 1_000;

/** shard count, shard, session id, seq. */
export type SeqUpdate = [number, number, string, number];
/** shard count, shard, and the session started there (null: lost). */
export type SessionWrite = [number, number, SessionRecord | null];

export class SessionSeqs {
  /** Per shard: the session events are stored under. */
  readonly #current = new Map<number, SessionRecord>();
  /** Per shard: highest seq seen since the last batch (stored or filtered). */
  readonly #seqs = new Map<number, number>();
  /** Per shard: highest seq of a stored event since the last batch. */
  readonly #storedSeqs = new Map<number, number>();
  /** Per shard: session and seq not written to the session's row yet (carried by stored events). */
  readonly #unwritten = new Map<number, [string, number]>();
  /** Sessions started or lost, by "count/shard". */
  readonly #writes = new Map<string, SessionWrite>();
  #lastCheckpoint = -Infinity;

  /** The id of the session `shard`'s events belong to now (null: none). */
  sessionOf(shard: number): string | null {
    return this.#current.get(shard)?.id ?? null;
  }

  /** A dispatch with seq `s` on `shard`; `stored`: its event row carries the seq. */
  saw(shard: number, s: number, stored: boolean): void {
    if (s <= 0) return;
    const seq = this.#seqs.get(shard);
    if (seq === undefined || s > seq) this.#seqs.set(shard, s);
    if (!stored) return;
    const storedSeq = this.#storedSeqs.get(shard);
    if (storedSeq === undefined || s > storedSeq) this.#storedSeqs.set(shard, s);
  }

  started(shardCount: number, shard: number, record: SessionRecord): void {
    this.#current.set(shard, record);
    this.#writes.set(`${shardCount}/${shard}`, [shardCount, shard, { ...record }]);
    this.#seqs.set(shard, record.seq);
  }

  lost(shardCount: number, shard: number): void {
    if (this.#current.get(shard)?.shardCount === shardCount) {
      this.#current.delete(shard);
      this.#seqs.delete(shard);
    }
    this.#writes.set(`${shardCount}/${shard}`, [shardCount, shard, null]);
  }

  restore(shard: number, record: SessionRecord): void {
    this.#current.set(shard, record);
  }

  /** Whether a seq was seen or a session changed since the last batch. */
  get pending(): boolean {
    return this.#seqs.size > 0 || this.#writes.size > 0;
  }

  /** Whether a session started or ended since the last batch. */
  get sessionsChanged(): boolean {
    return this.#writes.size > 0;
  }

  /**
   * Moves the seqs seen since the last batch into their sessions and the unwritten notes. Returns
   * whether one of them is carried by no stored event of this batch (then the meta note must be written).
   */
  gather(): boolean {
    let noteSeqs = false;
    for (const [shard, seq] of this.#seqs) {
      const session = this.#current.get(shard);
      if (!session) continue;
      if (seq > session.seq) session.seq = seq;
      this.#unwritten.set(shard, [session.id, seq]);
      if (this.#storedSeqs.get(shard) !== seq) noteSeqs = true;
    }
    // A new or lost session replaces whatever was noted for its shard.
    for (const [, shard] of this.#writes.values()) {
      if (!this.#seqs.has(shard)) this.#unwritten.delete(shard);
    }
    return noteSeqs;
  }

  checkpointDue(now: number): boolean {
    return now - this.#lastCheckpoint >= SEQ_CHECKPOINT_MS;
  }

  /** How long until the next checkpoint is due. */
  untilCheckpoint(now: number): number {
    return Math.max(0, this.#lastCheckpoint + SEQ_CHECKPOINT_MS - now);
  }

  /** A checkpoint at `now`: the seq of every session whose row is behind. */
  checkpoint(now: number): SeqUpdate[] {
    if (this.#lastCheckpoint === -Infinity) {
      // The first checkpoint of a process: sessions restored from the store may owe their seq to
      // events after the previous checkpoint, which this one moves past: write every session's.
      for (const [shard, session] of this.#current) this.#unwritten.set(shard, [session.id, session.seq]);
    }
    this.#lastCheckpoint = now;
    const updates: SeqUpdate[] = [];
    for (const [shard, [id, seq]] of this.#unwritten) {
      const session = this.#current.get(shard);
      if (session?.id === id) updates.push([session.shardCount, shard, id, seq]);
    }
    this.#unwritten.clear();
    return updates;
  }

  /** The unwritten seqs as JSON `{shard: [session id, seq]}`, for meta `seqs`. */
  note(): string {
    return JSON.stringify(Object.fromEntries(this.#unwritten));
  }

  /** The session changes to write with this batch (taken: the next batch starts without them). */
  takeWrites(): SessionWrite[] {
    const writes = [...this.#writes.values()];
    this.#writes.clear();
    return writes;
  }

  /** The batch was taken: seqs are gathered afresh for the next one. */
  nextBatch(): void {
    this.#seqs.clear();
    this.#storedSeqs.clear();
  }
}
