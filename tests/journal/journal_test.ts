import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type EventBatch, Journal, type JournalOptions } from "../../src/journal/journal.ts";
import { hardCapPages, Store } from "../../src/journal/store.ts";
import { type BatchData, HybridWriter, InlineWriter, WorkerWriter } from "../../src/journal/write.ts";
import { finishDelivery, SinkRunner } from "../../src/sinks/runner.ts";
import type { Sink } from "../../src/sinks/sink.ts";
import { ManualClock } from "../../src/util/clock.ts";
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
    const journal = new Journal({
      store,
      logger: log,
      commitIntervalMs: 0,
      onCommit: (b) => batches.push(b),
    });
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

Deno.test("between seq checkpoints session rows are not rewritten: stored events carry the seq, and are kept", async () => {
  await withStore(async (store, path) => {
    const journal = new Journal({ store, logger: log });
    const rowSeq = () => {
      const db = new DatabaseSync(path, { readOnly: true });
      try {
        return (db.prepare("SELECT seq FROM sessions WHERE shard = 0").get() as { seq: number }).seq;
      } finally {
        db.close();
      }
    };
    journal.sessionStarted(0, { id: "sess", resumeUrl: "wss://r", seq: 1, shardCount: 1 });
    journal.event(0, "READY", 1, payload("READY", 1), 2, true);
    await journal.flush();
    assert.equal(rowSeq(), 1, "the first commit is a checkpoint");
    const checkpoint = store.seqCheckpoint;
    assert.equal(checkpoint, 1);
    for (let s = 2; s <= 50; s++) {
      journal.event(0, "MESSAGE_CREATE", s, payload("MESSAGE_CREATE", s), 2, true);
    }
    await journal.flush();
    assert.equal(rowSeq(), 1, "not rewritten within the checkpoint interval");
    assert.equal(store.loadSessions()[0].seq, 50, "the newest stored event gives the seq");
    // Pruning folds the seqs of the events it removes into the session rows first.
    assert.equal(store.transaction("prune", () => store.deleteEventsThrough(40, 1000)), 40);
    assert.equal(store.minEventId(), 41);
    assert.equal(rowSeq(), 40);
    assert.equal(store.seqCheckpoint, 40);
    assert.equal(store.loadSessions()[0].seq, 50);
    assert.equal(store.transaction("prune", () => store.deleteEventsThrough(50, 1000)), 10);
    assert.equal(rowSeq(), 50);
    assert.equal(store.loadSessions()[0].seq, 50);
    // A filtered-out event has no row: its seq is noted in one meta row in the same transaction.
    journal.event(0, "TYPING_START", 51, payload("TYPING_START", 51), 2, false);
    await journal.flush();
    assert.equal(rowSeq(), 50);
    assert.deepEqual(JSON.parse(store.meta("seqs")!), { 0: ["sess", 51] });
    assert.equal(store.loadSessions()[0].seq, 51);
    // After the interval every session row is brought up to date and the checkpoint moves.
    journal.event(0, "MESSAGE_CREATE", 52, payload("MESSAGE_CREATE", 52), 2, true);
    await journal.flush();
    assert.equal(rowSeq(), 50);
    assert.equal(store.loadSessions()[0].seq, 52);
    await tick(1_050);
    journal.event(0, "MESSAGE_CREATE", 53, payload("MESSAGE_CREATE", 53), 2, true);
    await journal.flush();
    assert.equal(rowSeq(), 53);
    assert.equal(store.seqCheckpoint, 52);
    assert.equal(store.loadSessions()[0].seq, 53);
    assert.equal(store.meta("seqs"), "{}");
  });
});

Deno.test("events not kept (journal off): each commit notes the seqs in one row; restarts see them", async () => {
  await withStore(async (store) => {
    const journal = new Journal({ store, logger: log, keepEvents: false });
    for (let shard = 0; shard < 4; shard++) {
      journal.sessionStarted(shard, { id: `s${shard}`, resumeUrl: "wss://r", seq: 1, shardCount: 4 });
    }
    await journal.flush();
    for (let seq = 2; seq <= 20; seq++) {
      for (let shard = 0; shard < 4; shard++) {
        journal.event(shard, "MESSAGE_CREATE", seq + shard, payload("MESSAGE_CREATE", seq), 2, true);
      }
    }
    await journal.flush();
    assert.equal(store.maxEventId(), 0, "no events stored");
    assert.deepEqual(store.loadSessions().map((s) => [s.sessionId, s.seq]), [
      ["s0", 20],
      ["s1", 21],
      ["s2", 22],
      ["s3", 23],
    ]);
    // A session replaced since: its old seq is not applied to the new one.
    journal.sessionLost(2);
    journal.sessionStarted(2, { id: "s2b", resumeUrl: "wss://r", seq: 1, shardCount: 4 });
    await journal.flush();
    assert.deepEqual(store.loadSessions().map((s) => [s.sessionId, s.seq]).at(2), ["s2b", 1]);
  });
});

Deno.test("events not kept: commits between checkpoints reach the sinks without a transaction; the checkpoint comes when traffic stops", async () => {
  await withStore(async (store, path) => {
    const clock = new ManualClock();
    const delivered: number[] = [];
    const journal = new Journal({
      store,
      logger: log,
      keepEvents: false,
      commitIntervalMs: 0,
      clock,
      onCommit: (b) => {
        for (let i = 0; i < b.count; i++) delivered.push(b.id(i));
      },
    });
    journal.sessionStarted(0, { id: "s0", resumeUrl: "wss://r", seq: 1, shardCount: 1 });
    await journal.flush();
    const transactions = journal.commits;
    for (let seq = 2; seq <= 30; seq++) {
      journal.event(0, "MESSAGE_CREATE", seq, payload("MESSAGE_CREATE", seq), 2, true);
      journal.setCursor("stdout", seq - 1);
      await tick();
    }
    assert.deepEqual(delivered, Array.from({ length: 29 }, (_, i) => i + 1), "delivered in order, at once");
    assert.equal(journal.commits, transactions, "no transaction between checkpoints");
    assert.equal(store.loadSessions()[0].seq, 1, "the seq waits for the checkpoint");
    // Traffic stops; the checkpoint is written when due all the same.
    await clock.advance(1_000);
    await tick(20);
    assert.equal(journal.commits, transactions + 1);
    assert.equal(store.loadSessions()[0].seq, 30);
    assert.equal(store.cursor("stdout"), 29);
    // A crash now: a new process gives out ids above every one given, never the same again.
    journal.event(0, "MESSAGE_CREATE", 31, payload("MESSAGE_CREATE", 31), 2, true);
    await tick();
    assert.equal(delivered.at(-1), 30);
    const again = Store.open(path, { readOnly: true });
    try {
      assert.equal(again.loadSessions()[0].seq, 30, "resumes from the checkpoint: Discord sends 31 again");
      assert.ok(again.lastId >= 30, `ids recorded ahead of use (${again.lastId})`);
    } finally {
      again.close();
    }
    await journal.close();
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
/** A journal on `store` whose commits go to a started runner for `sink` (`options.onCommit` sees them first). */
function journalWithRunner(
  store: Store,
  sink: Sink,
  options: Partial<Omit<JournalOptions, "store" | "logger">> = {},
): { journal: Journal; runner: SinkRunner } {
  let runner: SinkRunner | null = null;
  const journal = new Journal({
    ...options,
    store,
    logger: log,
    onCommit: (b) => {
      options.onCommit?.(b);
      runner!.offer(b);
    },
  });
  runner = new SinkRunner({ sink, journal, store, logger: log });
  runner.start();
  return { journal, runner };
}

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
    const { journal, runner } = journalWithRunner(store, sink);
    journal.event(0, "E", 5001, enc('{"n":5001}'), 0, true);
    for (let i = 0; i < 20 && runner.cursor < 5001; i++) await tick(10);
    assert.deepEqual(sink.got, Array.from({ length: 3801 }, (_, i) => 1201 + i));
    // The cursor rides with the next commit, at most one commit interval (10 ms) later.
    for (let i = 0; i < 50 && store.cursor("test") !== 5001; i++) await tick(10);
    assert.equal(store.cursor("test"), 5001, "the cursor is stored with a later commit");
  });
});

Deno.test("steady traffic: one transaction per commit interval, the sink's cursor riding with the next events", async () => {
  await withStore(async (store) => {
    const sink = recordingSink();
    let batches = 0;
    const { journal, runner } = journalWithRunner(store, sink, {
      commitIntervalMs: 25,
      onCommit: () => batches++,
    });
    let n = 0;
    const started = performance.now();
    while (performance.now() - started < 400) {
      journal.event(0, "E", ++n, enc(`{"n":${n}}`), 0, true);
      await tick(2);
    }
    for (let i = 0; i < 50 && runner.cursor < n; i++) await tick(10);
    assert.equal(sink.got.length, n, "every event delivered");
    await tick(60);
    assert.equal(store.cursor("test"), n, "the last cursor is stored");
    // Every transaction but the last (the final cursor) carries events: a cursor does not get a
    // transaction of its own while events flow, and the interval holds.
    assert.ok(
      journal.commits <= batches + 1,
      `${journal.commits} transactions for ${batches} batches of events`,
    );
    const elapsed = performance.now() - started;
    assert.ok(
      journal.commits <= elapsed / 25 + 2,
      `${journal.commits} transactions in ${Math.round(elapsed)} ms`,
    );
    runner.close();
    await journal.close();
  });
});

Deno.test("group commit: an event after a quiet spell is committed at once; under steady traffic the next waits for the interval", async () => {
  await withStore(async (store) => {
    const committed: number[] = [];
    const journal = new Journal({
      store,
      logger: log,
      commitIntervalMs: 1000,
      onCommit: (batch) => committed.push(batch.lastId),
    });
    const sent = performance.now();
    journal.event(0, "E", 1, enc('{"n":1}'), 0, true);
    while (committed.length === 0 && performance.now() - sent < 500) await tick(5);
    assert.deepEqual(committed, [1], "the first event did not wait for the interval");
    journal.event(0, "E", 2, enc('{"n":2}'), 0, true);
    journal.event(0, "E", 3, enc('{"n":3}'), 0, true);
    await tick(100);
    assert.deepEqual(committed, [1], "events right after a commit wait for the interval");
    await journal.flush();
    assert.deepEqual(committed, [1, 3], "and then go as one batch");
    await journal.close();
  });
});

Deno.test("sink runner: a delivery that fails because the sink was closed at stop is not retried or counted", async () => {
  await withStore(async (store) => {
    let calls = 0;
    let reject: (error: Error) => void = () => {};
    const sink: Sink = {
      name: "broker",
      deliver() {
        calls++;
        return new Promise<void>((_, no) => reject = no);
      },
    };
    const { journal, runner } = journalWithRunner(store, sink);
    journal.event(0, "E", 1, enc('{"n":1}'), 0, true);
    for (let i = 0; i < 50 && calls === 0; i++) await tick(10);
    assert.equal(calls, 1, "one delivery in flight");
    runner.close();
    reject(new Error("Connection closed by client"));
    await tick(400);
    assert.equal(runner.errors, 0, "not counted as a sink error");
    assert.equal(calls, 1, "not retried after the stop");
    assert.equal(runner.cursor, 0, "the event stays undelivered in the journal");
    await journal.close();
  });
});

Deno.test("sink runner: at stop, finish() waits for the delivery under way (never doubles it) and is bounded", async () => {
  await withStore(async (store) => {
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
    const { journal, runner } = journalWithRunner(store, sink);
    journal.event(0, "E", 1, enc('{"n":1}'), 0, true);
    for (let i = 0; i < 50 && deliveries.length === 0; i++) await tick(10);
    journal.event(0, "E", 2, enc('{"n":2}'), 0, true);
    journal.event(0, "E", 3, enc('{"n":3}'), 0, true);
    await journal.flush();
    setTimeout(() => release!(), 100);
    const started = Date.now();
    assert.equal(await runner.finish(journal.lastCommittedId, 5000), true);
    assert.ok(Date.now() - started < 2000, "done once the sink took it, not after the whole timeout");
    assert.deepEqual(deliveries, [[1, 1], [2, 3]], "each batch once, in order");
    assert.equal(runner.cursor, 3);
    // A sink that never answers: finish gives up after its timeout, the events stay in the journal.
    runner.close();
    await journal.close();
    const stuck = journalWithRunner(store, { name: "stuck", deliver: () => new Promise<void>(() => {}) });
    stuck.journal.event(0, "E", 4, enc('{"n":4}'), 0, true);
    await stuck.journal.flush();
    const t0 = Date.now();
    assert.equal(await stuck.runner.finish(stuck.journal.lastCommittedId, 200), false);
    assert.ok(Date.now() - t0 < 1000);
    assert.equal(stuck.runner.cursor, 3);
    stuck.runner.close();
    await stuck.journal.close();
  });
});

Deno.test("sink runner: a failing sink is retried from its cursor; an async sink acknowledges on resolve", async () => {
  await withStore(async (store) => {
    const sink = recordingSink({ fail: 2, async: true });
    const { journal, runner } = journalWithRunner(store, sink);
    for (let n = 1; n <= 30; n++) {
      journal.event(0, "E", n, enc(`{"n":${n}}`), 0, true);
      if (n % 10 === 0) await tick();
    }
    for (let i = 0; i < 200 && runner.cursor < 30; i++) await tick(10);
    assert.deepEqual(sink.got, Array.from({ length: 30 }, (_, i) => i + 1), "each event once, in order");
    for (let i = 0; i < 50 && store.cursor("test") !== 30; i++) await tick(10);
    assert.equal(store.cursor("test"), 30);
    runner.close();
  });
});

/** Batch `first…first+count-1` of payloads `size` bytes each, as the journal hands them to sinks. */
function syntheticBatch(first: number, count: number, size: number): EventBatch {
  const body = new Uint8Array(size).fill(0x20);
  return {
    count,
    firstId: first,
    lastId: first + count - 1,
    size: count * size,
    id: (i) => first + i,
    shard: () => 0,
    t: () => "E",
    payload: () => body,
    scope: () => "0:s",
    position: (i) => first + i,
  };
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

Deno.test("sink runner: batches that queued during a delivery go out together, at most 1 MB at a time", async () => {
  await withStore(async (store) => {
    const sink = gatedSink();
    const journal = new Journal({ store, logger: log, commitIntervalMs: 0 });
    const runner = new SinkRunner({ sink, journal, store: null, logger: log });
    runner.offer(syntheticBatch(1, 10, 100));
    assert.deepEqual(sink.deliveries, [[1, 10, 1000]]);
    // 300 batches of 10 × 1 KB arrive while the first delivery is open.
    for (let b = 0; b < 300; b++) runner.offer(syntheticBatch(11 + b * 10, 10, 1000));
    for (let i = 0; i < 100 && runner.cursor < 3010; i++) {
      sink.release();
      await tick(15);
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
    const sink = gatedSink();
    const holds: boolean[] = [];
    const journal = new Journal({ store, logger: log, commitIntervalMs: 0 });
    const runner = new SinkRunner({
      sink,
      journal,
      store: null,
      logger: log,
      onBackpressure: (paused) => holds.push(paused),
    });
    // 40 MB arrive while the sink takes nothing.
    for (let b = 0; b < 400; b++) runner.offer(syntheticBatch(1 + b * 100, 100, 1000));
    assert.deepEqual(holds, [true], "shards asked to stop reading");
    for (let i = 0; i < 400 && runner.cursor < 40_000; i++) {
      sink.release();
      await tick(12);
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

Deno.test("hybrid writer: small batches commit on this thread, large ones on the writer thread while this one is saturated, in order", async () => {
  await withStore(async (store, path) => {
    const committed: Array<[number, string]> = [];
    let writer: HybridWriter | null = null;
    const events = {
      committed: (no: number) => committed.push([no, writer!.lastRoute]),
      failed: (error: Error) => assert.fail(error.message),
    };
    let saturated = true;
    writer = new HybridWriter(
      new InlineWriter(store, events),
      new WorkerWriter(path, {}, events),
      1000,
      { saturated: () => saturated },
    );
    const batch = (no: number, firstId: number, count: number, size: number): BatchData => ({
      no,
      lastId: firstId + count - 1,
      bytes: new Uint8Array(count * size).fill(0x20),
      ends: Array.from({ length: count }, (_, i) => (i + 1) * size),
      ids: Array.from({ length: count }, (_, i) => firstId + i),
      shards: Array(count).fill(0),
      sessions: Array(count).fill(null),
      seqs: Array(count).fill(null),
      names: Array(count).fill("E"),
      receivedAt: Array(count).fill(1),
      sessionWrites: [],
      seqUpdates: [],
      cursorWrites: [],
      identifyWrites: [],
      keepEvents: true,
      checkpointId: null,
      seqNote: null,
      at: 1,
      owner: null,
    });
    writer.write(batch(1, 1, 5, 100)); // 500 bytes: here, at once
    assert.deepEqual(committed, [[1, "inline"]]);
    writer.write(batch(2, 6, 50, 100)); // 5000 bytes: the thread
    writer.write(batch(3, 56, 1, 10)); // small, but the thread has work pending: after it, there
    assert.deepEqual(committed, [[1, "inline"]]);
    assert.ok(await writer.drain(5000));
    assert.deepEqual(committed.map(([no]) => no), [1, 2, 3]);
    assert.deepEqual(committed.map(([, route]) => route).slice(1), ["worker", "worker"]);
    writer.write(batch(4, 57, 1, 10)); // the thread is idle again: here
    assert.deepEqual(committed.at(-1), [4, "inline"]);
    // Paced traffic (this thread has time to spare): a large batch costs less CPU here.
    saturated = false;
    writer.write(batch(5, 58, 50, 100));
    assert.deepEqual(committed.at(-1), [5, "inline"]);
    saturated = true;
    writer.write(batch(6, 108, 50, 100));
    assert.deepEqual(committed.at(-1), [5, "inline"]);
    assert.ok(await writer.drain(5000));
    assert.deepEqual(committed.at(-1), [6, "worker"]);
    assert.deepEqual(store.readEvents(0, 200).map((r) => r.id), Array.from({ length: 157 }, (_, i) => i + 1));
    await writer.close();
  });
});

Deno.test("a restarted process's first checkpoint keeps the seq that only the previous run's events recorded", async () => {
  await withStore(async (store) => {
    const first = new Journal({ store, logger: log, commitIntervalMs: 0 });
    first.sessionStarted(0, { id: "sess", resumeUrl: "wss://r", seq: 1, shardCount: 1 });
    first.event(0, "READY", 1, payload("READY", 1), 2, true);
    await first.flush();
    for (let s = 2; s <= 30; s++) first.event(0, "MESSAGE_CREATE", s, payload("MESSAGE_CREATE", s), 2, true);
    await first.flush();
    assert.equal(store.loadSessions()[0].seq, 30, "carried by the events, not the row");
    // "Crash", then a new process restores the session and commits something else (a cursor).
    const [restored] = store.loadSessions();
    const second = new Journal({ store, logger: log, commitIntervalMs: 0 });
    second.restoreSession(0, {
      id: restored.sessionId,
      resumeUrl: restored.resumeUrl,
      seq: restored.seq,
      shardCount: 1,
    });
    second.setCursor("stdout", 30);
    await second.flush();
    assert.equal(store.seqCheckpoint, 30, "the new checkpoint is past the events that held seq 30");
    assert.equal(store.loadSessions()[0].seq, 30, "so the row was brought up to 30 with it");
  });
});

Deno.test("sink runner: a permanent failure (stdout closed) is not retried", async () => {
  await withStore(async (store) => {
    let calls = 0;
    const sink = {
      name: "test",
      deliver() {
        calls++;
        throw Object.assign(new Error("stdout is closed"), { permanent: true });
      },
    };
    const journal = new Journal({ store, logger: log, commitIntervalMs: 0 });
    const runner = new SinkRunner({ sink, journal, store, logger: log });
    runner.offer(syntheticBatch(1, 3, 10));
    await tick(500);
    assert.equal(calls, 1);
    assert.equal(runner.cursor, 0, "nothing acknowledged");
    runner.close();
    await journal.close();
  });
});

Deno.test("sink runner: a broker sink runs ahead of the stored cursor; stdout waits for it", async () => {
  await withStore(async (store) => {
    for (const ahead of [true, false]) {
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
      const journal = new Journal({ store, logger: log, commitIntervalMs: 1000 });
      journal.setCursor("warm-up", 0);
      await journal.flush();
      await tick(20); // the timer the warm-up scheduled has fired; the next commit is 1 s away
      const runner = new SinkRunner({ sink, journal, store: null, logger: log });
      runner.offer(syntheticBatch(1, 2, 10));
      await tick(20);
      runner.offer(syntheticBatch(3, 2, 10));
      runner.offer(syntheticBatch(5, 2, 10));
      await tick(50);
      if (ahead) assert.deepEqual(got, [1, 2, 3, 4, 5, 6], "not held back by the store");
      else assert.deepEqual(got, [1, 2], "the next batch waits until cursor 2 is stored");
      runner.close();
      await journal.close();
    }
  });
});

Deno.test("a write that failed because the store was full goes at once when room is made (retryNow), not after its backoff", async () => {
  await withStore(async (store) => {
    // Room for the schema and little more: a batch of large events does not fit.
    store.setMaxPageCount(store.usedBytes() / store.pageSize() + 2);
    let committed = 0;
    const failures: string[] = [];
    const journal = new Journal({
      store,
      logger: log,
      onCommit: () => committed++,
      onFull: () => failures.push("full"),
    });
    const big = enc(`{"t":"E","s":1,"op":0,"d":"${"x".repeat(200_000)}"}`);
    journal.event(0, "E", 1, big, 0, true);
    journal.commit();
    for (let i = 0; i < 100 && failures.length < 3; i++) await tick(50);
    assert.ok(failures.length >= 3, "the store is full");
    assert.equal(committed, 0);
    // The backoff is now at least 400 ms; room is made and the write goes at once.
    store.setMaxPageCount(1_000_000);
    journal.retryNow();
    assert.equal(committed, 1, "committed in the same turn");
    await journal.close();
  });
});

Deno.test("the hard size cap is one page count, from the store's own page size", () => {
  assert.equal(hardCapPages(0, 16384), undefined);
  assert.equal(hardCapPages(1024 * 1024 * 1024, 16384), 65536);
  assert.equal(hardCapPages(1024 * 1024 * 1024, 4096), 262144);
  assert.equal(hardCapPages(100_000, 16384), 64, "never fewer than 64 pages");
});

Deno.test("journal off, at stop: the sinks take everything handed out before the seqs are checkpointed past it", async () => {
  for (const slowMs of [20, 3000]) {
    await withStore(async (store) => {
      let taken = 0;
      const sink: Sink = {
        name: "slow",
        deliver: async (batch) => {
          await tick(slowMs);
          taken = batch.lastId;
        },
      };
      const runners: SinkRunner[] = [];
      const journal = new Journal({
        store,
        keepEvents: false,
        logger: log,
        onCommit: (batch) => runners.forEach((r) => r.offer(batch)),
      });
      const runner = new SinkRunner({ sink, journal, store: null, logger: log });
      runners.push(runner);
      runner.start();
      journal.sessionStarted(0, { id: "sess", resumeUrl: "wss://r", seq: 0, shardCount: 1 });
      for (let s = 1; s <= 60; s++) {
        journal.event(0, "E", s, enc(`{"n":${s}}`), 0, true);
        if (s % 5 === 0) await tick(20);
      }
      await tick(1100); // a 1 s checkpoint came and went
      const before = store.loadSessions()[0].seq;
      const { target, taken: all } = await finishDelivery(journal, runners, false, 300);
      const stored = store.loadSessions()[0].seq;
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
