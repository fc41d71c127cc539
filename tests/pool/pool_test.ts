import assert from "node:assert/strict";
import type { ShardOptions, ShardStatus } from "../../src/gateway/shard.ts";
import { LeaseOwnership, LocalLeaseStore, type ShardKey, StaticOwnership } from "../../src/pool/ownership.ts";
import { type PauseSignal, Pool, type PoolShard, summariseIds } from "../../src/pool/pool.ts";
import { ManualClock } from "../../src/util/clock.ts";
import { logger } from "../../src/util/log.ts";

/** A shard that records what the pool asks of it; `stop` resolves when the test says so (or at once). */
class FakeShard implements PoolShard {
  readonly id: number;
  readonly count: number;
  readonly events: string[] = [];
  paused = false;
  started = false;
  stopCode: number | null = null;
  #finishStop: ((how: "clean" | "dropped" | "none") => void) | null = null;
  constructor(readonly options: ShardOptions, readonly hangOnStop: boolean) {
    this.id = options.id;
    this.count = options.count;
  }
  start() {
    this.started = true;
    this.events.push("start");
  }
  stop(code = 4000) {
    this.stopCode = code;
    this.events.push(`stop ${code}`);
    if (!this.hangOnStop) return Promise.resolve(this.started ? "clean" as const : "none" as const);
    return new Promise<"clean" | "dropped" | "none">((resolve) => (this.#finishStop = resolve));
  }
  finishStop(how: "clean" | "dropped" | "none") {
    this.#finishStop?.(how);
  }
  setPaused(paused: boolean) {
    this.paused = paused;
    this.events.push(paused ? "pause" : "resume");
  }
  status(): ShardStatus {
    return { id: this.id } as ShardStatus;
  }
  reconnect() {
    return true;
  }
  send() {
    return null;
  }
  /** What Discord's fatal close looks like to the pool. */
  fatal(code: number, reason: string) {
    this.options.onFatal(this.id, code, reason);
  }
}

function setup(
  options: { hangOnStop?: boolean; sessions?: Map<string, { id: string; resumeUrl: string; seq: number }> } =
    {},
) {
  const clock = new ManualClock();
  const made: FakeShard[] = [];
  const pool = new Pool({
    shard: {} as ShardOptions,
    logger: logger("test"),
    clock,
    sessionFor: (key) => options.sessions?.get(`${key.count}:${key.id}`) ?? null,
    createShard: (shardOptions) => {
      const shard = new FakeShard(shardOptions, options.hangOnStop ?? false);
      made.push(shard);
      return shard;
    },
  });
  const find = (id: number, count: number) => made.find((s) => s.id === id && s.count === count)!;
  return { clock, pool, made, find };
}

const keys = (count: number, ...ids: number[]): ShardKey[] => ids.map((id) => ({ id, count }));

Deno.test("pool: start runs the given shards, each with its id, count and stored session", () => {
  const { pool, made } = setup({
    sessions: new Map([["4:1", { id: "abc", resumeUrl: "wss://r", seq: 7 }]]),
  });
  pool.start(keys(4, 0, 1, 2));
  assert.deepEqual(made.map((s) => [s.id, s.count, s.started]), [[0, 4, true], [1, 4, true], [2, 4, true]]);
  assert.equal(made[1].options.session?.id, "abc");
  assert.equal(made[0].options.session, null);
  assert.deepEqual(pool.ids(), [0, 1, 2]);
  assert.equal(pool.get(1), made[1]);
});

Deno.test("pool: shards are added and removed while running; a removed shard closes with 4000", async () => {
  const { pool, find } = setup();
  pool.start(keys(2, 0, 1));
  assert.equal(pool.add({ id: 0, count: 2 }), false, "already running");
  assert.equal(await pool.remove({ id: 1, count: 2 }), "clean");
  assert.equal(find(1, 2).stopCode, 4000);
  assert.deepEqual(pool.ids(), [0]);
  assert.equal(pool.get(1), undefined);
  assert.equal(await pool.remove({ id: 1, count: 2 }), "none", "removing twice is harmless");
  assert.equal(pool.add({ id: 1, count: 2 }), true, "and it can come back");
  assert.deepEqual(pool.ids(), [0, 1]);
});

Deno.test("pool: each shard's session is reported with its own count and id", () => {
  const reported: string[] = [];
  const made: ShardOptions[] = [];
  const pool = new Pool({
    shard: {} as ShardOptions,
    logger: logger("test"),
    clock: new ManualClock(),
    onSession: (key, session) => reported.push(`${key.count}:${key.id} ${session?.id ?? "lost"}`),
    createShard: (options) => {
      made.push(options);
      return new FakeShard(options, false);
    },
  });
  pool.start([...keys(2, 1), ...keys(4, 1)]);
  made[1].onSession!(1, { id: "new", resumeUrl: "wss://r", seq: 1 });
  made[0].onSession!(1, null);
  assert.deepEqual(reported, ["4:1 new", "2:1 lost"]);
});

Deno.test("pool: two shard counts run side by side, keyed by count and id", async () => {
  const { pool, find } = setup();
  pool.start(keys(2, 0, 1));
  for (const key of keys(4, 0, 1, 2, 3)) pool.add(key);
  assert.deepEqual(pool.counts(), [2, 4]);
  assert.deepEqual(pool.keys().map((k) => `${k.count}:${k.id}`), ["2:0", "2:1", "4:0", "4:1", "4:2", "4:3"]);
  assert.equal(pool.get(1, 4), find(1, 4));
  assert.equal(pool.get(1), find(1, 2), "without a count, the lower count's shard");
  assert.equal(pool.get(3), find(3, 4));
  // The old count retires: its shards stop, the new count's keep running.
  for (const key of keys(2, 0, 1)) await pool.remove(key);
  assert.deepEqual(pool.counts(), [4]);
  assert.equal(pool.get(1), find(1, 4));
  assert.equal(find(0, 4).stopCode, null);
});

Deno.test("pool: one pause signal pauses every shard, added ones too, and each change is passed once", () => {
  const { pool, find } = setup();
  let listener: (paused: boolean) => void = () => {};
  const signal: PauseSignal = {
    subscribe: (l) => {
      listener = l;
      return () => (listener = () => {});
    },
  };
  pool.start(keys(1, 0));
  pool.pauseOn(signal);
  listener(true);
  listener(true);
  pool.add({ id: 0, count: 2 });
  assert.deepEqual(find(0, 1).events, ["start", "pause"]);
  assert.deepEqual(find(0, 2).events, ["pause", "start"], "paused before it reads anything");
  listener(false);
  assert.equal(find(0, 1).paused, false);
  assert.equal(find(0, 2).paused, false);
  assert.equal(pool.paused, false);
});

Deno.test("pool: it follows an ownership: shards gained start, shards lost stop", async () => {
  const clock = new ManualClock();
  const store = new LocalLeaseStore(clock);
  const { pool, find } = setup();
  const other = new LeaseOwnership({ store, node: "other", wanted: keys(4, 2, 3), leaseMs: 3000, clock });
  await other.start();
  const mine = new LeaseOwnership({ store, node: "me", wanted: keys(4, 0, 1, 2, 3), leaseMs: 3000, clock });
  await mine.start();
  pool.start();
  pool.follow(mine);
  assert.deepEqual(pool.ids(), [0, 1], "2 and 3 are the other process's");
  await other.stop();
  await clock.advance(1000);
  assert.deepEqual(pool.ids(), [0, 1, 2, 3], "released shards are taken over");
  await mine.stop();
  assert.deepEqual(pool.ids(), []);
  assert.equal(find(0, 4).stopCode, 4000);
  await pool.stop();
  await clock.advance(0);
  assert.equal(clock.pending, 0);
});

Deno.test("pool: a static ownership runs the plan's shards", async () => {
  const { pool } = setup();
  const ownership = new StaticOwnership(keys(3, 2, 0));
  await ownership.start();
  pool.start();
  pool.follow(ownership);
  assert.deepEqual(pool.ids(), [0, 2]);
});

Deno.test("pool: the first fatal close is the pool's failure, with the shard's count", async () => {
  const { pool, find } = setup();
  pool.start(keys(2, 0, 1));
  find(1, 2).fatal(4004, "authentication failed");
  find(0, 2).fatal(4013, "invalid intents");
  assert.deepEqual(await pool.failed, {
    shard: 1,
    count: 2,
    code: 4004,
    reason: "authentication failed",
  });
});

Deno.test("pool: stop closes every shard with the code and waits at most the bound (on its clock)", async () => {
  const { pool, made, clock } = setup({ hangOnStop: true });
  pool.start(keys(3, 0, 1, 2));
  const stopping = pool.stop(4000, 5000);
  let result: unknown = null;
  void stopping.then((r) => (result = r));
  made[0].finishStop("clean");
  made[1].finishStop("none");
  await clock.advance(4999);
  assert.equal(result, null, "shard 2 is still closing");
  await clock.advance(1);
  assert.deepEqual(await stopping, { clean: 1, connected: 2, total: 3 });
  assert.deepEqual(made.map((s) => s.stopCode), [4000, 4000, 4000]);
  assert.equal(pool.add({ id: 5, count: 6 }), false, "a stopped pool starts nothing");
  assert.equal(clock.pending, 0, "the bound's timer is cleared");
});

Deno.test("pool: a stop waits for the closes of shards removed just before", async () => {
  const { pool, made, clock } = setup({ hangOnStop: true });
  pool.start(keys(1, 0));
  void pool.remove({ id: 0, count: 1 });
  let done = false;
  const stopping = pool.stop(4000, 5000).then(() => (done = true));
  await clock.advance(100);
  assert.equal(done, false);
  made[0].finishStop("clean");
  await stopping;
  assert.equal(done, true);
});

Deno.test("summariseIds: runs are joined", () => {
  assert.equal(summariseIds([5, 0, 1, 2, 9, 10]), "0-2, 5, 9-10");
  assert.equal(summariseIds([]), "");
});
