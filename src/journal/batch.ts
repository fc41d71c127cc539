/**
 * A batch of committed events as sinks see it (`EventBatch`), and the journal's own: the events of one
 * commit gathered back to back in one buffer (`Pending`).
 */
import { eventPosition, eventScope } from "./identity.ts";
import type { BatchData } from "./write.ts";

/** Committed events, in id order, as views into one buffer. */
export interface EventBatch {
  readonly count: number;
  readonly firstId: number;
  readonly lastId: number;
  /** Bytes of all payloads together. */
  readonly size: number;
  /** When its first event was received (the journal's clock), where known. */
  readonly firstReceivedAt?: number;
  id(i: number): number;
  shard(i: number): number;
  /** The event's payload: Discord's JSON object (from its `{`), exactly as received. */
  payload(i: number): Uint8Array;
  t(i: number): string;
  /** The event's identity (identity.ts): its scope (a session, or the store) and position in it. */
  scope(i: number): string;
  position(i: number): number;
  /**
   * When the event was received (the journal's clock, ms; stored with it): the event time the transforms'
   * windows count in (sinks/transforms.ts), the same on every delivery. Absent in synthetic test batches.
   */
  time?(i: number): number;
  /**
   * Members gatehouse adds to the event's line after `shard` (a transform's annotation, such as
   * `"guild_create":"loading"`), as JSON without braces; null for none. Only transformed batches have it.
   */
  extra?(i: number): Uint8Array | null;
}

/**
 * Receives every committed batch, in id order, once the store holds it (without kept events: as soon
 * as it is read). The batch carries its ids: a consumer keeps its own position, nothing is shared.
 */
export interface BatchConsumer {
  offer(batch: EventBatch): void;
}

/** The events of a batch as the writer stores them. */
export type EventRows = Pick<
  BatchData,
  "bytes" | "ends" | "ids" | "shards" | "sessions" | "seqs" | "names" | "receivedAt"
>;

/** No events (a batch of sessions, cursors and ids only, when events are not kept). */
export const NO_ROWS: EventRows = Object.freeze({
  bytes: new Uint8Array(0),
  ends: [],
  ids: [],
  shards: [],
  sessions: [],
  seqs: [],
  names: [],
  receivedAt: [],
});

/** The batch being gathered: the events of one commit, back to back in one growing buffer. */
export class Pending implements EventBatch {
  no = 0;
  bytes: Uint8Array;
  length = 0;
  ends: number[] = [];
  ids: number[] = [];
  shards: number[] = [];
  sessions: Array<string | null> = [];
  seqs: Array<number | null> = [];
  names: string[] = [];
  receivedAt: number[] = [];

  get firstReceivedAt(): number | undefined {
    return this.receivedAt[0];
  }
  readonly #producer: string;

  /** `capacity`: the bytes the batch is expected to hold (it grows when needed). */
  constructor(producer: string, capacity = 64 * 1024) {
    this.#producer = producer;
    this.bytes = new Uint8Array(capacity);
  }

  get count(): number {
    return this.ids.length;
  }
  get firstId(): number {
    return this.ids[0] ?? 0;
  }
  get lastId(): number {
    return this.ids[this.ids.length - 1] ?? 0;
  }
  get size(): number {
    return this.length;
  }
  id(i: number): number {
    return this.ids[i];
  }
  shard(i: number): number {
    return this.shards[i];
  }
  t(i: number): string {
    return this.names[i];
  }
  payload(i: number): Uint8Array {
    return this.bytes.subarray(i === 0 ? 0 : this.ends[i - 1], this.ends[i]);
  }
  scope(i: number): string {
    return eventScope(this.shards[i], this.sessions[i], this.seqs[i], this.#producer);
  }
  position(i: number): number {
    return eventPosition(this.sessions[i], this.seqs[i], this.ids[i]);
  }
  time(i: number): number {
    return this.receivedAt[i];
  }

  /** The events as rows for the writer (write.ts `BatchData`). */
  rows(): EventRows {
    const { bytes, ends, ids, shards, sessions, seqs, names, receivedAt } = this;
    return { bytes, ends, ids, shards, sessions, seqs, names, receivedAt };
  }

  add(bytes: Uint8Array, start: number, end: number): void {
    const n = end - start;
    if (this.length + n > this.bytes.length) {
      let size = this.bytes.length * 2;
      while (size < this.length + n) size *= 2;
      const bigger = new Uint8Array(size);
      bigger.set(this.bytes.subarray(0, this.length));
      this.bytes = bigger;
    }
    this.bytes.set(start === 0 && end === bytes.length ? bytes : bytes.subarray(start, end), this.length);
    this.length += n;
    this.ends.push(this.length);
  }
}

/** A power of two from 64 KB that holds `used` bytes, at most what a full batch can reach. */
export function pendingCapacity(used: number, maxBatchBytes: number): number {
  let capacity = 64 * 1024;
  while (capacity < used && capacity < maxBatchBytes * 2) capacity *= 2;
  return capacity;
}
