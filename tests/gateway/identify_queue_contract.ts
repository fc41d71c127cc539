/**
 * The contract every identify queue keeps: one IDENTIFY per bucket (`shard % max_concurrency`) per
 * interval, buckets independent, the slot counted from the send, aborts, and the daily budget with its
 * reserve. The local queue runs it on a manual clock (identify_queue_contract_test.ts); cluster mode's
 * Redis queue runs it in real time against a real Redis (tests/cluster/redis_identify_test.ts).
 *
 * Timing is written for both: a grant may come up to `slack` after its slot (0 on a manual clock; round
 * trips and polling in real time), never before it. "Not yet" is checked at the earliest moment a grant
 * would break the rule, "by now" at the latest moment the slack allows.
 */
import assert from "node:assert/strict";
import type { IdentifyQueue, SessionStartLimit } from "../../src/gateway/identify_queue.ts";

export interface IdentifyQueueHarness {
  /** A queue for one bot; every queue made by one harness shares the buckets and the budget. */
  make(options: {
    maxConcurrency: number;
    limit?: SessionStartLimit;
    reserve?: number;
    refresh?: () => Promise<SessionStartLimit>;
  }): IdentifyQueue;
  /** The spacing of one bucket's IDENTIFYs (5 s and the margin, or shorter for a real-time harness). */
  interval: number;
  /** How late a grant may come after its slot opens (0 for a manual clock); less than `interval`. */
  slack: number;
  now(): number;
  /** Lets `ms` pass. */
  advance(ms: number): Promise<void>;
  close(): Promise<void>;
}

/** Asks for each shard in turn and records [shard, ms after the start] as each is granted. */
function record(queue: IdentifyQueue, h: IdentifyQueueHarness, shards: number[], signal?: AbortSignal) {
  const granted: Array<[number, number]> = [];
  const start = h.now();
  const done = shards.map((id) =>
    queue.wait(id, signal).then(() => {
      granted.push([id, h.now() - start]);
      queue.sent?.(id);
    }, (error) => error)
  );
  return { granted, done };
}

export function identifyQueueContract(name: string, setup: () => Promise<IdentifyQueueHarness>): void {
  const test = (title: string, body: (h: IdentifyQueueHarness) => Promise<void>) =>
    Deno.test(`${name}: ${title}`, async () => {
      const h = await setup();
      try {
        await body(h);
      } finally {
        await h.close();
      }
    });

  test("one bucket: the first at once, then one per interval, in the order asked", async (h) => {
    const queue = h.make({ maxConcurrency: 1 });
    const { granted } = record(queue, h, [0, 1, 2]);
    await h.advance(h.slack);
    assert.deepEqual(granted.map(([id]) => id), [0]);
    await h.advance(h.interval - 1 - h.slack);
    assert.equal(granted.length, 1, "never closer than the interval");
    await h.advance(1 + h.interval + 3 * h.slack);
    assert.deepEqual(granted.map(([id]) => id), [0, 1, 2]);
    for (let i = 1; i < granted.length; i++) {
      assert.ok(
        granted[i][1] - granted[i - 1][1] >= h.interval,
        `gap ${i}: ${granted[i][1] - granted[i - 1][1]}`,
      );
    }
  });

  test("buckets are shard % max_concurrency and do not wait for each other", async (h) => {
    const queue = h.make({ maxConcurrency: 4 });
    const { granted } = record(queue, h, [0, 1, 2, 3, 4, 6]);
    await h.advance(h.slack);
    assert.deepEqual(granted.map(([id]) => id).sort(), [0, 1, 2, 3]);
    await h.advance(h.interval + h.slack);
    assert.deepEqual(granted.slice(4).map(([id]) => id).sort(), [4, 6], "4 waits for 0, 6 for 2");
  });

  test("queues made for one bot share the buckets (two processes, one bucket)", async (h) => {
    const a = h.make({ maxConcurrency: 2 });
    const b = h.make({ maxConcurrency: 2 });
    const first = record(a, h, [0]);
    const second = record(b, h, [2]);
    await h.advance(h.interval - 1);
    assert.equal(first.granted.length + second.granted.length, 1, "shards 0 and 2 share bucket 0");
    await h.advance(1 + 2 * h.slack);
    assert.equal(first.granted.length + second.granted.length, 2);
  });

  test("an aborted wait rejects with the signal's reason and gives up its place", async (h) => {
    const queue = h.make({ maxConcurrency: 1 });
    const controller = new AbortController();
    const held = record(queue, h, [0]);
    const aborted = record(queue, h, [1], controller.signal);
    const after = record(queue, h, [2]);
    await h.advance(h.slack);
    controller.abort(new Error("shard stopped"));
    assert.equal(((await aborted.done[0]) as Error).message, "shard stopped");
    await h.advance(h.interval + h.slack);
    assert.deepEqual([...held.granted, ...after.granted].map(([id]) => id), [0, 2], "2 takes 1's slot");
    assert.deepEqual(aborted.granted, []);
    const late = new AbortController();
    late.abort(new Error("already"));
    await assert.rejects(queue.wait(3, late.signal), /already/);
  });

  test("the next slot counts from the send, not the grant", async (h) => {
    const queue = h.make({ maxConcurrency: 1 });
    await queue.wait(0);
    const delay = Math.floor(h.interval / 2);
    await h.advance(delay);
    queue.sent?.(0);
    const { granted } = record(queue, h, [1]);
    await h.advance(h.interval - 1);
    assert.deepEqual(granted, [], "a send delayed by a busy loop delays the next grant");
    await h.advance(1 + h.slack);
    assert.equal(granted.length, 1);
  });

  test("the daily budget: no IDENTIFY past remaining minus the reserve until the reset", async (h) => {
    const resetAfter = h.interval * 10;
    let refreshed = 0;
    const queue = h.make({
      maxConcurrency: 4,
      limit: { total: 100, remaining: 3, resetAfter },
      reserve: 1,
      refresh: () => {
        refreshed++;
        return Promise.resolve({ total: 100, remaining: 100, resetAfter: 86_400_000 });
      },
    });
    const { granted } = record(queue, h, [0, 1, 2, 3]);
    await h.advance(h.interval * 2);
    assert.deepEqual(granted.map(([id]) => id).sort(), [0, 1], "3 left, 1 kept back: 2 identify");
    await h.advance(resetAfter - h.interval * 2 - 1 - h.slack);
    assert.equal(granted.length, 2, "held until the reset");
    await h.advance(h.interval + 1 + 2 * h.slack);
    assert.equal(refreshed, 1, "the budget is read again after the reset");
    assert.deepEqual(granted.map(([id]) => id).sort(), [0, 1, 2, 3]);
  });
}
