/**
 * The Redis sink in cluster mode against the real Redis on 127.0.0.1: a shard's events are appended
 * only by the holder of its lease, the shared session's seq follows what reached the streams (never
 * past it), and two nodes racing on one shard while its lease moves between them leave every event in
 * the streams exactly once.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { clusterKeys } from "../../src/cluster/keys.ts";
import { RedisSessionStore } from "../../src/cluster/redis_sessions.ts";
import type { StoredEvent } from "../../src/journal/store.ts";
import { RowBatch } from "../../src/sinks/batches.ts";
import { RedisSink, type StreamLayout } from "../../src/sinks/redis.ts";

const REDIS_URL = Deno.env.get("GATEHOUSE_TEST_REDIS") ?? "redis://127.0.0.1:6379";
const enc = (s: string) => new TextEncoder().encode(s);
const COUNT = 4;

/** Event `id` of a node's journal: seq `seq` of session `session` of `shard` (seq null: gatehouse's own). */
function row(id: number, shard: number, session: string | null, seq: number | null): StoredEvent {
  const t = seq === null ? "GATEHOUSE_TEST" : seq % 2 === 0 ? "MESSAGE_CREATE" : "TYPING_START";
  return { id, shard, session, seq, t, receivedAt: 0, payload: enc(`{"t":"${t}","s":${seq},"op":0,"d":{}}`) };
}

interface Env {
  client: Redis;
  prefix: string;
  sessions: RedisSessionStore;
  sink(node: string, layout?: StreamLayout): RedisSink;
  lease(shard: number, node: string): Promise<void>;
  /** Seqs of `session` in the streams, in stream order per stream, all streams together. */
  seqs(session: string): Promise<number[]>;
  seq(shard: number): Promise<number | undefined>;
  entries(): Promise<number>;
}

async function withEnv(fn: (env: Env) => Promise<void>): Promise<void> {
  const client = new Redis(REDIS_URL);
  const prefix = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
  const keys = clusterKeys(prefix);
  const sessions = new RedisSessionStore({ client, prefix });
  const sinks: RedisSink[] = [];
  const streams = async () => {
    const found = [...await client.keys(`${prefix}:*`)];
    return found.filter((k) => !k.startsWith("{"));
  };
  const env: Env = {
    client,
    prefix,
    sessions,
    sink: (node, layout = "per-event") => {
      const sink = new RedisSink({
        url: REDIS_URL,
        prefix,
        layout,
        cluster: { node, prefix, shardCount: COUNT, now: () => 5000 },
      });
      sinks.push(sink);
      return sink;
    },
    lease: async (shard, node) => void await client.set(keys.lease(COUNT, shard), node),
    seqs: async (session) => {
      const out: number[] = [];
      for (const stream of await streams()) {
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
      for (const stream of await streams()) n += await client.xlen(stream);
      return n;
    },
  };
  try {
    await fn(env);
  } finally {
    for (const sink of sinks) await sink.close();
    const left = [...await client.keys(`${prefix}:*`), ...await client.keys(`{${prefix}*`)];
    if (left.length > 0) await client.del(...left);
    await client.quit();
  }
}

const saveSession = (env: Env, shard: number, sessionId: string, seq = 0) =>
  env.sessions.save({ shardCount: COUNT, shard, sessionId, seq, resumeUrl: "wss://resume.example", updatedAt: 1 });

for (const layout of ["per-event", "single"] as const) {
  Deno.test(`redis fence (${layout}): the lease holder's batch is appended and the session seq moves to its highest seq`, async () => {
    await withEnv(async (env) => {
      await env.lease(1, "a");
      await saveSession(env, 1, "s1");
      const sink = env.sink("a", layout);
      await sink.deliver(new RowBatch([1, 2, 3, 4, 5].map((n) => row(n, 1, "s1", n)), "p"));
      assert.deepEqual(await env.seqs("s1"), [1, 2, 3, 4, 5]);
      assert.equal(await env.seq(1), 5);
      assert.equal((await env.sessions.load())[0].updatedAt, 5000, "the sink's clock dates the advance");
      assert.equal(sink.fenced, 0);
    });
  });

  Deno.test(`redis fence (${layout}): a node without the lease appends nothing of that shard and leaves its seq`, async () => {
    await withEnv(async (env) => {
      await env.lease(1, "b");
      await env.lease(2, "a");
      await saveSession(env, 1, "s1", 3);
      await saveSession(env, 2, "s2", 0);
      const sink = env.sink("a", layout);
      await sink.deliver(
        new RowBatch([
          row(1, 1, "s1", 4),
          row(2, 2, "s2", 1),
          row(3, 1, "s1", 5),
          row(4, 1, null, null),
          row(5, 2, "s2", 2),
        ], "p"),
      );
      assert.deepEqual(await env.seqs("s1"), [], "shard 1 is b's");
      assert.equal(await env.seq(1), 3);
      assert.deepEqual(await env.seqs("s2"), [1, 2], "shard 2 is a's");
      assert.equal(await env.seq(2), 2);
      assert.equal(await env.entries(), 3, "gatehouse's own event is not fenced");
      assert.equal(sink.fenced, 2, "fenced events are counted (and acknowledged: deliver resolved)");
      await env.client.del(clusterKeys(env.prefix).lease(COUNT, 2));
      await sink.deliver(new RowBatch([row(6, 2, "s2", 3)], "p"));
      assert.deepEqual(await env.seqs("s2"), [1, 2], "no lease at all: fenced too");
      assert.equal(await env.seq(2), 2);
      assert.equal(sink.fenced, 3);
    });
  });

  Deno.test(`redis fence (${layout}): the same batch delivered twice is appended once and the seq stays`, async () => {
    await withEnv(async (env) => {
      await env.lease(0, "a");
      await saveSession(env, 0, "s0");
      const sink = env.sink("a", layout);
      const batch = new RowBatch([1, 2, 3, 4].map((n) => row(n, 0, "s0", n + 10)), "p");
      await sink.deliver(batch);
      await sink.deliver(batch);
      assert.deepEqual(await env.seqs("s0"), [11, 12, 13, 14]);
      assert.equal(await env.seq(0), 14);
      assert.equal(sink.duplicates, 4);
      // A seq behind the stored one never moves it back, nor does another session's.
      await sink.deliver(new RowBatch([row(5, 0, "other", 99)], "p"));
      assert.equal(await env.seq(0), 14);
    });
  });
}
