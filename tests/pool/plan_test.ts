import assert from "node:assert/strict";
import { PlanError, type PlanInput, planShards } from "../../src/pool/plan.ts";

const URL = "wss://gateway.discord.gg";

function input(over: Partial<PlanInput> = {}): PlanInput {
  return {
    configuredCount: null,
    configuredIds: null,
    recommendedCount: 4,
    gatewayUrl: URL,
    sessionStartsRemaining: 1000,
    identifyReserve: 0,
    stored: [],
    ...over,
  };
}

function stored(shard: number, shardCount: number, resumeUrl = "wss://resume.discord.gg") {
  return { shard, shardCount, sessionId: `s${shard}-${shardCount}`, seq: 10 + shard, resumeUrl };
}

Deno.test("plan: without configuration every shard of Discord's recommended count runs here", () => {
  const plan = planShards(input());
  assert.equal(plan.count, 4);
  assert.deepEqual(plan.ids, [0, 1, 2, 3]);
  assert.equal(plan.identifying, 4);
  assert.deepEqual(plan.warnings, []);
});

Deno.test("plan: a configured count and ids win; ids are sorted and repeated ones counted once", () => {
  const plan = planShards(input({ configuredCount: 16, configuredIds: [9, 3, 3, 8] }));
  assert.equal(plan.count, 16);
  assert.deepEqual(plan.ids, [3, 8, 9]);
  assert.equal(plan.identifying, 3);
});

Deno.test("plan: an id outside the count is a PlanError naming the ids and where the count came from", () => {
  assert.throws(
    () => planShards(input({ configuredIds: [1, 4, 7] })),
    (error: unknown) =>
      error instanceof PlanError &&
      /shards\.ids contains 4, 7, but the shard count is 4/.test(error.message) &&
      /Discord's recommendation/.test(error.message),
  );
  assert.throws(
    () => planShards(input({ configuredCount: 2, configuredIds: [2] })),
    (error: unknown) => error instanceof PlanError && !/recommendation/.test(error.message),
  );
  assert.throws(() => planShards(input({ recommendedCount: 0 })), PlanError);
});

Deno.test("plan: stored sessions of planned shards at this count resume; others are left alone", () => {
  const plan = planShards(
    input({ configuredIds: [0, 1], stored: [stored(0, 4), stored(1, 4), stored(2, 4)] }),
  );
  assert.deepEqual([...plan.resume.keys()], [0, 1]);
  assert.deepEqual(plan.resume.get(1), { id: "s1-4", resumeUrl: "wss://resume.discord.gg", seq: 11 });
  assert.equal(plan.identifying, 0);
  assert.deepEqual(plan.stale, []);
});

Deno.test("plan: a session stored for another count is stale, with a warning, and the shard identifies", () => {
  const plan = planShards(input({ stored: [stored(0, 2), stored(1, 4)] }));
  assert.deepEqual([...plan.resume.keys()], [1]);
  assert.deepEqual(plan.stale, [{ shard: 0, storedCount: 2 }]);
  assert.equal(plan.identifying, 3);
  assert.deepEqual(plan.warnings, [
    "shard 0: stored session was for 2 shards, now 4: starting a new session",
  ]);
});

Deno.test("plan: sessions stored for two counts side by side: the one for the planned count resumes", () => {
  const plan = planShards(input({ stored: [stored(0, 2), stored(0, 4)] }));
  assert.equal(plan.resume.get(0)?.id, "s0-4");
  assert.deepEqual(plan.stale, [], "no warning when this count's session is there");
});

Deno.test("plan: an untrusted stored resume URL resumes at Discord's gateway URL instead", () => {
  for (const bad of ["", "http://evil.example", "not a url", `wss://${"a".repeat(3000)}`]) {
    const plan = planShards(input({ configuredIds: [0], stored: [stored(0, 4, bad)] }));
    assert.equal(plan.resume.get(0)?.resumeUrl, URL, bad.slice(0, 30));
  }
});

Deno.test("plan: too few session starts left for the shards that must identify is a warning", () => {
  const plan = planShards(input({ sessionStartsRemaining: 5, identifyReserve: 2, stored: [stored(3, 4)] }));
  assert.equal(plan.identifying, 3);
  assert.deepEqual(plan.warnings, [], "3 usable starts for 3 identifies is enough");
  const short = planShards(input({ sessionStartsRemaining: 4, identifyReserve: 2, stored: [stored(3, 4)] }));
  assert.deepEqual(short.warnings, [
    "Only 4 session starts left (reserve 2) for 3 shard(s) that must IDENTIFY: some will wait for the limit to reset",
  ]);
});
