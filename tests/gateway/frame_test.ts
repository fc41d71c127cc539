import assert from "node:assert/strict";
import { dataOf, eventName, header, scanHeader } from "../../src/gateway/frame.ts";

const enc = (s: string) => new TextEncoder().encode(s);

function scan(text: string) {
  const bytes = enc(text);
  const ok = scanHeader(bytes);
  return {
    ok,
    op: header.op,
    s: header.s,
    t: header.tStart >= 0 ? eventName(bytes, header.tStart, header.tEnd) : null,
    start: header.start,
  };
}

Deno.test("Discord's key order: t, s, op, d", () => {
  assert.deepEqual(scan('{"t":"MESSAGE_CREATE","s":87,"op":0,"d":{"content":"hi"}}'), {
    ok: true,
    op: 0,
    s: 87,
    t: "MESSAGE_CREATE",
    start: 0,
  });
});

Deno.test("any key order, whitespace, and `d` before the header fields", () => {
  assert.deepEqual(
    scan(
      ' { "op" : 0 , "d" : {"nested":{"t":"NOT_ME","s":5},"arr":[1,"}",{"x":"\\"}"}]}, "s" : 12, "t" : "GUILD_CREATE" } ',
    ),
    { ok: true, op: 0, s: 12, t: "GUILD_CREATE", start: 1 },
  );
});

Deno.test("control payloads: null s and t", () => {
  assert.deepEqual(scan('{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250}}'), {
    ok: true,
    op: 10,
    s: -1,
    t: null,
    start: 0,
  });
  assert.deepEqual(scan('{"op":11}'), { ok: true, op: 11, s: -1, t: null, start: 0 });
  assert.deepEqual(scan('{"op":9,"d":false}'), { ok: true, op: 9, s: -1, t: null, start: 0 });
});

Deno.test("unknown top-level keys are skipped", () => {
  assert.equal(scan('{"_trace":["a","b"],"t":"X","s":1,"extra":{"a":[{}]},"op":0,"d":null}').t, "X");
});

Deno.test("not a gateway payload → false", () => {
  for (
    const bad of [
      "",
      "[]",
      "null",
      '{"t":"X"',
      '{"d":{}}',
      "{op:0}",
      '{"op":"zero"}',
      '{"op":0,"d":{"a":',
      "garbage",
    ]
  ) {
    assert.equal(scanHeader(enc(bad)), false, bad);
  }
});

Deno.test("event names are interned and escapes decoded", () => {
  const a = enc('{"t":"TYPING_START","s":1,"op":0,"d":{}}');
  scanHeader(a);
  const first = eventName(a, header.tStart, header.tEnd);
  scanHeader(a);
  assert.equal(eventName(a, header.tStart, header.tEnd), first);
  assert.equal(scan('{"t":"A\\u0042C","s":1,"op":0,"d":{}}').t, "ABC");
});

Deno.test("dataOf: the d value's bytes, wherever d is", () => {
  const d = (text: string) => {
    const out = dataOf(enc(text));
    return out === null ? null : new TextDecoder().decode(out);
  };
  assert.equal(d('{"t":"X","s":1,"op":0,"d":{"a":[1,"}"],"b":{"c":null}}}'), '{"a":[1,"}"],"b":{"c":null}}');
  assert.equal(d('{"op":0,"d":"text","s":2,"t":"Y"}'), '"text"');
  assert.equal(d('{"op":9,"d":false}'), "false");
  assert.equal(d('{"op":11}'), null);
  assert.equal(d("nope"), null);
});
