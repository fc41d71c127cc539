/**
 * The slow-reader judge of proxy clients (src/proxy/backlog.ts): the age of the oldest byte not yet
 * written, from the sends and the socket's `bufferedAmount`, with an injected clock.
 */
import assert from "node:assert/strict";
import fc from "npm:fast-check@4.11.0";
import { SendBacklog, SLOW_AFTER_MS } from "../../src/proxy/backlog.ts";

Deno.test("backlog: nothing handed, or everything written, waits 0 ms", () => {
  const b = new SendBacklog();
  assert.equal(b.ageMs(0, 1_000), 0);
  b.sent(100, 1_000);
  b.sent(100, 1_005);
  assert.equal(b.ageMs(0, 9_000), 0);
  assert.equal(b.handed, 200);
});

Deno.test("backlog: the age is that of the first send not fully written", () => {
  const b = new SendBacklog();
  b.sent(100, 1_000); // bytes 1..100
  b.sent(100, 1_010); // 101..200
  b.sent(100, 1_020); // 201..300
  assert.equal(b.ageMs(300, 1_500), 500, "nothing written: the first send's age");
  assert.equal(b.ageMs(250, 1_500), 500, "half of the first written");
  assert.equal(b.ageMs(200, 1_500), 490, "the first written: the second's age");
  assert.equal(b.ageMs(1, 1_500), 480, "one byte of the last left");
  // Written bytes stay written (a bufferedAmount that rose again is new sends, not old ones back).
  b.sent(50, 1_600);
  assert.equal(b.ageMs(51, 1_700), 680);
  assert.equal(b.ageMs(50, 1_700), 100);
});

Deno.test("backlog: sends within one millisecond share a mark", () => {
  const b = new SendBacklog();
  for (let i = 0; i < 1_000; i++) b.sent(10, 5_000);
  b.sent(10, 5_001);
  assert.equal(b.ageMs(20, 5_100), 100, "only the last 2 sends' bytes wait: the 5000 mark's tail");
  assert.equal(b.ageMs(10, 5_100), 99);
});

Deno.test("backlog: gatehouse's own busy turns (megabytes handed at once, written the next turn) are never too slow; a reader that stopped is, past the bound, after SLOW_AFTER_MS", () => {
  const bound = 64 * 1024;
  const busy = new SendBacklog();
  const stopped = new SendBacklog();
  let buffered = 0;
  let stoppedBuffered = 0;
  // 30 s of turns 50 ms apart, each handing 300 KB (one journal batch of a flood), in 1 KB events.
  let closedAt: number | null = null;
  for (let now = 0; now < 30_000; now += 50) {
    // The previous turn's bytes were written when the loop got back to the socket.
    buffered = 0;
    for (let i = 0; i < 300; i++) {
      busy.sent(1_000, now);
      buffered += 1_000;
      stopped.sent(1_000, now);
      stoppedBuffered += 1_000;
    }
    assert.ok(buffered > bound, "over the bound by bytes alone");
    assert.equal(busy.tooSlow(buffered, bound, now), false, `busy at ${now} ms`);
    if (closedAt === null && stopped.tooSlow(stoppedBuffered, bound, now)) closedAt = now;
  }
  assert.equal(closedAt, SLOW_AFTER_MS, "the stopped reader, as soon as its first bytes are that old");
});

Deno.test("backlog: a reader that drains, slower than it is given bytes, is too slow once its lag ages", () => {
  const b = new SendBacklog();
  const bound = 1_000_000;
  let handed = 0, written = 0;
  let closedAt: number | null = null;
  // 2 MB/s given, 1 MB/s read: 1 MB behind after 1 s, and its oldest byte 0.5 s old; 2 s old at 4 s.
  for (let now = 0; now <= 10_000 && closedAt === null; now += 10) {
    b.sent(20_000, now);
    handed += 20_000;
    written = Math.min(handed, written + 10_000);
    if (b.tooSlow(handed - written, bound, now)) closedAt = now;
  }
  assert.ok(closedAt !== null && closedAt >= 3_900 && closedAt <= 4_100, `closed at ${closedAt}`);
});

Deno.test("backlog: the age matches a byte-by-byte model for any sends and writes (fast-check)", () => {
  const step = fc.oneof(
    fc.record({
      kind: fc.constant("send" as const),
      bytes: fc.integer({ min: 0, max: 5_000 }),
      dt: fc.nat(5),
    }),
    fc.record({ kind: fc.constant("write" as const), bytes: fc.nat(8_000), dt: fc.nat(5) }),
  );
  fc.assert(
    fc.property(fc.array(step, { maxLength: 300 }), (steps) => {
      const b = new SendBacklog();
      const sends: Array<{ end: number; at: number }> = [];
      let now = 0, handed = 0, written = 0;
      for (const s of steps) {
        now += s.dt;
        if (s.kind === "send") {
          b.sent(s.bytes, now);
          if (s.bytes > 0) sends.push({ end: handed += s.bytes, at: now });
        } else written = Math.min(handed, written + s.bytes);
        const oldest = sends.find((x) => x.end > written);
        assert.equal(b.ageMs(handed - written, now), oldest ? now - oldest.at : 0);
      }
    }),
  );
});
