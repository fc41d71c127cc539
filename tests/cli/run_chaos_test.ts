/**
 * The chaos run: live traffic on several shards while the fake Discord does everything it can to the
 * connections — op 7, op 9 (resumable and not), dropped TCP, a zombie connection, close 4000, an op 1,
 * messages split over WebSocket frames. Afterwards every event sent on a session that was not
 * invalidated must be on stdout exactly once, in seq order, with no protocol violation.
 */
import assert from "node:assert/strict";
import { FakeDiscord } from "../fake_discord/server.ts";
import { assertExactlyOnce, caughtUp } from "../helpers/delivery.ts";
import { fakeEnv, type Gatehouse, spawnGatehouse } from "../helpers/gatehouse.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until the shard has a live session again (READY or RESUMED after `since` lines). */
async function live(g: Gatehouse, fake: FakeDiscord, shard: number) {
  await fake.waitFor(
    () => fake.connections().some((c) => c.shard === shard && c.sessionId !== null),
    20_000,
    `shard ${shard} back online`,
  );
  await g.waitFor(() => g.lines.length > 0);
}

for (const compression of ["zlib-stream", "zstd-stream"] as const) {
  Deno.test(`chaos run (${compression}): exactly once, in order, zero violations`, async () => {
    const fake = await FakeDiscord.start({
      shards: 3,
      maxConcurrency: 3,
      guildsPerShard: 2,
      largeGuildMembers: 600,
      heartbeatIntervalMs: 1000,
      splitMessages: compression === "zlib-stream",
    });
    const g = spawnGatehouse({ env: { ...fakeEnv(fake.apiHost), GATEHOUSE_COMPRESSION: compression } });
    try {
      await g.waitFor(() => g.lines.filter((l) => l.t === "READY").length === 3, 15_000, "3 READY");
      fake.startTraffic(150);
      await sleep(400);

      fake.sendReconnect(0); // op 7
      await sleep(300);
      fake.invalidateSession(1, true); // op 9 resumable: wait 1–5 s, resume
      fake.requestHeartbeat(2); // op 1: beat at once
      await sleep(300);
      fake.dropConnection(2); // TCP gone, no close frame
      await live(g, fake, 0);
      await live(g, fake, 2);
      await sleep(300);
      fake.stall(0, true); // zombie: nothing arrives, not even ACKs
      await fake.waitFor(
        () => fake.clientCloses.some((c) => c.shard === 0 && c.code === 4000),
        6000,
        "zombie detected and closed with 4000",
      );
      await live(g, fake, 0);
      fake.closeWith(2, 4000, "unknown error"); // resumable close code
      await live(g, fake, 1);
      await sleep(300);
      fake.invalidateSession(2, false); // op 9 not resumable: new session after 1–5 s
      await g.waitFor(
        () => g.lines.some((l) => l.t === "GATEHOUSE_SESSION_INVALIDATED" && l.shard === 2),
        10_000,
        "invalidation notice",
      );
      await g.waitFor(
        () => g.lines.filter((l) => l.t === "READY" && l.shard === 2).length === 2,
        20_000,
        "new READY",
      );
      await sleep(500);
      fake.stopTraffic();
      await g.waitFor(() => caughtUp(fake, g.lines), 20_000, "every event written");

      assert.deepEqual(g.badLines, []);
      const report = assertExactlyOnce(fake, g.lines);
      assert.deepEqual(fake.violations, [], JSON.stringify(fake.violations));

      // The run did what it claims: resumes happened, one session was replaced, traffic flowed.
      assert.ok(fake.resumes.filter((r) => r.ok).length >= 4, `resumes: ${JSON.stringify(fake.resumes)}`);
      assert.equal(fake.sessions().filter((s) => s.invalidated).length, 1);
      assert.equal(fake.identifies.length, 4);
      assert.ok(report.lines > 300, `only ${report.lines} lines`);
      const notice = g.lines.find((l) => l.t === "GATEHOUSE_SESSION_INVALIDATED")!;
      const invalidated = fake.sessions().find((s) => s.invalidated)!;
      assert.equal(notice.d.session_id, invalidated.id);
      assert.equal(notice.d.shard_id, 2);
      assert.ok(notice.d.last_seq > 1);

      g.kill("SIGTERM");
      assert.equal((await g.status).code, 0);
    } finally {
      g.kill("SIGKILL");
      await g.status;
      await fake.stop();
    }
  });
}

Deno.test("resume host down: after 3 failed connects the shard resumes through the main URL, losing nothing", async () => {
  const fake = await FakeDiscord.start({ shards: 1, heartbeatIntervalMs: 2000 });
  const g = spawnGatehouse({ env: fakeEnv(fake.apiHost) });
  try {
    await g.waitFor(() => g.lines.some((l) => l.t === "READY"), 10_000, "READY");
    fake.startTraffic(100);
    await sleep(300);
    fake.setResumeHostDown(true);
    fake.dropConnection(0);
    await fake.waitFor(
      () => fake.resumes.some((r) => r.ok && r.listener === "main"),
      20_000,
      "resume on main",
    );
    await sleep(300);
    fake.stopTraffic();
    await g.waitFor(() => caughtUp(fake, g.lines), 10_000, "every event written");
    assertExactlyOnce(fake, g.lines);
    assert.equal(fake.identifies.length, 1, "resumed, not re-identified");
    assert.deepEqual(fake.violations, []);
    assert.match(g.stderr(), /resume URL failed 3 times; resuming through the main gateway URL/);
  } finally {
    g.kill("SIGKILL");
    await g.status;
    await fake.stop();
  }
});
