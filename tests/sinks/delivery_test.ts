/** startDelivery: one runner per sink, subscribed to the journal; a bounded stop. */
import assert from "node:assert/strict";
import { type EventBatch, Journal } from "../../src/journal/journal.ts";
import { startDelivery } from "../../src/sinks/delivery.ts";
import type { Sink } from "../../src/sinks/sink.ts";
import { Backpressure } from "../../src/util/backpressure.ts";
import { ManualClock } from "../../src/util/clock.ts";
import { type Logger, logger } from "../../src/util/log.ts";
import { enc, withStore } from "../helpers/journal_store.ts";

/** A sink that takes batches at once (or never, when `stuck`) and counts its close. */
function sink(name: string, mode: { stuck?: boolean; closeHangs?: boolean } = {}) {
  const got: number[] = [];
  let closed = 0;
  const s: Sink & { got: number[]; closed: () => number } = {
    name,
    got,
    closed: () => closed,
    deliver(batch: EventBatch) {
      if (mode.stuck) return new Promise<void>(() => {});
      for (let i = 0; i < batch.count; i++) got.push(batch.id(i));
    },
    close() {
      closed++;
      return mode.closeHangs ? new Promise<void>(() => {}) : undefined;
    },
  };
  return s;
}

Deno.test("delivery: every sink gets every committed batch; delivered() is what all have taken; a stop is bounded", async () => {
  await withStore(async (store) => {
    const clock = new ManualClock();
    const journal = new Journal({ store, logger: logger("test"), commitIntervalMs: 0, clock });
    const fast = sink("fast");
    const stuck = sink("stuck", { stuck: true, closeHangs: true });
    const infos: string[] = [];
    const log = {
      info: (message: string, properties: Record<string, unknown>) =>
        infos.push(message.replace(/\{(\w+)\}/g, (_, k) => String(properties[k]))),
      warn: () => {},
      debug: () => {},
      error: () => {},
    } as unknown as Logger;
    const delivery = startDelivery({
      journal,
      sinks: [fast, stuck],
      keepEvents: true,
      store,
      backpressure: new Backpressure(),
      logger: log,
      clock,
    });
    assert.deepEqual(infos, ["delivering events to fast, stuck"]);
    for (let n = 1; n <= 3; n++) journal.event(0, "E", n, enc(`{"n":${n}}`), 0, true);
    await clock.advance(0);
    assert.deepEqual(fast.got, [1, 2, 3]);
    assert.deepEqual(delivery.runners.map((r) => r.cursor), [3, 0]);
    assert.equal(delivery.delivered(), 0, "only what every sink has taken");
    let finished: { target: number; taken: boolean[] } | null = null;
    const finishing = delivery.finish(500).then((result) => (finished = result));
    await clock.advance(500);
    await finishing;
    assert.deepEqual(finished, { target: 3, taken: [true, false] });
    await journal.close();
    let stopped = false;
    const stopping = delivery.stop(3, 2000).then(() => (stopped = true));
    await clock.advance(1999);
    assert.equal(stopped, false, "waits for a sink's close");
    await clock.advance(1);
    await stopping;
    assert.equal(stopped, true, "at most closeMs");
    assert.deepEqual([fast.closed(), stuck.closed()], [1, 1]);
    assert.deepEqual(infos.slice(1), [
      "sink stuck: 3 event(s) not delivered yet; they wait in the journal for the next start",
    ]);
    assert.equal(store.cursor("fast"), 3, "the cursor was stored by the final flush");
  });
});
