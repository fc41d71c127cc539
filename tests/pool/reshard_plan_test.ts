import assert from "node:assert/strict";
import { decideReshard, type ReshardInput, roundToBuckets } from "../../src/pool/reshard_plan.ts";

const base: ReshardInput = {
  trigger: { kind: "periodic" },
  currentCount: 4,
  guilds: 8000,
  recommended: 8,
  maxConcurrency: 1,
  sessionStartsRemaining: 1000,
  reserve: 50,
  threshold: 0.8,
};

Deno.test("reshard plan: the periodic check reshards at the threshold, to Discord's recommendation", () => {
  // 4 shards hold 10 000 guilds: 8 000 is exactly 80 %.
  assert.deepEqual(decideReshard(base), {
    reshard: true,
    count: 8,
    why: "8000 guilds fill 80.0 % of 4 shard(s) (threshold 80 %): 4 → 8 shards",
  });
  const under = decideReshard({ ...base, guilds: 7999 });
  assert.equal(under.reshard, false);
  assert.equal(!under.reshard && under.reason, "not_needed");
  assert.match(under.why, /under the threshold of 80 %/);
});

Deno.test("reshard plan: large bots get a multiple of max_concurrency", () => {
  assert.equal(roundToBuckets(10, 1), 10);
  assert.equal(roundToBuckets(10, 16), 16);
  assert.equal(roundToBuckets(32, 16), 32);
  assert.equal(roundToBuckets(33, 16), 48);
  const d = decideReshard({ ...base, currentCount: 16, guilds: 36_000, recommended: 20, maxConcurrency: 16 });
  assert.deepEqual(d.reshard && d.count, 32);
});

Deno.test("reshard plan: refused with the reason when the day's session starts cannot cover the new set", () => {
  const d = decideReshard({ ...base, sessionStartsRemaining: 57, reserve: 50 });
  assert.equal(d.reshard, false);
  assert.equal(!d.reshard && d.reason, "budget");
  assert.match(
    d.why,
    /8 new sessions need 8 IDENTIFYs, but only 57 session starts are left today and 50 are kept/,
  );
  assert.equal(
    decideReshard({ ...base, sessionStartsRemaining: 58, reserve: 50 }).reshard,
    true,
    "exactly enough",
  );
});

Deno.test("reshard plan: on request (any count, also fewer), and on close 4011", () => {
  assert.deepEqual(decideReshard({ ...base, guilds: 10, trigger: { kind: "requested" } }), {
    reshard: true,
    count: 8,
    why: "requested: 4 → 8 shards",
  });
  const fewer = decideReshard({
    ...base,
    currentCount: 8,
    guilds: 10,
    trigger: { kind: "requested", count: 2 },
  });
  assert.deepEqual(fewer.reshard && fewer.count, 2, "an operator may shrink");
  // 8 000 guilds need 4 shards: asking for 2 means the 4 running, so no reshard.
  const tooFew = decideReshard({ ...base, guilds: 8000, trigger: { kind: "requested", count: 2 } });
  assert.equal(tooFew.reshard, false, "never fewer than the guilds need");
  assert.match(tooFew.why, /the new count would be 4, as now/);
  const up = decideReshard({
    ...base,
    currentCount: 8,
    guilds: 12_000,
    trigger: { kind: "requested", count: 2 },
  });
  assert.deepEqual(up.reshard && up.count, 5, "raised to what 12 000 guilds need");
  for (const bad of [0, -1, 2.5, Number.NaN]) {
    const d = decideReshard({ ...base, trigger: { kind: "requested", count: bad } });
    assert.equal(!d.reshard && d.reason, "invalid", String(bad));
  }
  const closed = decideReshard({ ...base, guilds: 100, trigger: { kind: "close_4011" } });
  assert.deepEqual(closed.reshard && closed.count, 8);
  assert.match(closed.why, /4011/);
});

Deno.test("reshard plan: no reshard to the count running, nor down on its own", () => {
  const same = decideReshard({ ...base, recommended: 4, guilds: 9000 });
  assert.equal(same.reshard, false);
  assert.match(same.why, /the new count would be 4, as now/);
  const down = decideReshard({ ...base, currentCount: 16, guilds: 32_000, recommended: 8 });
  assert.equal(down.reshard, false);
  assert.match(down.why, /fewer than the 16 running/);
});
