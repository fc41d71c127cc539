/**
 * The events table: the journal's committed events, read back by sinks that are behind, `replay` and
 * `inspect`, and pruned by retention. Writes happen inside the store's transaction (the journal's
 * batch, or retention's chunk).
 */
import type { StatementSync } from "node:sqlite";

/** The few things of a store's SQLite connection the events table needs. */
export interface EventDb {
  statement(sql: string): StatementSync;
  meta(key: string): string | undefined;
  setMeta(key: string, value: string): void;
}

/** One committed event, as stored. */
export interface StoredEvent {
  id: number;
  shard: number;
  session: string | null;
  seq: number | null;
  t: string;
  receivedAt: number;
  payload: Uint8Array;
}

/** A row of the events table as node:sqlite gives it. */
interface EventRow {
  id: number;
  shard: number;
  session: string | null;
  seq: number | null;
  t: string;
  received_at: number;
  payload: Uint8Array;
}

function storedEvent(r: EventRow): StoredEvent {
  return {
    id: Number(r.id),
    shard: Number(r.shard),
    session: r.session,
    seq: r.seq === null ? null : Number(r.seq),
    t: r.t,
    receivedAt: Number(r.received_at),
    payload: r.payload,
  };
}

export class EventTable {
  readonly #db: EventDb;

  constructor(db: EventDb) {
    this.#db = db;
  }

  insert(
    id: number,
    shard: number,
    session: string | null,
    seq: number | null,
    t: string,
    receivedAt: number,
    payload: Uint8Array,
  ): void {
    this.#db.statement(
      "INSERT INTO events (id, shard, session, seq, t, received_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
      .run(id, shard, session, seq, t, receivedAt, payload);
  }

  /** Events with id > `afterId`, oldest first. */
  read(
    afterId: number,
    limit: number,
    toId = Number.MAX_SAFE_INTEGER,
    maxBytes = Infinity,
  ): StoredEvent[] {
    const rows = this.#db.statement(
      "SELECT id, shard, session, seq, t, received_at, payload FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
    ).all(afterId, toId, limit) as unknown as EventRow[];
    const events: StoredEvent[] = [];
    let bytes = 0;
    for (const r of rows) {
      // At least one row, then no more than `maxBytes` of payloads (a batch's size bound).
      bytes += r.payload.length;
      if (events.length > 0 && bytes > maxBytes) break;
      events.push(storedEvent(r));
    }
    return events;
  }

  /**
   * Events named one of `names` with `afterId` < id <= `throughId`, oldest first, at most `limit` and
   * (after the first) `maxBytes` of payloads. For the transforms' rebuild, which follows a few event
   * names over much of the journal: SQLite still walks every row in the range (there is no index on
   * `t`), but only the matching ones are copied out.
   */
  readNamed(
    afterId: number,
    throughId: number,
    names: readonly string[],
    limit: number,
    maxBytes = Infinity,
  ): StoredEvent[] {
    if (names.length === 0) return [];
    const rows = this.#db.statement(
      "SELECT id, shard, session, seq, t, received_at, payload FROM events WHERE id > ? AND id <= ? AND t IN (" +
        names.map(() => "?").join(", ") + ") ORDER BY id LIMIT ?",
    ).iterate(afterId, throughId, ...names, limit) as unknown as Iterable<EventRow>;
    // Row by row: a few GUILD_CREATEs of large guilds can weigh megabytes each.
    const events: StoredEvent[] = [];
    let bytes = 0;
    for (const r of rows) {
      bytes += r.payload.length;
      if (events.length > 0 && bytes > maxBytes) break;
      events.push(storedEvent(r));
    }
    return events;
  }

  /** When the newest event with an id up to `id` was received, or null when there is none. */
  timeAtOrBefore(id: number): number | null {
    const row = this.#db.statement("SELECT received_at FROM events WHERE id <= ? ORDER BY id DESC LIMIT 1")
      .get(
        id,
      ) as { received_at: number } | undefined;
    return row ? Number(row.received_at) : null;
  }

  /** Current highest id in the events table (a reader's view; a running journal knows its own). */
  maxId(): number {
    return Number(
      (this.#db.statement("SELECT max(id) AS id FROM events").get() as { id: number | null }).id ?? 0,
    );
  }

  minId(): number {
    return Number(
      (this.#db.statement("SELECT min(id) AS id FROM events").get() as { id: number | null }).id ?? 0,
    );
  }

  time(id: number): number | null {
    const row = this.#db.statement("SELECT received_at FROM events WHERE id >= ? ORDER BY id LIMIT 1").get(
      id,
    ) as
      | { received_at: number }
      | undefined;
    return row ? Number(row.received_at) : null;
  }

  /**
   * The first id received at or after `time`. Ids grow with time, so a binary search over ids needs
   * no index on received_at (which would slow every insert).
   */
  firstIdAtOrAfter(time: number): number | null {
    let low = this.minId(), high = this.maxId();
    if (low === 0) return null;
    if ((this.time(high) ?? 0) < time) return null;
    while (low < high) {
      const mid = Math.floor((low + high) / 2);
      const at = this.time(mid);
      if (at === null || at >= time) high = mid;
      else low = mid + 1;
    }
    const row = this.#db.statement("SELECT id FROM events WHERE id >= ? ORDER BY id LIMIT 1").get(low) as {
      id: number;
    } | undefined;
    return row ? Number(row.id) : null;
  }

  /**
   * Up to `limit` events named `t`, walking ids from `from`: downwards (`id <= from`, newest first) or
   * upwards (`from <= id <= to`, oldest first). For `replay --serve`, which needs the READY current where
   * a selection starts. There is no index on `t` (it would slow every insert); SQLite walks the rowid
   * from `from` and stops at the `limit`-th match, so a nearby event is found without reading the rest.
   */
  ofType(
    t: string,
    from: number,
    direction: "down" | "up",
    limit: number,
    to = Number.MAX_SAFE_INTEGER,
  ): StoredEvent[] {
    const rows = (direction === "down"
      ? this.#db.statement(
        "SELECT id, shard, session, seq, t, received_at, payload FROM events WHERE id <= ? AND t = ? ORDER BY id DESC LIMIT ?",
      ).all(from, t, limit)
      : this.#db.statement(
        "SELECT id, shard, session, seq, t, received_at, payload FROM events WHERE id >= ? AND id <= ? AND t = ? ORDER BY id LIMIT ?",
      ).all(from, to, t, limit)) as unknown as EventRow[];
    return rows.map(storedEvent);
  }

  /**
   * Deletes events with id <= `throughId`, at most `limit` of them (inside the caller's transaction).
   * Returns how many.
   */
  deleteThrough(throughId: number, limit: number): number {
    const first = this.minId();
    if (first === 0 || first > throughId) return 0;
    const bound = Math.min(throughId, first + limit - 1);
    // Events after the seq checkpoint may be all that records their session's seq: fold those seqs
    // into the session rows first (same transaction), then move the checkpoint past them.
    const checkpoint = Number(this.#db.meta("seq_checkpoint") ?? 0);
    if (bound > checkpoint) {
      const newest = this.#db.statement(
        "SELECT session, max(seq) AS seq FROM events WHERE id > ? AND id <= ? AND session IS NOT NULL GROUP BY session",
      ).all(checkpoint, bound) as Array<{ session: string; seq: number | null }>;
      for (const { session, seq } of newest) {
        if (seq === null) continue;
        this.#db.statement("UPDATE sessions SET seq = ? WHERE session_id = ? AND seq < ?").run(
          seq,
          session,
          seq,
        );
      }
      this.#db.setMeta("seq_checkpoint", String(bound));
    }
    const result = this.#db.statement("DELETE FROM events WHERE id <= ?").run(bound);
    return Number(result.changes);
  }

  /** Summary for `gatehouse inspect`. */
  counts(): { events: number; perType: Array<{ t: string; count: number }> } {
    const perType =
      (this.#db.statement("SELECT t, count(*) AS n FROM events GROUP BY t ORDER BY n DESC, t").all() as Array<
        { t: string; n: number }
      >).map((r) => ({ t: r.t, count: Number(r.n) }));
    return { events: perType.reduce((n, r) => n + r.count, 0), perType };
  }
}
