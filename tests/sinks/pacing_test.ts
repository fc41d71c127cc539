/**
 * Pacing (src/sinks/runner.ts): a healthy sink that falls behind holds the backpressure signal as
 * "pace <sink>" until it is back under half the bound; a failing or stalled sink never holds it. All on
 * a manual clock: the journal commits every 50 ms, the "shards" add events only while the signal is not
 * held, and the sinks take time on the same clock.
 */
import assert from "node:assert/strict";
import { type EventBatch, Journal } from "../../src/journal/journal.ts";
import type { Store } from "../../src/journal/store.ts";
import { HEALTH_WINDOW_MS, PACE_BEHIND, PACE_UNDER, SinkRunner, STALL_MS } from "../../src/sinks/runner.ts";
import type { Sink } from "../../src/sinks/sink.ts";
import { StdoutSink } from "../../src/sinks/stdout.ts";
import { Backpressure } from "../../src/util/backpressure.ts";
import { ManualClock, sleep } from "../../src/util/clock.ts";
import { logger } from "../../src/util/log.ts";
import { enc, syntheticBatch, withStore } from "../helpers/journal_store.ts";

const log = logger("test");

/** A sink taking `perEventMs` per event on the clock; `mode` switches it to failing or hanging. */
function slowSink(clock: ManualClock, perEventMs: number) {
  const sink = {
    name: "slow",
    mode: "ok" as "ok" | "fail" | "hang",
    got: 0,
    failures: 0,
    lastFailureAt: 0,
    check() {
      if (sink.mode !== "fail") return;
      sink.failures++;
      sink.lastFailureAt = clock.now();
      throw new Error("broker down");
    },
    async deliver(batch: EventBatch) {
      sink.check();
      if (sink.mode === "hang") return await new Promise<void>(() => {});
      await sleep(clock, batch.count * perEventMs);
      // Failing also after taking its time (a broker that went away mid-delivery).
      sink.check();
      sink.got += batch.count;
    },
  };
  return sink;
}

interface Rig {
  clock: ManualClock;
  journal: Journal;
  runner: SinkRunner;
  backpressure: Backpressure;
  /** Every change of the signal: [paused, at]. */
  changes: Array<[boolean, number]>;
  /** Events the "shards" have read so far. */
  read(): number;
  /** Runs `ms` of ingest: `perTick` events every 10 ms while the signal is not held. */
  ingest(ms: number, perTick: number, each?: () => void): Promise<void>;
}

/** The process is saturated (pacing may start) unless a test says otherwise. */
const saturated = () => true;

function rig(store: Store, sink: Sink, clock = new ManualClock(), busy: () => boolean = saturated): Rig {
  const backpressure = new Backpressure();
  const changes: Array<[boolean, number]> = [];
  backpressure.subscribe((paused) => changes.push([paused, clock.now()]));
  const journal = new Journal({ store, logger: log, clock, commitIntervalMs: 50, backpressure });
  const runner = new SinkRunner({ sink, journal, store, logger: log, backpressure, clock, saturated: busy });
  runner.start();
  let n = 0;
  return {
    clock,
    journal,
    runner,
    backpressure,
    changes,
    read: () => n,
    async ingest(ms, perTick, each) {
      const until = clock.now() + ms;
      while (clock.now() < until) {
        if (!backpressure.paused) {
          for (let i = 0; i < perTick; i++) journal.event(0, "E", ++n, enc(`{"n":${n}}`), 0, true);
        }
        await clock.advance(10);
        each?.();
      }
    },
  };
}

/** Lets the sink take every event given out. */
async function drain(r: Rig): Promise<void> {
  for (let i = 0; i < 2000 && r.runner.cursor < r.journal.lastAssignedId; i++) await r.clock.advance(10);
}

Deno.test("pacing: a healthy sink slower than ingest holds reading once behind and lets go once back under", async () => {
  await withStore(async (store) => {
    // Ingest 10 000 events/s; the sink takes 5 000/s.
    const clock = new ManualClock();
    const r = rig(store, slowSink(clock, 0.2), clock);
    let maxLagEvents = 0;
    let maxLagMs = 0;
    await r.ingest(5000, 100, () => {
      maxLagEvents = Math.max(maxLagEvents, r.runner.lagEvents);
      maxLagMs = Math.max(maxLagMs, r.runner.lagMs);
      if (r.backpressure.paused) assert.deepEqual(r.backpressure.holders, ["pace slow"]);
    });
    const holds = r.changes.filter(([paused]) => paused);
    assert.ok(holds.length >= 2, `held reading (${r.changes.length} changes)`);
    assert.ok(r.changes.some(([paused]) => !paused), "and let it go again");
    // Ingest never runs far ahead: the bound, plus what arrives in the turn it is crossed and what
    // the journal gathered before the shards stopped (one commit interval).
    assert.ok(maxLagMs < 700, `at most ${maxLagMs} ms behind`);
    assert.ok(maxLagEvents < 4 * PACE_BEHIND.events, `at most ${maxLagEvents} events behind`);
    // (The bounds at each change are checked in the next test.)
    await drain(r);
    assert.equal(r.runner.cursor, r.read(), "everything delivered");
    assert.equal(r.backpressure.paused, false, "caught up: reading goes on");
    assert.ok(r.runner.pacedMs > 0);
    r.runner.close();
    await r.journal.close();
  });
});

Deno.test("pacing: the signal is taken only above both bounds and let go only at or below half", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const sink = slowSink(clock, 0.2);
    const r = rig(store, sink, clock);
    const seen: Array<{ paused: boolean; events: number; ms: number }> = [];
    r.backpressure.subscribe((paused) =>
      seen.push({ paused, events: r.runner.lagEvents, ms: r.runner.lagMs })
    );
    await r.ingest(3000, 100);
    await drain(r);
    assert.ok(seen.length >= 2, `${seen.length} changes`);
    for (const change of seen) {
      if (change.paused) {
        assert.ok(change.events > PACE_BEHIND.events && change.ms > PACE_BEHIND.ms, JSON.stringify(change));
      } else {
        assert.ok(change.events <= PACE_UNDER.events || change.ms <= PACE_UNDER.ms, JSON.stringify(change));
      }
    }
    r.runner.close();
    await r.journal.close();
  });
});

Deno.test("pacing: behind takes both bounds; held until back under half of them (hysteresis)", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const backpressure = new Backpressure();
    let open: (() => void) | null = null;
    const sink: Sink = { name: "gated", deliver: () => new Promise<void>((resolve) => (open = resolve)) };
    const journal = new Journal({ store, logger: log, commitIntervalMs: 0, clock });
    let busy = true;
    const runner = new SinkRunner({
      sink,
      journal,
      store: null,
      logger: log,
      backpressure,
      clock,
      saturated: () => busy,
    });
    const release = async () => {
      const resolve = open!;
      open = null;
      resolve();
      await clock.advance(1); // the cursor is stored, the next delivery goes
    };
    runner.offer(syntheticBatch(1, 600, 10)); // delivered at once, and left open
    runner.offer(syntheticBatch(601, 600, 10));
    assert.equal(runner.lagEvents, 1200);
    assert.equal(backpressure.paused, false, "over the events bound but not 250 ms behind");
    await clock.advance(PACE_BEHIND.ms);
    runner.offer(syntheticBatch(1201, 10, 10));
    assert.equal(backpressure.paused, false, "250 ms is not over the bound");
    await clock.advance(50);
    runner.offer(syntheticBatch(1211, 10, 10));
    assert.deepEqual(backpressure.holders, ["pace gated"], "over both: held");
    // Holding frees the CPU: the hold lasts until the sink is back under, saturated or not.
    busy = false;
    await release();
    assert.equal(runner.cursor, 600);
    assert.equal(runner.lagEvents, 620);
    assert.ok(runner.lagMs > PACE_UNDER.ms);
    assert.equal(backpressure.paused, true, "under the upper bound but not back under half: still held");
    await release();
    assert.equal(runner.cursor, 1220);
    assert.equal(backpressure.paused, false, "caught up: let go");
    // A small lag, however old, does not hold reading.
    runner.offer(syntheticBatch(1221, 10, 10));
    await clock.advance(900);
    runner.offer(syntheticBatch(1231, 10, 10));
    assert.equal(backpressure.paused, false, "20 events 900 ms behind: not behind");
    await release();
    await release();
    runner.close();
    await journal.close();
  });
});

Deno.test("pacing: a failing sink never holds reading; one holding lets go at once when it starts failing", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const sink = slowSink(clock, 0.2);
    sink.mode = "fail";
    const r = rig(store, sink, clock);
    await r.ingest(3000, 100);
    assert.ok(sink.failures > 0);
    assert.ok(r.runner.lagEvents > 10 * PACE_BEHIND.events, "far behind");
    assert.deepEqual(r.changes, [], "a failing sink never holds reading: the journal takes it");
    assert.equal(r.runner.pacedMs, 0);
    r.runner.close();
    await r.journal.close();
  });
  await withStore(async (store) => {
    const clock = new ManualClock();
    const sink = slowSink(clock, 0.2);
    const r = rig(store, sink, clock);
    await r.ingest(1000, 100);
    // Healthy and behind: held (the ingest loop stops adding events).
    for (let i = 0; i < 100 && !r.backpressure.paused; i++) await r.ingest(10, 100);
    assert.equal(r.backpressure.paused, true, "held while healthy and behind");
    sink.mode = "fail";
    const before = sink.failures;
    for (let i = 0; i < 2000 && sink.failures === before; i++) await clock.advance(1);
    const failedAt = clock.now();
    // The runner takes the failure in this clock turn; on a loaded machine its promise chain may also
    // wait for a real turn of the event loop (the journal yields after a busy slice), so let a few pass
    // without moving the clock.
    for (let i = 0; i < 100 && r.backpressure.paused; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    assert.equal(r.backpressure.paused, false, "let go when the delivery failed");
    assert.equal(r.changes[r.changes.length - 1][1], failedAt, "at once, in the turn of the failure");
    // Failing on: reading goes on, the journal takes everything.
    await r.ingest(3000, 100);
    assert.equal(r.backpressure.paused, false);
    assert.equal(
      r.changes.filter(([paused, at]) => paused && at > failedAt).length,
      0,
      "never held again while failing",
    );
    // Taking events again: far behind, but not healthy until the health window has passed since the
    // last failure; then it paces again.
    sink.mode = "ok";
    const holdsBefore = r.changes.length;
    await r.ingest(10_000 + HEALTH_WINDOW_MS + 1000, 100);
    const again = r.changes.slice(holdsBefore).find(([paused]) => paused);
    assert.ok(again !== undefined, "healthy again: paced again");
    assert.ok(
      again[1] >= sink.lastFailureAt + HEALTH_WINDOW_MS,
      `held again ${again[1] - sink.lastFailureAt} ms after the last failure`,
    );
    await drain(r);
    assert.equal(r.runner.cursor, r.read());
    r.runner.close();
    await r.journal.close();
  });
});

Deno.test("pacing: a delivery stalled past the stall bound lets reading go (a reader that stopped reading stdout)", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    // stdout on a pipe whose reader takes 64 KB every 10 ms (6.4 MB/s) until it stops reading.
    let reading = true;
    const sink = new StdoutSink({
      write: async (bytes) => {
        for (;;) {
          await sleep(clock, 10);
          if (reading) return Math.min(bytes.length, 64 * 1024);
        }
      },
    });
    const r = rig(store, sink, clock);
    // 100 events of ~1 KB every 10 ms: 10 MB/s, faster than the reader.
    const pad = "x".repeat(1000);
    let n = 0;
    const ingest = async (ms: number) => {
      const until = clock.now() + ms;
      while (clock.now() < until) {
        if (!r.backpressure.paused) {
          for (let i = 0; i < 100; i++) r.journal.event(0, "E", ++n, enc(`{"n":${n},"p":"${pad}"}`), 0, true);
        }
        await clock.advance(10);
      }
    };
    for (let i = 0; i < 300 && !r.backpressure.paused; i++) await ingest(10);
    assert.equal(r.backpressure.paused, true, "a reader that reads, slower than ingest: held");
    reading = false;
    const stoppedAt = clock.now();
    for (let i = 0; i < 2 * STALL_MS && r.backpressure.paused; i++) await clock.advance(1);
    const releasedAt = clock.now();
    assert.equal(r.backpressure.paused, false, "the stalled delivery lets reading go");
    assert.ok(
      releasedAt - stoppedAt <= STALL_MS && releasedAt - stoppedAt > STALL_MS / 2,
      `let go ${releasedAt - stoppedAt} ms after the reader stopped`,
    );
    assert.equal(r.runner.healthy, false);
    // Reading goes on while the reader does not read: the journal takes it.
    const cursor = r.runner.cursor;
    await ingest(2000);
    assert.equal(r.backpressure.paused, false);
    assert.equal(r.runner.cursor, cursor, "nothing taken meanwhile");
    assert.ok(n > cursor + 10_000);
    // The reader is back: it catches up (paced again after the health window), everything arrives.
    reading = true;
    await ingest(HEALTH_WINDOW_MS + 500);
    for (let i = 0; i < 3000 && r.runner.cursor < n; i++) await clock.advance(10);
    assert.equal(r.runner.cursor, n);
    assert.equal(sink.written, n);
    r.runner.close();
    await r.journal.close();
  });
});

Deno.test("pacing: the time held is counted on the clock, per sink", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const sink = slowSink(clock, 0.2);
    const r = rig(store, sink, clock);
    const samples: Array<[number, number]> = [];
    await r.ingest(4000, 100, () => {
      if (r.backpressure.paused) samples.push([clock.now(), r.runner.pacedMs]);
    });
    await drain(r);
    assert.equal(r.backpressure.paused, false);
    // The sum of the holds, as the signal's listener saw them on the clock.
    let expected = 0;
    for (let i = 0; i < r.changes.length; i += 2) {
      assert.equal(r.changes[i][0], true);
      assert.equal(r.changes[i + 1][0], false);
      expected += r.changes[i + 1][1] - r.changes[i][1];
    }
    assert.ok(expected > 0);
    assert.equal(r.runner.pacedMs, expected);
    // A hold under way counts as it goes.
    let midHold = 0;
    for (const [at, held] of samples) {
      let expectedAt = 0;
      for (let i = 0; i < r.changes.length; i += 2) {
        const [, from] = r.changes[i];
        const to = r.changes[i + 1][1];
        if (to <= at) expectedAt += to - from;
        else if (from < at) {
          expectedAt += at - from;
          midHold++;
        }
      }
      assert.equal(held, expectedAt, `read at ${at}: the holds so far, the one under way up to then`);
    }
    assert.ok(midHold > 0, "some reading fell inside a hold");
    const idle = r.runner.pacedMs;
    await clock.advance(1000);
    assert.equal(r.runner.pacedMs, idle, "not counting while not held");
    r.runner.close();
    await r.journal.close();
  });
});

Deno.test("pacing: the lag in time is the age of the oldest event not acknowledged, never less, however many batches wait", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    let open: (() => void) | null = null;
    const sink: Sink = { name: "gated", deliver: () => new Promise<void>((resolve) => (open = resolve)) };
    const journal = new Journal({ store, logger: log, commitIntervalMs: 0, clock });
    const runner = new SinkRunner({ sink, journal, store: null, logger: log, clock, saturated });
    const start = clock.now();
    // 3000 one-event batches 10 ms apart while the first delivery stays open: more than the marks kept.
    // Each says 400 KB, so a delivery joins two of them.
    for (let b = 1; b <= 3000; b++) {
      runner.offer({ ...syntheticBatch(b, 1, 10), size: 400_000 });
      await clock.advance(10);
    }
    assert.equal(runner.lagEvents, 3000);
    assert.equal(runner.lagMs, clock.now() - start, "the first batch's age");
    let over = 0;
    while (runner.cursor < 3000) {
      open!();
      open = null;
      await clock.advance(1); // the cursor is stored, the next delivery goes
      if (runner.cursor === 3000) break;
      const oldest = start + runner.cursor * 10; // batch cursor + 1 was offered then
      const real = clock.now() - oldest;
      assert.ok(
        runner.lagMs >= real,
        `${runner.lagMs} ms at cursor ${runner.cursor}, the oldest is ${real} ms old`,
      );
      assert.ok(
        runner.lagMs <= real + 200,
        `${runner.lagMs} ms at cursor ${runner.cursor}: merged too coarsely`,
      );
      if (runner.lagMs > real) over++;
    }
    assert.ok(over > 0, "some marks were merged");
    assert.equal(runner.lagMs, 0, "caught up");
    runner.close();
    await journal.close();
  });
});

Deno.test("pacing: what was stored before the start is delivered without holding reading; what follows is paced", async () => {
  await withStore(async (store) => {
    // A previous run left 20 000 events undelivered.
    store.transaction("seed", () => {
      for (let id = 1; id <= 20_000; id++) store.events.insert(id, 0, null, id, "E", 1, enc(`{"n":${id}}`));
      store.setCursor("slow", 0, 1);
    });
    const clock = new ManualClock();
    const sink = slowSink(clock, 0.2);
    const r = rig(store, sink, clock);
    assert.equal(r.runner.lagEvents, 20_000);
    // The backlog takes the sink 4 s; the shards read meanwhile (they must get to their HELLO).
    await r.ingest(3000, 100);
    assert.ok(r.runner.cursor < 20_000, `still on the stored backlog (${r.runner.cursor})`);
    assert.ok(r.runner.lagMs > PACE_BEHIND.ms && r.runner.lagEvents > PACE_BEHIND.events);
    assert.equal(r.changes.length, 0, "not held while delivering what was stored before the start");
    // Past it, the sink is behind on what this run committed: paced.
    await r.ingest(5000, 100);
    assert.ok(r.runner.cursor > 20_000);
    assert.ok(r.changes.some(([paused]) => paused), "paced once past the stored backlog");
    await drain(r);
    assert.equal(r.runner.cursor, 20_000 + r.read());
    r.runner.close();
    await r.journal.close();
  });
});

Deno.test("pacing: a sink that falls behind while the process has time to spare is slow on its own: no hold", async () => {
  await withStore(async (store) => {
    // Ingest 20 000 events/s; the sink takes 10 000/s (each delivery well within the stall bound).
    const clock = new ManualClock();
    let busy = false;
    const r = rig(store, slowSink(clock, 0.1), clock, () => busy);
    await r.ingest(600, 200);
    assert.ok(r.runner.healthy, "the sink is taking events");
    assert.ok(r.runner.lagEvents > 2 * PACE_BEHIND.events, `behind (${r.runner.lagEvents} events)`);
    assert.ok(r.runner.lagMs > PACE_BEHIND.ms, `behind (${r.runner.lagMs} ms)`);
    assert.deepEqual(r.changes, [], "a slow endpoint does not slow every shard: the journal takes it");
    // The process becomes saturated: the same lag now holds reading, until the sink is back under.
    busy = true;
    await r.ingest(300, 200);
    assert.equal(r.backpressure.paused, true, "held once the process is saturated");

    await drain(r);
    assert.equal(r.backpressure.paused, false, "let go once back under");
    r.runner.close();
    await r.journal.close();
  });
});

Deno.test("pacing: a batch's age counts from when its first event arrived, not from its commit", async () => {
  await withStore(async (store) => {
    // A flood's batch is written beside the shards and committed late: 2000 events that arrived 400 ms
    // ago are behind (> 1000 events, > 250 ms) the moment they are offered, so reading is held at once.
    const clock = new ManualClock(10_000);
    const sink = slowSink(clock, 0.2);
    sink.mode = "hang";
    const backpressure = new Backpressure();
    const journal = new Journal({ store, logger: log, clock, commitIntervalMs: 50, backpressure });
    const runner = new SinkRunner({ sink, journal, store, logger: log, backpressure, clock, saturated });
    runner.start();
    runner.offer({ ...syntheticBatch(1, 2000, 10), firstReceivedAt: clock.now() - 400 });
    assert.equal(runner.lagMs, 400);
    await clock.advance(1);
    assert.deepEqual(backpressure.holders, ["pace slow"], "held at once");
    runner.close();
    await journal.close();
  });
});
