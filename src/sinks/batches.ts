/**
 * Batches a sink runner hands to its sink besides the journal's own: rows read back from the store
 * (a sink that is behind), and consecutive committed batches joined into one delivery.
 */
import type { EventBatch } from "../journal/journal.ts";
import type { StoredEvent } from "../journal/store.ts";
import { eventPosition, eventScope } from "../journal/identity.ts";

/** Stored rows as a batch. */
export class RowBatch implements EventBatch {
  readonly #rows: StoredEvent[];
  readonly #producer: string;
  constructor(rows: StoredEvent[], producer: string) {
    this.#rows = rows;
    this.#producer = producer;
  }
  get count() {
    return this.#rows.length;
  }
  get firstId() {
    return this.#rows[0]?.id ?? 0;
  }
  get lastId() {
    return this.#rows[this.#rows.length - 1]?.id ?? 0;
  }
  get size() {
    let bytes = 0;
    for (const row of this.#rows) bytes += row.payload.length;
    return bytes;
  }
  id(i: number) {
    return this.#rows[i].id;
  }
  shard(i: number) {
    return this.#rows[i].shard;
  }
  t(i: number) {
    return this.#rows[i].t;
  }
  payload(i: number) {
    return this.#rows[i].payload;
  }
  scope(i: number) {
    const row = this.#rows[i];
    return eventScope(row.shard, row.session, row.seq, this.#producer);
  }
  position(i: number) {
    const row = this.#rows[i];
    return eventPosition(row.session, row.seq, row.id);
  }
  time(i: number) {
    return this.#rows[i].receivedAt;
  }
}

/** Consecutive committed batches delivered as one (read in order, so the part is looked up lazily). */
export class JoinedBatch implements EventBatch {
  readonly #parts: EventBatch[];
  readonly #starts: number[] = [];
  readonly count: number;
  readonly size: number;
  #part = 0;

  constructor(parts: EventBatch[]) {
    this.#parts = parts;
    let count = 0, size = 0;
    for (const part of parts) {
      this.#starts.push(count);
      count += part.count;
      size += part.size;
    }
    this.count = count;
    this.size = size;
  }
  get firstId() {
    return this.#parts[0].firstId;
  }
  get lastId() {
    return this.#parts[this.#parts.length - 1].lastId;
  }
  #at(i: number): number {
    let k = this.#part;
    if (i < this.#starts[k] || (k + 1 < this.#starts.length && i >= this.#starts[k + 1])) {
      k = 0;
      while (k + 1 < this.#starts.length && i >= this.#starts[k + 1]) k++;
      this.#part = k;
    }
    return i - this.#starts[k];
  }
  id(i: number) {
    const j = this.#at(i);
    return this.#parts[this.#part].id(j);
  }
  shard(i: number) {
    const j = this.#at(i);
    return this.#parts[this.#part].shard(j);
  }
  t(i: number) {
    const j = this.#at(i);
    return this.#parts[this.#part].t(j);
  }
  payload(i: number) {
    const j = this.#at(i);
    return this.#parts[this.#part].payload(j);
  }
  scope(i: number) {
    const j = this.#at(i);
    return this.#parts[this.#part].scope(j);
  }
  position(i: number) {
    const j = this.#at(i);
    return this.#parts[this.#part].position(j);
  }
  time(i: number) {
    const j = this.#at(i);
    return this.#parts[this.#part].time?.(j) ?? 0;
  }
}
