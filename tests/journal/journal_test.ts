import assert from "node:assert/strict";
import { type EventBatch, Journal } from "../../src/journal/journal.ts";
import { Store } from "../../src/journal/store.ts";
import { SinkRunner } from "../../src/sinks/runner.ts";
import type { Sink } from "../../src/sinks/sink.ts";
import { logger } from "../../src/util/log.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const tick = (ms = 0) => new Promise((resolve) => setTimeout(resolve, ms));
const log = logger("test");

async function withStore(fn: (store: Store, path: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-journal-" });
  const path = `${dir}/g.db`;
  const store = Store.open(path);
  try {
    await fn(store, path);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const payload = (t: string, s: number, extra = "") =>
  enc(`  {"t":"${t}","s":${s},"op":0,"d":{"x":"${extra}"}}\n`);

Deno.test("a turn's events and the new seq of their session commit together; filtered events advance the seq", async () => {
  await withStore(async (store) => {
    const batches: EventBatch[] = [];
    const journal = new Journal({ store, logger: log, onCommit: (b) => batches.push(b) });
    journal.sessionStarted(3, { id: "sess", resumeUrl: "wss://r", seq: 1, shardCount: 4 });
    journal.event(3, "READY", 1, payload("READY", 1), 2, true);
    journal.event(3, "TYPING_START", 2, payload("TYPING_START", 2), 2, false); // filtered
    journal.event(3, "MESSAGE_CREATE", 3, payload("MESSAGE_CREATE", 3), 2, true);
    journal.event(3, "TYPING_START", 4, payload("TYPING_START", 4), 2, false); // filtered, last
    assert.equal(store.maxEventId(), 0, "nothing before the end of the turn");
    await tick();
    assert.equal(batches.length, 1);
    const [batch] = batches;
    assert.deepEqual([batch.firstId, batch.lastId, batch.count], [1, 2, 2]);
    assert.equal(
      dec(batch.payload(1)),
      '{"t":"MESSAGE_CREATE","s":3,"op":0,"d":{"x":""}}',
      "trimmed, from its {",
    );
    const rows = store.readEvents(0, 10);
    assert.deepEqual(rows.map((r) => [r.id, r.shard, r.session, r.seq, r.t]), [
      [1, 3, "sess", 1, "READY"],
      [2, 3, "sess", 3, "MESSAGE_CREATE"],
    ]);
    assert.deepEqual(store.loadSessions().map((s) => [s.shard, s.sessionId, s.seq, s.shardCount]), [[
      3,
      "sess",
      4,
      4,
    ]]);
    assert.equal(store.meta("last_id"), "2");
    journal.sessionLost(3);
    journal.internal(3, "GATEHOUSE_SESSION_INVALIDATED", { shard_id: 3 });
    await tick();
    assert.deepEqual(store.loadSessions(), []);
    assert.equal(store.readEvents(2, 10)[0].t, "GATEHOUSE_SESSION_INVALIDATED");
  });
});

Deno.test("a failing store: nothing acknowledged, sessions do not advance, shards paused; all committed on recovery", async () => {
  await withStore(async (store) => {
    const delivered: number[] = [];
    const pauses: boolean[] = [];
    const journal = new Journal({
      store,
      logger: log,
      maxPendingBytes: 50_000,
      onCommit: (b) => {
        for (let i = 0; i < b.count; i++) delivered.push(b.id(i));
      },
      onBackpressure: (paused) => pauses.push(paused),
    });
    journal.sessionStarted(0, { id: "s", resumeUrl: "wss://r", seq: 1, shardCount: 1 });
    journal.event(0, "READY", 1, payload("READY", 1), 2, true);
    await tick();
    assert.deepEqual(delivered, [1]);
    // The disk is "full": SQLite's max_page_count at what is used now.
    store.setMaxPageCount(Math.ceil(store.usedBytes() / store.pageSize()) + 1);
    const filler = "y".repeat(2000);
    for (let s = 2; s <= 60; s++) {
      journal.event(0, "MESSAGE_CREATE", s, payload("MESSAGE_CREATE", s, filler), 2, true);
    }
    await tick(50);
    assert.ok(journal.failing, "the commit failed");
    assert.deepEqual(delivered, [1], "nothing new acknowledged");
    assert.equal(store.loadSessions()[0].seq, 1, "the stored session did not advance");
    assert.deepEqual(pauses, [true], "shards are asked to stop reading");
    assert.equal(journal.pendingEvents, 59);
    // More events while failing are held too, with ids after the held ones.
    journal.event(0, "MESSAGE_CREATE", 61, payload("MESSAGE_CREATE", 61), 2, true);
    store.setMaxPageCount(1_000_000);
    await tick(3500);
    assert.equal(journal.failing, false);
    assert.deepEqual(pauses, [true, false]);
    assert.deepEqual(delivered, Array.from({ length: 61 }, (_, i) => i + 1));
    assert.equal(store.loadSessions()[0].seq, 61);
    assert.deepEqual(store.readEvents(0, 100).map((r) => r.seq), Array.from({ length: 61 }, (_, i) => i + 1));
  });
});

/** A sink that records what it got and can be told to fail or to answer later. */
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
      if (mode.async) return tick(5).then(() => void sink.got.push(...ids));
      sink.got.push(...ids);
    },
  };
  return sink;
}

Deno.test("sink runner: delivers what is stored beyond its cursor first, in order, then live batches", async () => {
  await withStore(async (store) => {
    // A previous run stored 5000 events and delivered 1200 of them.
    store.transaction("seed", () => {
      for (let id = 1; id <= 5000; id++) store.insertEvent(id, 0, null, id, "E", 1, enc(`{"n":${id}}`));
      store.setCursor("test", 1200, 1);
    });
    store.lastId = 5000;
    const sink = recordingSink();
    let runner: SinkRunner | null = null;
    const journal = new Journal({ store, logger: log, onCommit: (b) => runner!.offer(b) });
    runner = new SinkRunner({ sink, journal, store, logger: log });
    runner.start();
    journal.event(0, "E", 5001, enc('{"n":5001}'), 0, true);
    for (let i = 0; i < 20 && runner.cursor < 5001; i++) await tick(10);
    assert.deepEqual(sink.got, Array.from({ length: 3801 }, (_, i) => 1201 + i));
    await tick();
    assert.equal(store.cursor("test"), 5001, "the cursor is stored with a later commit");
  });
});

Deno.test("sink runner: a failing sink is retried from its cursor; an async sink acknowledges on resolve", async () => {
  await withStore(async (store) => {
    const sink = recordingSink({ fail: 2, async: true });
    let runner: SinkRunner | null = null;
    const journal = new Journal({ store, logger: log, onCommit: (b) => runner!.offer(b) });
    runner = new SinkRunner({ sink, journal, store, logger: log });
    runner.start();
    for (let n = 1; n <= 30; n++) {
      journal.event(0, "E", n, enc(`{"n":${n}}`), 0, true);
      if (n % 10 === 0) await tick();
    }
    for (let i = 0; i < 200 && runner.cursor < 30; i++) await tick(10);
    assert.deepEqual(sink.got, Array.from({ length: 30 }, (_, i) => i + 1), "each event once, in order");
    await tick();
    assert.equal(store.cursor("test"), 30);
    runner.close();
  });
});
