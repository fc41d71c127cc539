/**
 * The daily identify budget across crashes: identifies are counted in the store, a crash loop slows
 * down instead of spending session starts, and the configured reserve is never spent. Each wait is
 * logged with its reason.
 */
import assert from "node:assert/strict";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, spawnGatehouse } from "../helpers/gatehouse.ts";

Deno.test("a crash loop that cannot resume: the 4th IDENTIFY within 10 minutes waits, and says why", async () => {
  // Sessions expire 100 ms after their connection drops, so every restart must IDENTIFY again.
  const fake = await FakeDiscord.start({ shards: 1, sessionTtlMs: 100 });
  const dir = await Deno.makeTempDir();
  const env = { ...fakeEnv(fake.apiHost), GATEHOUSE_STORE: `${dir}/gatehouse.db` };
  try {
    for (let run = 1; run <= 3; run++) {
      const g = spawnGatehouse({ env });
      await g.waitFor(() => g.lines.some((l) => l.t === "READY"), 15_000, `run ${run} READY`);
      // Let the identify and its session reach the store, then crash.
      await new Promise((resolve) => setTimeout(resolve, 100));
      g.kill("SIGKILL");
      await g.status;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    assert.equal(fake.identifies.length, 3);
    // Restarted within a second, yet each IDENTIFY came 5 s after the previous process's one.
    assert.deepEqual(fake.violations, []);
    const fourth = spawnGatehouse({ env });
    await fourth.waitFor(() => /crash-loop protection/.test(fourth.stderr()), 15_000, "the guard");
    await new Promise((resolve) => setTimeout(resolve, 2000));
    assert.equal(fake.identifies.length, 3, "no 4th IDENTIFY during the wait");
    assert.match(
      fourth.stderr(),
      /shard 0 started 3 sessions in the last 10 min: waiting 30 s before the next IDENTIFY/,
    );
    // The stored session was not resumable: consumers were told.
    assert.ok(fourth.lines.some((l) => l.t === "GATEHOUSE_SESSION_INVALIDATED"));
    fourth.kill("SIGTERM");
    assert.equal((await fourth.status).code, 0);
  } finally {
    await fake.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the identify reserve is never spent: shards wait for the limit to reset, and the log says so", async () => {
  const fake = await FakeDiscord.start({
    shards: 4,
    maxConcurrency: 4,
    sessionStartLimit: { total: 1000, remaining: 12, resetAfter: 3_600_000 },
  });
  const g = spawnGatehouse({ env: { ...fakeEnv(fake.apiHost), GATEHOUSE_IDENTIFY_RESERVE: "10" } });
  try {
    await g.waitFor(() => g.lines.filter((l) => l.t === "READY").length === 2, 15_000, "2 READY");
    await g.waitFor(() => /Holding every IDENTIFY/.test(g.stderr()), 5000, "the hold");
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.equal(fake.identifies.length, 2);
    assert.equal(fake.sessionStartRemaining, 10, "the reserve of 10 is untouched");
    assert.match(
      g.stderr(),
      /Only 12 session starts left \(reserve 10\) for 4 shard\(s\) that must IDENTIFY/,
    );
    assert.match(
      g.stderr(),
      /Holding every IDENTIFY: 10 of 1000 session starts left today \(reserve 10\); waiting 60 min/,
    );
    assert.deepEqual(fake.violations, []);
  } finally {
    g.kill("SIGTERM");
    await g.status;
    await fake.stop();
  }
});
