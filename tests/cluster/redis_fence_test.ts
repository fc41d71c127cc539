/**
 * The cluster-mode sink's scenarios (fence_scenarios.ts) on the shared Redis on 127.0.0.1, both stream
 * layouts: the fences and the advance run inside each stream's append script.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { RowBatch } from "../../src/sinks/batches.ts";
import { Fence } from "../../src/sinks/redis_fence.ts";
import * as scenarios from "./fence_scenarios.ts";
import { row, withEnv } from "./fence_env.ts";
import { RedisServer } from "../helpers/redis_server.ts";

for (const layout of ["per-event", "single"] as const) {
  const run = (name: string, scenario: scenarios.Scenario) =>
    Deno.test(`redis fence (${layout}): ${name}`, () => withEnv((env) => scenario(env, layout)));
  run(
    "the lease holder's batch is appended and the session seq moves to its highest seq",
    scenarios.holderAppends,
  );
  run(
    "a node without the lease appends nothing of that shard and leaves its seq",
    scenarios.nonHolderAppendsNothing,
  );
  run("the same batch delivered twice is appended once and the seq stays", scenarios.twiceAppendsOnce);
  run(
    "two nodes racing on one shard, its lease moving between them: every event once, the seq never past the streams",
    scenarios.race(400, layout === "single" ? 7 : 11),
  );
  run(
    "a delivery under way when the node takes the lease back is fenced (fence waits for it)",
    scenarios.inFlightWhileRetaking,
  );
  run(
    "a dead host returning with undelivered events appends nothing twice and loses nothing",
    scenarios.returningHost,
  );
  run(
    "a returning host's old session stays out when the new owner started another",
    scenarios.returningHostNewSession,
  );
}

Deno.test("redis fence: a session advances to its highest seq, not for a shard fenced by its lease, not past events fenced through their id", () => {
  const fence = new Fence({ node: "a", prefix: "p", shardCount: 4 }, new Redis({ lazyConnect: true }));
  const batch = new RowBatch([
    row(1, 0, "s0", 5),
    row(2, 1, "s1", 8),
    row(3, 0, "s0", 7),
    row(4, 2, null, null),
    row(5, 1, "s1", 9),
    row(6, 3, "s3", 40),
    row(7, 3, "s3", 2),
  ], "p");
  assert.deepEqual(fence.advances(batch, new Set()), [
    { shard: 0, count: 4, sessionId: "s0", seq: 7 },
    { shard: 1, count: 4, sessionId: "s1", seq: 9 },
    { shard: 3, count: 4, sessionId: "s3", seq: 40 },
  ]);
  assert.deepEqual(fence.advances(batch, new Set([1])).map((a) => a.shard), [0, 3]);
  fence.fenceThrough(3, 6);
  assert.deepEqual(fence.advances(batch, new Set([1])), [
    { shard: 0, count: 4, sessionId: "s0", seq: 7 },
    { shard: 3, count: 4, sessionId: "s3", seq: 2 },
  ]);
  assert.deepEqual(fence.advanceArgs([{ shard: 0, count: 4, sessionId: "s0", seq: 7 }]).slice(0, 3), [
    2,
    "{p}:lease:4:0",
    "{p}:session:4:0",
  ]);
});

Deno.test("redis fence: during a reshard each session's events are fenced and advanced under its own count", () => {
  // s3 is a session of the new set (8 shards), the others of the old one (4): one batch holds both.
  const counts = new Map([["s3", 8]]);
  const options = { node: "a", prefix: "p", shardCount: 4, countOf: (id: string) => counts.get(id) };
  const fence = new Fence(options, new Redis({ lazyConnect: true }));
  const batch = new RowBatch([row(1, 3, "s3old", 5), row(2, 3, "s3", 2), row(3, 2, null, null)], "p");
  assert.deepEqual([0, 1, 2].map((i) => fence.leaseOf(batch, i)), ["{p}:lease:4:3", "{p}:lease:8:3", null]);
  // Fencing shard 3 of 4 through id 2 (its lease moved) leaves shard 3 of 8 alone.
  fence.fenceThrough(3, 2, 4);
  assert.deepEqual([0, 1].map((i) => fence.fencedThrough(batch, i)), [true, false]);
  assert.deepEqual(fence.advances(batch, new Set()), [{ shard: 3, count: 8, sessionId: "s3", seq: 2 }]);
  assert.deepEqual(fence.advanceArgs(fence.advances(batch, new Set())).slice(0, 3), [
    2,
    "{p}:lease:8:3",
    "{p}:session:8:3",
  ]);
  // After the switch the default count is the new one (read at each use).
  options.shardCount = 8;
  counts.clear();
  assert.equal(fence.shardCount, 8);
});

Deno.test("redis fence: a later round of the same fence waits only for deliveries begun before it first rose, not for newer ones still under way", async () => {
  // A Redis of its own: CLIENT PAUSE holds every write on it, so a delivery stays under way at will.
  const server = await RedisServer.start({ durable: false });
  try {
    await withEnv(async (env) => {
      await env.saveSession(0, "s0");
      await env.lease(0, "b");
      const sink = env.sink("a");
      const rows = (from: number) => [0, 1, 2].map((k) => row(from + k, 0, "s0", from + k));
      // A delivery begun before the fence: the first round waits for it.
      const before = sink.deliver(new RowBatch(rows(1), "a"));
      assert.equal(await sink.fence(0, 3, undefined, 5_000), true);
      await before;
      // A newer delivery (begun after the fence, so it sees it), held under way by the pause.
      await env.client.call("CLIENT", "PAUSE", "1500", "WRITE");
      const newer = sink.deliver(new RowBatch(rows(4), "a"));
      const started = performance.now();
      // The next round, at the same id: nothing begun before the fence is under way.
      assert.equal(await sink.fence(0, 3, undefined, 200), true, "not held up by the newer delivery");
      assert.ok(performance.now() - started < 150, "at once");
      // The fence rising again (a new takeover, a higher id) waits for that newer one.
      assert.equal(await sink.fence(0, 9, undefined, 100), false, "the newer delivery is still held");
      await env.client.call("CLIENT", "UNPAUSE");
      await newer;
      assert.equal(await sink.fence(0, 9, undefined, 1_000), true);
    }, server.url);
  } finally {
    await server.stop();
  }
});
