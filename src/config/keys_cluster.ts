/** Configuration keys of cluster mode: several processes of one bot sharing its shards through Redis. */
import { defineKey } from "./key.ts";
import * as p from "./parsers.ts";

export type ClusterMode = "off" | "redis";

export const clusterMode = defineKey({
  path: "cluster.mode",
  env: ["GATEHOUSE_CLUSTER"],
  default: "off" as ClusterMode,
  parser: p.oneOf(["off", "redis"], '"off" or "redis"', true),
  set: (c, v) => (c.cluster.mode = v),
  get: (c) => c.cluster.mode,
  docs: {
    toml: '"off"',
    notes: "`redis`: every process of the bot pointed at the same `[redis] url` and `prefix` shares the " +
      "shard count through leases in Redis (see [Running a cluster](#running-a-cluster)); `off`: this " +
      "process runs the shards of its plan",
    comment: '"redis": every process of the bot pointed at the same [redis] url and prefix shares the ' +
      "shards through leases in Redis, with one identify queue and the sessions in Redis; nobody lists " +
      'shard ids. "off": this process runs the shards of its plan.',
  },
});

export const clusterLease = defineKey({
  path: "cluster.lease_ms",
  env: ["GATEHOUSE_CLUSTER_LEASE_MS"],
  default: 15_000,
  parser: p.integer(1_000, 600_000, "an integer from 1000 to 600000 (milliseconds)"),
  set: (c, v) => (c.cluster.leaseMs = v),
  get: (c) => c.cluster.leaseMs,
  docs: {
    notes: "how long a shard's lease lasts without renewal: a dead process's shards move after at most " +
      "this; renewed every third of it; 1000–600000",
    comment: "How long a shard's lease lasts without renewal (ms, 1000 to 600000): the shards of a process " +
      "that died move to the others after at most this. Leases are renewed every third of it; a process " +
      "that could not renew stops its shards a third of a lease before anyone else may take them.",
  },
});

export const clusterNode = defineKey({
  path: "cluster.node",
  env: ["GATEHOUSE_CLUSTER_NODE"],
  default: null as string | null,
  parser: p.matching(/^[\w.:@-]{1,100}$/, "a node name of 1 to 100 letters, digits, _ . : @ -"),
  set: (c, v) => (c.cluster.node = v),
  get: (c) => c.cluster.node,
  docs: {
    default: "host name + pid",
    example: '"worker-1"',
    notes: "this process's name in the cluster (leases, `gatehouse shards`, metrics); unique per process",
    comment: "This process's name in the cluster: leases, gatehouse shards and metrics show it. It must be " +
      "unique per process; by default the host name and the pid.",
  },
});

export const CLUSTER_KEYS = [clusterMode, clusterLease, clusterNode] as const;
