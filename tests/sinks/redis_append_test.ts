/**
 * The packed append script (src/sinks/redis_append.ts) against the real Redis: lines cut out exactly
 * (multi-byte characters, spaces), interleaved scopes each held to its own mark, large positions.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { APPEND_SCRIPT, PackedEvents } from "../../src/sinks/redis_append.ts";

const REDIS_URL = Deno.env.get("REDIS_URL") ?? "redis://127.0.0.1:6379";
const encoder = new TextEncoder();

/** Lines back to back in one buffer (each with its newline) and their ranges. */
function shared(lines: string[]): { bytes: Uint8Array; ranges: Array<[number, number]> } {
  const parts = lines.map((l) => encoder.encode(`${l}\n`));
  const bytes = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  const ranges: Array<[number, number]> = [];
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    ranges.push([at, at + p.length]);
    at += p.length;
  }
  return { bytes, ranges };
}

Deno.test("packed append: lines cut out exactly, each scope held to its own mark, a subset of ranges copied", async () => {
  const stream = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}:events`;
  const keys = [stream, `{${stream}}:seen`, `{${stream}}:seen_at`];
  const client = new Redis(REDIS_URL);
  try {
    const lines = ['{"a":"é ü 1 2"}', '{"skip":true}', '{"b":"x y"}', '{"c":"中文"}', '{"d":1}'];
    const { bytes, ranges } = shared(lines);
    // Scope "s 2" already has mark 10: its event at 10 is a repeat, its event at 11 is new.
    await client.hset(keys[1], "s 2", "10");
    const packed = new PackedEvents();
    const big = 2 ** 53 - 1;
    packed.add("s 1", 5, ...ranges[0]);
    packed.add("s 2", 10, ...ranges[1]);
    packed.add("s 2", 11, ...ranges[2]);
    packed.add("s 1", big, ...ranges[4]); // range 3 belongs to another stream: not copied
    const result = await client.eval(APPEND_SCRIPT, 3, ...keys, 0, "", ...packed.args(bytes));
    assert.deepEqual(result, [3, 1]);
    const entries = await client.xrange(stream, "-", "+");
    assert.deepEqual(entries.map(([, fields]) => fields), [
      ["data", lines[0]],
      ["data", lines[2]],
      ["data", lines[4]],
    ]);
    assert.deepEqual(await client.hgetall(keys[1]), { "s 1": String(big), "s 2": "11" });
    // All of it again: every event is at or below its scope's mark.
    const again = new PackedEvents();
    for (const [i, [scope, position]] of ([["s 1", 5], ["s 2", 11], ["s 1", big]] as const).entries()) {
      again.add(scope, position, ...ranges[[0, 2, 4][i]]);
    }
    assert.deepEqual(await client.eval(APPEND_SCRIPT, 3, ...keys, 0, "", ...again.args(bytes)), [0, 3]);
    assert.equal(await client.xlen(stream), 3);
  } finally {
    await client.del(...keys);
    client.disconnect();
  }
});

Deno.test("packed append: contiguous lines of one stream go as one copy of the shared buffer", () => {
  const { bytes, ranges } = shared(['{"a":1}', '{"b":2}']);
  const packed = new PackedEvents();
  packed.add("s", 1, ...ranges[0]);
  packed.add("t", 2, ...ranges[1]);
  const [lines, events, ...scopes] = packed.args(bytes);
  assert.equal(lines.toString(), '{"a":1}\n{"b":2}\n');
  assert.equal(events, "1 1 7 2 2 7 ");
  assert.deepEqual(scopes, ["s", "t"]);
});
