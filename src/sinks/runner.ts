/**
 * Drives one sink from the journal. The cursor (last acknowledged id) moves only on acknowledgement, and
 * the next batch is delivered only once the store holds that cursor: after a crash, at most the one
 * batch in flight is delivered again, with the same ids. A sink that is caught up gets committed
 * batches straight from memory; one that is behind (after a restart, a failure, or a long stall) reads
 * from the store in id order until it has caught up.
 */
import { awaitingNetwork } from "../util/cooperate.ts";
import type { EventBatch, Journal } from "../journal/journal.ts";
import type { Store, StoredEvent } from "../journal/store.ts";
import type { Logger } from "../util/log.ts";
import type { Sink } from "./sink.ts";
import { eventPosition, eventScope } from "../journal/identity.ts";

const PAGE = 1000;
/**
 * One delivery carries at most this many bytes of payloads (at least one event): what the store gives
 * back per read, and how far queued batches are joined. It bounds what a crash can repeat.
 */
const MAX_DELIVERY_BYTES = 1024 * 1024;
/**
 * Committed batches waiting in memory beyond this many bytes are left in the store and read back
 * later; without a store (journal off) the shards are asked to stop reading instead.
 */
const MAX_QUEUED_BYTES = 16 * 1024 * 1024;

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
}

/** Consecutive committed batches delivered as one (read in order, so the part is looked up lazily). */
class JoinedBatch implements EventBatch {
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
}

export interface SinkRunnerOptions {
  sink: Sink;
  journal: Journal;
  /** Without stored events (journal off) there is no catch-up: only live batches. */
  store: Store | null;
  logger: Logger;
  /** Without a store: called with true when the shards must stop reading (the sink is too far behind). */
  onBackpressure?: (paused: boolean) => void;
  /** Called with every acknowledged batch (metrics). */
  onDelivered?: (batch: EventBatch) => void;
}

export class SinkRunner {
  readonly sink: Sink;
  readonly #journal: Journal;
  readonly #store: Store | null;
  readonly #log: Logger;
  #cursor: number;
  /** Committed batches not delivered yet, in order. */
  #queue: EventBatch[] = [];
  #queuedBytes = 0;
  #paused = false;
  readonly #onBackpressure?: (paused: boolean) => void;
  /** Some committed events are only in the store: read them from there. */
  #behind = false;
  /** A delivery, or the storing of its cursor, is under way. */
  #busy = false;
  #closed = false;
  /** Stopping: deliver what is committed without waiting for each cursor to be stored. */
  #finishing = false;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #failures = 0;
  delivered = 0;
  /** Failed deliveries (each retried). */
  errors = 0;
  readonly #onDelivered?: (batch: EventBatch) => void;

  constructor(options: SinkRunnerOptions) {
    this.sink = options.sink;
    this.#journal = options.journal;
    this.#store = options.store;
    this.#log = options.logger;
    this.#onBackpressure = options.onBackpressure;
    this.#onDelivered = options.onDelivered;
    const stored = options.store?.cursor(options.sink.name);
    // A new sink starts with what is committed from now on; a known one where it stopped.
    this.#cursor = stored ?? options.store?.lastId ?? 0;
    this.#behind = options.store !== null && this.#cursor < options.store.lastId;
    if (this.#behind) {
      this.#log.info("sink {sink}: {n} event(s) stored but not delivered; delivering them first", {
        sink: this.sink.name,
        n: options.store!.lastId - this.#cursor,
      });
    }
  }

  get cursor(): number {
    return this.#cursor;
  }

  /** Starts delivering what the store holds beyond the cursor. */
  start(): void {
    this.#next();
  }

  /** A batch was committed. */
  offer(batch: EventBatch): void {
    if (this.#closed || batch.lastId <= this.#cursor) return;
    if (this.#behind) {
      // The store has it; it is read back in order.
    } else if (this.#store !== null && this.#queuedBytes + batch.size > MAX_QUEUED_BYTES) {
      // Falling behind: drop the in-memory copies, the store has them.
      this.#clearQueue();
      this.#behind = true;
    } else {
      this.#queue.push(batch);
      this.#queuedBytes += batch.size;
      if (!this.#paused && this.#store === null && this.#queuedBytes > MAX_QUEUED_BYTES) {
        // No store to fall back on: nothing may be dropped, so Discord must wait.
        this.#paused = true;
        this.#onBackpressure?.(true);
      }
    }
    this.#next();
  }

  #clearQueue(): void {
    this.#queue = [];
    this.#queuedBytes = 0;
  }

  /** Takes queued batches beyond the cursor, joined up to MAX_DELIVERY_BYTES (at least one). */
  #takeQueued(): EventBatch | undefined {
    const parts: EventBatch[] = [];
    let bytes = 0;
    while (this.#queue.length > 0) {
      const queued = this.#queue[0];
      if (queued.lastId <= this.#cursor) {
        this.#queue.shift();
        this.#queuedBytes -= queued.size;
        continue;
      }
      if (parts.length > 0 && bytes + queued.size > MAX_DELIVERY_BYTES) break;
      if (parts.length > 0 && queued.firstId !== parts[parts.length - 1].lastId + 1) break;
      this.#queue.shift();
      this.#queuedBytes -= queued.size;
      parts.push(queued);
      bytes += queued.size;
    }
    if (this.#paused && this.#queuedBytes <= MAX_QUEUED_BYTES / 2) {
      this.#paused = false;
      this.#onBackpressure?.(false);
    }
    if (parts.length <= 1) return parts[0];
    return new JoinedBatch(parts);
  }

  /** Delivers the next batch: from memory, or from the store while behind. */
  #next(): void {
    if (this.#busy || this.#closed) return;
    let batch: EventBatch | undefined;
    if (this.#behind && this.#store) {
      const rows = this.#store.readEvents(this.#cursor, PAGE, this.#store.lastId, MAX_DELIVERY_BYTES);
      if (rows.length > 0) batch = new RowBatch(rows, this.#store.producer);
      else this.#behind = false;
    }
    batch ??= this.#takeQueued();
    if (batch) this.#deliver(batch);
  }

  #deliver(batch: EventBatch): void {
    if (batch.firstId > this.#cursor + 1 && this.#store && !this.#behind) {
      // A gap between the cursor and this batch (events pruned at the hard limit, or memory dropped).
      this.#behind = true;
      this.#clearQueue();
      this.#next();
      return;
    }
    this.#busy = true;
    let result: void | Promise<void>;
    try {
      result = this.sink.deliver(batch);
    } catch (error) {
      this.#fail(error);
      return;
    }
    if (result instanceof Promise) {
      (this.sink.local ? result : awaitingNetwork(result)).then(
        () => this.#ack(batch),
        (error) => this.#fail(error),
      );
    } else {
      this.#ack(batch);
    }
  }

  #ack(batch: EventBatch): void {
    const lastId = batch.lastId;
    this.#onDelivered?.(batch);
    this.delivered += lastId - this.#cursor;
    this.#cursor = lastId;
    this.#failures = 0;
    if (this.sink.runsAheadOfStoredCursor || this.#finishing) {
      this.#journal.setCursor(this.sink.name, lastId);
      this.#busy = false;
      this.#next();
      return;
    }
    // The next batch goes out once this cursor is stored: a crash repeats one batch at most.
    this.#journal.setCursor(this.sink.name, lastId, () => {
      this.#busy = false;
      this.#next();
    });
  }

  #fail(error: unknown): void {
    if (this.#closed) {
      // Stopping: the broker connection was closed under a delivery. Nothing is retried in this
      // process; the journal keeps the events for the next start.
      this.#busy = false;
      return;
    }
    if ((error as { permanent?: boolean })?.permanent) {
      // The sink is gone for good (stdout closed by its reader): its owner stops; nothing to retry.
      this.#closed = true;
      this.#busy = false;
      return;
    }
    this.#busy = false;
    this.#failures++;
    this.errors++;
    if (this.#store !== null) {
      this.#clearQueue();
      this.#behind = true;
    }
    const delay = Math.min(10_000, 200 * 2 ** Math.min(this.#failures - 1, 6));
    this.#log.warn(
      "sink {sink} did not take events after id {cursor}: {error}; retrying in {delay} ms ({lag} event(s) waiting)",
      {
        sink: this.sink.name,
        cursor: this.#cursor,
        error: (error as Error)?.message ?? String(error),
        delay,
        lag: Math.max(0, this.#journal.lastAssignedId - this.#cursor),
      },
    );
    clearTimeout(this.#retry);
    this.#busy = true;
    this.#retry = setTimeout(() => {
      this.#busy = false;
      this.#next();
    }, delay);
  }

  /**
   * Shutdown: delivers what is committed up to `lastId` — without waiting for each cursor to be stored
   * in between (the caller flushes the journal afterwards, which stores the last one) — and waits at
   * most `timeoutMs` for the sink to take it. A delivery under way is waited for, never doubled; what
   * the sink has not taken by then stays in the journal. Returns whether everything was taken.
   */
  async finish(lastId: number, timeoutMs: number): Promise<boolean> {
    this.#finishing = true;
    this.#next();
    const deadline = Date.now() + timeoutMs;
    while (this.#cursor < lastId && !this.#closed && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      this.#next();
    }
    return this.#cursor >= lastId;
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#retry);
  }
}

/**
 * The end of a run's delivery: commits what is gathered, lets every sink take what was handed out (at
 * most `timeoutMs`), and stores the last seqs and cursors. With the journal the events are stored
 * first, so what a sink has not taken waits there. Without it they are only in memory: the sessions'
 * seqs are checkpointed past them only when every sink took them, else the last checkpoint stays and the
 * next start's RESUME makes Discord send what followed it again.
 */
export async function finishDelivery(
  journal: Journal,
  runners: SinkRunner[],
  keepEvents: boolean,
  timeoutMs: number,
): Promise<{ target: number; taken: boolean[] }> {
  if (keepEvents) await journal.flush();
  else journal.commit();
  const target = journal.lastOfferedId;
  const taken = await Promise.all(runners.map((runner) => runner.finish(target, timeoutMs)));
  if (keepEvents || taken.every(Boolean)) await journal.flush();
  return { target, taken };
}
