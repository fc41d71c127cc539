/**
 * The SQLite store (Deno's built-in `node:sqlite`, WAL): the event journal, the sessions that let shards
 * RESUME after a restart, the sinks' cursors, and the identifies counted against the daily budget.
 *
 * The file is created 0600: it holds session ids, with which (and the token) anyone could resume the
 * bot's sessions. One `gatehouse run` writes a store at a time (an OS lock on `<path>.lock`); any
 * number of readers (`inspect`, `replay`) may open it while it runs.
 */
import { ProxySessionTable } from "./proxy_sessions.ts";
import { DatabaseSync, type StatementSync } from "node:sqlite";
import { EventTable } from "./events.ts";
import { migrate, SCHEMA_VERSION } from "./migrations.ts";
import { SqliteSessionStore } from "./sessions.ts";
import { classify, StoreError } from "./store_errors.ts";
import { createPrivate, refuseSymlink, safeHostname } from "./store_files.ts";

export type { StoredEvent } from "./events.ts";
export { SCHEMA_VERSION } from "./migrations.ts";
export type { SessionStore, StoredSession } from "./sessions.ts";
export type { StoredProxySession } from "./proxy_sessions.ts";
export { StoreError } from "./store_errors.ts";
export { refuseSymlink } from "./store_files.ts";

export interface OpenOptions {
  readOnly?: boolean;
  /** SQLite `max_page_count`: the hard size limit (writes past it fail with "full"). */
  maxPageCount?: number;
  now?: () => number;
}

export class Store {
  readonly path: string;
  readonly readOnly: boolean;
  readonly #db: DatabaseSync;
  readonly #now: () => number;
  #statements = new Map<string, StatementSync>();
  #producer = "unknown";
  #lock: Deno.FsFile | null = null;
  /** The journal's events. */
  readonly events: EventTable = new EventTable(this);
  /** The sessions shards resume from, keyed by (shard count, shard). */
  readonly sessions: SqliteSessionStore = new SqliteSessionStore(this);
  /** Proxy mode's client sessions. */
  readonly proxySessions: ProxySessionTable = new ProxySessionTable(this);

  private constructor(path: string, db: DatabaseSync, readOnly: boolean, now: () => number) {
    this.path = path;
    this.#db = db;
    this.readOnly = readOnly;
    this.#now = now;
  }

  /** Opens (creating if needed, 0600) and migrates the store. Throws StoreError. */
  static open(path: string, options: OpenOptions = {}): Store {
    const readOnly = options.readOnly ?? false;
    const now = options.now ?? Date.now;
    if (readOnly) {
      try {
        Deno.statSync(path);
      } catch {
        throw new StoreError("missing", `no store at ${path} (gatehouse run creates it)`);
      }
    } else {
      createPrivate(path);
    }
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path, { readOnly, timeout: 2000 });
    } catch (error) {
      throw classify(error, path, "opening it");
    }
    const store = new Store(path, db, readOnly, now);
    try {
      store.#setup(options);
    } catch (error) {
      try {
        db.close();
      } catch {
        // already broken
      }
      throw error instanceof StoreError ? error : classify(error, path, "opening it");
    }
    return store;
  }

  #setup(options: OpenOptions): void {
    const db = this.#db;
    // SQLite's temporary files (statement journals, sorts) in memory: they are small here, and a
    // container with a read-only root has no writable temp directory (the migration's transaction then
    // failed as "cannot rollback - no transaction is active").
    db.exec("PRAGMA temp_store = MEMORY");
    // Reading the header first turns "not a database" into a clear error before anything is written.
    const version = Number(
      (db.prepare("PRAGMA user_version").get() as { user_version: number }).user_version,
    );
    if (version > SCHEMA_VERSION) {
      throw new StoreError(
        "corrupt",
        `store ${this.path} has schema version ${version}, newer than this gatehouse understands (${SCHEMA_VERSION})`,
      );
    }
    if (this.readOnly) {
      if (version === 0) {
        throw new StoreError("corrupt", `store ${this.path} is empty (not a gatehouse store yet)`);
      }
      db.exec("PRAGMA query_only = ON");
    } else {
      if (version === 0) {
        // Large pages suit rows that are mostly a 1 KB payload (measured: 4.1 vs 5.3 µs per insert).
        db.exec("PRAGMA page_size = 16384; PRAGMA auto_vacuum = INCREMENTAL;");
      }
      db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 4000;");
      if (options.maxPageCount) db.exec(`PRAGMA max_page_count = ${Math.floor(options.maxPageCount)}`);
      migrate(db, version);
    }
    let producer = this.meta("producer");
    if (producer === undefined && !this.readOnly) {
      producer = crypto.randomUUID().replaceAll("-", "");
      this.transaction("naming it", () => this.setMeta("producer", producer!));
    }
    this.#producer = producer ?? "unknown";
  }

  /** A prepared statement, prepared once per connection (for the store's tables: sessions.ts, …). */
  statement(sql: string): StatementSync {
    let statement = this.#statements.get(sql);
    if (!statement) {
      statement = this.#db.prepare(sql);
      this.#statements.set(sql, statement);
    }
    return statement;
  }

  /** Runs `fn` in one transaction; any failure rolls back and is classified. */
  transaction<T>(doing: string, fn: () => T): T {
    try {
      this.statement("BEGIN IMMEDIATE").run();
    } catch (error) {
      throw classify(error, this.path, doing);
    }
    try {
      const result = fn();
      this.statement("COMMIT").run();
      return result;
    } catch (error) {
      try {
        this.statement("ROLLBACK").run();
      } catch {
        // nothing to roll back
      }
      throw error instanceof StoreError ? error : classify(error, this.path, doing);
    }
  }

  /**
   * A random name this store got when it was created. Event ids are unique only within one store; the
   * identity of gatehouse's own events (which Discord did not number) is this name plus the id, so two
   * stores — two processes, or a fresh container — never give two events the same identity.
   */
  get producer(): string {
    return this.#producer;
  }

  /**
   * Highest event id ever given out in this store (ids never go back, even after pruning), as the
   * store holds it now: read when a journal or a reader starts. (A running journal knows its own.)
   */
  get lastId(): number {
    return Math.max(Number(this.meta("last_id") ?? 0), this.events.maxId());
  }

  // ---- ownership: one writer at a time ----

  /**
   * Claims the store for this process: an exclusive OS lock on `<path>.lock`, held while the process
   * lives and released by the OS when it dies (even by kill -9), so a restart can take over at once.
   * The owner row (pid, host, heartbeat) says who holds it, for messages and `inspect`.
   */
  claim(pid = Deno.pid, host = safeHostname()): void {
    const lockPath = `${this.path}.lock`;
    refuseSymlink(lockPath, "lock file");
    let lock: Deno.FsFile;
    try {
      lock = Deno.openSync(lockPath, { create: true, write: true, mode: 0o600 });
    } catch (error) {
      throw new StoreError("io", `cannot create the lock file ${lockPath}: ${(error as Error).message}`, {
        cause: error,
      });
    }
    if (!lock.tryLockSync(true)) {
      lock.close();
      const owner = this.meta("owner");
      const o = owner ? JSON.parse(owner) as { pid: number; host: string; heartbeat: number } : null;
      throw new StoreError(
        "locked",
        `store ${this.path} is in use by another gatehouse` +
          (o
            ? ` (pid ${o.pid} on ${o.host}, seen ${Math.round((this.#now() - o.heartbeat) / 1000)} s ago)`
            : "") +
          "; run one gatehouse per store",
      );
    }
    this.#lock = lock;
    this.transaction("claiming it", () => {
      this.setMeta("owner", JSON.stringify({ pid, host, heartbeat: this.#now() }));
    });
  }

  /** Whether a `gatehouse run` holds this store now (its lock is taken). */
  writerRunning(): boolean {
    let lock: Deno.FsFile;
    try {
      lock = Deno.openSync(`${this.path}.lock`, { read: true });
    } catch {
      return false;
    }
    try {
      const free = lock.tryLockSync(false);
      if (free) lock.unlockSync();
      return !free;
    } finally {
      lock.close();
    }
  }

  /** Refreshes the owner heartbeat (inside the caller's transaction). */
  touchOwner(pid = Deno.pid, host = safeHostname()): void {
    this.setMeta("owner", JSON.stringify({ pid, host, heartbeat: this.#now() }));
  }

  release(): void {
    if (this.readOnly || this.#lock === null) return;
    try {
      this.statement("DELETE FROM meta WHERE key = 'owner'").run();
    } catch {
      // best effort on the way out
    }
    try {
      this.#lock.unlockSync();
      this.#lock.close();
    } catch {
      // the process is ending anyway
    }
    this.#lock = null;
  }

  // ---- meta ----

  meta(key: string): string | undefined {
    const row = this.statement("SELECT value FROM meta WHERE key = ?").get(key) as
      | { value: string }
      | undefined;
    return row?.value;
  }

  setMeta(key: string, value: string): void {
    this.statement(
      "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
      .run(key, value);
  }

  /** Events up to this id have their seq in the sessions table (see `SqliteSessionStore.load`). */
  get seqCheckpoint(): number {
    return Number(this.meta("seq_checkpoint") ?? 0);
  }

  // ---- cursors ----

  cursor(sink: string): number | null {
    const row = this.statement("SELECT last_id FROM cursors WHERE sink = ?").get(sink) as
      | { last_id: number }
      | undefined;
    return row ? Number(row.last_id) : null;
  }

  cursors(): Array<{ sink: string; lastId: number; updatedAt: number }> {
    return (this.statement("SELECT sink, last_id, updated_at FROM cursors ORDER BY sink").all() as Array<
      { sink: string; last_id: number; updated_at: number }
    >).map((r) => ({ sink: r.sink, lastId: Number(r.last_id), updatedAt: Number(r.updated_at) }));
  }

  setCursor(sink: string, lastId: number, at: number): void {
    this.statement(
      `INSERT INTO cursors (sink, last_id, updated_at) VALUES (?, ?, ?)
       ON CONFLICT (sink) DO UPDATE SET last_id = excluded.last_id, updated_at = excluded.updated_at`,
    ).run(sink, lastId, at);
  }

  // ---- identifies ----

  recordIdentify(shard: number, at: number): void {
    this.statement("INSERT INTO identifies (at, shard) VALUES (?, ?)").run(at, shard);
    // Keep one day: that is the window of Discord's session_start_limit.
    this.statement("DELETE FROM identifies WHERE at < ?").run(at - 86_400_000);
  }

  /** When each shard last identified. */
  lastIdentifies(): Map<number, number> {
    const rows = this.statement("SELECT shard, max(at) AS at FROM identifies GROUP BY shard").all() as Array<
      { shard: number; at: number }
    >;
    return new Map(rows.map((r) => [Number(r.shard), Number(r.at)]));
  }

  identifiesSince(time: number, shard?: number): number {
    const row = shard === undefined
      ? this.statement("SELECT count(*) AS n FROM identifies WHERE at >= ?").get(time)
      : this.statement("SELECT count(*) AS n FROM identifies WHERE at >= ? AND shard = ?").get(time, shard);
    return Number((row as { n: number }).n);
  }

  // ---- size and retention ----

  /** Bytes used by live pages (the file may be larger until pages are reused or vacuumed). */
  usedBytes(): number {
    const pageSize = Number((this.statement("PRAGMA page_size").get() as { page_size: number }).page_size);
    const pages = Number((this.statement("PRAGMA page_count").get() as { page_count: number }).page_count);
    const free = Number(
      (this.statement("PRAGMA freelist_count").get() as { freelist_count: number }).freelist_count,
    );
    return (pages - free) * pageSize;
  }

  pageSize(): number {
    return Number((this.statement("PRAGMA page_size").get() as { page_size: number }).page_size);
  }

  /** Returns free pages to the file system a little at a time. */
  vacuumSome(pages: number): void {
    this.#db.exec(`PRAGMA incremental_vacuum(${Math.floor(pages)})`);
  }

  schemaVersion(): number {
    return Number((this.statement("PRAGMA user_version").get() as { user_version: number }).user_version);
  }

  /**
   * How many WAL pages a commit on this connection lets grow before it copies them into the database
   * itself (0: never; another connection checkpoints, see `checkpoint`).
   */
  setAutoCheckpoint(pages: number): void {
    this.#db.exec(`PRAGMA wal_autocheckpoint = ${Math.floor(pages)}`);
  }

  /**
   * Copies what the WAL holds into the database without waiting for readers or blocking writers
   * (PASSIVE); returns the WAL's frames and how many of them are now in the database.
   */
  checkpoint(): { frames: number; copied: number } {
    const row = this.#db.prepare("PRAGMA wal_checkpoint(PASSIVE)").get() as {
      log: number;
      checkpointed: number;
    };
    return { frames: Number(row.log), copied: Number(row.checkpointed) };
  }

  setMaxPageCount(pages: number): void {
    this.#db.exec(`PRAGMA max_page_count = ${Math.floor(pages)}`);
  }

  close(): void {
    this.release();
    this.#statements.clear();
    try {
      this.#db.close();
    } catch {
      // already closed
    }
  }
}

/**
 * SQLite's `max_page_count` for a hard size limit: the same for every connection to a store (the main
 * thread's and the writer thread's), from the store's own page size; at least 64 pages.
 */
export function hardCapPages(hardMaxSizeBytes: number, pageSize: number): number | undefined {
  return hardMaxSizeBytes > 0 ? Math.max(64, Math.floor(hardMaxSizeBytes / pageSize)) : undefined;
}
