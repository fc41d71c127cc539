/**
 * Commands from the bot on stdin (NDJSON), end to end against the fake Discord: presence reaches every
 * shard, guild commands reach the shard that owns the guild, replies come back as events, bad commands
 * are rejected with a reason (log line and GATEHOUSE_COMMAND_REJECTED event) and nothing crashes;
 * sends stay under the 120 per 60 s limit (the rest waits).
 */
import assert from "node:assert/strict";
import { shardForGuild } from "../../src/gateway/protocol.ts";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, spawnGatehouse } from "../helpers/gatehouse.ts";

Deno.test("stdin commands: routed by guild, presence to all, rejections reported, rate limit kept", async () => {
  const fake = await FakeDiscord.start({ shards: 4, maxConcurrency: 4, guildsPerShard: 2 });
  // This process runs shards 0-2 of 4.
  const g = spawnGatehouse({ env: { ...fakeEnv(fake.apiHost), DISCORD_SHARD_IDS: "0-2" }, stdin: true });
  try {
    await g.waitFor(() => g.lines.filter((l) => l.t === "READY").length === 3, 15_000, "3 READY");
    const guilds = g.lines.filter((l) => l.t === "GUILD_CREATE").map((l) => ({ id: l.d.id, shard: l.shard }));
    const guild = guilds.find((x) => x.shard === 2)!;
    assert.equal(shardForGuild(guild.id, 4), 2);
    // A guild of shard 3, which this process does not run.
    let foreign = 0n;
    for (let n = 1n; shardForGuild(String(n << 22n), 4) !== 3; n++) foreign = n + 1n;
    const foreignId = String(foreign << 22n);
    await g.write(
      [
        JSON.stringify({ op: 3, d: { since: null, activities: [], status: "idle", afk: false } }),
        JSON.stringify({ op: 8, d: { guild_id: guild.id, query: "", limit: 0 } }),
        "this is not json",
        JSON.stringify({ op: 99, d: {} }),
        JSON.stringify({ op: 8, d: { guild_id: foreignId, query: "", limit: 0 } }),
        JSON.stringify({ op: 4, d: { guild_id: guild.id, channel_id: null, pad: "x".repeat(5000) } }),
        JSON.stringify({ op: 3, shard: 7, d: { status: "online", afk: false, since: null, activities: [] } }),
      ].join("\n") + "\n",
    );
    await g.waitFor(
      () => g.lines.filter((l) => l.t === "GATEHOUSE_COMMAND_REJECTED").length === 5,
      10_000,
      "5 rejections",
    );
    await fake.waitFor(() => fake.commands.length === 4, 5000, "4 commands at Discord");
    assert.deepEqual(
      fake.commands.map((c) => [c.op, c.shard]).sort(),
      [[3, 0], [3, 1], [3, 2], [8, 2]],
      "presence on every local shard, op 8 on the guild's shard",
    );
    await g.waitFor(() => g.lines.some((l) => l.t === "GUILD_MEMBERS_CHUNK"), 5000, "the reply as an event");
    const reasons = g.lines.filter((l) => l.t === "GATEHOUSE_COMMAND_REJECTED").map((l) => l.d.reason);
    assert.match(reasons[0], /not JSON/);
    assert.match(reasons[1], /op 99 is not a command; allowed: 3 \(presence update\)/);
    assert.match(
      reasons[2],
      new RegExp(`guild ${foreignId} belongs to shard 3, which this process does not run`),
    );
    assert.match(reasons[3], /bytes; Discord accepts at most 4096/);
    assert.match(reasons[4], /shard 7 is not run by this process/);
    assert.match(g.stderr(), /command rejected: not JSON/);

    // 130 presence updates on 3 shards: each shard sends at most 120 payloads per 60 s (heartbeats
    // included), the rest waits; nothing is dropped, no 4008.
    const presence = JSON.stringify({
      op: 3,
      shard: 0,
      d: { since: null, activities: [], status: "dnd", afk: false },
    });
    await g.write(Array(130).fill(presence).join("\n") + "\n");
    await fake.waitFor(
      () => fake.commands.filter((c) => c.shard === 0).length >= 100,
      10_000,
      "presences sent",
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    const sent = fake.commands.filter((c) => c.shard === 0).length;
    assert.ok(sent < 120, `shard 0 sent ${sent} commands within a second: the limiter holds the rest`);
    assert.deepEqual(fake.violations, []);
    g.kill("SIGTERM");
    assert.equal((await g.status).code, 0, g.stderr());
  } finally {
    g.kill("SIGKILL");
    await g.status;
    await fake.stop();
  }
});
