/**
 * SinkRunner: one sink driven from the journal's committed batches, on a manual clock (retries, the
 * journal's commit interval and a bounded finish are timers; nothing here sleeps).
 */
import assert from "node:assert/strict";
import { type EventBatch, Journal, type JournalOptions } from "../../src/journal/journal.ts";
import type { Store } from "../../src/journal/store.ts";
import { finishDelivery } from "../../src/sinks/delivery.ts";
import { SinkRunner } from "../../src/sinks/runner.ts";
import type { Sink } from "../../src/sinks/sink.ts";
import { Backpressure } from "../../src/util/backpressure.ts";
import { ManualClock, sleep } from "../../src/util/clock.ts";
import { logger } from "../../src/util/log.ts";
import { collector, enc, syntheticBatch, withStore } from "../helpers/journal_store.ts";

const log = logger("test");

/** A journal on `store` and a started runner for `sink` subscribed to it, both on `clock`. */
function journalWithRunner(
  store: Store,
  sink: Sink,
  clock: ManualClock,
  options: Partial<Omit<JournalOptions, "store" | "logger" | "clock">> = {},
): { journal: Journal; runner: SinkRunner } {
  const journal = new Journal({ ...options, store, logger: log, clock });
  const runner = new SinkRunner({ sink, journal, store, logger: log, clock });
  runner.start();
  return { journal, runner };
}

/** A sink that records what it got and can be told to fail or to answer on a later turn. */
function recordingSink(mode: { fail?: number; async?: boolean } = {}): Sink & { got: number[] } {
  let failures = mode.fail ?? 0;
  const sink = {
    name: "test",
    got: [] as number[],
    deliver(batch: EventBatch) {
      if (failures > 0) {
        failures--;
        throw new Error("not now");
      }
      const ids = Array.from({ length: batch.count }, (_, i) => batch.id(i));
      if (mode.async) return Promise.resolve().then(() => void sink.got.push(...ids));
      sink.got.push(...ids);
    },
  };
  return sink;
}

/** A sink whose deliveries stay open until `release()`; records each delivery's ids. */
function gatedSink() {
  let open: (() => void) | null = null;
  const sink = {
    name: "test",
    deliveries: [] as Array<[number, number, number]>,
    deliver(batch: EventBatch) {
      sink.deliveries.push([batch.id(0), batch.id(batch.count - 1), batch.size]);
      return new Promise<void>((resolve) => (open = resolve));
    },
    release() {
      const resolve = open;
      open = null;
      resolve?.();
    },
  };
  return sink;
}

Deno.test("sink runner: delivers what is stored beyond its cursor first, in order, then live batches", async () => {
  await withStore(async (store) => {
    // A previous run stored 5000 events and delivered 1200 of them.
    store.transaction("seed", () => {
      for (let id = 1; id <= 5000; id++) store.events.insert(id, 0, null, id, "E", 1, enc(`{"n":${id}}`));
      store.setCursor("test", 1200, 1);
    });
    const clock = new ManualClock();
    const sink = recordingSink();
    const { journal, runner } = journalWithRunner(store, sink, clock, { commitIntervalMs: 10 });
    journal.event(0, "E", 5001, enc('{"n":5001}'), 0, true);
    for (let i = 0; i < 20 && runner.cursor < 5001; i++) await clock.advance(10);
    assert.deepEqual(sink.got, Array.from({ length: 3801 }, (_, i) => 1201 + i));
    // The cursor rides with the next commit, at most one commit interval (10 ms) later.
    await clock.advance(10);
    assert.equal(store.cursor("test"), 5001, "the cursor is stored with a later commit");
    runner.close();
    await journal.close();
  });
});

Deno.test("sink runner: a new sink starts at what is committed; it never reads past what the journal committed", async () => {
  await withStore(async (store) => {
    store.transaction("seed", () => {
      for (let id = 1; id <= 10; id++) store.events.insert(id, 0, null, id, "E", 1, enc(`{"n":${id}}`));
    });
    const clock = new ManualClock();
    const journal = new Journal({ store, logger: log, clock, commitIntervalMs: 0 });
    // Rows the journal has not acknowledged yet (a writer thread ahead of its reply) are not read.
    store.transaction("ahead", () => store.events.insert(11, 0, null, 11, "E", 1, enc('{"n":11}')));
    store.setCursor("test", 5, 1);
    const sink = recordingSink();
    const runner = new SinkRunner({ sink, journal, store, logger: log, clock });
    runner.start();
    assert.deepEqual(sink.got, [6, 7, 8, 9, 10], "up to the id the journal started from");
    const fresh = recordingSink();
    const other = new SinkRunner({ sink: { ...fresh, name: "new" }, journal, store, logger: log, clock });
    other.start();
    assert.equal(other.cursor, 10, "a new sink starts with what is committed from now on");
    runner.close();
    other.close();
    await journal.close();
  });
});

Deno.test("steady traffic: each event committed on its own turn, the sink's cursor riding with the next events", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const sink = recordingSink();
    let batches = 0;
    const { journal, runner } = journalWithRunner(store, sink, clock, { commitIntervalMs: 25 });
    journal.subscribe(collector(() => batches++));
    let n = 0;
    const started = clock.now();
    while (clock.now() - started < 400) {
      journal.event(0, "E", ++n, enc(`{"n":${n}}`), 0, true);
      await clock.advance(2);
    }
    for (let i = 0; i < 50 && runner.cursor < n; i++) await clock.advance(10);
    assert.equal(sink.got.length, n, "every event delivered");
    await clock.advance(60);
    assert.equal(store.cursor("test"), n, "the last cursor is stored");
    // Every transaction but the last (the final cursor) carries events: a cursor does not get a
    // transaction of its own while events flow.
    assert.ok(
      journal.commits <= batches + 1,
      `${journal.commits} transactions for ${batches} batches of events`,
    );
    // Nothing is in flight between events (writes are inline): none waits for the interval.
    assert.equal(batches, n, "each event committed on the turn it arrived in");
    assert.ok(journal.commits >= n, `${journal.commits} transactions: commits kept going`);
    runner.close();
    await journal.close();
  });
});

Deno.test("sink runner: a delivery that fails because the sink was closed at stop is not retried or counted", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    let calls = 0;
    let reject: (error: Error) => void = () => {};
    const sink: Sink = {
      name: "broker",
      deliver() {
        calls++;
        return new Promise<void>((_, no) => reject = no);
      },
    };
    const { journal, runner } = journalWithRunner(store, sink, clock);
    journal.event(0, "E", 1, enc('{"n":1}'), 0, true);
    await clock.advance(50);
    assert.equal(calls, 1, "one delivery in flight");
    runner.close();
    reject(new Error("Connection closed by client"));
    await clock.advance(20_000);
    assert.equal(runner.errors, 0, "not counted as a sink error");
    assert.equal(calls, 1, "not retried after the stop");
    assert.equal(runner.cursor, 0, "the event stays undelivered in the journal");
    await journal.close();
  });
});

Deno.test("sink runner: at stop, finish() waits for the delivery under way (never doubles it) and is bounded", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const deliveries: Array<[number, number]> = [];
    let release: (() => void) | null = null;
    const sink: Sink = {
      name: "slow",
      deliver(batch) {
        deliveries.push([batch.firstId, batch.lastId]);
        // The first delivery is slow (a broker, a reader that pauses), the others are quick.
        return deliveries.length === 1
          ? new Promise<void>((resolve) => (release = resolve))
          : Promise.resolve();
      },
    };
    const { journal, runner } = journalWithRunner(store, sink, clock);
    journal.event(0, "E", 1, enc('{"n":1}'), 0, true);
    await clock.advance(50);
    assert.equal(deliveries.length, 1);
    journal.event(0, "E", 2, enc('{"n":2}'), 0, true);
    journal.event(0, "E", 3, enc('{"n":3}'), 0, true);
    await journal.flush();
    clock.setTimeout(() => release!(), 100);
    let done: boolean | null = null;
    const finishing = runner.finish(journal.lastCommittedId, 5000).then((result) => (done = result));
    await clock.advance(99);
    assert.equal(done, null, "waits for the delivery under way");
    await clock.advance(1);
    assert.equal(done, true, "done once the sink took it, not after the whole timeout");
    await finishing;
    assert.deepEqual(deliveries, [[1, 1], [2, 3]], "each batch once, in order");
    assert.equal(runner.cursor, 3);
    // A sink that never answers: finish gives up after its timeout, the events stay in the journal.
    runner.close();
    await journal.close();
    const stuck = journalWithRunner(
      store,
      { name: "stuck", deliver: () => new Promise<void>(() => {}) },
      clock,
    );
    stuck.journal.event(0, "E", 4, enc('{"n":4}'), 0, true);
    await stuck.journal.flush();
    let gaveUp: boolean | null = null;
    const giving = stuck.runner.finish(stuck.journal.lastCommittedId, 200).then((
      result,
    ) => (gaveUp = result));
    await clock.advance(199);
    assert.equal(gaveUp, null);
    await clock.advance(1);
    assert.equal(gaveUp, false, "gives up at its timeout");
    await giving;
    assert.equal(stuck.runner.cursor, 3);
    stuck.runner.close();
    await stuck.journal.close();
  });
});

Deno.test("sink runner: a failing sink is retried from its cursor with backoff; an async sink acknowledges on resolve", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const sink = recordingSink({ fail: 2, async: true });
    const { journal, runner } = journalWithRunner(store, sink, clock);
    for (let n = 1; n <= 30; n++) {
      journal.event(0, "E", n, enc(`{"n":${n}}`), 0, true);
      if (n % 10 === 0) await clock.advance(0);
    }
    assert.equal(runner.errors, 1, "the first delivery failed");
    // Retries 200 ms after the first failure, then 400 ms after the second.
    await clock.advance(199);
    assert.equal(runner.errors, 1, "no retry before its backoff");
    await clock.advance(1);
    assert.equal(runner.errors, 2);
    await clock.advance(399);
    assert.deepEqual(sink.got, [], "the second retry waits 400 ms");
    await clock.advance(1);
    for (let i = 0; i < 20 && runner.cursor < 30; i++) await clock.advance(50);
    assert.deepEqual(sink.got, Array.from({ length: 30 }, (_, i) => i + 1), "each event once, in order");
    await clock.advance(100);
    assert.equal(store.cursor("test"), 30);
    runner.close();
    await journal.close();
  });
});

Deno.test("sink runner: batches that queued during a delivery go out together, at most 1 MB at a time", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const sink = gatedSink();
    const journal = new Journal({ store, logger: log, commitIntervalMs: 0, clock });
    const runner = new SinkRunner({ sink, journal, store: null, logger: log, clock });
    runner.offer(syntheticBatch(1, 10, 100));
    assert.deepEqual(sink.deliveries, [[1, 10, 1000]]);
    // 300 batches of 10 × 1 KB arrive while the first delivery is open.
    for (let b = 0; b < 300; b++) runner.offer(syntheticBatch(11 + b * 10, 10, 1000));
    for (let i = 0; i < 100 && runner.cursor < 3010; i++) {
      sink.release();
      await clock.advance(1);
    }
    assert.equal(runner.cursor, 3010);
    const joined = sink.deliveries.slice(1);
    assert.ok(joined.length <= 4, `${joined.length} deliveries for 300 queued batches`);
    for (const [, , bytes] of joined) assert.ok(bytes <= 1024 * 1024, `${bytes} bytes in one delivery`);
    // In order, no gap, no repeat.
    let next = 1;
    for (const [first, last] of sink.deliveries) {
      assert.equal(first, next);
      next = last + 1;
    }
    runner.close();
    await journal.close();
  });
});

Deno.test("sink runner without a store (journal off): a sink far behind holds the shards, nothing is dropped", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const sink = gatedSink();
    const holds: boolean[] = [];
    const backpressure = new Backpressure();
    backpressure.subscribe((paused) => holds.push(paused));
    const journal = new Journal({ store, logger: log, commitIntervalMs: 0, clock });
    const runner = new SinkRunner({
      sink,
      journal,
      store: null,
      logger: log,
      backpressure,
      clock,
      saturated: () => false,
    });
    // 40 MB arrive while the sink takes nothing.
    for (let b = 0; b < 400; b++) runner.offer(syntheticBatch(1 + b * 100, 100, 1000));
    assert.deepEqual(holds, [true], "shards asked to stop reading");
    assert.deepEqual(backpressure.holders, ["sink test"]);
    for (let i = 0; i < 400 && runner.cursor < 40_000; i++) {
      sink.release();
      await clock.advance(1);
    }
    assert.equal(runner.cursor, 40_000, "every event delivered");
    assert.deepEqual(holds, [true, false], "and let go once the queue drained");
    let next = 1;
    for (const [first, last] of sink.deliveries) {
      assert.equal(first, next);
      next = last + 1;
    }
    runner.close();
    await journal.close();
  });
});

Deno.test("sink runner: a permanent failure (stdout closed) is not retried", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    let calls = 0;
    const sink = {
      name: "test",
      deliver() {
        calls++;
        throw Object.assign(new Error("stdout is closed"), { permanent: true });
      },
    };
    const journal = new Journal({ store, logger: log, commitIntervalMs: 0, clock });
    const runner = new SinkRunner({ sink, journal, store, logger: log, clock });
    runner.offer(syntheticBatch(1, 3, 10));
    await clock.advance(20_000);
    assert.equal(calls, 1);
    assert.equal(runner.cursor, 0, "nothing acknowledged");
    runner.close();
    await journal.close();
  });
});

Deno.test("sink runner: a broker sink runs ahead of the stored cursor; stdout waits for it", async () => {
  await withStore(async (store) => {
    for (const ahead of [true, false]) {
      const clock = new ManualClock();
      const got: number[] = [];
      const sink = {
        name: ahead ? "broker" : "stdout",
        runsAheadOfStoredCursor: ahead,
        deliver(batch: EventBatch) {
          for (let i = 0; i < batch.count; i++) got.push(batch.id(i));
          return Promise.resolve();
        },
      };
      // Commits every second: a cursor waits that long to be stored.
      const journal = new Journal({ store, logger: log, commitIntervalMs: 1000, clock });
      journal.setCursor("warm-up", 0);
      await journal.flush();
      await clock.advance(20); // the timer the warm-up scheduled has fired; the next commit is 1 s away
      const runner = new SinkRunner({ sink, journal, store: null, logger: log, clock });
      runner.offer(syntheticBatch(1, 2, 10));
      await clock.advance(20);
      runner.offer(syntheticBatch(3, 2, 10));
      runner.offer(syntheticBatch(5, 2, 10));
      await clock.advance(50);
      if (ahead) assert.deepEqual(got, [1, 2, 3, 4, 5, 6], "not held back by the store");
      else {
        assert.deepEqual(got, [1, 2], "the next batch waits until cursor 2 is stored");
        await clock.advance(1000);
        assert.deepEqual(got, [1, 2, 3, 4, 5, 6], "and goes once it is");
      }
      runner.close();
      await journal.close();
    }
  });
});

Deno.test("journal off, at stop: the sinks take everything handed out before the seqs are checkpointed past it", async () => {
  for (const slowMs of [20, 3000]) {
    await withStore(async (store) => {
      const clock = new ManualClock();
      let taken = 0;
      const sink: Sink = {
        name: "slow",
        deliver: async (batch) => {
          await sleep(clock, slowMs);
          taken = batch.lastId;
        },
      };
      const journal = new Journal({ store, keepEvents: false, logger: log, clock });
      const runner = new SinkRunner({ sink, journal, store: null, logger: log, clock });
      runner.start();
      journal.sessionStarted(1, 0, { id: "sess", resumeUrl: "wss://r", seq: 0 });
      for (let s = 1; s <= 60; s++) {
        journal.event(0, "E", s, enc(`{"n":${s}}`), 0, true);
        if (s % 5 === 0) await clock.advance(20);
      }
      await clock.advance(1100); // a 1 s checkpoint came and went
      const before = store.sessions.load()[0].seq;
      const finishing = finishDelivery(journal, [runner], false, 300);
      await clock.advance(300);
      const { target, taken: all } = await finishing;
      const stored = store.sessions.load()[0].seq;
      if (slowMs === 20) {
        assert.deepEqual(all, [true]);
        assert.equal(taken, target);
        assert.equal(stored, 60, "everything was taken: the stop checkpoints the last seq");
      } else {
        assert.deepEqual(all, [false], "the sink did not take everything in time");
        assert.ok(taken < target);
        assert.equal(stored, before, "the seqs stay at the last checkpoint: Discord sends the rest again");
      }
      runner.close();
      await journal.close();
    });
  }
});
