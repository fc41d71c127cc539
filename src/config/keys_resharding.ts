/** Configuration keys of resharding: a new shard set beside the old one, taking over with nothing lost. */
import { defineKey } from "./key.ts";
import * as p from "./parsers.ts";

export const reshardThreshold = defineKey({
  path: "resharding.threshold",
  env: ["GATEHOUSE_RESHARD_THRESHOLD"],
  default: 0.8,
  parser: p.fraction("a number above 0 and at most 1 (0.8 = 80 %)"),
  set: (c, v) => (c.resharding.threshold = v),
  get: (c) => c.resharding.threshold,
  docs: {
    notes: "the periodic check reshards once guilds / (shards × 2500) reaches this; above 0, at most 1",
    comment: "The periodic check reshards once the guilds fill this much of what the shards can hold " +
      "(guilds / (shard count × 2500); Discord refuses a shard past 2500 guilds). Above 0, at most 1.",
  },
});

export const reshardInterval = defineKey({
  path: "resharding.interval",
  env: ["GATEHOUSE_RESHARD_INTERVAL"],
  default: 8 * 3_600_000,
  parser: p.duration,
  set: (c, v) => (c.resharding.intervalMs = v),
  get: (c) => c.resharding.intervalMs,
  docs: {
    toml: '"8h"',
    notes: "how often GET /gateway/bot is asked whether to reshard (`0` = never on its own; a request " +
      "and a close with 4011 still reshard)",
    comment:
      'How often GET /gateway/bot is asked whether to reshard ("0": never on its own; POST /reshard, ' +
      "gatehouse shards --reshard and a close with 4011 still do). Units: s, m, h, d.",
  },
});

export const reshardTimeout = defineKey({
  path: "resharding.timeout",
  env: ["GATEHOUSE_RESHARD_TIMEOUT"],
  default: 0,
  parser: p.duration,
  set: (c, v) => (c.resharding.timeoutMs = v),
  get: (c) => c.resharding.timeoutMs,
  docs: {
    toml: '"0"',
    default: "from the identify rounds",
    notes: "a new set not READY and loaded within this is given up (the old set keeps delivering); `0` = " +
      "2 min plus twice the identify rounds the new set needs (5 s each)",
    comment: "A new shard set that is not READY, with every guild of its READYs received, within this is " +
      'given up and the old set keeps delivering. "0": 2 minutes plus twice the time its identify rounds ' +
      "take (5 s per max_concurrency shards).",
  },
});

export const reshardMaxHeld = defineKey({
  path: "resharding.max_held",
  env: ["GATEHOUSE_RESHARD_MAX_HELD"],
  default: 512 * 1024 * 1024,
  parser: p.size,
  set: (c, v) => (c.resharding.maxHeldBytes = v),
  get: (c) => c.resharding.maxHeldBytes,
  docs: {
    toml: '"512MiB"',
    notes: "the new set's events held in memory until the switch; past this the reshard is given up",
    comment: "The new set's events are held in memory until it takes over; a reshard that would hold more " +
      "is given up (the old set keeps delivering, nothing is lost).",
  },
});

export const RESHARDING_KEYS = [reshardThreshold, reshardInterval, reshardTimeout, reshardMaxHeld] as const;
