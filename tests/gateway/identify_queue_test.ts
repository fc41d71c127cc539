import assert from "node:assert/strict";
import { IDENTIFY_MARGIN_MS, IdentifyGuard, LocalIdentifyQueue } from "../../src/gateway/identify_queue.ts";

/** 5 s per bucket, plus the safety margin. */
const S = 5000 + IDENTIFY_MARGIN_MS;
import { ManualClock } from "../../src/util/clock.ts";

/** Starts `wait` for each shard and records (shard, time) as each is granted. */
function record(queue: LocalIdentifyQueue, clock: ManualClock, shards: number[], signal?: AbortSignal) {
  const granted: Array<[number, number]> = [];
  const start = clock.now();
  const done = shards.map((id) =>
    queue.wait(id, signal).then(() => void granted.push([id, clock.now() - start]), (e) => e)
  );
  return { granted, done };
}

Deno.test("one bucket: one IDENTIFY per 5 s (plus margin), in order", async () => {
  const clock = new ManualClock();
  const queue = new LocalIdentifyQueue({ maxConcurrency: 1, clock });
  const { granted } = record(queue, clock, [0, 1, 2, 3]);
  await clock.advance(0);
  assert.deepEqual(granted, [[0, 0]]);
  await clock.advance(S - 1);
  assert.deepEqual(granted, [[0, 0]], "never less than 5 s apart");
  await clock.advance(1);
  await clock.advance(2 * S);
  assert.deepEqual(granted, [[0, 0], [1, S], [2, 2 * S], [3, 3 * S]]);
  assert.ok(IDENTIFY_MARGIN_MS >= 0 && IDENTIFY_MARGIN_MS <= 500);
});

Deno.test("max_concurrency 2: buckets shard % 2 run in parallel (0 and 1 together, then 2 and 3)", async () => {
  const clock = new ManualClock();
  const queue = new LocalIdentifyQueue({ maxConcurrency: 2, clock });
  const { granted } = record(queue, clock, [0, 1, 2, 3, 4, 5]);
  await clock.advance(3 * S);
  assert.deepEqual(granted, [[0, 0], [1, 0], [2, S], [3, S], [4, 2 * S], [5, 2 * S]]);
});

Deno.test("a bucket remembers its last identify: a re-identify 2 s later waits the rest", async () => {
  const clock = new ManualClock();
  const queue = new LocalIdentifyQueue({ maxConcurrency: 1, clock });
  await queue.wait(0);
  await clock.advance(2_000);
  const { granted } = record(queue, clock, [0]);
  await clock.advance(S - 2_001);
  assert.deepEqual(granted, []);
  await clock.advance(1);
  assert.deepEqual(granted, [[0, S - 2_000]]);
});

Deno.test("a late send moves the bucket's next slot: 5 s count from when the IDENTIFY went out", async () => {
  const clock = new ManualClock();
  const queue = new LocalIdentifyQueue({ maxConcurrency: 1, clock });
  const { granted } = record(queue, clock, [0, 1]);
  await clock.advance(0);
  assert.deepEqual(granted, [[0, 0]]);
  // A busy event loop delays the write of shard 0's IDENTIFY by 700 ms.
  await clock.advance(700);
  queue.sent(0);
  await clock.advance(S - 1);
  assert.deepEqual(granted, [[0, 0]], "not 5 s after the grant but after the send");
  await clock.advance(1);
  assert.deepEqual(granted, [[0, 0], [1, 700 + S]]);
  // A send on time changes nothing.
  queue.sent(1);
  const next = record(queue, clock, [2]);
  await clock.advance(S);
  assert.deepEqual(next.granted, [[2, S]]);
});

Deno.test("an aborted wait leaves the queue and does not use a slot", async () => {
  const clock = new ManualClock();
  const queue = new LocalIdentifyQueue({
    maxConcurrency: 1,
    clock,
    limit: { total: 10, remaining: 10, resetAfter: 0 },
  });
  const abort = new AbortController();
  const first = record(queue, clock, [0]);
  const cancelled = record(queue, clock, [1], abort.signal);
  const third = record(queue, clock, [2]);
  await clock.advance(0);
  abort.abort(new Error("connection closed"));
  const [reason] = await Promise.all(cancelled.done);
  assert.equal((reason as Error).message, "connection closed");
  await clock.advance(S);
  assert.deepEqual(first.granted, [[0, 0]]);
  assert.deepEqual(cancelled.granted, []);
  assert.deepEqual(third.granted, [[2, S]]);
  assert.equal(queue.remaining, 8);
});

Deno.test("an already aborted signal rejects at once", async () => {
  const clock = new ManualClock();
  const queue = new LocalIdentifyQueue({ maxConcurrency: 1, clock });
  const abort = new AbortController();
  abort.abort(new Error("gone"));
  await assert.rejects(queue.wait(0, abort.signal), /gone/);
});

Deno.test("session_start_limit: never identify past the budget; wait for reset_after, refresh, and log why", async () => {
  const clock = new ManualClock();
  const warnings: string[] = [];
  const logger = {
    warn: (message: string, props: Record<string, unknown>) =>
      warnings.push(`${message} ${JSON.stringify(props)}`),
  };
  let refreshes = 0;
  const queue = new LocalIdentifyQueue({
    maxConcurrency: 4,
    clock,
    limit: { total: 1000, remaining: 2, resetAfter: 60_000 },
    refresh: () => {
      refreshes++;
      return Promise.resolve({ total: 1000, remaining: 1000, resetAfter: 86_400_000 });
    },
    // deno-lint-ignore no-explicit-any
    logger: logger as any,
  });
  const { granted } = record(queue, clock, [0, 1, 2, 3]);
  await clock.advance(0);
  assert.deepEqual(granted, [[0, 0], [1, 0]]);
  assert.equal(queue.remaining, 0);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /"remaining":0/);
  assert.match(warnings[0], /"minutes":1/);
  await clock.advance(59_999);
  assert.deepEqual(granted, [[0, 0], [1, 0]]);
  await clock.advance(1);
  assert.equal(refreshes, 1);
  assert.deepEqual(granted, [[0, 0], [1, 0], [2, 60000], [3, 60000]]);
  assert.equal(queue.remaining, 998);
});

Deno.test("a reserve keeps identifies back from the daily budget", async () => {
  const clock = new ManualClock();
  const queue = new LocalIdentifyQueue({
    maxConcurrency: 1,
    clock,
    limit: { total: 1000, remaining: 3, resetAfter: 1_000_000 },
    reserve: 2,
  });
  const { granted } = record(queue, clock, [0, 1]);
  await clock.advance(100_000);
  assert.deepEqual(granted, [[0, 0]]);
});

Deno.test("rejects a nonsensical max_concurrency", () => {
  assert.throws(() => new LocalIdentifyQueue({ maxConcurrency: 0, clock: new ManualClock() }), RangeError);
});

Deno.test("crash-loop guard: identifies counted across restarts slow down a shard that keeps re-identifying", async () => {
  const clock = new ManualClock();
  const log: Array<[number, number]> = [];
  const history = {
    since: (shard: number, time: number) => log.filter(([s, at]) => s === shard && at >= time).length,
    record: (shard: number) => void log.push([shard, clock.now()]),
  };
  // Two earlier runs identified shard 0 three times within the last minutes (a crash loop).
  log.push([0, clock.now() - 120_000], [0, clock.now() - 60_000], [0, clock.now() - 30_000]);
  const warnings: string[] = [];
  const guard = new IdentifyGuard({
    inner: new LocalIdentifyQueue({ maxConcurrency: 1, clock }),
    history,
    clock,
    // deno-lint-ignore no-explicit-any
    logger: { warn: (m: string, p: any) => warnings.push(`${m} ${JSON.stringify(p)}`) } as any,
  });
  let granted = -1;
  const start = clock.now();
  guard.wait(0).then(() => (granted = clock.now() - start));
  await clock.advance(29_999);
  assert.equal(granted, -1);
  await clock.advance(1);
  assert.equal(granted, 30_000);
  assert.equal(log.length, 4, "the identify is recorded");
  assert.match(warnings[0], /crash-loop protection/);
  assert.match(warnings[0], /"recent":3/);
  // Another shard with no history goes at once.
  let other = -1;
  guard.wait(1).then(() => (other = clock.now()));
  await clock.advance(6000);
  assert.ok(other > 0);
  assert.deepEqual([0, 1, 2, 3, 4, 5, 10].map((n) => IdentifyGuard.delayFor(n)), [
    0,
    0,
    0,
    30_000,
    60_000,
    120_000,
    600_000,
  ]);
});

Deno.test("identifies of a previous process count: a restart within seconds still spaces its bucket 5 s", async () => {
  const clock = new ManualClock();
  const queue = new LocalIdentifyQueue({
    maxConcurrency: 2,
    clock,
    // Shard 2 (bucket 0) identified 1 s ago in the process that crashed.
    lastIdentified: new Map([[2, clock.now() - 1000]]),
  });
  const { granted } = record(queue, clock, [0, 1]);
  await clock.advance(S);
  assert.deepEqual(granted, [[1, 0], [0, S - 1000]]);
});
