import assert from "node:assert/strict";
import fc from "npm:fast-check@4.11.0";
import { dataOf } from "../../src/gateway/frame.ts";
import { fingerprint64, type Generation, OverlapFilter } from "../../src/pool/overlap.ts";
import { ManualClock } from "../../src/util/clock.ts";

const SEEDS: [number, number] = [0x9747b28c, 0x1b2c3d4e];
const enc = (s: string) => new TextEncoder().encode(s);

function filter(clock: ManualClock, over: { windowMs?: number; maxEntries?: number } = {}) {
  return new OverlapFilter({ clock, seeds: SEEDS, ...over });
}

Deno.test("overlap: an event seen once on each generation is delivered once, whichever comes first", () => {
  const clock = new ManualClock();
  const f = filter(clock);
  const a = enc('{"id":"1","content":"hi"}');
  assert.equal(f.offer("old", "MESSAGE_CREATE", a), "deliver");
  assert.equal(f.offer("new", "MESSAGE_CREATE", a.slice()), "drop-repeat");
  assert.equal(f.offer("new", "MESSAGE_CREATE", enc('{"id":"2"}')), "deliver");
  assert.equal(f.offer("old", "MESSAGE_CREATE", enc('{"id":"2"}')), "drop-repeat");
  assert.equal(f.size, 0);
  assert.deepEqual(f.counts, { delivered: 2, dropped: 2, evicted: 0, expired: 0 });
});

Deno.test("overlap: two sessions' frames of one event (other s, other key order) match through dataOf", () => {
  const clock = new ManualClock();
  const f = filter(clock);
  const d = '{"id":"1203","channel_id":"77","content":"x\\"}"}';
  const oldFrame = enc(`{"t":"MESSAGE_CREATE","s":41,"op":0,"d":${d}}`);
  const newFrame = enc(` {"op":0,"s":7,"d":${d},"t":"MESSAGE_CREATE"}`);
  assert.equal(f.offer("old", "MESSAGE_CREATE", dataOf(oldFrame)!), "deliver");
  assert.equal(f.offer("new", "MESSAGE_CREATE", dataOf(newFrame)!), "drop-repeat");
  const edited = enc(`{"t":"MESSAGE_CREATE","s":8,"op":0,"d":${d.replace("x", "y")}}`);
  assert.equal(f.offer("new", "MESSAGE_CREATE", dataOf(edited)!), "deliver");
});

Deno.test("overlap: identical bytes twice on one generation are two events, each matched once", () => {
  const clock = new ManualClock();
  const f = filter(clock);
  const a = enc('{"guild_id":"5","user_id":"7"}');
  assert.equal(f.offer("old", "TYPING_START", a), "deliver");
  assert.equal(f.offer("old", "TYPING_START", a), "deliver");
  assert.equal(f.offer("new", "TYPING_START", a), "drop-repeat");
  assert.equal(f.offer("new", "TYPING_START", a), "drop-repeat");
  assert.equal(f.offer("new", "TYPING_START", a), "deliver", "a third copy on new has no partner left");
});

Deno.test("overlap: the same d under another t, or d one byte longer, is not a repeat", () => {
  const clock = new ManualClock();
  const f = filter(clock);
  assert.equal(f.offer("old", "MESSAGE_UPDATE", enc('{"id":"1"}')), "deliver");
  assert.equal(f.offer("new", "MESSAGE_CREATE", enc('{"id":"1"}')), "deliver");
  assert.equal(f.offer("new", "MESSAGE_UPDATE", enc('{"id":"1"} ')), "deliver");
});

Deno.test("overlap: a copy arriving after the window is not matched; one at its edge is", async () => {
  const clock = new ManualClock();
  const f = filter(clock, { windowMs: 30_000 });
  f.offer("old", "MESSAGE_CREATE", enc("a"));
  f.offer("old", "MESSAGE_CREATE", enc("b"));
  await clock.advance(30_000);
  assert.equal(f.offer("new", "MESSAGE_CREATE", enc("a")), "drop-repeat");
  await clock.advance(1);
  assert.equal(f.offer("new", "MESSAGE_CREATE", enc("b")), "deliver");
  assert.equal(f.counts.expired, 1);
});

Deno.test("overlap: a receive time older than the window is not matched even before expiry runs", () => {
  const clock = new ManualClock();
  const f = filter(clock, { windowMs: 1000 });
  f.offer("old", "X", enc("a"), clock.now() - 500);
  assert.equal(
    f.offer("new", "X", enc("a"), clock.now() + 10_000),
    "drop-repeat",
    "a future time counts as now",
  );
  f.offer("old", "X", enc("b"), clock.now() - 2000);
  assert.equal(f.offer("new", "X", enc("b")), "deliver");
});

Deno.test("overlap: the count bound forgets the oldest unmatched deliveries first", () => {
  const clock = new ManualClock();
  const f = filter(clock, { maxEntries: 3 });
  for (const s of ["1", "2", "3", "4", "5"]) assert.equal(f.offer("old", "X", enc(s)), "deliver");
  assert.equal(f.size, 3);
  assert.equal(f.counts.evicted, 2);
  assert.equal(f.offer("new", "X", enc("3")), "drop-repeat");
  assert.equal(f.offer("new", "X", enc("5")), "drop-repeat");
  assert.equal(f.offer("new", "X", enc("1")), "deliver", "forgotten: delivered again (a repeat, not a loss)");
  assert.equal(f.offer("new", "X", enc("2")), "deliver");
  assert.equal(f.size, 3, "4 and the new generation's 1 and 2");
});

Deno.test("overlap: memory follows the window: a steady stream keeps only the window's events", async () => {
  const clock = new ManualClock();
  const f = filter(clock, { windowMs: 1000, maxEntries: 1_000_000 });
  for (let i = 0; i < 5000; i++) {
    f.offer(i % 3 === 0 ? "new" : "old", "X", enc(String(i)));
    await clock.advance(1);
    assert.ok(f.size <= 1001, `size ${f.size} at ${i}`);
  }
  await clock.advance(1001);
  f.expire();
  assert.equal(f.size, 0);
});

Deno.test("overlap: matched records do not pile up behind an old unmatched one", () => {
  const clock = new ManualClock();
  const f = filter(clock, { maxEntries: 10 });
  f.offer("old", "X", enc("pinned"));
  let most = 0;
  for (let i = 0; i < 20_000; i++) {
    f.offer("old", "X", enc(String(i)));
    assert.equal(f.offer("new", "X", enc(String(i))), "drop-repeat");
    most = Math.max(most, f.held);
  }
  assert.ok(most <= 2 * 10 + 1024 + 1, `held ${most}`);
  assert.equal(f.size, 1);
  assert.equal(f.offer("new", "X", enc("pinned")), "drop-repeat");
});

Deno.test("overlap: events only one generation sees are all delivered", () => {
  const clock = new ManualClock();
  const f = filter(clock);
  for (let i = 0; i < 100; i++) assert.equal(f.offer("new", "GUILD_CREATE", enc(`{"id":"${i}"}`)), "deliver");
  for (let i = 0; i < 100; i++) {
    assert.equal(f.offer("old", "GUILD_CREATE", enc(`{"id":"x${i}"}`)), "deliver");
  }
});

Deno.test("overlap: READY and RESUMED are per session and never matched", () => {
  const clock = new ManualClock();
  const f = filter(clock);
  const ready = enc('{"v":10}');
  assert.equal(f.offer("old", "READY", ready), "deliver");
  assert.equal(f.offer("new", "READY", ready), "deliver");
  assert.equal(f.offer("new", "RESUMED", enc("null")), "deliver");
  assert.equal(f.offer("old", "RESUMED", enc("null")), "deliver");
  assert.equal(f.size, 0);
});

Deno.test("overlap: options out of range are refused with the value named", () => {
  const clock = new ManualClock();
  assert.throws(() => filter(clock, { windowMs: 0 }), /windowMs 0/);
  assert.throws(() => filter(clock, { maxEntries: 1.5 }), /maxEntries 1.5/);
});

Deno.test("overlap: fingerprint64 changes when any byte changes or a byte is added (fixed seeds)", () => {
  fc.assert(
    fc.property(
      fc.uint8Array({ minLength: 1, maxLength: 64 }),
      fc.nat(),
      fc.integer({ min: 1, max: 255 }),
      (d, at, x) => {
        const i = at % d.length;
        const changed = d.slice();
        changed[i] ^= x;
        const longer = new Uint8Array(d.length + 1);
        longer.set(d);
        const base = fingerprint64(d, SEEDS).join();
        assert.equal(fingerprint64(d.slice(), SEEDS).join(), base);
        assert.notEqual(fingerprint64(changed, SEEDS).join(), base);
        assert.notEqual(fingerprint64(longer, SEEDS).join(), base);
      },
    ),
    { numRuns: 2000 },
  );
});

/** One true occurrence of an event: which bytes, when, and which generations see it after what delay. */
interface Occurrence {
  body: number;
  at: number;
  seenBy: "both" | Generation;
  oldDelay: number;
  newDelay: number;
  tie: number;
}

const WINDOW = 30_000;
const occurrence = fc.record({
  body: fc.integer({ min: 0, max: 5 }),
  at: fc.integer({ min: 0, max: 10_000 }),
  seenBy: fc.constantFrom<Occurrence["seenBy"]>("both", "both", "both", "old", "new"),
  oldDelay: fc.integer({ min: 0, max: 10_000 }),
  newDelay: fc.integer({ min: 0, max: 10_000 }),
  tie: fc.nat(),
});

Deno.test("overlap: any interleaving within the window delivers each true occurrence exactly once", async () => {
  await fc.assert(
    fc.asyncProperty(fc.array(occurrence, { maxLength: 60 }), async (occurrences) => {
      const clock = new ManualClock(0);
      const f = filter(clock, { windowMs: WINDOW });
      // Bytes come from a small pool, so true duplicates are common; some events only one set sees have bytes
      // of their own. Per bytes, a occurrences seen by old and b by new are max(a, b) true events when the
      // one-sided ones are on one side (a set that stopped, or one that had not started): the overlap cannot
      // tell one old-only and one new-only occurrence of equal bytes from one event seen twice.
      const keyOf = (o: Occurrence, n: number) =>
        o.seenBy !== "both" && o.tie % 2 === 0 ? `{"solo":${n}}` : `{"body":${o.body}}`;
      const copies: Array<{ time: number; tie: number; generation: Generation; key: string }> = [];
      const seen = new Map<string, { old: number; new: number }>();
      occurrences.forEach((o, n) => {
        const key = keyOf(o, n);
        const count = seen.get(key) ?? { old: 0, new: 0 };
        seen.set(key, count);
        if (o.seenBy !== "new") {
          copies.push({ time: o.at + o.oldDelay, tie: o.tie, generation: "old", key });
          count.old++;
        }
        if (o.seenBy !== "old") {
          copies.push({ time: o.at + o.newDelay, tie: o.tie + 1, generation: "new", key });
          count.new++;
        }
      });
      copies.sort((a, b) => a.time - b.time || a.tie - b.tie);
      const delivered = new Map<string, number>();
      for (const c of copies) {
        await clock.advance(c.time - clock.now());
        if (f.offer(c.generation, "MESSAGE_CREATE", enc(c.key)) === "deliver") {
          delivered.set(c.key, (delivered.get(c.key) ?? 0) + 1);
        }
      }
      const expected = new Map([...seen].map(([key, c]) => [key, Math.max(c.old, c.new)]));
      assert.deepEqual(new Map([...delivered].sort()), new Map([...expected].sort()));
      const pairs = [...seen.values()].reduce((sum, c) => sum + Math.min(c.old, c.new), 0);
      assert.equal(f.counts.dropped, pairs);
    }),
    { numRuns: 300 },
  );
});

Deno.test("overlap: copies further apart than the window are both delivered", async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.integer({ min: 0, max: 9 }), { minLength: 1, maxLength: 30 }),
      fc.integer({ min: WINDOW + 1, max: 3 * WINDOW }),
      fc.constantFrom<Generation>("old", "new"),
      async (bodies, gap, first) => {
        const clock = new ManualClock(0);
        const f = filter(clock, { windowMs: WINDOW });
        const second: Generation = first === "old" ? "new" : "old";
        for (const b of bodies) assert.equal(f.offer(first, "X", enc(String(b))), "deliver");
        await clock.advance(gap);
        for (const b of bodies) assert.equal(f.offer(second, "X", enc(String(b))), "deliver");
        assert.equal(f.counts.dropped, 0);
      },
    ),
    { numRuns: 100 },
  );
});
