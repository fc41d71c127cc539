/**
 * Proxy client sessions: what lets a bot RESUME through gatehouse and get exactly what it missed.
 *
 * A client's stream is every deliverable event of its shard from the journal, in id order, numbered with
 * the client's own sequence numbers. The numbers map back to journal ids through checkpoints `(seq, id)`:
 * "after the event numbered `seq`, the stream goes on with the first event after journal id `id`". One is
 * taken after the synthesized start-up (READY and the cached GUILD_CREATEs, which are in no journal),
 * after RESUMED, every `CHECKPOINT_EVERY` events, and after any event of the shard this client was not sent
 * (a GUILD_MEMBERS_CHUNK another client asked for): between two checkpoints the stream is exactly the
 * shard's deliverable events, so a seq is found again by counting them in the journal — in this process
 * or after a restart, from the stored checkpoints.
 */
import type { StoredProxySession } from "../journal/store.ts";

/** A checkpoint every this many events sent. */
export const CHECKPOINT_EVERY = 256;
/** Checkpoints kept per session: with one every 256 events, the last 64k events can be resumed from. */
export const CHECKPOINTS_KEPT = 256;

/** Which events a proxy client is sent: Discord's dispatches (gatehouse's own and READY/RESUMED are not). */
export function deliverable(t: string): boolean {
  return t !== "READY" && t !== "RESUMED" && !t.startsWith("GATEHOUSE_");
}

export class ProxySession {
  readonly id: string;
  readonly shard: number;
  readonly count: number;
  /** The last sequence number sent. */
  seq = 0;
  /** The journal id of the last event of the stream considered (sent, or skipped for this client). */
  position = 0;
  /** `[seq, id]` pairs, ascending. */
  checkpoints: Array<[number, number]> = [];
  /** Events sent since the last checkpoint. */
  #sinceCheckpoint = 0;
  /** When the last connection ended (null while one is attached). */
  disconnectedAt: number | null = null;
  /** The checkpoints changed since they were last stored. */
  dirty = true;
  /** Read back from the store (a restart): `seq` may be behind what was sent. */
  restored = false;

  constructor(id: string, shard: number, count: number) {
    this.id = id;
    this.shard = shard;
    this.count = count;
  }

  /** The stream goes on after journal id `position`, the next seq being `seq + 1`. */
  checkpoint(): void {
    const last = this.checkpoints[this.checkpoints.length - 1];
    if (last && last[0] === this.seq) last[1] = this.position;
    else this.checkpoints.push([this.seq, this.position]);
    if (this.checkpoints.length > CHECKPOINTS_KEPT) {
      this.checkpoints.splice(0, this.checkpoints.length - CHECKPOINTS_KEPT);
    }
    this.#sinceCheckpoint = 0;
    this.dirty = true;
  }

  /** Event `id` was sent as the next seq. */
  sent(id: number): number {
    this.position = id;
    const seq = ++this.seq;
    if (++this.#sinceCheckpoint >= CHECKPOINT_EVERY) this.checkpoint();
    return seq;
  }

  /** Event `id` of the shard is not for this client: the stream skips it. */
  skipped(id: number): void {
    this.position = id;
    this.checkpoint();
  }

  /** The next seq for a synthesized event (READY, a cached GUILD_CREATE): a checkpoint follows them. */
  next(): number {
    return ++this.seq;
  }

  /** A seq with no journal event (RESUMED): taken, then a checkpoint. */
  synthetic(): number {
    const seq = ++this.seq;
    this.checkpoint();
    return seq;
  }

  /**
   * Where the stream goes on for a client that confirmed `seq`: the checkpoint at or before it, and how
   * many events after that checkpoint it also has. null when `seq` is older than every checkpoint kept
   * or newer than what was sent.
   */
  resumePoint(seq: number): { id: number; after: number } | null {
    // Restored from the store: events sent after it was stored are not counted in `seq` (the journal's
    // count of them decides).
    if (!Number.isInteger(seq) || (seq > this.seq && !this.restored)) return null;
    for (let i = this.checkpoints.length - 1; i >= 0; i--) {
      const [s, id] = this.checkpoints[i];
      if (s <= seq) return { id, after: seq - s };
    }
    return null;
  }

  /** Resumed at `seq` with the stream going on after `position`. */
  resumedAt(seq: number, position: number): void {
    this.seq = seq;
    this.position = position;
    this.restored = false;
    // Later checkpoints describe numbers that will now be given to other events.
    this.checkpoints = this.checkpoints.filter(([s]) => s <= seq);
    this.checkpoint();
  }

  toStored(at: number): StoredProxySession {
    return {
      sessionId: this.id,
      shardCount: this.count,
      shard: this.shard,
      state: JSON.stringify({ seq: this.seq, checkpoints: this.checkpoints }),
      updatedAt: at,
    };
  }

  /** A stored session, or null when its state cannot be read (it is then forgotten). */
  static fromStored(row: StoredProxySession): ProxySession | null {
    let state: { seq?: unknown; checkpoints?: unknown };
    try {
      state = JSON.parse(row.state);
    } catch {
      return null;
    }
    const checkpoints = state.checkpoints;
    if (
      typeof state.seq !== "number" || !Array.isArray(checkpoints) ||
      !checkpoints.every((c) => Array.isArray(c) && c.length === 2 && c.every(Number.isInteger))
    ) return null;
    const session = new ProxySession(row.sessionId, row.shard, row.shardCount);
    session.seq = state.seq;
    session.checkpoints = checkpoints as Array<[number, number]>;
    const last = session.checkpoints[session.checkpoints.length - 1];
    session.position = last?.[1] ?? 0;
    session.dirty = false;
    session.restored = true;
    return session;
  }
}
