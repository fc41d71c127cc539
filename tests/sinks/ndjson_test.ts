import assert from "node:assert/strict";
import { LineBuffer } from "../../src/sinks/ndjson.ts";
import type { EventBatch } from "../../src/journal/journal.ts";
import { Pending } from "../../src/journal/batch.ts";
import { JoinedBatch } from "../../src/sinks/batches.ts";
import { OutputClosedError, StdoutSink } from "../../src/sinks/stdout.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("line = id, uid, shard, then Discord's payload bytes untouched", () => {
  const buffer = new LineBuffer(16);
  const payload = '{"t":"MESSAGE_CREATE","s":87,"op":0,"d":{"content":"a \\"b\\"","n":12345678901234567890}}';
  buffer.append(1042, "3:9f8e7d", 87, 3, enc(payload), 0);
  const line = dec(buffer.take());
  assert.equal(
    line,
    '{"id":1042,"uid":"3:9f8e7d:87","shard":3,"t":"MESSAGE_CREATE","s":87,"op":0,"d":{"content":"a \\"b\\"","n":12345678901234567890}}\n',
  );
  // The big number survives byte for byte (JSON.parse would have rounded it).
  assert.ok(line.includes("12345678901234567890"));
  const parsed = JSON.parse(line);
  assert.equal(parsed.id, 1042);
  assert.equal(parsed.shard, 3);
});

Deno.test("leading/trailing whitespace and raw newlines keep it one line", () => {
  const buffer = new LineBuffer();
  buffer.append(1, "0:s", 1, 0, enc('  {"t":"X",\n"s":1,\r\n"op":0,"d":{"s":"line\\nbreak"}}\n  '), 2);
  const out = dec(buffer.take());
  assert.equal(out.split("\n").length, 2);
  assert.deepEqual(JSON.parse(out), {
    id: 1,
    uid: "0:s:1",
    shard: 0,
    t: "X",
    s: 1,
    op: 0,
    d: { s: "line\nbreak" },
  });
});

Deno.test("a raw newline is found wherever it falls in the line, whatever the line's alignment", () => {
  const buffer = new LineBuffer(8);
  for (let pad = 0; pad < 9; pad++) {
    for (let at = 0; at < 24; at++) {
      const text = '{"t":"X","d":"' + "a".repeat(pad) + '"' + " ".repeat(at) + "\n" + " ".repeat(23 - at) +
        "}";
      buffer.append(at + 1, "0:s", 1, 0, enc(text), 0);
      const line = dec(buffer.take());
      assert.equal(line.indexOf("\n"), line.length - 1, `pad ${pad}, newline at ${at}`);
      assert.equal(
        line.length,
        text.length + '{"id":'.length + 1 + `${at + 1}`.length + ',"uid":"0:s:1","shard":0'.length,
      );
    }
    // Lines without one are left alone.
    buffer.append(1, "0:s", 1, 0, enc('{"t":"X","d":"' + "\r".repeat(pad) + '"}'), 0);
    assert.ok(dec(buffer.take()).includes("\r".repeat(pad)));
  }
});

Deno.test("ids of every size and many lines in one buffer", () => {
  const buffer = new LineBuffer(8);
  const ids = [0, 7, 10, 99, 100, 123456, 9007199254740991];
  for (const id of ids) {
    buffer.append(id, `gatehouse:p"q\\`, id, id % 5, enc('{"op":0,"t":"A","s":1,"d":{}}'), 0);
  }
  assert.equal(buffer.lines, ids.length);
  const lines = dec(buffer.take()).trimEnd().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.id), ids);
  assert.deepEqual(lines.map((l) => l.shard), ids.map((id) => id % 5));
  // A scope that needed escaping stays one JSON string.
  assert.deepEqual(lines.map((l) => l.uid), ids.map((id) => `gatehouse:p"q\\:${id}`));
});

Deno.test("an empty object payload", () => {
  const buffer = new LineBuffer();
  buffer.append(5, "gatehouse:x", 5, 1, enc("{}"), 0);
  assert.equal(dec(buffer.take()), '{"id":5,"uid":"gatehouse:x:5","shard":1}\n');
});

/** A batch of payloads with ids from `firstId`. */
function batchOf(firstId: number, payloads: string[], shard = 0): EventBatch {
  const bytes = payloads.map(enc);
  return {
    count: bytes.length,
    firstId,
    lastId: firstId + bytes.length - 1,
    size: bytes.reduce((n, b) => n + b.length, 0),
    id: (i) => firstId + i,
    shard: () => shard,
    t: () => "E",
    payload: (i) => bytes[i],
    scope: () => `${shard}:s`,
    position: (i) => firstId + i,
  };
}

Deno.test("a journal batch appended in place gives the same bytes as event by event", () => {
  const batch = new Pending("producer-1");
  const payloads = [
    '{"t":"MESSAGE_CREATE","s":7,"op":0,"d":{"content":"x"}}  \n',
    '{"t":"X",\n"s":8,\r\n"op":0,"d":{"s":"line\\nbreak"}}',
    "{}",
    '{"t":"GATEHOUSE_SESSION_INVALIDATED","s":null,"op":0,"d":{"shard_id":1}}',
  ];
  const sessions = ["sess-a", "sess-a", "sess-b", null];
  const seqs = [7, 8, 9, null];
  payloads.forEach((text, i) => {
    const bytes = enc(text);
    batch.add(bytes, 0, bytes.length);
    batch.ids.push(9_999_999 + i);
    batch.shards.push(i === 2 ? 12 : 1);
    batch.sessions.push(sessions[i]);
    batch.seqs.push(seqs[i]);
    batch.names.push("E");
    batch.receivedAt.push(0);
  });
  const inPlace = new LineBuffer(8);
  inPlace.appendBatch(batch);
  assert.equal(inPlace.lines, 4);
  const oneByOne = new LineBuffer(8);
  for (let i = 0; i < batch.count; i++) oneByOne.appendEvent(batch, i);
  const viaViews = new LineBuffer(8);
  viaViews.appendBatch(new JoinedBatch([batch]));
  const expected = dec(oneByOne.take());
  assert.equal(dec(inPlace.take()), expected);
  assert.equal(dec(viaViews.take()), expected);
  assert.deepEqual(expected.split("\n").slice(0, -1).map((line) => JSON.parse(line).uid), [
    "1:sess-a:7",
    "1:sess-a:8",
    "12:sess-b:9",
    "gatehouse:producer-1:10000002",
  ]);
  assert.ok(expected.startsWith('{"id":9999999,"uid":"1:sess-a:7","shard":1,"t":"MESSAGE_CREATE"'));
  assert.ok(expected.includes('{"id":10000001,"uid":"12:sess-b:9","shard":12}\n'), "an empty object");
});

Deno.test("stdout sink: one write per batch, not per event; partial writes are completed", async () => {
  const writes: Uint8Array[] = [];
  const sink = new StdoutSink({
    write: (bytes) => {
      // Accept at most 100 bytes per call, like a pipe that is nearly full.
      const n = Math.min(100, bytes.length);
      writes.push(bytes.slice(0, n));
      return Promise.resolve(n);
    },
  });
  await sink.deliver(
    batchOf(1, Array.from({ length: 50 }, (_, i) => `{"t":"E","s":${i + 1},"op":0,"d":{}}`)),
  );
  assert.equal(sink.batches, 1);
  assert.equal(sink.written, 50);
  const text = writes.map(dec).join("");
  assert.equal(text.split("\n").length, 51);
  assert.equal(JSON.parse(text.split("\n")[49]).id, 50);
  assert.ok(writes.length > 1, "the write was split and completed");
});

Deno.test("stdout sink: a closed reader is reported once, and nothing is acknowledged", async () => {
  let reports = 0;
  let calls = 0;
  const sink = new StdoutSink({
    write: () => {
      calls++;
      return Promise.reject(new Deno.errors.BrokenPipe("Broken pipe (os error 32)"));
    },
    onClosed: () => reports++,
  });
  await assert.rejects(() => sink.deliver(batchOf(1, ['{"op":0}'])), OutputClosedError);
  await assert.rejects(() => sink.deliver(batchOf(2, ['{"op":0}'])), OutputClosedError);
  assert.equal(reports, 1);
  assert.equal(calls, 1);
  assert.equal(sink.written, 0);
});
