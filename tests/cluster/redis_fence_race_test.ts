/**
 * Two gatehouse nodes racing on one shard while its lease moves between them, and a dead host that
 * returns with undelivered events, against the real Redis on 127.0.0.1: every event is in the streams
 * exactly once, and the shared seq never runs past what reached them.
 *
 * A node here is its journal (events in id order, not yet delivered) and its cluster-mode sink. On
 * taking the lease it does what the integrator wires: stop the shard if it still runs, `fenceThrough`
 * its journal's last id, take the lease, and RESUME from the shared seq: "Discord" replays the session from there into its journal. A
 * node that lost the lease goes on receiving a few events before it notices (a stale owner) and goes
 * on delivering whatever its journal holds.
 */
import assert from "node:assert/strict";
import type { StoredEvent } from "../../src/journal/store.ts";
import { RowBatch } from "../../src/sinks/batches.ts";
import type { RedisSink } from "../../src/sinks/redis.ts";
import { type Env, row, withEnv } from "./fence_env.ts";

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

  /** Stops its shard (if it still runs), fences what its journal holds, takes the lease, resumes. */
  async acquire(env: Env): Promise<void> {
    this.received = null;
    this.sink.fenceThrough(0, this.nextId - 1);
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

for (const layout of ["per-event", "single"] as const) {
  Deno.test(`redis fence (${layout}): two nodes racing on one shard, its lease moving between them: every event once, the seq never past the streams`, async () => {
    await withEnv(async (env) => {
      const N = 400;
      const rand = random(layout === "single" ? 7 : 11);
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
    });
  });
}

Deno.test("redis fence: a dead host returning with undelivered events appends nothing twice and loses nothing", async () => {
  await withEnv(async (env) => {
    await env.saveSession(0, SESSION);
    const a = new Node("a", env.sink("a"));
    await a.acquire(env);
    for (let s = 1; s <= 20; s++) a.receive(s);
    await a.deliver(10);
    assert.equal(await env.seq(0), 10);
    // a dies with 11..20 in its journal. b takes over, resumes from 10 and delivers 11..30.
    const b = new Node("b", env.sink("b"));
    await b.acquire(env);
    assert.equal(b.received, 10);
    for (let s = 11; s <= 30; s++) b.receive(s);
    await b.deliver(100);
    // a comes back (same store, a new sink) while b holds the lease: its 11..20 are fenced.
    const back = new Node("a", env.sink("a"));
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
    const unfenced = env.sink("a");
    await unfenced.deliver(
      new RowBatch([13, 14, 15, 16, 17, 18, 19, 20].map((s) => row(100 + s, 0, SESSION, s)), "a"),
    );
    assert.equal(unfenced.duplicates, 8);
    assert.equal(unfenced.fenced, 0);
    assert.deepEqual(await env.seqs(SESSION), Array.from({ length: 35 }, (_, i) => i + 1));
    assert.equal(await env.seq(0), 35);
  });
});
