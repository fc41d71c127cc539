/**
 * The write side of the store: events are gathered per event-loop turn and committed in ONE transaction
 * together with the new sequence number of their sessions, so after any crash the stored seq is exactly
 * the last stored event and a RESUME makes Discord replay exactly what is missing. Filtered-out events
 * are not stored but still advance the seq. Sinks hear about a batch only after it is committed.
 *
 * Batches go to a writer (write.ts): on a worker thread in production, so SQLite's time overlaps with
 * reading from Discord. When a write fails (disk full, I/O error, a lock), nothing is acknowledged: the
 * batch stays in memory and is retried with backoff, sessions do not advance. Whenever more than
 * `maxPendingBytes` wait for the writer — a failing store, or a flood faster than SQLite — the shards
 * stop reading (TCP pushes back on Discord) until it has caught up. Nothing is dropped.
 */
import type { Backpressure } from "../util/backpressure.ts";
import { type Clock, systemClock, type TimerId } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import type { Store, StoreError } from "./store.ts";
import { eventPosition, eventScope } from "./identity.ts";
import {
  type BatchData,
  InlineWriter,
  type JournalWriter,
  type SessionRecord,
  type WriterEvents,
} from "./write.ts";

export type { SessionRecord } from "./write.ts";

/** A session as a shard reports it: what a RESUME needs. */
export type Session = Omit<SessionRecord, "shardCount">;

/** Committed events, in id order, as views into one buffer. */
export interface EventBatch {
  readonly count: number;
  readonly firstId: number;
  readonly lastId: number;
  /** Bytes of all payloads together. */
  readonly size: number;
  id(i: number): number;
  shard(i: number): number;
  /** The event's payload: Discord's JSON object (from its `{`), exactly as received. */
  payload(i: number): Uint8Array;
  t(i: number): string;
  /** The event's identity (identity.ts): its scope (a session, or the store) and position in it. */
  scope(i: number): string;
  position(i: number): number;
}

/**
 * Receives every committed batch, in id order, once the store holds it (without kept events: as soon
 * as it is read). The batch carries its ids: a consumer keeps its own position, nothing is shared.
 */
export interface BatchConsumer {
  offer(batch: EventBatch): void;
}

export interface JournalOptions {
  store: Store;
  /**
   * false = sessions, cursors and ids are kept but events are not (`[store] journal = false`). Seqs and
   * cursors are then written only at the 1 s checkpoints (and when sessions change, and on flush): a
   * commit that has nothing else to store goes to the sinks without a transaction. After a crash,
   * shards resume from the last checkpoint, so Discord sends the last second's events again (new ids)
   * rather than any being lost.
   */
  keepEvents?: boolean;
  logger: Logger;
  clock?: Clock;
  /** Past this many bytes waiting for a failing store, shards are asked to stop reading. */
  maxPendingBytes?: number;
  /** A batch this large is committed at once instead of at the end of the turn. */
  maxBatchBytes?: number;
  /**
   * Group commit: at most one transaction per this many ms (default 50), and none while the previous
   * one is still being written — events arriving meanwhile join the next batch. Bounds the number of
   * transactions (and sink deliveries) per second whatever the event rate; a full batch
   * (`maxBatchBytes`) goes at once.
   */
  commitIntervalMs?: number;
  /** The writer (default: in this thread). */
  writer?: (events: WriterEvents) => JournalWriter;
  /** Held (as "journal") while too much waits for the store: the shards stop reading. */
  backpressure?: Backpressure;
  /** The store is corrupt: nothing can be written any more. */
  onFatal?: (error: StoreError) => void;
  /** A commit failed because the store is full (its hard size limit): time to prune. */
  onFull?: () => void;
}

const encoder = new TextEncoder();
const NO_BYTES = new Uint8Array(0);
const OWNER_HEARTBEAT_MS = 5_000;
/**
 * How often every session's seq is written to its row (a checkpoint). In between, a seq that came with
 * a stored event is recorded by that event's row; any other (a filtered-out event, or every event when
 * events are not kept) goes into one small meta row (`seqs`) in the same transaction, instead of one
 * row update per session per commit — the cost that dominated commits (see `SqliteSessionStore.load`).
 */
const SEQ_CHECKPOINT_MS = 1_000;
/** Events not kept: ids recorded ahead of use at least by this many (a restart skips what was not used). */
const ID_RESERVE = 10_000;

class Pending implements EventBatch {
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

export class Journal {
  readonly #store: Store;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #options: JournalOptions;
  readonly #maxPendingBytes: number;
  readonly #maxBatchBytes: number;
  readonly #commitIntervalMs: number;
  #lastCommitAt = -Infinity;
  readonly #keepEvents: boolean;
  readonly #writer: JournalWriter;
  #pending: Pending;
  /** Batches handed to the writer and not stored yet, oldest first. */
  #inflight: Pending[] = [];
  #heldBytes = 0;
  #batchNo = 0;
  #nextId: number;
  /** Per shard: the session events are stored under. */
  #current = new Map<number, SessionRecord>();
  /** Per shard: highest seq seen since the last commit (stored or filtered). */
  #seqs = new Map<number, number>();
  /** Per shard: highest seq of a stored event since the last commit. */
  #storedSeqs = new Map<number, number>();
  /** Per shard: session and seq not written to the session's row yet (carried by stored events). */
  #unwrittenSeqs = new Map<number, [string, number]>();
  #lastCheckpoint = -Infinity;
  /** Sessions started or lost, by "count/shard": [count, shard, session or null]. */
  #sessionWrites = new Map<string, [number, number, SessionRecord | null]>();
  #cursorWrites = new Map<string, number>();
  /** Callbacks waiting for the cursors of the pending batch to be stored. */
  #cursorWaiters: Array<() => void> = [];
  /** Per batch handed to the writer: callbacks to run once it is stored. */
  #inflightWaiters = new Map<number, Array<() => void>>();
  #identifyWrites: Array<[number, number]> = [];
  #scheduled = false;
  #commitTimer: TimerId | undefined;
  readonly #consumers: BatchConsumer[] = [];
  /** Highest id the store holds (committed by this journal, or found at start). */
  #committedId: number;
  /**
   * Events not kept: ids up to here are recorded as given out (meta last_id), so a new process starts
   * above them. Written ahead, by a reserve, at each transaction; a commit that would go past it is
   * not skipped.
   */
  #idCeiling: number;
  #idsAtLastWrite: number;
  #checkpointTimer: TimerId | undefined;
  #failures = 0;
  #lastFailure: string | null = null;
  #lastOfferedId = 0;
  #paused = false;
  #fatal = false;
  #lastOwnerBeat = 0;
  /** Counters for metrics and tests. */
  committedEvents = 0;
  commits = 0;
  failedCommits = 0;

  constructor(options: JournalOptions) {
    this.#store = options.store;
    this.#log = options.logger;
    this.#clock = options.clock ?? systemClock;
    this.#options = options;
    this.#maxPendingBytes = options.maxPendingBytes ?? 32 * 1024 * 1024;
    this.#maxBatchBytes = options.maxBatchBytes ?? 1024 * 1024;
    this.#commitIntervalMs = options.commitIntervalMs ?? 50;
    this.#keepEvents = options.keepEvents ?? true;
    const lastId = options.store.lastId;
    this.#nextId = lastId + 1;
    this.#committedId = lastId;
    this.#idCeiling = this.#idsAtLastWrite = lastId;
    this.#pending = new Pending(options.store.producer);
    const events: WriterEvents = {
      committed: (no, bytes) => this.#committed(no, bytes),
      failed: (error) => this.#failed(error),
    };
    this.#writer = options.writer
      ? options.writer(events)
      : new InlineWriter(options.store, events, this.#clock);
  }

  /**
   * `consumer` gets every batch committed from now on, in order. Returns the highest id committed so
   * far: what the store holds up to now (later batches carry their own ids).
   */
  subscribe(consumer: BatchConsumer): number {
    this.#consumers.push(consumer);
    return this.#committedId;
  }

  unsubscribe(consumer: BatchConsumer): void {
    const i = this.#consumers.indexOf(consumer);
    if (i >= 0) this.#consumers.splice(i, 1);
  }

  #hand(batch: EventBatch): void {
    this.#lastOfferedId = batch.lastId;
    for (const consumer of this.#consumers) consumer.offer(batch);
  }

  #backpressure(paused: boolean): void {
    this.#paused = paused;
    this.#options.backpressure?.hold("journal", paused);
  }

  /** Highest id given out (stored or waiting). */
  get lastAssignedId(): number {
    return this.#nextId - 1;
  }

  /**
   * Highest id handed to the sinks: committed with the journal; without it, as soon as it was read
   * (those events are nowhere else).
   */
  get lastOfferedId(): number {
    return this.#lastOfferedId;
  }

  /** Highest id the store holds (committed). */
  get lastCommittedId(): number {
    return this.#committedId;
  }

  /** Why the last write failed, while writes fail (null once one succeeds). */
  get lastFailure(): string | null {
    return this.#lastFailure;
  }

  /** Room was made in the store (retention pruned): a write waiting out its backoff may go now. */
  retryNow(): void {
    this.#writer.retryNow?.();
  }

  /** Whether the store is refusing writes and events are waiting in memory. */
  get failing(): boolean {
    return this.#failures > 0;
  }

  /** Events not stored yet. */
  get pendingEvents(): number {
    return this.#pending.count + this.#inflight.reduce((n, p) => n + p.count, 0);
  }

  // ---- the hot path ----

  /**
   * One dispatch. `payload[start]` is its `{`. When `keep` is false (filtered out by `events`) only its
   * sequence number is recorded.
   */
  event(shard: number, t: string, s: number, payload: Uint8Array, start: number, keep: boolean): void {
    if (s > 0) {
      const seq = this.#seqs.get(shard);
      if (seq === undefined || s > seq) this.#seqs.set(shard, s);
    }
    if (!keep) {
      this.#schedule();
      return;
    }
    if (s > 0 && this.#keepEvents) {
      const stored = this.#storedSeqs.get(shard);
      if (stored === undefined || s > stored) this.#storedSeqs.set(shard, s);
    }
    let end = payload.length;
    while (end > start && payload[end - 1] <= 0x20) end--;
    const p = this.#pending;
    p.add(payload, start, end);
    p.ids.push(this.#nextId++);
    p.shards.push(shard);
    p.sessions.push(this.#current.get(shard)?.id ?? null);
    p.seqs.push(s > 0 ? s : null);
    p.names.push(t);
    p.receivedAt.push(this.#clock.now());
    if (p.length >= this.#maxBatchBytes) this.commit();
    else this.#schedule();
  }

  /** An event gatehouse itself produces (`GATEHOUSE_…`). */
  internal(shard: number, t: string, d: Record<string, unknown>): void {
    const payload = encoder.encode(JSON.stringify({ t, s: null, op: 0, d }));
    this.event(shard, t, -1, payload, 0, true);
  }

  // ---- sessions, cursors, identifies: written with the next batch ----

  /**
   * Shard `shard` of `shardCount` started a session (READY): stored with the next batch, and the
   * shard's events from now on belong to it. (Events carry their shard id only: one journal runs one
   * shard count's sessions at a time; the store keeps every count's side by side.)
   */
  sessionStarted(shardCount: number, shard: number, session: Session): void {
    const record = { ...session, shardCount };
    this.#current.set(shard, record);
    this.#sessionWrites.set(`${shardCount}/${shard}`, [shardCount, shard, { ...record }]);
    this.#seqs.set(shard, session.seq);
    this.#schedule();
  }

  /** The session of shard `shard` of `shardCount` cannot be resumed: it is forgotten with the next batch. */
  sessionLost(shardCount: number, shard: number): void {
    if (this.#current.get(shard)?.shardCount === shardCount) {
      this.#current.delete(shard);
      this.#seqs.delete(shard);
    }
    this.#sessionWrites.set(`${shardCount}/${shard}`, [shardCount, shard, null]);
    this.#schedule();
  }

  /** Adopts a session restored from the store (no write needed). */
  restoreSession(shardCount: number, shard: number, session: Session): void {
    this.#current.set(shard, { ...session, shardCount });
  }

  /**
   * Stores a sink's cursor with the next batch; `onStored` runs once that batch is stored. Without kept
   * events there is nothing to deliver again, so the cursor waits for the next checkpoint and
   * `onStored` runs at once.
   */
  setCursor(sink: string, lastId: number, onStored?: () => void): void {
    this.#cursorWrites.set(sink, lastId);
    if (!this.#keepEvents) {
      onStored?.();
      return;
    }
    if (onStored) this.#cursorWaiters.push(onStored);
    this.#schedule();
  }

  recordIdentify(shard: number): void {
    this.#identifyWrites.push([shard, this.#clock.now()]);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled || this.#fatal) return;
    this.#scheduled = true;
    // While a batch is being written, #committed() schedules the next one.
    if (this.#inflight.length > 0) return;
    this.#armCommitTimer();
  }

  /**
   * One commit timer at most, due `commitIntervalMs` after the last commit began. (Two used to be armed
   * when a sink's cursor arrived while its batch was acknowledged: the second then committed the
   * cursor alone right after the first, doubling the transactions under steady traffic.)
   */
  #armCommitTimer(): void {
    if (this.#commitTimer !== undefined) return;
    const wait = this.#lastCommitAt + this.#commitIntervalMs - this.#clock.now();
    // Bounded by the interval: a clock set back does not hold commits up.
    this.#commitTimer = this.#clock.setTimeout(
      this.#commitLater,
      Math.min(this.#commitIntervalMs, Math.max(0, wait)),
    );
  }

  readonly #commitLater = () => {
    this.#commitTimer = undefined;
    if (!this.#scheduled || this.#inflight.length > 0 || this.#fatal) return;
    const since = this.#clock.now() - this.#lastCommitAt;
    if (since >= 0 && since < this.#commitIntervalMs - 1) {
      // A commit came in between (a full batch, a flush): keep the interval from that one.
      this.#armCommitTimer();
      return;
    }
    this.#scheduled = false;
    this.commit();
  };

  /**
   * Hands everything gathered so far to the writer as one batch. `force`: write every seq and cursor
   * now, even when events are not kept (flush, shutdown).
   */
  commit(force = false): void {
    if (this.#fatal) return;
    const p = this.#pending;
    if (
      p.count === 0 && this.#seqs.size === 0 && this.#sessionWrites.size === 0 &&
      this.#cursorWrites.size === 0 &&
      this.#identifyWrites.length === 0
    ) return;
    const now = this.#clock.now();
    this.#lastCommitAt = now;
    const seqUpdates: Array<[number, number, string, number]> = [];
    // Kept events carry their seqs; without them a flush writes every seq at once.
    const checkpoint = (force && !this.#keepEvents) || now - this.#lastCheckpoint >= SEQ_CHECKPOINT_MS;
    let noteSeqs = false;
    for (const [shard, seq] of this.#seqs) {
      const session = this.#current.get(shard);
      if (!session) continue;
      if (seq > session.seq) session.seq = seq;
      this.#unwrittenSeqs.set(shard, [session.id, seq]);
      // Only a seq no stored event of this batch carries needs the meta row.
      if (this.#storedSeqs.get(shard) !== seq) noteSeqs = true;
    }
    if (this.#sessionWrites.size > 0) {
      // A new or lost session replaces whatever was noted for its shard.
      for (const [, shard] of this.#sessionWrites.values()) {
        if (!this.#seqs.has(shard)) this.#unwrittenSeqs.delete(shard);
      }
    }
    const beat = now - this.#lastOwnerBeat >= OWNER_HEARTBEAT_MS;
    if (
      !this.#keepEvents && !checkpoint && !beat && this.#sessionWrites.size === 0 &&
      this.#identifyWrites.length === 0 && this.#inflight.length === 0 && this.#nextId - 1 <= this.#idCeiling
    ) {
      // Events are not kept and nothing else must be stored now: straight to the sinks. The seqs wait
      // in #unwrittenSeqs and the cursors in #cursorWrites for the next checkpoint.
      this.#nextBatch(p);
      this.committedEvents += p.count;
      if (p.count > 0) this.#hand(p);
      // Traffic may stop here: the checkpoint still comes when due.
      if (this.#checkpointTimer === undefined) {
        this.#checkpointTimer = this.#clock.setTimeout(() => {
          this.#checkpointTimer = undefined;
          this.#schedule();
        }, Math.max(0, this.#lastCheckpoint + SEQ_CHECKPOINT_MS - now));
      }
      return;
    }
    let seqNote: string | null = null;
    if (checkpoint) {
      if (this.#lastCheckpoint === -Infinity) {
        // The first checkpoint of a process: sessions restored from the store may owe their seq to
        // events after the previous checkpoint, which this one moves past: write every session's.
        for (const [shard, session] of this.#current) {
          this.#unwrittenSeqs.set(shard, [session.id, session.seq]);
        }
      }
      this.#lastCheckpoint = now;
      for (const [shard, [id, seq]] of this.#unwrittenSeqs) {
        const session = this.#current.get(shard);
        if (session?.id === id) seqUpdates.push([session.shardCount, shard, id, seq]);
      }
      this.#unwrittenSeqs.clear();
      seqNote = "{}";
    } else if (noteSeqs) {
      seqNote = JSON.stringify(Object.fromEntries(this.#unwrittenSeqs));
    }
    if (beat) this.#lastOwnerBeat = now;
    // Events not kept: the writer needs only the last id, not the events (nothing to copy over).
    const keep = this.#keepEvents;
    if (!keep) {
      // Ids are recorded ahead of use: enough for twice what was given out since the last time.
      const given = this.#nextId - 1;
      this.#idCeiling = given + Math.max(ID_RESERVE, 2 * (given - this.#idsAtLastWrite));
      this.#idsAtLastWrite = given;
    }
    const batch: BatchData = {
      no: ++this.#batchNo,
      // Events not kept: above every id given out, so ids never go back after a restart.
      lastId: keep ? p.lastId : this.#idCeiling,
      bytes: keep ? p.bytes : NO_BYTES,
      ends: keep ? p.ends : [],
      ids: keep ? p.ids : [],
      shards: keep ? p.shards : [],
      sessions: keep ? p.sessions : [],
      seqs: keep ? p.seqs : [],
      names: keep ? p.names : [],
      receivedAt: keep ? p.receivedAt : [],
      sessionWrites: [...this.#sessionWrites.values()],
      seqUpdates,
      cursorWrites: [...this.#cursorWrites],
      identifyWrites: this.#identifyWrites,
      keepEvents: this.#keepEvents,
      checkpointId: checkpoint ? this.#nextId - 1 : null,
      seqNote,
      at: now,
      owner: beat ? { pid: Deno.pid, host: safeHostname() } : null,
    };
    p.no = batch.no;
    this.#nextBatch(p);
    this.#sessionWrites.clear();
    this.#cursorWrites.clear();
    this.#identifyWrites = [];
    if (this.#cursorWaiters.length > 0) {
      this.#inflightWaiters.set(batch.no, this.#cursorWaiters);
      this.#cursorWaiters = [];
    }
    this.#inflight.push(p);
    this.#heldBytes += p.length;
    this.#writer.write(batch);
    if (!this.#paused && this.#heldBytes > this.#maxPendingBytes) {
      this.#log.debug("journal: {bytes} bytes wait for the store; shards stop reading until it catches up", {
        bytes: this.#heldBytes,
      });
      this.#backpressure(true);
    }
  }

  /** `p` is taken: gathering starts afresh for the next batch. */
  #nextBatch(p: Pending): void {
    this.#seqs.clear();
    this.#storedSeqs.clear();
    // Sized like this batch, so a flood does not grow every batch from 64 KB again.
    this.#pending = new Pending(this.#store.producer, pendingCapacity(p.length, this.#maxBatchBytes));
  }

  #committed(no: number, bytes?: Uint8Array): void {
    const p = this.#inflight.shift();
    if (!p || p.no !== no) {
      this.#log.error("journal: batch {no} acknowledged out of order", { no });
      return;
    }
    // The bytes went to the writer thread (the view left here is detached) and came back.
    if (bytes && p.bytes.byteLength === 0) p.bytes = bytes as Uint8Array<ArrayBuffer>;
    this.#heldBytes -= p.length;
    if (p.count > 0) this.#committedId = p.lastId;
    this.commits++;
    this.committedEvents += p.count;
    if (this.#failures > 0) {
      this.#log.warn("store writable again after {failures} failed attempt(s); held events committed", {
        failures: this.#failures,
      });
      this.#failures = 0;
      this.#lastFailure = null;
    }
    if (this.#paused && this.#heldBytes <= this.#maxPendingBytes / 2) this.#backpressure(false);
    const waiters = this.#inflightWaiters.get(no);
    if (waiters) {
      this.#inflightWaiters.delete(no);
      for (const waiter of waiters) waiter();
    }
    if (p.count > 0) this.#hand(p);
    // Events gathered while this batch was written: commit them after the interval.
    if (this.#scheduled && this.#inflight.length === 0) this.#armCommitTimer();
  }

  #failed(error: StoreError): void {
    this.failedCommits++;
    if (error.kind === "corrupt") {
      this.#fatal = true;
      this.#log.error("{message}", { message: error.message });
      this.#options.onFatal?.(error);
      return;
    }
    this.#failures++;
    this.#lastFailure = error.message;
    if (error.kind === "full") this.#options.onFull?.();
    if (this.#failures === 1 || this.#failures % 20 === 0) {
      this.#log.error(
        "cannot write to the store: {message}; holding {events} event(s) in memory, sessions do not advance; " +
          "retrying",
        { message: error.message, events: this.pendingEvents },
      );
    }
    if (!this.#paused && this.#heldBytes > this.#maxPendingBytes) {
      this.#log.warn("store still failing with {bytes} bytes held: shards stop reading until it recovers", {
        bytes: this.#heldBytes,
      });
      this.#backpressure(true);
    }
  }

  /** Commits what is gathered and waits (at most `timeoutMs`) until the store has it all. */
  async flush(timeoutMs = 5_000): Promise<boolean> {
    this.commit(true);
    return await this.#writer.drain(timeoutMs);
  }

  /** Stops the writer (the store is closing). */
  async close(): Promise<void> {
    this.#fatal = true;
    if (this.#checkpointTimer !== undefined) this.#clock.clearTimeout(this.#checkpointTimer);
    if (this.#commitTimer !== undefined) this.#clock.clearTimeout(this.#commitTimer);
    this.#commitTimer = undefined;
    await this.#writer.close();
  }
}

/** A power of two from 64 KB that holds `used` bytes, at most what a full batch can reach. */
function pendingCapacity(used: number, maxBatchBytes: number): number {
  let capacity = 64 * 1024;
  while (capacity < used && capacity < maxBatchBytes * 2) capacity *= 2;
  return capacity;
}

function safeHostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "unknown";
  }
}
