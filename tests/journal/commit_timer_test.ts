import assert from "node:assert/strict";
import { CommitTimer, REST_PER_WRITE_MS } from "../../src/journal/commit_timer.ts";
import { ManualClock } from "../../src/util/clock.ts";

function timer(intervalMs = 50) {
  const clock = new ManualClock();
  const fired: number[] = [];
  const start = clock.now();
  const t: CommitTimer = new CommitTimer(clock, intervalMs, () => true, () => {
    fired.push(clock.now() - start);
    t.began();
  });
  return { clock, fired, t };
}

Deno.test("commit timer: after a write on this thread events wait the rest; a rider rides up to the interval", async () => {
  const { clock, fired, t } = timer();
  t.spent(1); // a 1 ms write: rest 49 ms
  t.want(false);
  await clock.advance(REST_PER_WRITE_MS - 1);
  assert.deepEqual(fired, [], "resting");
  await clock.advance(1);
  assert.deepEqual(fired, [REST_PER_WRITE_MS]);
  t.ride(false);
  await clock.advance(49);
  assert.deepEqual(fired, [REST_PER_WRITE_MS], "a cursor alone waits for events to ride with");
  await clock.advance(1);
  assert.deepEqual(fired, [REST_PER_WRITE_MS, REST_PER_WRITE_MS + 50], "at most the interval");
});

Deno.test("commit timer: a cursor a sink with more to deliver waits for goes on the next turn, rest or not", async () => {
  const { clock, fired, t } = timer();
  t.spent(1);
  t.urgent(false);
  await clock.advance(0);
  assert.deepEqual(fired, [0], "not held by the rest");
  // While a write is in flight it waits for its end, then goes at once.
  t.urgent(true);
  await clock.advance(10);
  assert.deepEqual(fired, [0]);
  t.spent(1);
  t.written();
  await clock.advance(0);
  assert.deepEqual(fired, [0, 10]);
  // Once it went, the next plain event rests again.
  t.spent(1);
  t.want(false);
  await clock.advance(0);
  assert.deepEqual(fired, [0, 10], "urgency does not outlive its commit");
  await clock.advance(REST_PER_WRITE_MS);
  assert.deepEqual(fired, [0, 10, 10 + REST_PER_WRITE_MS]);
});
