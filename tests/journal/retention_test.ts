import assert from "node:assert/strict";
import { Retention } from "../../src/journal/retention.ts";
import { Store } from "../../src/journal/store.ts";
import { ManualClock } from "../../src/util/clock.ts";
import { type Logger, logger } from "../../src/util/log.ts";

async function withStore(fn: (store: Store) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-retention-" });
  const store = Store.open(`${dir}/g.db`);
  try {
    await fn(store);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

const DAY = 86_400_000;
const NOW = 100 * DAY;

/** One pass, its turns between chunks driven on `clock`. */
async function pass(retention: Retention, clock: ManualClock) {
  const result = retention.run();
  await clock.advance(0);
  return await result;
}

/** Events 1..n, one per minute, ending now; 2 KB each. */
function seed(store: Store, n: number) {
  const payload = new Uint8Array(2000).fill(97);
  store.transaction("seed", () => {
    for (let id = 1; id <= n; id++) {
      store.events.insert(id, 0, null, id, "E", NOW - (n - id) * 60_000, payload);
    }
  });
}

Deno.test("max_age prunes delivered old events only", async () => {
  await withStore(async (store) => {
    seed(store, 3000); // 50 hours of events, one a minute
    let delivered = 1000;
    const clock = new ManualClock(NOW);
    const retention = new Retention({
      store,
      logger: logger("test"),
      maxAgeMs: DAY,
      maxSizeBytes: 0,
      hardMaxSizeBytes: 0,
      delivered: () => delivered,
      clock,
      chunk: 500,
    });
    // Older than a day: ids 1..1559. Only 1..1000 are delivered.
    assert.deepEqual(await pass(retention, clock), { pruned: 1000, prunedUndelivered: 0 });
    assert.equal(store.events.minId(), 1001, "old but undelivered events stay");
    delivered = 2500;
    assert.deepEqual(await pass(retention, clock), { pruned: 559, prunedUndelivered: 0 });
    assert.equal(store.events.minId(), 1560, "delivered but younger than a day stay");
  });
});

Deno.test("max_size prunes delivered events, oldest first, never undelivered ones", async () => {
  await withStore(async (store) => {
    seed(store, 4000);
    const clock = new ManualClock(NOW);
    const full = store.usedBytes();
    const retention = new Retention({
      store,
      logger: logger("test"),
      maxAgeMs: 0,
      maxSizeBytes: Math.floor(full / 2),
      hardMaxSizeBytes: 0,
      delivered: () => 1000,
      chunk: 300,
      clock,
    });
    const result = await pass(retention, clock);
    assert.equal(result.pruned, 1000, "only what was delivered, although the store is still too big");
    assert.equal(store.events.minId(), 1001);
    assert.equal(result.prunedUndelivered, 0);
  });
});

Deno.test("hard_max_size: with nothing delivered left to prune, the oldest undelivered go, logged and counted", async () => {
  await withStore(async (store) => {
    seed(store, 4000);
    const clock = new ManualClock(NOW);
    const used = store.usedBytes();
    const errors: string[] = [];
    const retention = new Retention({
      store,
      logger: {
        error: (m: string, p: unknown) => errors.push(`${m} ${JSON.stringify(p)}`),
        info: () => {},
      } as unknown as Logger,
      maxAgeMs: 0,
      maxSizeBytes: 0,
      hardMaxSizeBytes: Math.floor(used / 2),
      delivered: () => 0,
      chunk: 1000,
      clock,
    });
    const result = await pass(retention, clock);
    assert.ok(result.prunedUndelivered > 1000, String(result.prunedUndelivered));
    assert.ok(store.usedBytes() <= used / 2 * 0.9 + 16384 * 4);
    assert.equal(Number(store.meta("pruned_undelivered")), result.prunedUndelivered);
    assert.match(errors[0], /pruned .* undelivered event\(s\)/);
    assert.equal(store.events.maxId(), 4000, "newest kept");
  });
});

Deno.test("started, retention runs a pass every interval on its clock, and not after stop", async () => {
  await withStore(async (store) => {
    seed(store, 100);
    const clock = new ManualClock(NOW);
    let delivered = 0;
    const retention = new Retention({
      store,
      logger: logger("test"),
      maxAgeMs: 1,
      maxSizeBytes: 0,
      hardMaxSizeBytes: 0,
      delivered: () => delivered,
      clock,
    });
    retention.start(30_000);
    delivered = 10;
    await clock.advance(29_999);
    assert.equal(store.events.minId(), 1, "no pass before the interval");
    await clock.advance(1);
    assert.equal(store.events.minId(), 11, "the first pass pruned what was delivered");
    delivered = 20;
    await clock.advance(30_000);
    assert.equal(store.events.minId(), 21, "and the next one, an interval later");
    retention.stop();
    delivered = 30;
    await clock.advance(60_000);
    assert.equal(store.events.minId(), 21, "none after stop");
    assert.equal(clock.pending, 0, "no timer left");
  });
});
