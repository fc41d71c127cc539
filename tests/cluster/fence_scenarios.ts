/**
 * The cluster-mode sink's scenarios, run on the shared Redis (redis_fence_test.ts) and on a Redis
 * Cluster of their own (redis_fence_cluster_test.ts): a shard's events are appended only by the holder
 * of its lease; the shared session's seq follows what reached the streams, never past them; two nodes
 * racing on one shard while its lease moves between them leave every event in the streams exactly once;
 * a dead host that returns with undelivered events appends nothing twice and loses nothing.
 *
 * A node in the race is its journal (events in id order, not yet delivered) and its sink. On taking the
 * lease it does what the integrator wires: stop its shard if it still runs, `fenceThrough` its journal's
 * last id, take the lease, and RESUME from the shared seq: "Discord" replays the session from there into
 * its journal. A node that lost the lease goes on receiving a few events before it notices (a stale
 * owner) and goes on delivering whatever its journal holds.
 */
import assert from "node:assert/strict";
import { clusterKeys } from "../../src/cluster/keys.ts";
import type { StoredEvent } from "../../src/journal/store.ts";
import { RowBatch } from "../../src/sinks/batches.ts";
import type { RedisSink, StreamLayout } from "../../src/sinks/redis.ts";
import { COUNT, type Env, row } from "./fence_env.ts";

const SESSION = "s0";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A small seeded generator (mulberry32): the same schedule of batch sizes and flips on every run. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

class Node {
  readonly journal: StoredEvent[] = [];
  nextId = 1;
  /** The seq the node's shard received last; null while its shard is stopped. */
  received: number | null = null;
  /** Events it still receives after losing the lease (it has not noticed yet). */
  staleLeft = 0;
  constructor(readonly name: string, readonly sink: RedisSink) {}

  receive(seq: number): void {
    this.journal.push(row(this.nextId++, 0, SESSION, seq));
    this.received = seq;
  }

  /**
   * Stops its shard (if it still runs), fences what its journal holds and waits for its deliveries
   * under way, takes the lease, resumes.
   */
  async acquire(env: Env): Promise<void> {
    this.received = null;
    assert.ok(await this.sink.fence(0, this.nextId - 1, undefined, 5_000), "deliveries under way ended");
    await env.lease(0, this.name);
    this.received = (await env.seq(0)) ?? 0;
    this.staleLeft = 0;
  }

  /** Delivers up to `n` events of its journal; true when it delivered any. */
  async deliver(n: number): Promise<boolean> {
    const batch = this.journal.slice(0, n);
    if (batch.length === 0) return false;
    await this.sink.deliver(new RowBatch(batch, this.name));
    this.journal.splice(0, batch.length);
    return true;
  }
}

/** The invariant, checked at any time: everything up to the shared seq is in the streams. */
async function checkSeq(env: Env): Promise<void> {
  const seq = (await env.seq(0)) ?? 0;
  const seqs = new Set(await env.seqs(SESSION));
  for (let s = 1; s <= seq; s++) {
    assert.ok(seqs.has(s), `the shared seq is ${seq} but seq ${s} is not in a stream`);
  }
}

export type Scenario = (env: Env, layout: StreamLayout) => Promise<void>;

export const holderAppends: Scenario = async (env, layout) => {
  await env.lease(1, "a");
  await env.saveSession(1, "s1");
  const sink = env.sink("a", layout);
  await sink.deliver(new RowBatch([1, 2, 3, 4, 5].map((n) => row(n, 1, "s1", n)), "p"));
  assert.deepEqual(await env.seqs("s1"), [1, 2, 3, 4, 5]);
  assert.equal(await env.seq(1), 5);
  assert.equal((await env.sessions.load())[0].updatedAt, 5000, "the sink's clock dates the advance");
  assert.equal(sink.fenced, 0);
};

export const nonHolderAppendsNothing: Scenario = async (env, layout) => {
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
  await sink.deliver(new RowBatch([row(7, 1, "s1", 6)], "p"));
  assert.deepEqual(env.warnings, ['a: {"shard":1,"total":2}', 'a: {"shard":2,"total":3}'], "once per shard");
  await env.lease(1, "a");
  await sink.deliver(new RowBatch([row(8, 1, "s1", 7)], "p"));
  await env.lease(1, "b");
  await sink.deliver(new RowBatch([row(9, 1, "s1", 8)], "p"));
  assert.equal(env.warnings.length, 3, "a shard fenced again after it was held is logged again");
  assert.deepEqual(await env.seqs("s1"), [7]);
  assert.equal(await env.seq(1), 7);
};

export const twiceAppendsOnce: Scenario = async (env, layout) => {
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
};

/**
 * `N` events of one session, the lease flipped 12 times. `seed` fixes the draws (batch sizes, events
 * per tick, waits); how the nodes' loops interleave with Redis is real.
 */
export function race(N: number, seed: number): Scenario {
  return async (env, layout) => {
    const rand = random(seed);
    const nodes = [new Node("a", env.sink("a", layout)), new Node("b", env.sink("b", layout))];
    await env.saveSession(0, SESSION);
    let holder = nodes[0];
    await holder.acquire(env);
    let done = false;
    let checks = 0;
    // Discord: the connected shards receive the session's next events.
    const discord = (async () => {
      while (!done) {
        for (const node of nodes) {
          if (node.received === null || node.received >= N) continue;
          if (node !== holder && node.staleLeft-- <= 0) {
            node.received = null; // it noticed: its shard stops
            continue;
          }
          for (let k = Math.ceil(rand() * 3); k > 0 && node.received < N; k--) {
            node.receive(node.received + 1);
          }
        }
        await sleep(1);
      }
    })();
    let failure: unknown = null;
    const delivering = nodes.map(async (node) => {
      try {
        while (!done) {
          if (!(await node.deliver(1 + Math.floor(rand() * 8)))) await sleep(1);
          if (++checks % 10 === 0) await checkSeq(env);
        }
      } catch (error) {
        failure ??= error;
        done = true;
      }
    });
    const flips = 12;
    for (let f = 0; f < flips; f++) {
      await sleep(5 + rand() * 25);
      const next = nodes[holder === nodes[0] ? 1 : 0];
      holder.staleLeft = Math.floor(rand() * 4);
      holder = next;
      await next.acquire(env);
    }
    const deadline = Date.now() + 10_000;
    while (failure === null && ((holder.received ?? 0) < N || nodes.some((n) => n.journal.length > 0))) {
      assert.ok(Date.now() < deadline, "the last holder did not catch up");
      await sleep(5);
    }
    done = true;
    await Promise.all([discord, ...delivering]);
    if (failure !== null) throw failure;
    await checkSeq(env);
    assert.deepEqual(await env.seqs(SESSION), Array.from({ length: N }, (_, i) => i + 1));
    assert.equal(await env.seq(0), N);
    const [a, b] = nodes;
    assert.ok(a.sink.fenced + b.sink.fenced > 0, "the race fenced something (else it proved nothing)");
    assert.ok(a.sink.duplicates + b.sink.duplicates > 0, "and the replays after a resume were skipped");
  };
}

export const returningHost: Scenario = async (env, layout) => {
  await env.saveSession(0, SESSION);
  const a = new Node("a", env.sink("a", layout));
  await a.acquire(env);
  for (let s = 1; s <= 20; s++) a.receive(s);
  await a.deliver(10);
  assert.equal(await env.seq(0), 10);
  // a dies with 11..20 in its journal. b takes over, resumes from 10 and delivers 11..30.
  const b = new Node("b", env.sink("b", layout));
  await b.acquire(env);
  assert.equal(b.received, 10);
  for (let s = 11; s <= 30; s++) b.receive(s);
  await b.deliver(100);
  // a comes back (same store, a new sink) while b holds the lease: its 11..20 are fenced.
  const back = new Node("a", env.sink("a", layout));
  back.journal.push(...a.journal);
  back.nextId = a.nextId;
  await back.deliver(5);
  assert.equal(back.sink.fenced, 5);
  assert.deepEqual(await env.seqs(SESSION), Array.from({ length: 30 }, (_, i) => i + 1));
  assert.equal(await env.seq(0), 30);
  // b dies in turn and a takes the lease back: what a holds from before is fenced through its last id,
  await back.acquire(env);
  assert.equal(back.received, 30, "a resumes from what reached the streams");
  for (let s = 31; s <= 35; s++) back.receive(s);
  await back.deliver(100);
  assert.equal(back.sink.fenced, 10);
  assert.deepEqual(await env.seqs(SESSION), Array.from({ length: 35 }, (_, i) => i + 1));
  assert.equal(await env.seq(0), 35);
  // and even a sink not told so skips them by the stream's marks: the same session, seqs passed.
  const unfenced = env.sink("a", layout);
  await unfenced.deliver(
    new RowBatch([13, 14, 15, 16, 17, 18, 19, 20].map((s) => row(100 + s, 0, SESSION, s)), "a"),
  );
  assert.equal(unfenced.duplicates, 8);
  assert.equal(unfenced.fenced, 0);
  assert.deepEqual(await env.seqs(SESSION), Array.from({ length: 35 }, (_, i) => i + 1));
  assert.equal(await env.seq(0), 35);
};

/**
 * A delivery under way when the node takes the lease back: it passed the fence check before the fence
 * was set, and its script reaches Redis after the lease is taken (here: its sink's connection is not up
 * yet). `fence` waits for it, so it runs while the other node holds the lease and is fenced; taken
 * first, the lease would let it append seqs 8..10 after a gap (6 and 7, fenced earlier), and the resumed
 * replay of 6 and 7 would be skipped by the stream's marks: lost.
 */
export const inFlightWhileRetaking: Scenario = async (env, layout) => {
  await env.saveSession(0, SESSION);
  await env.lease(0, "a");
  const first = env.sink("a", layout);
  await first.deliver(new RowBatch([1, 2, 3, 4, 5].map((s) => row(s, 0, SESSION, s)), "a"));
  await env.lease(0, "b"); // b resumes at 5 and has appended nothing yet
  await first.deliver(new RowBatch([6, 7].map((s) => row(s, 0, SESSION, s)), "a"));
  assert.equal(first.fenced, 2);
  const sink = env.sink("a", layout);
  const underWay = sink.deliver(new RowBatch([8, 9, 10].map((s) => row(s, 0, SESSION, s)), "a"));
  assert.ok(await sink.fence(0, 10, undefined, 5_000), "the delivery under way ended first");
  await env.lease(0, "a");
  await underWay;
  assert.equal(sink.fenced, 3, "the older ownership's events were fenced by b's lease");
  assert.deepEqual(await env.seqs(SESSION), [1, 2, 3, 4, 5]);
  // a resumes from the shared seq: Discord replays 6..10 into its journal (new ids).
  assert.equal(await env.seq(0), 5);
  await sink.deliver(new RowBatch([6, 7, 8, 9, 10].map((s) => row(10 + s, 0, SESSION, s)), "a"));
  await checkSeq(env);
  assert.deepEqual(await env.seqs(SESSION), Array.from({ length: 10 }, (_, i) => i + 1));
  assert.equal(await env.seq(0), 10);
};

/** The new owner could not resume (a new session): the returning host's old session stays out. */
export const returningHostNewSession: Scenario = async (env, layout) => {
  await env.saveSession(0, SESSION);
  const a = new Node("a", env.sink("a", layout));
  await a.acquire(env);
  for (let s = 1; s <= 20; s++) a.receive(s);
  await a.deliver(10);
  // b takes over; the resume fails, it identifies: a new session, stored on its READY.
  await env.lease(0, "b");
  await env.saveSession(0, "fresh", 0);
  const b = env.sink("b", layout);
  await b.deliver(new RowBatch([1, 2, 3].map((s) => row(s, 0, "fresh", s)), "b"));
  assert.equal(await env.seq(0), 3);
  // a returns and delivers its old session's 11..20: fenced, and no advance of any session.
  const back = new Node("a", env.sink("a", layout));
  back.journal.push(...a.journal);
  back.nextId = a.nextId;
  await back.deliver(100);
  assert.equal(back.sink.fenced, 10);
  assert.deepEqual(await env.seqs(SESSION), Array.from({ length: 10 }, (_, i) => i + 1));
  assert.deepEqual(await env.seqs("fresh"), [1, 2, 3]);
  assert.equal(await env.seq(0), 3);
  assert.equal((await env.sessions.load())[0].sessionId, "fresh");
};
