/**
 * Drives one sink from the journal. The cursor (last acknowledged id) moves only on acknowledgement, and
 * the next batch is delivered only once the store holds that cursor: after a crash, at most the one
 * batch in flight is delivered again, with the same ids. A sink that is caught up gets committed
 * batches straight from memory; one that is behind (after a restart, a failure, or a long stall) reads
 * from the store in id order until it has caught up.
 *
 * Pacing (when a healthy sink that is behind holds reading) is defined in pacing.ts.
 *
 * With `[transforms]` each delivery goes through the runner's `Transforms` (transforms.ts) first: the
 * one place every sink's events pass. A dropped event is left out of what the sink gets, and the
 * cursor still moves past it; a delivery with nothing left is acknowledged without the sink.
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
import { SaturationMeter } from "../util/saturation.ts";
import { HEALTH_WINDOW_MS, paceHolds, PAGE, STALL_MS } from "./pacing.ts";
import type { Transforms } from "./transforms.ts";

export { HEALTH_WINDOW_MS, PACE_BEHIND, PACE_UNDER, STALL_MS } from "./pacing.ts";

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
/** Commit times kept for the time lag; past this many, neighbours are merged (the older time kept). */
const MAX_MARKS = 1024;
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
  /**
   * Held as "pace <name>" while the sink is healthy and behind (pacing, see the top of this file), and
   * without a store as "sink <name>" while the sink is too far behind; the shards stop reading.
   */
  backpressure?: Backpressure;
  /** Called with every acknowledged batch (metrics). */
  onDelivered?: (batch: EventBatch) => void;
  /** Times the retries and a bounded finish. */
  clock?: Clock;
  /** Whether the process has no time to spare (pacing starts only then); default: a `SaturationMeter`. */
  saturated?: () => boolean;
  /** What this sink's events go through on their way (`[transforms]`); none by default. */
  transforms?: Transforms | null;
  /**
   * Deliver nothing until `release()`: the transforms' state is being rebuilt from the journal up to the
   * cursor (transform_warmup.ts). Batches committed meanwhile wait as usual.
   */
  held?: boolean;
}

export class SinkRunner implements BatchConsumer {
  readonly sink: Sink;
  readonly #journal: RunnerJournal;
  readonly #store: Store | null;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #saturated: () => boolean;
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
  /** When batches were handed over: `[lastId, at]`, ids ascending, those above the cursor only. */
  #marks: Array<[number, number]> = [];
  /** When the last failure or stall ended (the health window runs from it). */
  #troubleAt = -Infinity;
  /** Whether the delivery under way has run past STALL_MS. */
  #stalled = false;
  #stallTimer: TimerId | undefined;
  /**
   * Events stored before this runner started and not delivered then end here: until the cursor passes
   * it the sink catches up on an outage of the whole process, and pacing does not hold (see #pace).
   */
  #startBacklog = 0;
  /** Holding "pace <name>" since then (null: not holding), and the time held before. */
  #pacedSince: number | null = null;
  #pacedMs = 0;
  readonly transforms: Transforms | null;
  #held: boolean;

  constructor(options: SinkRunnerOptions) {
    this.sink = options.sink;
    this.#journal = options.journal;
    this.#store = options.store;
    this.#log = options.logger;
    this.#clock = options.clock ?? systemClock;
    if (options.saturated) this.#saturated = options.saturated;
    else {
      const meter = new SaturationMeter();
      this.#saturated = () => meter.saturated();
    }
    this.#backpressure = options.backpressure;
    this.#onDelivered = options.onDelivered;
    this.#storedCursor = options.store?.cursor(options.sink.name) ?? null;
    this.#cursor = this.#storedCursor ?? 0;
    this.transforms = options.transforms ?? null;
    this.#held = options.held ?? false;
  }

  /** Starts delivering (after `held`: the transforms' state is rebuilt). */
  release(): void {
    if (!this.#held) return;
    this.#held = false;
    this.#next();
  }

  get cursor(): number {
    return this.#cursor;
  }

  /** Lag in events: the highest committed id this runner heard of minus its cursor. */
  get lagEvents(): number {
    return Math.max(0, this.#head - this.#cursor);
  }

  /** Lag in ms: age of the oldest committed event not acknowledged (0 when caught up). */
  get lagMs(): number {
    if (this.#marks.length === 0 || this.#head <= this.#cursor) return 0;
    return Math.max(0, this.#clock.now() - this.#marks[0][1]);
  }

  /**
   * Healthy: the last delivery succeeded, none failed or stalled within HEALTH_WINDOW_MS, and none is
   * stalled now.
   */
  get healthy(): boolean {
    return !this.#closed && this.#failures === 0 && !this.#stalled &&
      this.#clock.now() - this.#troubleAt >= HEALTH_WINDOW_MS;
  }

  /** Whether this runner holds reading now (pacing). */
  get pacing(): boolean {
    return this.#pacedSince !== null;
  }

  /** Time this runner has held reading by pacing, in ms (counted on its clock, the hold under way included). */
  get pacedMs(): number {
    return this.#pacedMs + (this.#pacedSince === null ? 0 : this.#clock.now() - this.#pacedSince);
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
        this.#startBacklog = this.#head;
        this.#marks.push([this.#head, this.#clock.now()]);
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
    // Its age counts from when its first event arrived, not from its commit: a large batch committed
    // late (a flood's, written beside the shards) is as old as its events, and pacing sees it so.
    const now = this.#clock.now();
    const received = batch.firstReceivedAt;
    this.#mark(batch.lastId, received !== undefined && received <= now ? received : now);
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
    this.#pace();
    this.#next();
  }

  /** Notes when the events up to `lastId` were handed over (for the lag in time). */
  #mark(lastId: number, at = this.#clock.now()): void {
    const marks = this.#marks;
    if (marks.length > 0 && marks[marks.length - 1][0] >= lastId) return;
    marks.push([lastId, at]);
    if (marks.length > MAX_MARKS) {
      // Merge neighbours: each pair keeps the higher id and the older time, so the lag in time is never
      // under-reported (a backlog of over a thousand commits, far behind anyway).
      const merged: Array<[number, number]> = [];
      for (let i = 0; i < marks.length; i += 2) {
        merged.push([marks[Math.min(i + 1, marks.length - 1)][0], marks[i][1]]);
      }
      this.#marks = merged;
    }
  }

  /**
   * Holds or lets go of "pace <name>" (see the top of this file). Not while the sink delivers what was
   * stored before this start: the shards may not have read their HELLO yet, and a shard held before
   * it heartbeats is closed by Discord; events committed since then are paced once it is past them.
   */
  #pace(): void {
    let hold: boolean;
    if (!this.healthy || this.#cursor < this.#startBacklog) hold = false;
    else {
      hold = paceHolds(this.#pacedSince !== null, this.lagEvents, this.lagMs, this.#saturated);
    }
    if (hold === (this.#pacedSince !== null)) return;
    const now = this.#clock.now();
    if (hold) this.#pacedSince = now;
    else {
      this.#pacedMs += now - this.#pacedSince!;
      this.#pacedSince = null;
    }
    this.#backpressure?.hold(`pace ${this.sink.name}`, hold);
  }

  /** A delivery begins: it is stalled if it (with its cursor) is not done within STALL_MS. */
  #deliveryBegan(): void {
    this.#stallTimer = this.#clock.setTimeout(() => {
      this.#stallTimer = undefined;
      this.#stalled = true;
      this.#log.debug("sink {sink}: a delivery under way for {ms} ms is stalled; pacing lets reading go", {
        sink: this.sink.name,
        ms: STALL_MS,
      });
      this.#pace();
    }, STALL_MS);
  }

  /** The delivery under way is done (taken and its cursor stored, or failed). */
  #deliveryEnded(): void {
    if (this.#stallTimer !== undefined) this.#clock.clearTimeout(this.#stallTimer);
    this.#stallTimer = undefined;
    if (this.#stalled) {
      this.#stalled = false;
      this.#troubleAt = this.#clock.now();
    }
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
    if (this.#busy || this.#closed || this.#held) return;
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
    this.#deliveryBegan();
    const out = this.transforms === null ? batch : this.transforms.apply(batch);
    if (out.count === 0) {
      // Every event of it was dropped: nothing for the sink, the cursor moves on.
      this.#ack(batch, out);
      return;
    }
    let result: void | Promise<void>;
    try {
      result = this.sink.deliver(out);
    } catch (error) {
      this.#fail(error);
      return;
    }
    if (result instanceof Promise) {
      (this.sink.local ? result : awaitingNetwork(result)).then(
        () => this.#ack(batch, out),
        (error) => this.#fail(error),
      );
    } else {
      this.#ack(batch, out);
    }
  }

  /** `batch` was taken; `out` is what the sink got of it (the same, unless transforms changed it). */
  #ack(batch: EventBatch, out: EventBatch): void {
    const lastId = batch.lastId;
    this.#onDelivered?.(out);
    this.transforms?.acknowledged(lastId);
    this.delivered += lastId - this.#cursor - (batch.count - out.count);
    this.#cursor = lastId;
    this.#failures = 0;
    let drop = 0;
    while (drop < this.#marks.length && this.#marks[drop][0] <= lastId) drop++;
    if (drop > 0) this.#marks.splice(0, drop);
    this.#progress?.();
    if (this.sink.runsAheadOfStoredCursor || this.#finishing) {
      this.#journal.setCursor(this.sink.name, lastId);
      this.#deliveryEnded();
      this.#busy = false;
      this.#pace();
      this.#next();
      return;
    }
    // The next batch goes out once this cursor is stored: a crash repeats one batch at most.
    this.#pace();
    // More to deliver (queued, or a backlog in the store): the cursor is committed on the next turn.
    const more = this.#queue.length > 0 || this.#behind;
    this.#journal.setCursor(this.sink.name, lastId, () => {
      this.#deliveryEnded();
      this.#busy = false;
      this.#pace();
      this.#next();
    }, more);
  }

  #fail(error: unknown): void {
    this.#deliveryEnded();
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
      this.#pace();
      this.#progress?.();
      return;
    }
    this.#busy = false;
    this.#failures++;
    this.errors++;
    this.#troubleAt = this.#clock.now();
    // Failing: not healthy, so reading is not held for it (the journal keeps what arrives).
    this.#pace();
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
    if (this.#stallTimer !== undefined) this.#clock.clearTimeout(this.#stallTimer);
    this.#stallTimer = undefined;
    this.#pace();
    this.#progress?.();
  }
}
