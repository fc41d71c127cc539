/** frame.ts's readers for a few keys of a large payload: `valueStart` (not walked) and `membersOf` (one pass). */
import assert from "node:assert/strict";
import fc from "npm:fast-check@4.11.0";
import { membersOf, valueStart } from "../../src/gateway/frame.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array | null) => (b === null ? null : new TextDecoder().decode(b));

Deno.test("valueStart: where a top-level key's value starts, the value not walked; -1 without it", () => {
  const b = enc(' {"t":"X","s":1, "d" : {"a":1}, "op":0}');
  assert.equal(dec(b.subarray(valueStart(b, enc("d")))), '{"a":1}, "op":0}');
  assert.equal(valueStart(b, enc("x")), -1);
  assert.equal(valueStart(enc("[1]"), enc("d")), -1);
  // A value cut short is never walked when it is the one asked for.
  assert.equal(valueStart(enc('{"d":{"a":'), enc("d")), 5);
});

Deno.test("membersOf: the values of a few keys at depth 1 only, absent ones null, stopping once all are found", () => {
  const b = enc('{"content":"a \\"q\\"","nested":{"id":"9"},"id":"42","tail":[}');
  const out: Array<Uint8Array | null> = [];
  assert.equal(membersOf(b, 0, [enc("id"), enc("content"), enc("none")], out), 2);
  assert.deepEqual(out.map(dec), ['"42"', '"a \\"q\\""', null]);
  // Stops after the last key asked for: the malformed tail is never read.
  assert.equal(membersOf(b, 0, [enc("id")], out), 1);
  assert.deepEqual(out.map(dec), ['"42"']);
});

Deno.test("membersOf agrees with JSON.parse on random objects (fast-check)", () => {
  const keys = ["id", "content", "x"];
  fc.assert(
    fc.property(fc.dictionary(fc.constantFrom(...keys, "y", "z"), fc.jsonValue()), (object) => {
      const text = JSON.stringify(object);
      const out: Array<Uint8Array | null> = [];
      membersOf(enc(text), 0, keys.map(enc), out);
      keys.forEach((key, k) => {
        const expected = key in object ? JSON.stringify(object[key]) : null;
        assert.equal(out[k] === null ? null : JSON.stringify(JSON.parse(dec(out[k])!)), expected);
      });
    }),
  );
});
