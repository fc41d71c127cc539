/**
 * The transforms where events meet the sinks (SinkRunner, startDelivery): dropped events still move the
 * cursor, a batch with nothing left is acknowledged without the sink, a failed delivery tried again from
 * the store gets the same lines, and after a restart the sinks wait for the state rebuilt from the
 * journal before their first delivery.
 */
import assert from "node:assert/strict";
import { type EventBatch, Journal } from "../../src/journal/journal.ts";
import { startDelivery } from "../../src/sinks/delivery.ts";
import { LineBuffer } from "../../src/sinks/ndjson.ts";
import { SinkRunner } from "../../src/sinks/runner.ts";
import type { Sink } from "../../src/sinks/sink.ts";
import { type TransformOptions, Transforms } from "../../src/sinks/transforms.ts";
import { Backpressure } from "../../src/util/backpressure.ts";
import { ManualClock } from "../../src/util/clock.ts";
import { logger } from "../../src/util/log.ts";
import { dec, enc, withStore } from "../helpers/journal_store.ts";

const log = logger("test");

const ALL: TransformOptions = {
  guildCreate: "annotate",
  guildDelete: "drop_unavailable",
  messageUpdate: "drop_unchanged",
  messageWindowMs: 10_000,
  messageCache: 100,
};

const dispatch = (t: string, s: number, d: unknown) => enc(JSON.stringify({ t, s, op: 0, d }));

/** A sink that keeps its lines (parsed), can fail its first `fail` deliveries, and counts calls. */
function linesSink(fail = 0, name = "lines") {
  const buffer = new LineBuffer();
  const sink = {
    name,
    calls: 0,
    lines: [] as Array<Record<string, unknown>>,
    deliver(batch: EventBatch) {
      sink.calls++;
      if (fail > 0) {
        fail--;
        throw new Error("not now");
      }
      buffer.appendBatch(batch);
      for (const line of dec(buffer.take()).split("\n")) if (line) sink.lines.push(JSON.parse(line));
    },
  };
  return sink satisfies Sink;
}

/** Lets the rebuild's slices (real timers) run. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 30));

Deno.test("runner: dropped events move the cursor; a delivery with nothing left never reaches the sink", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const journal = new Journal({ store, logger: log, clock, commitIntervalMs: 0 });
    const sink = linesSink();
    const runner = new SinkRunner({
      sink,
      journal,
      store,
      logger: log,
      clock,
      transforms: new Transforms(ALL),
    });
    runner.start();
    journal.event(
      0,
      "READY",
      1,
      dispatch("READY", 1, { guilds: [{ id: "10", unavailable: true }] }),
      0,
      true,
    );
    journal.event(0, "GUILD_CREATE", 2, dispatch("GUILD_CREATE", 2, { id: "10" }), 0, true);
    await clock.advance(10);
    assert.equal(sink.calls, 1);
    // A commit of one outage only: dropped, and the cursor moves past it without a delivery.
    journal.event(
      0,
      "GUILD_DELETE",
      3,
      dispatch("GUILD_DELETE", 3, { id: "10", unavailable: true }),
      0,
      true,
    );
    await clock.advance(10);
    assert.equal(sink.calls, 1, "not called for a batch with nothing left");
    assert.equal(runner.cursor, 3);
    journal.event(0, "GUILD_CREATE", 4, dispatch("GUILD_CREATE", 4, { id: "10" }), 0, true);
    await clock.advance(10);
    assert.deepEqual(sink.lines.map((l) => [l.id, l.t, l.guild_create ?? null]), [
      [1, "READY", null],
      [2, "GUILD_CREATE", "loading"],
      [4, "GUILD_CREATE", "available"],
    ]);
    assert.equal(runner.cursor, 4);
    await clock.advance(100);
    assert.equal(store.cursor("lines"), 4, "the stored cursor is past the dropped event");
    assert.equal(runner.delivered, 3, "delivered counts what the sink got");
    const counts = runner.transforms!.counts;
    assert.deepEqual([counts.loading, counts.available, counts.droppedUnavailableGuildDelete], [1, 1, 1]);
    runner.close();
    await journal.close();
  });
});

Deno.test("runner: a failed delivery tried again from the store gets the same verdicts, counted once", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const journal = new Journal({ store, logger: log, clock, commitIntervalMs: 0 });
    const sink = linesSink(2);
    const runner = new SinkRunner({
      sink,
      journal,
      store,
      logger: log,
      clock,
      transforms: new Transforms(ALL),
    });
    runner.start();
    journal.event(
      0,
      "READY",
      1,
      dispatch("READY", 1, { guilds: [{ id: "10", unavailable: true }] }),
      0,
      true,
    );
    journal.event(0, "GUILD_CREATE", 2, dispatch("GUILD_CREATE", 2, { id: "10" }), 0, true);
    journal.event(0, "MESSAGE_CREATE", 3, dispatch("MESSAGE_CREATE", 3, { id: "7", content: "a" }), 0, true);
    journal.event(0, "MESSAGE_UPDATE", 4, dispatch("MESSAGE_UPDATE", 4, { id: "7", content: "a" }), 0, true);
    for (let i = 0; i < 20 && runner.cursor < 4; i++) await clock.advance(1000);
    assert.equal(sink.calls, 3, "two failures, then taken");
    assert.deepEqual(sink.lines.map((l) => [l.t, l.guild_create ?? null]), [
      ["READY", null],
      ["GUILD_CREATE", "loading"],
      ["MESSAGE_CREATE", null],
    ]);
    const counts = runner.transforms!.counts;
    assert.deepEqual([counts.loading, counts.droppedUnchangedMessageUpdate], [1, 1]);
    runner.close();
    await journal.close();
  });
});

Deno.test("delivery: after a restart every sink waits for the state rebuilt from the journal, then judges as the last run did", async () => {
  await withStore(async (store) => {
    // The last run: READY of two guilds, one loaded, one down, a message; the sinks took all of it.
    store.transaction("seed", () => {
      const rows: Array<[string, unknown]> = [
        ["READY", { guilds: [{ id: "10", unavailable: true }, { id: "11", unavailable: true }] }],
        ["GUILD_CREATE", { id: "10" }],
        ["GUILD_DELETE", { id: "10", unavailable: true }],
        ["MESSAGE_CREATE", { id: "7", content: "a" }],
      ];
      rows.forEach(([t, d], i) =>
        store.events.insert(i + 1, 0, "s", i + 1, t, Date.now(), dispatch(t, i + 1, d))
      );
      store.setCursor("one", 4, 1);
      store.setCursor("two", 4, 1);
    });
    const clock = new ManualClock(Date.now());
    const journal = new Journal({ store, logger: log, clock, commitIntervalMs: 0 });
    const one = linesSink(0, "one");
    const two = linesSink(0, "two");
    const delivery = startDelivery({
      journal,
      sinks: [one, two],
      keepEvents: true,
      store,
      backpressure: new Backpressure(),
      logger: log,
      clock,
      transforms: ALL,
    });
    // Live events right away: held until the rebuild is done.
    let s = 5;
    for (
      const [t, d] of [
        ["GUILD_CREATE", { id: "10" }],
        ["GUILD_CREATE", { id: "11" }],
        ["GUILD_CREATE", { id: "12" }],
        ["MESSAGE_UPDATE", { id: "7", content: "a" }],
      ] as const
    ) {
      journal.event(0, t, s, dispatch(t, s++, d), 0, true);
    }
    await clock.advance(0);
    await settle();
    await clock.advance(0);
    for (const sink of [one, two]) {
      assert.deepEqual(sink.lines.map((l) => [l.id, (l.d as { id: string }).id, l.guild_create ?? null]), [
        [5, "10", "available"],
        [6, "11", "loading"],
        [7, "12", "joined"],
      ], sink.name);
    }
    assert.deepEqual(delivery.runners.map((r) => r.cursor), [8, 8]);
    await journal.close();
    await delivery.stop(8, 100);
  });
});

Deno.test("runner: held until released (the rebuild), batches committed meanwhile wait", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const journal = new Journal({ store, logger: log, clock, commitIntervalMs: 0 });
    const sink = linesSink();
    const runner = new SinkRunner({
      sink,
      journal,
      store,
      logger: log,
      clock,
      transforms: new Transforms(ALL),
      held: true,
    });
    runner.start();
    journal.event(0, "TYPING_START", 1, dispatch("TYPING_START", 1, {}), 0, true);
    await clock.advance(100);
    assert.equal(sink.calls, 0);
    runner.release();
    await clock.advance(0);
    assert.equal(sink.calls, 1);
    assert.equal(runner.cursor, 1);
    runner.close();
    await journal.close();
  });
});
