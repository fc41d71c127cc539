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
import type { Store, StoredProxySession, StoreError } from "./store.ts";
import { type BatchConsumer, type EventBatch, NO_ROWS, Pending, pendingCapacity } from "./batch.ts";
import { safeHostname } from "./store_files.ts";
import { StoreHold } from "./store_hold.ts";
import { CommitTimer } from "./commit_timer.ts";
import { Riders } from "./riders.ts";
import { type SeqUpdate, SessionSeqs } from "./session_seqs.ts";
import {
  type BatchData,
  InlineWriter,
  type JournalWriter,
  type SessionRecord,
  type WriterEvents,
} from "./write.ts";

export type { BatchConsumer, EventBatch } from "./batch.ts";
export type { SessionRecord } from "./write.ts";

/** A session as a shard reports it: what a RESUME needs. */
export type Session = Omit<SessionRecord, "shardCount">;

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
   * The longest anything waits for the group commit (default 50 ms): a cursor or an identify for a batch
   * to ride with, an event for the rest after a write on this thread. Events do not wait for it: they are
   * committed on the next turn when no write is in flight and the journal is not resting, else right
   * after the write in flight (commit_timer.ts).
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
const OWNER_HEARTBEAT_MS = 5_000;
/** Events not kept: ids recorded ahead of use at least by this many (a restart skips what was not used). */
const ID_RESERVE = 10_000;

export class Journal {
  readonly #store: Store;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #options: JournalOptions;
  readonly #maxBatchBytes: number;
  readonly #keepEvents: boolean;
  readonly #writer: JournalWriter;
  #pending: Pending;
  /** Batches handed to the writer and not stored yet, oldest first. */
  #inflight: Pending[] = [];
  /** Bytes waiting for the store, failed writes, and the backpressure they raise. */
  readonly #hold: StoreHold;
  #batchNo = 0;
  #nextId: number;
  /** Sessions and seqs: what each commit must write of them. */
  readonly #sessions = new SessionSeqs();
  /** Cursors and identifies, written with the next batch. */
  readonly #riders = new Riders();
  readonly #commitTimer: CommitTimer;
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
  #lastOfferedId = 0;
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
    this.#hold = new StoreHold(
      options.logger,
      options.maxPendingBytes ?? 32 * 1024 * 1024,
      options.backpressure,
    );
    this.#maxBatchBytes = options.maxBatchBytes ?? 1024 * 1024;
    this.#commitTimer = new CommitTimer(
      this.#clock,
      options.commitIntervalMs ?? 50,
      () => this.#inflight.length === 0 && !this.#fatal,
      () => this.commit(),
    );
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
    return this.#hold.lastFailure;
  }

  /** Room was made in the store (retention pruned): a write waiting out its backoff may go now. */
  retryNow(): void {
    this.#writer.retryNow?.();
  }

  /** Whether the store is refusing writes and events are waiting in memory. */
  get failing(): boolean {
    return this.#hold.failing;
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
    this.#sessions.saw(shard, s, keep && this.#keepEvents);
    if (!keep) {
      this.#schedule();
      return;
    }
    let end = payload.length;
    while (end > start && payload[end - 1] <= 0x20) end--;
    const p = this.#pending;
    p.add(payload, start, end);
    p.ids.push(this.#nextId++);
    p.shards.push(shard);
    p.sessions.push(this.#sessions.sessionOf(shard));
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
    this.#sessions.started(shardCount, shard, { ...session, shardCount });
    this.#schedule();
  }

  /** The session of shard `shard` of `shardCount` cannot be resumed: it is forgotten with the next batch. */
  sessionLost(shardCount: number, shard: number): void {
    this.#sessions.lost(shardCount, shard);
    this.#schedule();
  }

  /** Adopts a session restored from the store (no write needed). */
  restoreSession(shardCount: number, shard: number, session: Session): void {
    this.#sessions.restore(shard, { ...session, shardCount });
  }

  /**
   * Stores a sink's cursor with the next batch; `onStored` runs once that batch is stored. Without kept
   * events there is nothing to deliver again, so the cursor waits for the next checkpoint and
   * `onStored` runs at once.
   */
  /**
   * `urgent`: the sink has more to deliver once this cursor is stored (a backlog): it is committed on the
   * next turn instead of riding with the next batch.
   */
  setCursor(sink: string, lastId: number, onStored?: () => void, urgent = false): void {
    if (!this.#keepEvents) {
      this.#riders.cursor(sink, lastId);
      onStored?.();
      return;
    }
    this.#riders.cursor(sink, lastId, onStored);
    // A cursor that a sink's next delivery waits for goes on the next turn when the sink has more to
    // deliver (a backlog, a pacing hold: no events may come for it to ride with), else catching up would
    // wait the rest or the interval per delivery. Otherwise it rides with the next batch.
    if (onStored && urgent) {
      if (!this.#fatal) this.#commitTimer.urgent(this.#inflight.length > 0);
    } else this.#scheduleRider();
  }

  /** Stores (or, null, forgets) a proxy client session with the next batch. */
  proxySession(sessionId: string, session: StoredProxySession | null): void {
    this.#riders.proxySession(sessionId, session);
    this.#scheduleRider();
  }

  recordIdentify(shard: number): void {
    this.#riders.identify(shard, this.#clock.now());
    this.#scheduleRider();
  }

  #schedule(): void {
    // Idle: the next turn. While a batch is being written, #committed() arms the turn after it.
    if (!this.#fatal) this.#commitTimer.want(this.#inflight.length > 0);
  }

  /** A cursor or an identify: it rides with the next batch (at the latest after the interval). */
  #scheduleRider(): void {
    if (!this.#fatal) this.#commitTimer.ride(this.#inflight.length > 0);
  }

  /**
   * Hands everything gathered so far to the writer as one batch. `force`: write every seq and cursor
   * now, even when events are not kept (flush, shutdown).
   */
  commit(force = false): void {
    if (this.#fatal) return;
    const p = this.#pending;
    if (p.count === 0 && !this.#sessions.pending && this.#riders.empty) return;
    const now = this.#clock.now();
    this.#commitTimer.began();
    const sessions = this.#sessions;
    // Kept events carry their seqs; without them a flush writes every seq at once.
    const checkpoint = (force && !this.#keepEvents) || sessions.checkpointDue(now);
    const noteSeqs = sessions.gather();
    const beat = now - this.#lastOwnerBeat >= OWNER_HEARTBEAT_MS;
    if (
      !this.#keepEvents && !checkpoint && !beat && !sessions.sessionsChanged &&
      this.#riders.identifies === 0 && this.#inflight.length === 0 && this.#nextId - 1 <= this.#idCeiling
    ) {
      // Events are not kept and nothing else must be stored now: straight to the sinks. The seqs wait
      // in the session book and the cursors with the riders, for the next checkpoint.
      this.#nextBatch(p);
      this.committedEvents += p.count;
      if (p.count > 0) this.#hand(p);
      // Traffic may stop here: the checkpoint still comes when due.
      if (this.#checkpointTimer === undefined) {
        this.#checkpointTimer = this.#clock.setTimeout(() => {
          this.#checkpointTimer = undefined;
          this.#schedule();
        }, sessions.untilCheckpoint(now));
      }
      return;
    }
    let seqNote: string | null = null;
    let seqUpdates: SeqUpdate[] = [];
    if (checkpoint) {
      seqUpdates = sessions.checkpoint(now);
      seqNote = "{}";
    } else if (noteSeqs) {
      seqNote = sessions.note();
    }
    if (beat) this.#lastOwnerBeat = now;
    const keep = this.#keepEvents;
    if (!keep) {
      // Ids are recorded ahead of use: enough for twice what was given out since the last time.
      const given = this.#nextId - 1;
      this.#idCeiling = given + Math.max(ID_RESERVE, 2 * (given - this.#idsAtLastWrite));
      this.#idsAtLastWrite = given;
    }
    const no = ++this.#batchNo;
    const batch: BatchData = {
      no,
      // Events not kept: above every id given out, so ids never go back after a restart.
      lastId: keep ? p.lastId : this.#idCeiling,
      // Events not kept: the writer needs only the last id, not the events (nothing to copy over).
      ...(keep ? p.rows() : NO_ROWS),
      sessionWrites: sessions.takeWrites(),
      seqUpdates,
      ...this.#riders.take(no),
      keepEvents: this.#keepEvents,
      checkpointId: checkpoint ? this.#nextId - 1 : null,
      seqNote,
      at: now,
      owner: beat ? { pid: Deno.pid, host: safeHostname() } : null,
    };
    p.no = batch.no;
    this.#nextBatch(p);
    this.#inflight.push(p);
    this.#writer.write(batch);
    // What the write took of this thread (an inline write): the group commit rests after it.
    this.#commitTimer.spent(this.#clock.now() - now);
    this.#hold.handed(p.length);
  }

  /** `p` is taken: gathering starts afresh for the next batch. */
  #nextBatch(p: Pending): void {
    this.#sessions.nextBatch();
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
    if (p.count > 0) this.#committedId = p.lastId;
    this.commits++;
    this.committedEvents += p.count;
    this.#hold.stored(p.length);
    this.#riders.stored(no);
    if (p.count > 0) this.#hand(p);
    // What gathered while this batch was written: events go on the next turn, riders with them.
    if (this.#inflight.length === 0) this.#commitTimer.written();
  }

  #failed(error: StoreError): void {
    this.failedCommits++;
    if (error.kind === "corrupt") {
      this.#fatal = true;
      this.#log.error("{message}", { message: error.message });
      this.#options.onFatal?.(error);
      return;
    }
    if (error.kind === "full") this.#options.onFull?.();
    this.#hold.failed(error.message, this.pendingEvents);
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
    this.#commitTimer.stop();
    await this.#writer.close();
  }
}
