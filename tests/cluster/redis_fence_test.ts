/**
 * The Redis sink in cluster mode against the real Redis on 127.0.0.1: a shard's events are appended
 * only by the holder of its lease, the shared session's seq follows what reached the streams (never
 * past it), and two nodes racing on one shard while its lease moves between them leave every event in
 * the streams exactly once.
 */
import assert from "node:assert/strict";
import { clusterKeys } from "../../src/cluster/keys.ts";
import { RowBatch } from "../../src/sinks/batches.ts";
import { COUNT, row, withEnv } from "./fence_env.ts";

for (const layout of ["per-event", "single"] as const) {
  Deno.test(`redis fence (${layout}): the lease holder's batch is appended and the session seq moves to its highest seq`, async () => {
    await withEnv(async (env) => {
      await env.lease(1, "a");
      await env.saveSession(1, "s1");
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
      await env.saveSession(1, "s1", 3);
      await env.saveSession(2, "s2", 0);
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
      await env.saveSession(0, "s0");
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
