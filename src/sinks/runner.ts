/**
 * Drives one sink from the journal. The cursor (last acknowledged id) moves only on acknowledgement, and
 * the next batch is delivered only once the store holds that cursor: after a crash, at most the one
 * batch in flight is delivered again, with the same ids. A sink that is caught up gets committed
 * batches straight from memory; one that is behind (after a restart, a failure, or a long stall) reads
 * from the store in id order until it has caught up.
 */
import { awaitingNetwork } from "../util/cooperate.ts";
import type { Backpressure } from "../util/backpressure.ts";
import { type Backoff, backoffDelay } from "../util/backoff.ts";
import { type Clock, systemClock, type TimerId } from "../util/clock.ts";
import type { BatchConsumer, EventBatch, Journal } from "../journal/journal.ts";
import type { Store } from "../journal/store.ts";
import type { Logger } from "../util/log.ts";
import type { Sink } from "./sink.ts";
import { JoinedBatch, RowBatch } from "./batches.ts";

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
/** A failed delivery is retried 200 ms later, then doubling, at most 10 s apart. */
export const DELIVERY_RETRY: Backoff = { baseMs: 200, maxMs: 10_000 };

/** What a runner needs of the journal: its committed batches, and where to store the cursor. */
export type RunnerJournal = Pick<Journal, "subscribe" | "unsubscribe" | "setCursor" | "lastAssignedId">;

export interface SinkRunnerOptions {
  sink: Sink;
  journal: RunnerJournal;
  /** Without stored events (journal off) there is no catch-up: only live batches. */
  store: Store | null;
  logger: Logger;
  /** Without a store: held (as "sink <name>") while the sink is too far behind; the shards stop reading. */
  backpressure?: Backpressure;
  /** Called with every acknowledged batch (metrics). */
  onDelivered?: (batch: EventBatch) => void;
  /** Times the retries and a bounded finish. */
  clock?: Clock;
}

export class SinkRunner implements BatchConsumer {
  readonly sink: Sink;
  readonly #journal: RunnerJournal;
  readonly #store: Store | null;
  readonly #log: Logger;
  readonly #clock: Clock;
  /** The cursor stored for this sink by an earlier run, if any. */
  readonly #storedCursor: number | null;
  #cursor: number;
  /** Highest id the store holds, as far as this runner has heard: it reads back no further. */
  #head = 0;
  /** Committed batches not delivered yet, in order. */
  #queue: EventBatch[] = [];
  #queuedBytes = 0;
  #paused = false;
  readonly #backpressure?: Backpressure;
  /** Some committed events are only in the store: read them from there. */
  #behind = false;
  /** A delivery, or the storing of its cursor, is under way. */
  #busy = false;
  #closed = false;
  /** Stopping: deliver what is committed without waiting for each cursor to be stored. */
  #finishing = false;
  #retry: TimerId | undefined;
  #failures = 0;
  /** A `finish` waiting for the cursor to move. */
  #progress: (() => void) | null = null;
  delivered = 0;
  /** Failed deliveries (each retried). */
  errors = 0;
  readonly #onDelivered?: (batch: EventBatch) => void;

  constructor(options: SinkRunnerOptions) {
    this.sink = options.sink;
    this.#journal = options.journal;
    this.#store = options.store;
    this.#log = options.logger;
    this.#clock = options.clock ?? systemClock;
    this.#backpressure = options.backpressure;
    this.#onDelivered = options.onDelivered;
    this.#storedCursor = options.store?.cursor(options.sink.name) ?? null;
    this.#cursor = this.#storedCursor ?? 0;
  }

  get cursor(): number {
    return this.#cursor;
  }

  /**
   * Subscribes to the journal's committed batches and starts delivering what the store holds beyond
   * the cursor.
   */
  start(): void {
    const head = this.#journal.subscribe(this);
    if (this.#store !== null) {
      if (head > this.#head) this.#head = head;
      // A new sink starts with what is committed from now on; a known one where it stopped.
      if (this.#storedCursor === null && this.#cursor < head) this.#cursor = head;
      if (this.#cursor < this.#head) {
        this.#behind = true;
        this.#log.info("sink {sink}: {n} event(s) stored but not delivered; delivering them first", {
          sink: this.sink.name,
          n: this.#head - this.#cursor,
        });
      }
    }
    this.#next();
  }

  /** A batch was committed. */
  offer(batch: EventBatch): void {
    if (batch.lastId > this.#head) this.#head = batch.lastId;
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
        this.#backpressure?.hold(`sink ${this.sink.name}`, true);
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
      this.#backpressure?.hold(`sink ${this.sink.name}`, false);
    }
    if (parts.length <= 1) return parts[0];
    return new JoinedBatch(parts);
  }

  /** Delivers the next batch: from memory, or from the store while behind. */
  #next(): void {
    if (this.#busy || this.#closed) return;
    let batch: EventBatch | undefined;
    if (this.#behind && this.#store) {
      const rows = this.#store.events.read(this.#cursor, PAGE, this.#head, MAX_DELIVERY_BYTES);
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
    this.#progress?.();
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
      this.#progress?.();
      return;
    }
    this.#busy = false;
    this.#failures++;
    this.errors++;
    if (this.#store !== null) {
      this.#clearQueue();
      this.#behind = true;
    }
    const delay = backoffDelay(DELIVERY_RETRY, this.#failures);
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
    if (this.#retry !== undefined) this.#clock.clearTimeout(this.#retry);
    this.#busy = true;
    this.#retry = this.#clock.setTimeout(() => {
      this.#retry = undefined;
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
    let timedOut = false;
    const timer = this.#clock.setTimeout(() => {
      timedOut = true;
      this.#progress?.();
    }, timeoutMs);
    while (this.#cursor < lastId && !this.#closed && !timedOut) {
      await new Promise<void>((resolve) => (this.#progress = resolve));
      this.#progress = null;
      this.#next();
    }
    this.#clock.clearTimeout(timer);
    return this.#cursor >= lastId;
  }

  close(): void {
    this.#closed = true;
    this.#journal.unsubscribe(this);
    if (this.#retry !== undefined) this.#clock.clearTimeout(this.#retry);
    this.#progress?.();
  }
}
