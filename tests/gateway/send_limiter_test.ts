import assert from "node:assert/strict";
import { SendLimiter } from "../../src/gateway/send_limiter.ts";
import { ManualClock } from "../../src/util/clock.ts";

Deno.test("120 sends per 60 s; commands leave room for heartbeats", async () => {
  const clock = new ManualClock();
  const limiter = new SendLimiter({ clock });
  limiter.reserveForHeartbeat(41_250);
  // ceil(60000 / 41250) + 2 = 4 slots kept back.
  assert.equal(limiter.reserve, 4);
  for (let i = 0; i < 116; i++) {
    assert.equal(limiter.delay(false), 0, `command ${i}`);
    limiter.record();
    await clock.advance(10);
  }
  assert.ok(limiter.delay(false) > 0, "the 117th command must wait");
  assert.equal(limiter.delay(true), 0, "a heartbeat may still go");
  for (let i = 0; i < 4; i++) limiter.record();
  assert.equal(limiter.used, 120);
  assert.ok(limiter.delay(true) > 0, "nothing may exceed 120");
});

Deno.test("the window slides: a slot frees exactly 60 s after the send that used it", async () => {
  const clock = new ManualClock(0);
  const limiter = new SendLimiter({ clock, limit: 3, windowMs: 1000, reserve: 0 });
  limiter.record(); // t=0
  await clock.advance(100);
  limiter.record(); // t=100
  await clock.advance(100);
  limiter.record(); // t=200
  assert.equal(limiter.delay(false), 800);
  await clock.advance(799);
  assert.equal(limiter.delay(false), 1);
  await clock.advance(1);
  assert.equal(limiter.delay(false), 0);
  limiter.record(); // t=1000
  assert.equal(limiter.delay(false), 100);
});

Deno.test("no burst of 2× at a window boundary (sliding, not fixed, window)", async () => {
  const clock = new ManualClock(0);
  const limiter = new SendLimiter({ clock, limit: 120, windowMs: 60_000, reserve: 0 });
  await clock.advance(59_000);
  for (let i = 0; i < 120; i++) limiter.record();
  await clock.advance(2_000); // a fixed window would have reset here
  assert.ok(limiter.delay(false) > 0);
});

Deno.test("reserve for a fast heartbeat is capped below the limit", () => {
  const limiter = new SendLimiter({ clock: new ManualClock() });
  limiter.reserveForHeartbeat(1);
  assert.equal(limiter.reserve, 119);
});

Deno.test("reset gives a new connection a fresh budget", () => {
  const clock = new ManualClock();
  const limiter = new SendLimiter({ clock, limit: 2, reserve: 0 });
  limiter.record();
  limiter.record();
  assert.ok(limiter.delay(true) > 0);
  limiter.reset();
  assert.equal(limiter.delay(true), 0);
});

Deno.test("the default window is a second longer than Discord's, so bursts at its edge stay under 120", () => {
  const clock = new ManualClock(0);
  const limiter = new SendLimiter({ clock, reserve: 0 });
  for (let i = 0; i < 120; i++) limiter.record();
  assert.equal(limiter.delay(true), 61_000);
});
