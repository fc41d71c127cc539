/**
 * One journal batch and the single transaction that stores it: the batch's events, the sessions that
 * started or ended, the new seq of every session that saw events (stored or filtered out), sink
 * cursors, identifies, the last id and the owner heartbeat — all or nothing.
 *
 * Writers: `InlineWriter` runs the transaction on the calling thread; `WorkerWriter` (writer_worker.ts)
 * runs it on a worker thread so SQLite's time overlaps with reading from Discord. Both retry a failed
 * batch with backoff, in order, and report every outcome.
 */
import type { StoredProxySession } from "./proxy_sessions.ts";
import { type Backoff, backoffDelay } from "../util/backoff.ts";
import { type Clock, sleep, systemClock, type TimerId } from "../util/clock.ts";
import { SaturationMeter } from "../util/saturation.ts";
import { type Store, StoreError } from "./store.ts";

export interface SessionRecord {
  id: string;
  resumeUrl: string;
  seq: number;
  shardCount: number;
}

/** Plain data (structured-clonable): what a batch writes. */
export interface BatchData {
  no: number;
  /** The batch's last event id (0 = no events): ids are never given out twice, even when not kept. */
  lastId: number;
  /** Payloads back to back; `ends[i]` is where event i ends. */
  bytes: Uint8Array;
  ends: number[];
  ids: number[];
  shards: number[];
  sessions: Array<string | null>;
  seqs: Array<number | null>;
  names: string[];
  receivedAt: number[];
  /** shard count, shard, and the session started there (null: lost). */
  sessionWrites: Array<[number, number, SessionRecord | null]>;
  /** shard count, shard, session id, seq: the stored seq only moves forward. */
  seqUpdates: Array<[number, number, string, number]>;
  cursorWrites: Array<[string, number]>;
  identifyWrites: Array<[number, number]>;
  /** Proxy mode's client sessions: stored, or (null) forgotten. */
  proxySessionWrites: Array<[string, StoredProxySession | null]>;
  keepEvents: boolean;
  /** Set when `seqUpdates` covers every session: the seq checkpoint moves to this id. */
  checkpointId: number | null;
  /** JSON `{shard: [session id, seq]}` for meta `seqs`: seqs not in a session row or event row yet. */
  seqNote: string | null;
  at: number;
  owner: { pid: number; host: string } | null;
}

export function writeBatch(store: Store, b: BatchData): void {
  store.transaction("writing events", () => {
    if (b.keepEvents) {
      for (let i = 0; i < b.ids.length; i++) {
        const start = i === 0 ? 0 : b.ends[i - 1];
        store.events.insert(
          b.ids[i],
          b.shards[i],
          b.sessions[i],
          b.seqs[i],
          b.names[i],
          b.receivedAt[i],
          b.bytes.subarray(start, b.ends[i]),
        );
      }
    }
    for (const [shardCount, shard, session] of b.sessionWrites) {
      if (session === null) store.sessions.delete(shardCount, shard);
      else {
        store.sessions.save({
          shardCount,
          shard,
          sessionId: session.id,
          seq: session.seq,
          resumeUrl: session.resumeUrl,
          updatedAt: b.at,
        });
      }
    }
    for (const [shardCount, shard, sessionId, seq] of b.seqUpdates) {
      store.sessions.advance(shardCount, shard, sessionId, seq, b.at);
    }
    for (const [sink, lastId] of b.cursorWrites) store.setCursor(sink, lastId, b.at);
    for (const [shard, at] of b.identifyWrites) store.recordIdentify(shard, at);
    for (const [id, session] of b.proxySessionWrites) {
      if (session === null) store.proxySessions.delete(id);
      else store.proxySessions.save(session);
    }
    if (b.lastId > 0) store.setMeta("last_id", String(b.lastId));
    if (b.checkpointId !== null) store.setMeta("seq_checkpoint", String(b.checkpointId));
    if (b.seqNote !== null) store.setMeta("seqs", b.seqNote);
    if (b.owner) store.touchOwner(b.owner.pid, b.owner.host);
  });
}

export interface WriterEvents {
  /** Batch `no` (and every one before it) is stored. Its bytes come back when they were transferred. */
  committed(no: number, bytes?: Uint8Array): void;
  /** The oldest unstored batch failed; it is retried. */
  failed(error: StoreError): void;
}

export interface JournalWriter {
  write(batch: BatchData): void;
  /** A write waiting out its retry backoff goes now (room was just made). */
  retryNow?(): void;
  /** Resolves when everything written so far is stored (or `timeoutMs` passed). */
  drain(timeoutMs: number): Promise<boolean>;
  close(): Promise<void>;
}

/** How a failed write is retried: 100 ms after the first failure, doubling, at most 5 s apart. */
export const WRITE_RETRY: Backoff = { baseMs: 100, maxMs: 5_000 };

/** Turns anything thrown by a write into a StoreError. */
export function asStoreError(error: unknown): StoreError {
  return error instanceof StoreError ? error : new StoreError("io", String(error), { cause: error });
}

/** Writes on the calling thread (tests, and where workers are not wanted). */
export class InlineWriter implements JournalWriter {
  readonly #store: Store;
  readonly #events: WriterEvents;
  readonly #clock: Clock;
  #queue: BatchData[] = [];
  #timer: TimerId | undefined;
  #failures = 0;
  #closed = false;

  constructor(store: Store, events: WriterEvents, clock: Clock = systemClock) {
    this.#store = store;
    this.#events = events;
    this.#clock = clock;
  }

  write(batch: BatchData): void {
    this.#queue.push(batch);
    if (this.#timer === undefined) this.#pump();
  }

  /** Batches not stored yet (waiting for a retry). */
  get pending(): number {
    return this.#queue.length;
  }

  /** Checkpoints the WAL on this thread (when no other thread can). */
  checkpoint(): void {
    try {
      this.#store.checkpoint();
    } catch {
      // Busy or failing: the next one tries again; a failing store shows in the writes.
    }
  }

  /** Asks a waiting retry to go now (room was just made). */
  retryNow(): void {
    if (this.#timer === undefined) return;
    this.#clock.clearTimeout(this.#timer);
    this.#pump();
  }

  #pump(): void {
    this.#timer = undefined;
    while (this.#queue.length > 0 && !this.#closed) {
      const batch = this.#queue[0];
      try {
        writeBatch(this.#store, batch);
      } catch (error) {
        this.#failures++;
        const storeError = asStoreError(error);
        this.#events.failed(storeError);
        if (storeError.kind === "corrupt") return;
        this.#timer = this.#clock.setTimeout(() => this.#pump(), backoffDelay(WRITE_RETRY, this.#failures));
        return;
      }
      this.#failures = 0;
      this.#queue.shift();
      this.#events.committed(batch.no);
    }
  }

  async drain(timeoutMs: number): Promise<boolean> {
    const deadline = this.#clock.now() + timeoutMs;
    while (this.#queue.length > 0 && this.#clock.now() < deadline) {
      if (this.#timer !== undefined) {
        this.#clock.clearTimeout(this.#timer);
        this.#pump();
      }
      if (this.#queue.length > 0) await sleep(this.#clock, 50);
    }
    return this.#queue.length === 0;
  }

  close(): Promise<void> {
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    return Promise.resolve();
  }
}

/**
 * Writes on a worker thread (writer_worker.ts): SQLite's time overlaps with the main thread's work. The
 * thread (a second V8 isolate, several MB of RSS) starts with the first batch it is given: a journal whose
 * batches all stay on the calling thread (`HybridWriter`, an idle or lightly loaded gateway) never starts it.
 */
export class WorkerWriter implements JournalWriter {
  readonly #path: string;
  readonly #options: { maxPageCount?: number };
  #worker: Worker | null = null;
  readonly #events: WriterEvents;
  readonly #clock: Clock;
  #written = 0;
  #committed = 0;
  /** Resolved each time the thread reports a batch stored. */
  #progress: Array<() => void> = [];
  #closed: Promise<void> | null = null;
  #onClosed: (() => void) | null = null;
  /** The thread could not open the store. */
  #broken = false;
  /** Checkpoints asked of the thread, and answered (for tests and diagnostics). */
  checkpointsAsked = 0;
  checkpointsDone = 0;

  /**
   * The thread, started by the first write, opens its own connection to the store at `path`. (The
   * thread's own retries run on its own timers: a clock cannot cross to it.)
   */
  constructor(
    path: string,
    options: { maxPageCount?: number },
    events: WriterEvents,
    clock: Clock = systemClock,
  ) {
    this.#path = path;
    this.#options = options;
    this.#events = events;
    this.#clock = clock;
  }

  /** Whether the thread was started (for tests and diagnostics). */
  get started(): boolean {
    return this.#worker !== null;
  }

  #thread(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(new URL("./writer_worker.ts", import.meta.url).href, { type: "module" });
    worker.onmessage = (event: MessageEvent) => this.#onMessage(event.data);
    worker.onerror = (event) => {
      event.preventDefault();
      this.#events.failed(new StoreError("corrupt", `the journal's writer thread failed: ${event.message}`));
    };
    worker.postMessage({ type: "open", path: this.#path, maxPageCount: this.#options.maxPageCount });
    this.#worker = worker;
    return worker;
  }

  #onMessage(
    m: { type: string; no?: number; bytes?: Uint8Array; kind?: StoreError["kind"]; message?: string },
  ): void {
    switch (m.type) {
      case "committed":
        this.#committed++;
        this.#events.committed(m.no!, m.bytes);
        for (const resolve of this.#progress.splice(0)) resolve();
        return;
      case "failed":
        this.#events.failed(new StoreError(m.kind!, m.message!));
        return;
      case "error":
        // The thread could not open the store: nothing it is given will be written.
        this.#broken = true;
        this.#events.failed(new StoreError("corrupt", m.message!));
        return;
      case "checkpointed":
        this.checkpointsDone++;
        return;
      case "opened":
        return;
      case "closed":
        this.#onClosed?.();
        return;
    }
  }

  /** Batches handed to the thread and not stored yet. */
  get pending(): number {
    return this.#written - this.#committed;
  }

  write(batch: BatchData): void {
    this.#written++;
    // The payloads move to the thread without a copy (and come back with "committed").
    const transfer = batch.bytes.byteLength > 0 ? [batch.bytes.buffer as ArrayBuffer] : [];
    this.#thread().postMessage({ type: "write", batch }, transfer);
  }

  /** Asks a waiting retry to go now (room was just made). */
  retryNow(): void {
    this.#worker?.postMessage({ type: "retry-now" });
  }

  /**
   * Asks the thread (starting it if need be) to checkpoint the WAL; false when it cannot (its store
   * would not open), so the caller checkpoints itself.
   */
  checkpoint(): boolean {
    if (this.#broken) return false;
    this.checkpointsAsked++;
    this.#thread().postMessage({ type: "checkpoint" });
    return true;
  }

  async drain(timeoutMs: number): Promise<boolean> {
    if (this.#committed >= this.#written) return true;
    let timedOut = false;
    const timer = this.#clock.setTimeout(() => {
      timedOut = true;
      for (const resolve of this.#progress.splice(0)) resolve();
    }, timeoutMs);
    while (this.#committed < this.#written && !timedOut) {
      await new Promise<void>((resolve) => this.#progress.push(resolve));
    }
    this.#clock.clearTimeout(timer);
    return this.#committed >= this.#written;
  }

  close(): Promise<void> {
    if (this.#closed) return this.#closed;
    const worker = this.#worker;
    if (worker === null) return (this.#closed = Promise.resolve());
    this.#closed = new Promise<void>((resolve) => {
      const timer = this.#clock.setTimeout(() => {
        worker.terminate();
        resolve();
      }, 2000);
      this.#onClosed = () => {
        this.#clock.clearTimeout(timer);
        worker.terminate();
        resolve();
      };
    });
    worker.postMessage({ type: "close" });
    return this.#closed;
  }
}

/**
 * Batches on the calling thread, unless they are large and this thread is saturated: then on the writer
 * thread. Handing a batch to a thread costs more than a small transaction itself (measured: journal-off
 * CPU per event fell by a third when its tiny commits stayed on the main thread), and under paced
 * traffic even megabyte batches cost less CPU here (16 shards × 2000 events/s with 50 ms commits: 1.15
 * CPU-s per 100k events here, 1.93 on the thread). In a flood the main thread has no time to spare, and
 * writing beside it gives 40 % more throughput. Order is kept: a batch goes inline only when the thread
 * has nothing pending, and once an inline batch waits for a retry, later ones queue behind it.
 *
 * Checkpoints (copying the WAL into the database, with an fsync) are the writer thread's too: SQLite
 * runs one inside the commit that crosses `wal_autocheckpoint`, and on this thread that stalled every
 * event behind it (measured, 16 shards × 2000 events/s: an 80–150 ms commit every 1.5 s, p99 latency
 * 230 ms). The caller turns automatic checkpoints off on this thread's connection; after every
 * `checkpointBytes` written here the writer thread is asked for a PASSIVE one (it neither waits for
 * readers nor blocks writers). Batches the thread writes itself checkpoint there automatically.
 */
/** What a batch writes besides its payloads (its rows' index entries, sessions, cursors), at least. */
const PAGE_BYTES = 16 * 1024;

export class HybridWriter implements JournalWriter {
  readonly #inline: InlineWriter;
  readonly #worker: WorkerWriter;
  readonly #maxInlineBytes: number;
  readonly #meter: { saturated(): boolean };
  readonly #checkpointBytes: number;
  /** Bytes written on this thread since the last checkpoint was asked for (a page per batch at least). */
  #sinceCheckpoint = 0;
  /** Where the last batch went (for tests and debugging). */
  lastRoute: "inline" | "worker" = "inline";

  /**
   * `maxInlineBytes`: measured on 16 shards at 500 and 2000 events/s and in floods (64 KB–600 KB).
   * `meter`: whether the calling thread has no time to spare (default: the thread's CPU time).
   * `checkpointBytes`: written here between checkpoints (16 MB: a thousand 16 KB pages).
   */
  constructor(
    inline: InlineWriter,
    worker: WorkerWriter,
    maxInlineBytes = 512 * 1024,
    meter: { saturated(): boolean } = new SaturationMeter(),
    checkpointBytes = 16 * 1024 * 1024,
  ) {
    this.#inline = inline;
    this.#worker = worker;
    this.#maxInlineBytes = maxInlineBytes;
    this.#meter = meter;
    this.#checkpointBytes = checkpointBytes;
  }

  write(batch: BatchData): void {
    const size = batch.ends.length > 0 ? batch.ends[batch.ends.length - 1] : 0;
    const inline = this.#inline.pending > 0 ||
      (this.#worker.pending === 0 && (size <= this.#maxInlineBytes || !this.#meter.saturated()));
    this.lastRoute = inline ? "inline" : "worker";
    if (!inline) {
      this.#worker.write(batch);
      return;
    }
    this.#inline.write(batch);
    this.#sinceCheckpoint += size + PAGE_BYTES;
    if (this.#sinceCheckpoint >= this.#checkpointBytes) {
      this.#sinceCheckpoint = 0;
      if (!this.#worker.checkpoint()) this.#inline.checkpoint();
    }
  }

  retryNow(): void {
    this.#inline.retryNow();
    this.#worker.retryNow();
  }

  async drain(timeoutMs: number): Promise<boolean> {
    const [a, b] = await Promise.all([this.#inline.drain(timeoutMs), this.#worker.drain(timeoutMs)]);
    return a && b;
  }

  async close(): Promise<void> {
    await Promise.all([this.#inline.close(), this.#worker.close()]);
  }
}
