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
    notes: "group commit: at most one journal transaction per this many ms (0–1000; 0 = one per event-loop " +
      "turn). Only steady traffic waits: an event after a quiet spell is committed at once, later ones at " +
      "most this long. A larger value spends less CPU at high rates",
    comment: "Group commit: at most one journal transaction per this many milliseconds (0 to 1000; 0 = one " +
      "per event-loop turn). Only steady traffic waits: an event after a quiet spell is committed at once, " +
      "and while events keep coming they wait at most this long before they are stored and delivered. Each " +
      "transaction has a fixed cost (measured: 10 ms spent a quarter more CPU than 50 ms at 8 000 " +
      "events/s), so a larger value spends less CPU at high event rates; a smaller one delivers sooner.",
  },
});

/** In the order of the README's table (and of error messages). */
export const STORE_KEYS = [storePath, journal, maxAge, maxSize, hardMaxSize, commitInterval] as const;
