import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type EventBatch, Journal } from "../../src/journal/journal.ts";
import { hardCapPages, Store } from "../../src/journal/store.ts";
import {
  type BatchData,
  HybridWriter,
  InlineWriter,
  type JournalWriter,
  WorkerWriter,
  writeBatch,
  type WriterEvents,
} from "../../src/journal/write.ts";
import { Backpressure } from "../../src/util/backpressure.ts";
import { ManualClock } from "../../src/util/clock.ts";
import { logger } from "../../src/util/log.ts";
import { collector, dec, enc, payload, withStore } from "../helpers/journal_store.ts";

const log = logger("test");

Deno.test("a turn's events and the new seq of their session commit together; filtered events advance the seq", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const batches: EventBatch[] = [];
    const journal = new Journal({ store, logger: log, commitIntervalMs: 0, clock });
    assert.equal(journal.subscribe(collector((b) => batches.push(b))), 0, "nothing committed yet");
    journal.sessionStarted(4, 3, { id: "sess", resumeUrl: "wss://r", seq: 1 });
    journal.event(3, "READY", 1, payload("READY", 1), 2, true);
    journal.event(3, "TYPING_START", 2, payload("TYPING_START", 2), 2, false); // filtered
    journal.event(3, "MESSAGE_CREATE", 3, payload("MESSAGE_CREATE", 3), 2, true);
    journal.event(3, "TYPING_START", 4, payload("TYPING_START", 4), 2, false); // filtered, last
    assert.equal(store.events.maxId(), 0, "nothing before the end of the turn");
    await clock.advance(0);
    assert.equal(batches.length, 1);
    const [batch] = batches;
    assert.deepEqual([batch.firstId, batch.lastId, batch.count], [1, 2, 2]);
    assert.equal(
      dec(batch.payload(1)),
      '{"t":"MESSAGE_CREATE","s":3,"op":0,"d":{"x":""}}',
      "trimmed, from its {",
    );
    const rows = store.events.read(0, 10);
    assert.deepEqual(rows.map((r) => [r.id, r.shard, r.session, r.seq, r.t]), [
      [1, 3, "sess", 1, "READY"],
      [2, 3, "sess", 3, "MESSAGE_CREATE"],
    ]);
    assert.deepEqual(store.sessions.load().map((s) => [s.shard, s.sessionId, s.seq, s.shardCount]), [[
      3,
      "sess",
      4,
      4,
    ]]);
    assert.equal(store.meta("last_id"), "2");
    journal.sessionLost(4, 3);
    journal.internal(3, "GATEHOUSE_SESSION_INVALIDATED", { shard_id: 3 });
    await clock.advance(0);
    assert.deepEqual(store.sessions.load(), []);
    assert.equal(store.events.read(2, 10)[0].t, "GATEHOUSE_SESSION_INVALIDATED");
  });
});

Deno.test("between seq checkpoints session rows are not rewritten: stored events carry the seq, and are kept", async () => {
  await withStore(async (store, path) => {
    const clock = new ManualClock();
    const journal = new Journal({ store, logger: log, clock });
    const rowSeq = () => {
      const db = new DatabaseSync(path, { readOnly: true });
      try {
        return (db.prepare("SELECT seq FROM sessions WHERE shard = 0").get() as { seq: number }).seq;
      } finally {
        db.close();
      }
    };
    journal.sessionStarted(1, 0, { id: "sess", resumeUrl: "wss://r", seq: 1 });
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
    assert.equal(store.sessions.load()[0].seq, 50, "the newest stored event gives the seq");
    // Pruning folds the seqs of the events it removes into the session rows first.
    assert.equal(store.transaction("prune", () => store.events.deleteThrough(40, 1000)), 40);
    assert.equal(store.events.minId(), 41);
    assert.equal(rowSeq(), 40);
    assert.equal(store.seqCheckpoint, 40);
    assert.equal(store.sessions.load()[0].seq, 50);
    assert.equal(store.transaction("prune", () => store.events.deleteThrough(50, 1000)), 10);
    assert.equal(rowSeq(), 50);
    assert.equal(store.sessions.load()[0].seq, 50);
    // A filtered-out event has no row: its seq is noted in one meta row in the same transaction.
    journal.event(0, "TYPING_START", 51, payload("TYPING_START", 51), 2, false);
    await journal.flush();
    assert.equal(rowSeq(), 50);
    assert.deepEqual(JSON.parse(store.meta("seqs")!), { 0: ["sess", 51] });
    assert.equal(store.sessions.load()[0].seq, 51);
    // After the interval every session row is brought up to date and the checkpoint moves.
    journal.event(0, "MESSAGE_CREATE", 52, payload("MESSAGE_CREATE", 52), 2, true);
    await journal.flush();
    assert.equal(rowSeq(), 50);
    assert.equal(store.sessions.load()[0].seq, 52);
    await clock.advance(1_050);
    journal.event(0, "MESSAGE_CREATE", 53, payload("MESSAGE_CREATE", 53), 2, true);
    await journal.flush();
    assert.equal(rowSeq(), 53);
    assert.equal(store.seqCheckpoint, 52);
    assert.equal(store.sessions.load()[0].seq, 53);
    assert.equal(store.meta("seqs"), "{}");
  });
});

Deno.test("events not kept (journal off): each commit notes the seqs in one row; restarts see them", async () => {
  await withStore(async (store) => {
    const journal = new Journal({ store, logger: log, keepEvents: false, clock: new ManualClock() });
    for (let shard = 0; shard < 4; shard++) {
      journal.sessionStarted(4, shard, { id: `s${shard}`, resumeUrl: "wss://r", seq: 1 });
    }
    await journal.flush();
    for (let seq = 2; seq <= 20; seq++) {
      for (let shard = 0; shard < 4; shard++) {
        journal.event(shard, "MESSAGE_CREATE", seq + shard, payload("MESSAGE_CREATE", seq), 2, true);
      }
    }
    await journal.flush();
    assert.equal(store.events.maxId(), 0, "no events stored");
    assert.deepEqual(store.sessions.load().map((s) => [s.sessionId, s.seq]), [
      ["s0", 20],
      ["s1", 21],
      ["s2", 22],
      ["s3", 23],
    ]);
    // A session replaced since: its old seq is not applied to the new one.
    journal.sessionLost(4, 2);
    journal.sessionStarted(4, 2, { id: "s2b", resumeUrl: "wss://r", seq: 1 });
    await journal.flush();
    assert.deepEqual(store.sessions.load().map((s) => [s.sessionId, s.seq]).at(2), ["s2b", 1]);
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
    });
    journal.subscribe(collector((b) => {
      for (let i = 0; i < b.count; i++) delivered.push(b.id(i));
    }));
    journal.sessionStarted(1, 0, { id: "s0", resumeUrl: "wss://r", seq: 1 });
    await journal.flush();
    const transactions = journal.commits;
    for (let seq = 2; seq <= 30; seq++) {
      journal.event(0, "MESSAGE_CREATE", seq, payload("MESSAGE_CREATE", seq), 2, true);
      journal.setCursor("stdout", seq - 1);
      await clock.advance(0);
    }
    assert.deepEqual(delivered, Array.from({ length: 29 }, (_, i) => i + 1), "delivered in order, at once");
    assert.equal(journal.commits, transactions, "no transaction between checkpoints");
    assert.equal(store.sessions.load()[0].seq, 1, "the seq waits for the checkpoint");
    // Traffic stops; the checkpoint is written when due all the same.
    await clock.advance(1_000);
    assert.equal(journal.commits, transactions + 1);
    assert.equal(store.sessions.load()[0].seq, 30);
    assert.equal(store.cursor("stdout"), 29);
    // A crash now: a new process gives out ids above every one given, never the same again.
    journal.event(0, "MESSAGE_CREATE", 31, payload("MESSAGE_CREATE", 31), 2, true);
    await clock.advance(0);
    assert.equal(delivered.at(-1), 30);
    const again = Store.open(path, { readOnly: true });
    try {
      assert.equal(again.sessions.load()[0].seq, 30, "resumes from the checkpoint: Discord sends 31 again");
      assert.ok(again.lastId >= 30, `ids recorded ahead of use (${again.lastId})`);
    } finally {
      again.close();
    }
    await journal.close();
  });
});

Deno.test("a failing store: nothing acknowledged, sessions do not advance, shards paused; all committed on recovery", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const delivered: number[] = [];
    const pauses: boolean[] = [];
    const backpressure = new Backpressure();
    backpressure.subscribe((paused) => pauses.push(paused));
    const journal = new Journal({ store, logger: log, maxPendingBytes: 50_000, clock, backpressure });
    journal.subscribe(collector((b) => {
      for (let i = 0; i < b.count; i++) delivered.push(b.id(i));
    }));
    journal.sessionStarted(1, 0, { id: "s", resumeUrl: "wss://r", seq: 1 });
    journal.event(0, "READY", 1, payload("READY", 1), 2, true);
    await clock.advance(0);
    assert.deepEqual(delivered, [1]);
    // The disk is "full": SQLite's max_page_count at what is used now.
    store.setMaxPageCount(Math.ceil(store.usedBytes() / store.pageSize()) + 1);
    const filler = "y".repeat(2000);
    for (let s = 2; s <= 60; s++) {
      journal.event(0, "MESSAGE_CREATE", s, payload("MESSAGE_CREATE", s, filler), 2, true);
    }
    await clock.advance(50);
    assert.ok(journal.failing, "the commit failed");
    assert.deepEqual(delivered, [1], "nothing new acknowledged");
    assert.equal(store.sessions.load()[0].seq, 1, "the stored session did not advance");
    assert.deepEqual(pauses, [true], "shards are asked to stop reading");
    assert.deepEqual(backpressure.holders, ["journal"]);
    assert.equal(journal.pendingEvents, 59);
    // More events while failing are held too, with ids after the held ones.
    journal.event(0, "MESSAGE_CREATE", 61, payload("MESSAGE_CREATE", 61), 2, true);
    store.setMaxPageCount(1_000_000);
    // Retries back off (100 ms, doubling, at most 5 s): within 6.4 s of the first failure one succeeds.
    await clock.advance(3_500);
    if (journal.failing) await clock.advance(3_000);
    assert.equal(journal.failing, false);
    assert.deepEqual(pauses, [true, false]);
    assert.deepEqual(delivered, Array.from({ length: 61 }, (_, i) => i + 1));
    assert.equal(store.sessions.load()[0].seq, 61);
    assert.deepEqual(
      store.events.read(0, 100).map((r) => r.seq),
      Array.from({ length: 61 }, (_, i) => i + 1),
    );
  });
});

Deno.test("group commit: an event into an idle journal is committed on the next turn, not after the interval; so is the next one", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const committed: number[] = [];
    const journal = new Journal({ store, logger: log, commitIntervalMs: 1000, clock });
    journal.subscribe(collector((batch) => committed.push(batch.lastId)));
    journal.event(0, "E", 1, enc('{"n":1}'), 0, true);
    assert.deepEqual(committed, [], "not within the turn: the rest of the read joins the batch");
    await clock.advance(0);
    assert.deepEqual(committed, [1], "the first event did not wait for a timer");
    journal.event(0, "E", 2, enc('{"n":2}'), 0, true);
    journal.event(0, "E", 3, enc('{"n":3}'), 0, true);
    await clock.advance(0);
    assert.deepEqual(committed, [1, 3], "right after a commit, nothing written: the same turn as one batch");
    assert.deepEqual(store.events.read(0, 10).map((r) => r.id), [1, 2, 3]);
    journal.event(0, "E", 4, enc('{"n":4}'), 0, true);
    await journal.flush();
    assert.deepEqual(committed, [1, 3, 4], "a flush does not wait");
    await journal.close();
  });
});

/** A writer whose writes stay in flight until `finish()`: stores them then, in order. */
function heldWriter(store: Store) {
  const batches: BatchData[] = [];
  let events: WriterEvents | undefined;
  return {
    batches,
    make(e: WriterEvents): JournalWriter {
      events = e;
      return {
        write: (batch) => void batches.push(batch),
        drain: () => Promise.resolve(batches.length === 0),
        close: () => Promise.resolve(),
      };
    },
    /** The oldest write in flight is stored. */
    finish(): void {
      const batch = batches.shift()!;
      writeBatch(store, batch);
      events!.committed(batch.no);
    },
  };
}

Deno.test("group commit: events arriving while a write is in flight gather and are committed together right after it", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const committed: Array<[number, number]> = [];
    const writer = heldWriter(store);
    const journal = new Journal({ store, logger: log, commitIntervalMs: 50, clock, writer: writer.make });
    journal.subscribe(collector((batch) => committed.push([batch.firstId, batch.lastId])));
    journal.event(0, "E", 1, enc('{"n":1}'), 0, true);
    await clock.advance(0);
    assert.equal(writer.batches.length, 1, "the first went on the next turn");
    for (let s = 2; s <= 5; s++) {
      journal.event(0, "E", s, enc(`{"n":${s}}`), 0, true);
      await clock.advance(40);
    }
    assert.equal(writer.batches.length, 1, "one transaction in flight, even past the interval");
    assert.deepEqual(committed, []);
    writer.finish();
    assert.deepEqual(committed, [[1, 1]]);
    await clock.advance(0);
    assert.equal(writer.batches.length, 1, "what gathered went on the turn after the write ended");
    assert.deepEqual(writer.batches[0].ids, [2, 3, 4, 5], "as one batch");
    // A short write: what arrives meanwhile does not wait for the interval after it either.
    journal.event(0, "E", 6, enc('{"n":6}'), 0, true);
    journal.event(0, "E", 7, enc('{"n":7}'), 0, true);
    await clock.advance(5);
    writer.finish();
    assert.deepEqual(committed, [[1, 1], [2, 5]]);
    await clock.advance(0);
    assert.deepEqual(writer.batches.map((b) => b.ids), [[6, 7]], "5 ms after the last commit, not 50");
    writer.finish();
    assert.deepEqual(committed, [[1, 1], [2, 5], [6, 7]]);
    assert.deepEqual(store.events.read(0, 10).map((r) => r.id), [1, 2, 3, 4, 5, 6, 7]);
    // Idle again: the next event does not wait.
    journal.event(0, "E", 8, enc('{"n":8}'), 0, true);
    await clock.advance(0);
    assert.deepEqual(writer.batches.map((b) => b.ids), [[8]]);
    writer.finish();
    await journal.close();
  });
});

Deno.test("group commit: a sink's cursor rides with the next events; alone it is committed after the interval, once", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const writer = heldWriter(store);
    const journal = new Journal({ store, logger: log, commitIntervalMs: 50, clock, writer: writer.make });
    const stored: number[] = [];
    journal.subscribe(collector((batch) => {
      const lastId = batch.lastId;
      journal.setCursor("stdout", lastId, () => stored.push(lastId));
    }));
    journal.event(0, "E", 1, enc('{"n":1}'), 0, true);
    await clock.advance(0);
    writer.finish();
    assert.equal(clock.pending, 1, "one timer");
    await clock.advance(10);
    assert.equal(writer.batches.length, 0, "the cursor alone does not take a transaction at once");
    journal.event(0, "E", 2, enc('{"n":2}'), 0, true);
    await clock.advance(0);
    assert.deepEqual(
      writer.batches.map((b) => [b.ids, b.cursorWrites]),
      [[[2], [["stdout", 1]]]],
      "it rides with the next event, which does not wait for it",
    );
    writer.finish();
    assert.deepEqual(stored, [1]);
    await clock.advance(49);
    assert.equal(writer.batches.length, 0);
    await clock.advance(1);
    assert.deepEqual(
      writer.batches.map((b) => [b.ids, b.cursorWrites]),
      [[[], [["stdout", 2]]]],
      "traffic stopped",
    );
    writer.finish();
    assert.deepEqual(stored, [1, 2]);
    await clock.advance(1000);
    assert.equal(writer.batches.length, 0, "nothing else to commit");
    assert.equal(store.cursor("stdout"), 2);
    await journal.close();
  });
});

Deno.test("group commit: after a write on this thread the journal rests 49 times as long, at most the interval", async () => {
  await withStore(async (store) => {
    const manual = new ManualClock();
    // A clock on which each inline write takes 1 ms.
    let extra = 0;
    const clock = {
      now: () => manual.now() + extra,
      setTimeout: (fn: () => void, ms: number) => manual.setTimeout(fn, ms),
      clearTimeout: (id: number) => manual.clearTimeout(id),
    };
    const inline = (e: WriterEvents): JournalWriter => {
      const writer = new InlineWriter(store, e, manual);
      return {
        write: (batch) => {
          extra += 1;
          writer.write(batch);
        },
        drain: (ms) => writer.drain(ms),
        close: () => writer.close(),
      };
    };
    for (const [interval, rest] of [[100, 49], [20, 20]]) {
      const committed: number[] = [];
      const journal = new Journal({ store, logger: log, commitIntervalMs: interval, clock, writer: inline });
      journal.subscribe(collector((batch) => committed.push(batch.lastId)));
      const first = store.lastId + 1;
      journal.event(0, "E", first, enc('{"n":1}'), 0, true);
      await manual.advance(0);
      assert.deepEqual(committed, [first], "idle: the next turn");
      journal.event(0, "E", first + 1, enc('{"n":2}'), 0, true);
      journal.event(0, "E", first + 2, enc('{"n":3}'), 0, true);
      await manual.advance(rest - 1);
      assert.deepEqual(committed, [first], `resting after a 1 ms write (interval ${interval})`);
      await manual.advance(1);
      assert.deepEqual(committed, [first, first + 2], `${rest} ms after it, as one batch`);
      await journal.close();
    }
  });
});

// The writer thread starts a second isolate: on a loaded machine running the suite in parallel that took
// more than 5 s once, so the drains wait up to 20 s (they return as soon as the thread has stored all).
Deno.test("hybrid writer: small batches commit on this thread, large ones on the writer thread while this one is saturated, in order", async () => {
  await withStore(async (store, path) => {
    const committed: Array<[number, string]> = [];
    let writer: HybridWriter | null = null;
    const events = {
      committed: (no: number) => committed.push([no, writer!.lastRoute]),
      failed: (error: Error) => assert.fail(error.message),
    };
    let saturated = true;
    const thread = new WorkerWriter(path, {}, events);
    writer = new HybridWriter(
      new InlineWriter(store, events),
      thread,
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
      proxySessionWrites: [],
      keepEvents: true,
      checkpointId: null,
      seqNote: null,
      at: 1,
      owner: null,
    });
    writer.write(batch(1, 1, 5, 100)); // 500 bytes: here, at once
    assert.deepEqual(committed, [[1, "inline"]]);
    assert.equal(thread.started, false, "the writer thread starts with the first batch it is given");
    writer.write(batch(2, 6, 50, 100)); // 5000 bytes: the thread
    assert.equal(thread.started, true);
    writer.write(batch(3, 56, 1, 10)); // small, but the thread has work pending: after it, there
    assert.deepEqual(committed, [[1, "inline"]]);
    assert.ok(await writer.drain(20_000), "the writer thread stores what it was given");
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
    assert.ok(await writer.drain(20_000), "the writer thread stores what it was given");
    assert.deepEqual(committed.at(-1), [6, "worker"]);
    assert.deepEqual(
      store.events.read(0, 200).map((r) => r.id),
      Array.from({ length: 157 }, (_, i) => i + 1),
    );
    await writer.close();
  });
});

Deno.test("hybrid writer: this thread's connection never checkpoints; the writer thread does, every checkpointBytes written here", async () => {
  await withStore(async (store, path) => {
    const events = { committed: () => {}, failed: (error: Error) => assert.fail(error.message) };
    const thread = new WorkerWriter(path, {}, events);
    store.setAutoCheckpoint(0);
    const writer = new HybridWriter(new InlineWriter(store, events), thread, 1 << 30, {
      saturated: () => false,
    }, 1024 * 1024);
    let id = 0;
    const write = (no: number) => {
      const count = 20, size = 1000;
      writer.write({
        no,
        lastId: id + count,
        bytes: new Uint8Array(count * size).fill(0x20),
        ends: Array.from({ length: count }, (_, i) => (i + 1) * size),
        ids: Array.from({ length: count }, () => ++id),
        shards: Array(count).fill(0),
        sessions: Array(count).fill(null),
        seqs: Array(count).fill(null),
        names: Array(count).fill("E"),
        receivedAt: Array(count).fill(1),
        sessionWrites: [],
        seqUpdates: [],
        cursorWrites: [],
        identifyWrites: [],
        proxySessionWrites: [],
        keepEvents: true,
        checkpointId: null,
        seqNote: null,
        at: 1,
        owner: null,
      });
    };
    // 20 KB of payloads and a page per batch: the 1 MB mark is crossed by the 29th batch.
    let no = 0;
    while (thread.checkpointsAsked === 0) {
      write(++no);
      assert.ok(no <= 29, "a checkpoint is asked for once 1 MB was written here");
    }
    assert.equal(no, 29);
    assert.equal(thread.started, true, "the thread starts for its first checkpoint");
    const deadline = Date.now() + 20_000;
    while (thread.checkpointsDone === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(thread.checkpointsDone, 1, "the thread checkpointed");
    // Everything was copied, so the next commit here starts the WAL again: it holds only that commit's
    // pages. Had nobody checkpointed, it would hold every page of the 29 batches (> 1 MB of 16 KB pages).
    write(++no);
    const { frames } = store.checkpoint();
    assert.ok(frames > 0 && frames < 10, `the WAL restarted: ${frames} frames`);
    assert.equal(store.events.read(0, 1000).length, 30 * 20);
    await writer.close();
  });
});

Deno.test("a restarted process's first checkpoint keeps the seq that only the previous run's events recorded", async () => {
  await withStore(async (store) => {
    const first = new Journal({ store, logger: log, commitIntervalMs: 0, clock: new ManualClock() });
    first.sessionStarted(1, 0, { id: "sess", resumeUrl: "wss://r", seq: 1 });
    first.event(0, "READY", 1, payload("READY", 1), 2, true);
    await first.flush();
    for (let s = 2; s <= 30; s++) first.event(0, "MESSAGE_CREATE", s, payload("MESSAGE_CREATE", s), 2, true);
    await first.flush();
    assert.equal(store.sessions.load()[0].seq, 30, "carried by the events, not the row");
    // "Crash", then a new process restores the session and commits something else (a cursor).
    const [restored] = store.sessions.load();
    const second = new Journal({ store, logger: log, commitIntervalMs: 0, clock: new ManualClock() });
    second.restoreSession(1, 0, { id: restored.sessionId, resumeUrl: restored.resumeUrl, seq: restored.seq });
    second.setCursor("stdout", 30);
    await second.flush();
    assert.equal(store.seqCheckpoint, 30, "the new checkpoint is past the events that held seq 30");
    assert.equal(store.sessions.load()[0].seq, 30, "so the row was brought up to 30 with it");
  });
});

Deno.test("a write that failed because the store was full goes at once when room is made (retryNow), not after its backoff", async () => {
  await withStore(async (store) => {
    // Room for the schema and little more: a batch of large events does not fit.
    store.setMaxPageCount(store.usedBytes() / store.pageSize() + 2);
    const clock = new ManualClock();
    let committed = 0;
    const failures: string[] = [];
    const journal = new Journal({ store, logger: log, clock, onFull: () => failures.push("full") });
    journal.subscribe(collector(() => committed++));
    const big = enc(`{"t":"E","s":1,"op":0,"d":"${"x".repeat(200_000)}"}`);
    journal.event(0, "E", 1, big, 0, true);
    journal.commit();
    for (let i = 0; i < 100 && failures.length < 3; i++) await clock.advance(50);
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

Deno.test("worker writer: never given a batch, it starts no thread; drain and close answer at once", async () => {
  await withStore(async (_store, path) => {
    const writer = new WorkerWriter(path, {}, {
      committed: () => assert.fail("nothing was written"),
      failed: (error: Error) => assert.fail(error.message),
    });
    writer.retryNow();
    assert.equal(await writer.drain(1000), true);
    await writer.close();
    assert.equal(writer.started, false);
  });
});
