/** Configuration keys of the store: where it is, whether it keeps events, pruning, group commit. */
import { defineKey } from "./key.ts";
import * as p from "./parsers.ts";

export const storePath = defineKey({
  path: "store.path",
  env: ["GATEHOUSE_STORE"],
  flag: { option: "store", arg: "path", help: "SQLite store: sessions, event journal, cursors" },
  default: "gatehouse.db",
  parser: p.nonEmpty("a non-empty file path"),
  set: (c, v) => (c.store.path = v),
  get: (c) => c.store.path,
  docs: {
    notes: "the SQLite store (created 0600): sessions, the event journal, sink cursors, identifies. One " +
      "`run` per store",
    comment: "SQLite store (created 0600): sessions (so restarts RESUME), the event journal, sink cursors. " +
      "One run per store.",
  },
});

export const journal = defineKey({
  path: "store.journal",
  env: ["GATEHOUSE_JOURNAL"],
  flag: { option: "journal", arg: "bool", help: "keep events in the store until delivered: true or false" },
  default: true,
  parser: p.bool,
  set: (c, v) => (c.store.journal = v),
  get: (c) => c.store.journal,
  docs: {
    notes: "`false` keeps no events, only sessions, cursors and ids, written once a second: faster, and " +
      "after a crash Discord sends up to a second of events again (new ids)",
    comment: "Keep every event in the journal until delivered (true), or only sessions, cursors and ids, " +
      "stored once a second (false: faster; after a crash Discord sends up to a second of events again, new ids).",
  },
});

export const maxAge = defineKey({
  path: "store.max_age",
  env: ["GATEHOUSE_STORE_MAX_AGE"],
  default: 7 * 86_400_000,
  parser: p.duration,
  set: (c, v) => (c.store.maxAgeMs = v),
  get: (c) => c.store.maxAgeMs,
  docs: {
    toml: '"7d"',
    notes: "delivered events older than this are pruned (`0` = keep); units s, m, h, d, w",
    comment: 'Delivered events older than this are pruned ("0" = keep). Units: ms, s, m, h, d, w.',
  },
});

export const maxSize = defineKey({
  path: "store.max_size",
  env: ["GATEHOUSE_STORE_MAX_SIZE"],
  default: 1e9,
  parser: p.size,
  set: (c, v) => (c.store.maxSizeBytes = v),
  get: (c) => c.store.maxSizeBytes,
  docs: {
    toml: '"1GB"',
    notes:
      "delivered events are pruned, oldest first, while the store is larger (`0` = no limit); units B, " +
      "KB, MB, GB, TB, KiB…TiB",
    comment: 'Delivered events are pruned, oldest first, while the store uses more than this ("0" = no ' +
      "limit). Units: B, KB, MB, GB, TB, KiB, MiB, GiB, TiB.",
  },
});

export const hardMaxSize = defineKey({
  path: "store.hard_max_size",
  env: ["GATEHOUSE_STORE_HARD_MAX_SIZE"],
  default: 0,
  parser: p.size,
  set: (c, v) => (c.store.hardMaxSizeBytes = v),
  get: (c) => c.store.hardMaxSizeBytes,
  docs: {
    default: "`0` (none)",
    toml: '"0"',
    notes: "the store never grows past it: writes wait and, if pruning delivered events is not enough, the " +
      "oldest undelivered ones are pruned — logged and counted (`inspect` shows it)",
    comment:
      "Hard cap: the store never grows past it. When it is reached, writes wait (shards stop reading) " +
      "and, if pruning delivered events is not enough, the oldest undelivered events are pruned — logged " +
      'and counted. "0" = no hard cap (the default: undelivered events are never pruned).',
  },
});

export const commitInterval = defineKey({
  path: "store.commit_interval_ms",
  env: ["GATEHOUSE_COMMIT_INTERVAL_MS"],
  default: 50,
  parser: p.integer(0, 1000, "an integer from 0 to 1000 (milliseconds)"),
  set: (c, v) => (c.store.commitIntervalMs = v),
  get: (c) => c.store.commitIntervalMs,
  docs: {
    notes: "group commit's upper bound (0–1000): an event into an idle journal is committed on the next " +
      "turn; while a write is in flight what arrives gathers and goes right after it; a write on this thread " +
      "is followed by a rest of 49× its time, at most this long; a sink's cursor alone waits at most this long",
    comment: "Group commit's upper bound, in milliseconds (0 to 1000). An event into an idle journal is " +
      "committed on the next turn of the event loop; while a write is in flight, what arrives gathers and is " +
      "committed right after it. After a write on the main thread the journal rests 49 times as long as the " +
      "write took, at most this long, so small transactions take about 1/50 of the thread; a sink's cursor " +
      "with no events to ride with is committed at most this long after it. A larger value spends less CPU " +
      "at high event rates; a smaller one delivers sooner under steady load.",
  },
});

/** In the order of the README's table (and of error messages). */
export const STORE_KEYS = [storePath, journal, maxAge, maxSize, hardMaxSize, commitInterval] as const;
