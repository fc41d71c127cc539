/**
 * `gatehouse inspect`: what is in the store. Read-only (works while `gatehouse run` writes it, thanks to
 * WAL); needs no token; shows no secret: session ids are shortened, the token is never stored.
 */
import type { GatehouseConfig } from "../config/load.ts";
import { Store, StoreError } from "../journal/store.ts";
import { ExitError } from "./errors.ts";
import { age, bytes, count, isoTime, print, table } from "./output.ts";

/** Discord keeps a session resumable for "a few minutes" after its connection ends; we count on 3. */
export const RESUMABLE_FOR_MS = 3 * 60_000;

export interface InspectReport {
  store: { path: string; fileBytes: number; usedBytes: number; schemaVersion: number };
  events: {
    count: number;
    firstId: number | null;
    lastId: number | null;
    firstAt: string | null;
    lastAt: string | null;
    perType: Array<{ t: string; count: number }>;
    prunedUndelivered: number;
  };
  /** The gatehouse run writing the store now, if any. */
  writer: { pid: number; host: string; seenSecondsAgo: number } | null;
  sessions: Array<
    {
      shard: number;
      shardCount: number;
      session: string;
      seq: number;
      ageSeconds: number;
      resumable: boolean;
    }
  >;
  cursors: Array<{ sink: string; lastId: number; lag: number; ageSeconds: number }>;
}

/** A session id cut to its first 8 characters: enough to tell sessions apart, useless to resume one. */
export function shortSession(id: string): string {
  return id.length > 8 ? `${id.slice(0, 8)}…` : id;
}

export function inspectStore(path: string, now = Date.now()): InspectReport {
  let store: Store;
  try {
    store = Store.open(path, { readOnly: true });
  } catch (error) {
    if (error instanceof StoreError) throw new ExitError(6, error.message);
    throw error;
  }
  try {
    const fileBytes = [path, `${path}-wal`].reduce((n, f) => {
      try {
        return n + Deno.statSync(f).size;
      } catch {
        return n;
      }
    }, 0);
    const { events, perType } = store.events.counts();
    const firstId = events > 0 ? store.events.minId() : null;
    const lastId = events > 0 ? store.events.maxId() : null;
    const owner = store.writerRunning() ? store.meta("owner") : undefined;
    const o = owner ? JSON.parse(owner) as { pid: number; host: string; heartbeat: number } : null;
    const head = store.lastId;
    return {
      store: { path, fileBytes, usedBytes: store.usedBytes(), schemaVersion: store.schemaVersion() },
      events: {
        count: events,
        firstId,
        lastId,
        firstAt: firstId === null ? null : new Date(store.events.time(firstId)!).toISOString(),
        lastAt: lastId === null ? null : new Date(store.events.time(lastId)!).toISOString(),
        perType,
        prunedUndelivered: Number(store.meta("pruned_undelivered") ?? 0),
      },
      writer: o ? { pid: o.pid, host: o.host, seenSecondsAgo: Math.round((now - o.heartbeat) / 1000) } : null,
      sessions: store.sessions.load().map((s) => ({
        shard: s.shard,
        shardCount: s.shardCount,
        session: shortSession(s.sessionId),
        seq: s.seq,
        ageSeconds: Math.round((now - s.updatedAt) / 1000),
        // A session whose writer is running is live; otherwise Discord drops it after a few minutes.
        resumable: now - s.updatedAt < RESUMABLE_FOR_MS || (o !== null && now - o.heartbeat < 15_000),
      })),
      cursors: store.cursors().map((c) => ({
        sink: c.sink,
        lastId: c.lastId,
        lag: Math.max(0, head - c.lastId),
        ageSeconds: Math.round((now - c.updatedAt) / 1000),
      })),
    };
  } finally {
    store.close();
  }
}

export function inspect(config: GatehouseConfig, options: { json?: boolean }): number {
  const report = inspectStore(config.store.path);
  if (options.json) {
    print(JSON.stringify(report, null, 2));
    return 0;
  }
  const e = report.events;
  const lines = [
    `store      ${report.store.path} (${bytes(report.store.fileBytes)} on disk, ${
      bytes(report.store.usedBytes)
    } used)`,
    `schema     version ${report.store.schemaVersion}`,
    `writer     ${
      report.writer
        ? `gatehouse pid ${report.writer.pid} on ${report.writer.host}, seen ${
          age(report.writer.seenSecondsAgo * 1000)
        } ago`
        : "none (no gatehouse run is using this store)"
    }`,
    e.count === 0
      ? "events     none"
      : `events     ${count(e.count)}, ids ${e.firstId}–${e.lastId}, ${isoTime(Date.parse(e.firstAt!))} → ${
        isoTime(Date.parse(e.lastAt!))
      }`,
  ];
  if (e.prunedUndelivered > 0) {
    lines.push(`pruned     ${count(e.prunedUndelivered)} undelivered event(s) at the hard size limit`);
  }
  if (e.perType.length > 0) {
    lines.push("", "events by type", table(["type", "events"], e.perType.map((r) => [r.t, r.count]), "  "));
  }
  lines.push("", "sessions");
  lines.push(
    report.sessions.length === 0 ? "  none stored (shards will IDENTIFY)" : table(
      ["shard", "session", "seq", "age", "resumable"],
      report.sessions.map((
        s,
      ) => [s.shard, s.session, s.seq, age(s.ageSeconds * 1000), s.resumable ? "yes" : "no (expired)"]),
      "  ",
    ),
  );
  lines.push("", "sinks");
  lines.push(
    report.cursors.length === 0 ? "  none yet" : table(
      ["sink", "delivered through", "lag (events)", "updated"],
      report.cursors.map((c) => [c.sink, c.lastId, c.lag, `${age(c.ageSeconds * 1000)} ago`]),
      "  ",
    ),
  );
  print(lines.join("\n"));
  return 0;
}
