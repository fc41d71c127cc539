/**
 * What the cluster-mode sink tests share: a Redis (the shared one on 127.0.0.1, or a Redis Cluster of a
 * test's own), one random prefix, the session store, sinks of named nodes, lease keys set by hand (as
 * the lease store would), and readers of the streams and the shared session.
 */
import { Cluster, Redis } from "ioredis";
import { clusterKeys } from "../../src/cluster/keys.ts";
import { RedisSessionStore } from "../../src/cluster/redis_sessions.ts";
import type { StoredEvent } from "../../src/journal/store.ts";
import { RedisSink, type StreamLayout } from "../../src/sinks/redis.ts";
import type { Logger } from "../../src/util/log.ts";

export const REDIS_URL = Deno.env.get("GATEHOUSE_TEST_REDIS") ?? "redis://127.0.0.1:6379";
export const COUNT = 4;
const TYPES = ["MESSAGE_CREATE", "TYPING_START", "GATEHOUSE_TEST"];
const enc = (s: string) => new TextEncoder().encode(s);

/** Event `id` of a node's journal: seq `seq` of session `session` of `shard` (seq null: gatehouse's own). */
export function row(id: number, shard: number, session: string | null, seq: number | null): StoredEvent {
  const t = seq === null ? TYPES[2] : TYPES[seq % 2];
  return { id, shard, session, seq, t, receivedAt: 0, payload: enc(`{"t":"${t}","s":${seq},"op":0,"d":{}}`) };
}

export interface Env {
  client: Redis | Cluster;
  prefix: string;
  sessions: RedisSessionStore;
  sink(node: string, layout?: StreamLayout): RedisSink;
  lease(shard: number, node: string): Promise<void>;
  saveSession(shard: number, sessionId: string, seq?: number): Promise<void>;
  /** Seqs of `session` in the streams, sorted. */
  seqs(session: string): Promise<number[]>;
  /** The shared seq of `shard`'s session. */
  seq(shard: number): Promise<number | undefined>;
  entries(): Promise<number>;
  /** What the sinks warned about, as `node: {props as JSON}`. */
  warnings: string[];
}

/** `url`: the Redis the sinks use; `cluster`: it is a Redis Cluster on these ports. */
export async function withEnv(
  fn: (env: Env) => Promise<void>,
  url = REDIS_URL,
  clusterPorts: number[] | null = null,
): Promise<void> {
  const client = clusterPorts === null
    ? new Redis(url)
    : new Cluster(clusterPorts.map((port) => ({ host: "127.0.0.1", port })));
  const prefix = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
  const keys = clusterKeys(prefix);
  const sessions = new RedisSessionStore({ client, prefix });
  const sinks: RedisSink[] = [];
  const streams = [...TYPES.map((t) => `${prefix}:${t}`), `${prefix}:events`];
  const warnings: string[] = [];
  const env: Env = {
    warnings,
    client,
    prefix,
    sessions,
    sink: (node, layout = "per-event") => {
      const sink = new RedisSink({
        url,
        prefix,
        layout,
        cluster: { node, prefix, shardCount: COUNT, now: () => 5000 },
        logger: {
          debug: () => {},
          info: () => {},
          warn: (_: string, props: Record<string, unknown>) =>
            warnings.push(`${node}: ${JSON.stringify(props)}`),
        } as unknown as Logger,
      });
      sinks.push(sink);
      return sink;
    },
    lease: async (shard, node) => void await client.set(keys.lease(COUNT, shard), node),
    saveSession: (shard, sessionId, seq = 0) =>
      sessions.save({
        shardCount: COUNT,
        shard,
        sessionId,
        seq,
        resumeUrl: "wss://resume.example",
        updatedAt: 1,
      }),
    seqs: async (session) => {
      const out: number[] = [];
      for (const stream of streams) {
        for (const [, fields] of await client.xrange(stream, "-", "+")) {
          const line = JSON.parse(fields[1]);
          if (line.uid.split(":")[1] === session) out.push(line.s);
        }
      }
      return out.sort((a, b) => a - b);
    },
    seq: async (shard) => (await sessions.load()).find((s) => s.shard === shard)?.seq,
    entries: async () => {
      let n = 0;
      for (const stream of streams) n += await client.xlen(stream);
      return n;
    },
  };
  try {
    await fn(env);
  } finally {
    for (const sink of sinks) await sink.close();
    // Every key the tests make, one by one (on a Cluster they lie in different slots).
    const made = [
      ...streams.flatMap((s) => [s, ...RedisSink.markKeys(s)]),
      keys.sessions,
      ...Array.from({ length: COUNT }, (_, shard) => [keys.lease(COUNT, shard), keys.session(COUNT, shard)])
        .flat(),
    ];
    for (const key of made) await client.del(key);
    await client.quit();
  }
}
