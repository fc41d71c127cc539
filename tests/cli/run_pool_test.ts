/**
 * `gatehouse run` against the fake Discord: 4 shards with max_concurrency 2 — identify buckets, READY
 * lines on stdout, a clean SIGTERM closing every socket with 4000.
 */
import assert from "node:assert/strict";
import { FakeDiscord } from "../fake_discord/server.ts";
import { assertExactlyOnce, caughtUp } from "../helpers/delivery.ts";
import { fakeEnv, spawnGatehouse } from "../helpers/gatehouse.ts";

Deno.test("4 shards, max_concurrency 2: buckets identify in parallel 5 s apart; SIGTERM closes with 4000, exit 0", async () => {
  const fake = await FakeDiscord.start({ shards: 4, maxConcurrency: 2, guildsPerShard: 3 });
  const g = spawnGatehouse({ env: fakeEnv(fake.apiHost) });
  try {
    await g.waitFor(() => g.lines.filter((l) => l.t === "READY").length === 4, 20_000, "4 READY lines");
    fake.startTraffic(50);
    await g.waitFor(() => g.lines.filter((l) => l.t === "MESSAGE_CREATE").length >= 20, 10_000, "traffic");
    fake.stopTraffic();
    await g.waitFor(() => caughtUp(fake, g.lines), 10_000, "all events written");

    // Buckets (shard % 2): both start together, and each one's second IDENTIFY comes at least 5 s after
    // its first. Which shard of a bucket goes first depends on which connected first.
    const at = new Map(fake.identifies.map((i) => [i.shard, i.at]));
    assert.deepEqual([...at.keys()].sort(), [0, 1, 2, 3]);
    const times = JSON.stringify(Object.fromEntries(at));
    const bucket = (b: number) => [at.get(b)!, at.get(b + 2)!].sort((x, y) => x - y);
    const [first0, second0] = bucket(0);
    const [first1, second1] = bucket(1);
    assert.ok(Math.abs(first0 - first1) < 1000, `buckets start in parallel: ${times}`);
    assert.ok(second0 - first0 >= 5000, `bucket 0 waits 5 s: ${times}`);
    assert.ok(second1 - first1 >= 5000, `bucket 1 waits 5 s: ${times}`);
    assert.ok(second0 - first0 < 7000, `but not much longer: ${times}`);
    for (const identify of fake.identifies) {
      assert.equal(identify.count, 4);
      assert.equal(identify.largeThreshold, 50);
      assert.deepEqual(identify.properties, { os: Deno.build.os, browser: "gatehouse", device: "gatehouse" });
    }

    // The NDJSON contract: id, uid, shard, then Discord's payload; nothing else on stdout.
    assert.deepEqual(g.badLines, []);
    const ready = g.lines.find((l) => l.t === "READY" && l.shard === 3)!;
    assert.deepEqual(Object.keys(ready), ["id", "uid", "shard", "t", "s", "op", "d"]);
    assert.equal(ready.op, 0);
    assert.equal(ready.s, 1);
    assert.deepEqual(ready.d.shard, [3, 4]);
    const guildCreates = g.lines.filter((l) => l.t === "GUILD_CREATE");
    assert.equal(guildCreates.length, 12);
    assertExactlyOnce(fake, g.lines);

    g.kill("SIGTERM");
    const status = await g.status;
    assert.equal(status.code, 0, g.stderr());
    await fake.waitFor(() => fake.clientCloses.length === 4, 5000, "4 close frames");
    assert.deepEqual(fake.clientCloses.map((c) => c.code), [4000, 4000, 4000, 4000]);
    assert.ok(fake.sessions().every((s) => !s.expired), "sessions stay resumable");
    assert.match(
      g.stderr(),
      /stopped: 4 of 4 connected shard\(s\) closed cleanly; delivered this run: stdout \d+/,
    );
    assert.deepEqual(fake.violations, []);
  } finally {
    g.kill("SIGKILL");
    await g.status;
    await fake.stop();
  }
});
