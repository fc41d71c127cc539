/**
 * The session store seam: where the sessions that let shards RESUME after a restart are kept. A
 * session is keyed by its shard count and shard id, so the sessions of two shard counts live side by
 * side (resharding runs both at once). The shard never knows where sessions live: the journal writes
 * them (in SQLite, in the same transaction as the events they cover) and start-up reads them.
 *
 * Every implementation passes the same contract suite (tests/journal/session_store_contract.ts). The
 * methods may answer with a promise, for stores across the network; the SQLite and memory ones answer
 * at once.
 */
import type { StatementSync } from "node:sqlite";

export interface StoredSession {
  shardCount: number;
  shard: number;
  sessionId: string;
  seq: number;
  resumeUrl: string;
  updatedAt: number;
}

export interface SessionStore {
  /** Every stored session, by shard count, then shard. */
  load(): StoredSession[] | Promise<StoredSession[]>;
  /** Stores the session of (shardCount, shard), replacing the one stored there. */
  save(session: StoredSession): void | Promise<void>;
  /** The seq of session `sessionId` of (shardCount, shard) moves to `seq`, if that is forward. */
  advance(
    shardCount: number,
    shard: number,
    sessionId: string,
    seq: number,
    at: number,
  ): void | Promise<void>;
  /** Forgets the session of (shardCount, shard) (invalidated, or replaced by a new layout). */
  delete(shardCount: number, shard: number): void | Promise<void>;
}

/** The few things of a store's SQLite connection the session table needs. */
export interface SessionDb {
  statement(sql: string): StatementSync;
  meta(key: string): string | undefined;
}

/**
 * Sessions in the store's `sessions` table. Writes happen inside the caller's transaction (the
 * journal's batch). A session's seq is the larger of its row's and that of its newest stored event:
 * the journal writes session rows only at checkpoints (meta `seq_checkpoint`, the last event id they
 * cover) unless an event was filtered out, since a stored event carries its session and seq and
 * commits in the same transaction. Only events after the checkpoint are looked at.
 */
export class SqliteSessionStore implements SessionStore {
  readonly #db: SessionDb;

  constructor(db: SessionDb) {
    this.#db = db;
  }

  load(): StoredSession[] {
    const rows = this.#db.statement(
      "SELECT shard_count, shard, session_id, seq, resume_url, updated_at FROM sessions ORDER BY shard_count, shard",
    ).all() as Array<Record<string, number | string>>;
    const sessions = rows.map((r) => ({
      shardCount: Number(r.shard_count),
      shard: Number(r.shard),
      sessionId: String(r.session_id),
      seq: Number(r.seq),
      resumeUrl: String(r.resume_url),
      updatedAt: Number(r.updated_at),
    }));
    if (sessions.length === 0) return sessions;
    const checkpoint = Number(this.#db.meta("seq_checkpoint") ?? 0);
    const newest = this.#db.statement(
      "SELECT session, max(seq) AS seq FROM events WHERE id > ? AND session IS NOT NULL GROUP BY session",
    ).all(checkpoint) as Array<{ session: string; seq: number | null }>;
    const bySession = new Map(newest.map((r) => [r.session, Number(r.seq ?? 0)]));
    // Seqs noted since the checkpoint without an event row (filtered out, or events not kept).
    let noted: Record<string, [string, number]> = {};
    try {
      noted = JSON.parse(this.#db.meta("seqs") ?? "{}");
    } catch {
      // an unreadable note: the rows and events still give a seq (maybe older: Discord replays more)
    }
    for (const [id, seq] of Object.values(noted)) {
      if ((bySession.get(id) ?? 0) < seq) bySession.set(id, seq);
    }
    for (const session of sessions) {
      const seq = bySession.get(session.sessionId);
      if (seq !== undefined && seq > session.seq) session.seq = seq;
    }
    return sessions;
  }

  save(s: StoredSession): void {
    this.#db.statement(
      `INSERT INTO sessions (shard_count, shard, session_id, seq, resume_url, updated_at) VALUES (?, ?, ?, ?, ?, ?)
       ON CONFLICT (shard_count, shard) DO UPDATE SET session_id = excluded.session_id, seq = excluded.seq,
       resume_url = excluded.resume_url, updated_at = excluded.updated_at`,
    ).run(s.shardCount, s.shard, s.sessionId, s.seq, s.resumeUrl, s.updatedAt);
  }

  advance(shardCount: number, shard: number, sessionId: string, seq: number, at: number): void {
    this.#db.statement(
      "UPDATE sessions SET seq = ?, updated_at = ? WHERE shard_count = ? AND shard = ? AND session_id = ? AND seq < ?",
    ).run(seq, at, shardCount, shard, sessionId, seq);
  }

  delete(shardCount: number, shard: number): void {
    this.#db.statement("DELETE FROM sessions WHERE shard_count = ? AND shard = ?").run(shardCount, shard);
  }
}

/** Sessions in memory: for tests, and for a process that keeps nothing across restarts. */
export class MemorySessionStore implements SessionStore {
  readonly #sessions = new Map<string, StoredSession>();

  load(): StoredSession[] {
    return [...this.#sessions.values()]
      .map((s) => ({ ...s }))
      .sort((a, b) => a.shardCount - b.shardCount || a.shard - b.shard);
  }

  save(session: StoredSession): void {
    this.#sessions.set(key(session.shardCount, session.shard), { ...session });
  }

  advance(shardCount: number, shard: number, sessionId: string, seq: number, at: number): void {
    const session = this.#sessions.get(key(shardCount, shard));
    if (session === undefined || session.sessionId !== sessionId || session.seq >= seq) return;
    session.seq = seq;
    session.updatedAt = at;
  }

  delete(shardCount: number, shard: number): void {
    this.#sessions.delete(key(shardCount, shard));
  }
}

function key(shardCount: number, shard: number): string {
  return `${shardCount}/${shard}`;
}
