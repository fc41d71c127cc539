/**
 * The client sessions of proxy mode (src/proxy/), stored so a bot that reconnects after a restart of
 * gatehouse still RESUMEs. A row holds what maps the client's sequence numbers back to journal ids (its
 * state, JSON written by the proxy); rows are written with the journal's batches, in its transaction.
 */
import type { StatementSync } from "node:sqlite";

export interface StoredProxySession {
  sessionId: string;
  shardCount: number;
  shard: number;
  /** The proxy's own JSON (src/proxy/sessions.ts). */
  state: string;
  updatedAt: number;
}

/** The few things of a store's SQLite connection the table needs. */
export interface ProxySessionDb {
  statement(sql: string): StatementSync;
  schemaVersion(): number;
}

/** Since schema version 3. */
const SINCE_VERSION = 3;

export class ProxySessionTable {
  readonly #db: ProxySessionDb;

  constructor(db: ProxySessionDb) {
    this.#db = db;
  }

  /** Every stored client session (none in a store older than the table). */
  load(): StoredProxySession[] {
    if (this.#db.schemaVersion() < SINCE_VERSION) return [];
    const rows = this.#db.statement(
      "SELECT session_id, shard_count, shard, state, updated_at FROM proxy_sessions ORDER BY updated_at",
    ).all() as unknown as Array<
      { session_id: string; shard_count: number; shard: number; state: string; updated_at: number }
    >;
    return rows.map((r) => ({
      sessionId: r.session_id,
      shardCount: Number(r.shard_count),
      shard: Number(r.shard),
      state: r.state,
      updatedAt: Number(r.updated_at),
    }));
  }

  save(session: StoredProxySession): void {
    this.#db.statement(
      "INSERT INTO proxy_sessions (session_id, shard_count, shard, state, updated_at) VALUES (?, ?, ?, ?, ?) " +
        "ON CONFLICT (session_id) DO UPDATE SET shard_count = excluded.shard_count, shard = excluded.shard, " +
        "state = excluded.state, updated_at = excluded.updated_at",
    ).run(session.sessionId, session.shardCount, session.shard, session.state, session.updatedAt);
  }

  delete(sessionId: string): void {
    this.#db.statement("DELETE FROM proxy_sessions WHERE session_id = ?").run(sessionId);
  }
}
