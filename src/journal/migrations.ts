/**
 * The store's schema, as the migrations that build it. A store records in `PRAGMA user_version` how many
 * it has applied; opening it for writing applies the rest, each in its own transaction. Readers of an
 * older store read it as it is (every query works on every version).
 */
import type { DatabaseSync } from "node:sqlite";

/** Schema migrations, in order; `PRAGMA user_version` is the number applied. */
export const MIGRATIONS: string[] = [
  `CREATE TABLE events (
     id INTEGER PRIMARY KEY,
     shard INTEGER NOT NULL,
     session TEXT,
     seq INTEGER,
     t TEXT NOT NULL,
     received_at INTEGER NOT NULL,
     payload BLOB NOT NULL
   );
   CREATE TABLE sessions (
     shard INTEGER PRIMARY KEY,
     shard_count INTEGER NOT NULL,
     session_id TEXT NOT NULL,
     seq INTEGER NOT NULL,
     resume_url TEXT NOT NULL,
     updated_at INTEGER NOT NULL
   );
   CREATE TABLE cursors (
     sink TEXT PRIMARY KEY,
     last_id INTEGER NOT NULL,
     updated_at INTEGER NOT NULL
   );
   CREATE TABLE identifies (
     at INTEGER NOT NULL,
     shard INTEGER NOT NULL
   );
   CREATE INDEX identifies_at ON identifies (at);
   CREATE TABLE meta (
     key TEXT PRIMARY KEY,
     value TEXT NOT NULL
   );`,
  // 2: sessions keyed by (shard_count, shard), so the sessions of two shard counts can be stored side
  // by side (resharding runs both at once).
  `CREATE TABLE sessions_by_count (
     shard_count INTEGER NOT NULL,
     shard INTEGER NOT NULL,
     session_id TEXT NOT NULL,
     seq INTEGER NOT NULL,
     resume_url TEXT NOT NULL,
     updated_at INTEGER NOT NULL,
     PRIMARY KEY (shard_count, shard)
   );
   INSERT INTO sessions_by_count (shard_count, shard, session_id, seq, resume_url, updated_at)
     SELECT shard_count, shard, session_id, seq, resume_url, updated_at FROM sessions;
   DROP TABLE sessions;
   ALTER TABLE sessions_by_count RENAME TO sessions;`,
  // 3: proxy mode's client sessions (journal/proxy_sessions.ts), so bots resume across a restart.
  `CREATE TABLE proxy_sessions (
     session_id TEXT PRIMARY KEY,
     shard_count INTEGER NOT NULL,
     shard INTEGER NOT NULL,
     state TEXT NOT NULL,
     updated_at INTEGER NOT NULL
   );`,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Applies the migrations after `version`, each with its version number, all or nothing. */
export function migrate(db: DatabaseSync, version: number): void {
  for (let v = version; v < SCHEMA_VERSION; v++) {
    db.exec("BEGIN IMMEDIATE");
    try {
      db.exec(MIGRATIONS[v]);
      db.exec(`PRAGMA user_version = ${v + 1}`);
      db.exec("COMMIT");
    } catch (error) {
      db.exec("ROLLBACK");
      throw error;
    }
  }
}
