import assert from "node:assert/strict";
import { Heartbeat } from "../../src/gateway/heartbeat.ts";
import { ManualClock } from "../../src/util/clock.ts";

function setup(random = 0.25) {
  const clock = new ManualClock();
  const due: Array<{ at: number; alive: boolean }> = [];
  const start = clock.now();
  const heartbeat = new Heartbeat({
    clock,
    random: () => random,
    onDue: (alive) => {
      due.push({ at: clock.now() - start, alive });
      if (alive) heartbeat.beat();
    },
  });
  return { clock, due, heartbeat };
}

Deno.test("heartbeat: the first beat is jittered, then one every interval", async () => {
  const t = setup();
  t.heartbeat.start(1000);
  assert.equal(t.heartbeat.interval, 1000);
  await t.clock.advance(249);
  assert.deepEqual(t.due, []);
  await t.clock.advance(1);
  t.heartbeat.received();
  await t.clock.advance(1000);
  t.heartbeat.received();
  await t.clock.advance(1000);
  assert.deepEqual(t.due, [{ at: 250, alive: true }, { at: 1250, alive: true }, { at: 2250, alive: true }]);
});

Deno.test("heartbeat: an interval with nothing received is not alive, unless reading is paused", async () => {
  const t = setup(0);
  t.heartbeat.start(1000);
  await t.clock.advance(0);
  assert.deepEqual(t.due, [{ at: 0, alive: true }], "the first beat owes nothing");
  t.heartbeat.paused = true;
  await t.clock.advance(2000);
  assert.deepEqual(t.due.map((d) => d.alive), [true, true, true]);
  t.heartbeat.paused = false;
  await t.clock.advance(1000);
  assert.deepEqual(t.due.at(-1), { at: 3000, alive: false });
});

Deno.test("heartbeat: stop ends the beats; latency is beat to ACK", async () => {
  const t = setup(0.5);
  t.heartbeat.start(1000);
  await t.clock.advance(500);
  await t.clock.advance(42);
  assert.equal(t.heartbeat.latency, null);
  assert.equal(t.heartbeat.ack(), 42);
  assert.equal(t.heartbeat.latency, 42);
  t.heartbeat.stop();
  await t.clock.advance(10_000);
  assert.equal(t.due.length, 1);
  assert.equal(t.clock.pending, 0);
  assert.equal(t.heartbeat.interval, 1000, "the last interval is still shown");
});
