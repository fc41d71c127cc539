/**
 * Commands from the bot on stdin (NDJSON), end to end against the fake Discord: presence reaches every
 * shard, guild commands reach the shard that owns the guild, replies come back as events, bad commands
 * are rejected with a reason (log line and GATEHOUSE_COMMAND_REJECTED event) and nothing crashes;
 * sends stay under the 120 per 60 s limit (the rest waits).
 */
import assert from "node:assert/strict";
import { shardForGuild } from "../../src/gateway/protocol.ts";
import { FakeDiscord } from "../fake_discord/server.ts";
import { controlUrl, fakeEnv, spawnGatehouse } from "../helpers/gatehouse.ts";
import { guildOf, metric } from "./commands_helpers.ts";

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
    assert.match(reasons[4], /shard 7 is not a shard of this bot: it has 4 \(0-3\)/);
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

Deno.test("stdin commands: checked per op against Discord's payloads; op 31 split per shard; a stalled shard holds up no other", async () => {
  const fake = await FakeDiscord.start({
    shards: 4,
    maxConcurrency: 4,
    guildsPerShard: 1,
    heartbeatIntervalMs: 2000,
  });
  // Shard 3 never gets READY (Discord stops answering it) until the end.
  fake.stallShard(3, true);
  const g = spawnGatehouse({ env: fakeEnv(fake.apiHost), stdin: true });
  try {
    await g.waitFor(() => g.lines.filter((l) => l.t === "READY").length === 3, 15_000, "3 READY");
    const guild = (shard: number) => g.lines.find((l) => l.t === "GUILD_CREATE" && l.shard === shard)!.d.id;
    const stalled = guildOf(3, 4);
    await g.write(
      [
        // 60 commands for the stalled shard first: they wait on it, nothing else does.
        ...Array.from(
          { length: 60 },
          () => JSON.stringify({ op: 8, d: { guild_id: stalled, query: "", limit: 0 } }),
        ),
        JSON.stringify({ op: 31, d: { guild_ids: [guild(2), guild(0)] } }),
        JSON.stringify({ op: 43, d: { guild_id: guild(1), fields: ["status", "voice_start_time"] } }),
        JSON.stringify({ op: 43, d: { guild_id: guild(1), fields: ["topic"] } }),
        JSON.stringify({ op: 8, d: { guild_id: guild(1), query: "" } }),
        JSON.stringify({ op: 4, d: { guild_id: guild(1), channel_id: null, self_deaf: false } }),
        JSON.stringify({ op: 3, d: { since: null, activities: [], status: "away", afk: false } }),
      ].join("\n") + "\n",
    );
    await fake.waitFor(() => fake.commands.length === 3, 10_000, "op 31 on two shards and op 43 at Discord");
    assert.deepEqual(
      fake.commands.map((c) => [c.shard, c.op, c.d]).sort(),
      [
        [0, 31, { guild_ids: [guild(0)] }],
        [1, 43, { guild_id: guild(1), fields: ["status", "voice_start_time"] }],
        [2, 31, { guild_ids: [guild(2)] }],
      ],
    );
    await g.waitFor(() => g.lines.filter((l) => l.t === "SOUNDBOARD_SOUNDS").length === 2, 5000, "2 replies");
    await g.waitFor(
      () => g.lines.filter((l) => l.t === "GATEHOUSE_COMMAND_REJECTED").length === 4,
      5000,
      "4 rejections",
    );
    const reasons = g.lines.filter((l) => l.t === "GATEHOUSE_COMMAND_REJECTED").map((l) => l.d.reason);
    assert.match(reasons[0], /^op 43 needs d\.fields, a non-empty list of: status, voice_start_time/);
    assert.match(reasons[1], /^op 8 needs d\.limit, an integer ≥ 0/);
    assert.match(reasons[2], /^op 4 needs d\.self_mute, a boolean/);
    assert.match(reasons[3], /^op 3 needs d\.status, one of: online, dnd, idle, invisible, offline/);
    assert.deepEqual(fake.violations, []);

    fake.stallShard(3, false);
    await fake.waitFor(
      () => fake.commands.filter((c) => c.shard === 3).length === 60,
      20_000,
      "shard 3's commands",
    );
    g.kill("SIGTERM");
    assert.equal((await g.status).code, 0, g.stderr());
  } finally {
    g.kill("SIGKILL");
    await g.status;
    await fake.stop();
  }
});

Deno.test("stdin commands: a 10 MB line is one rejection; 20 000 bad lines are 20 000 events and a bounded log", async () => {
  const fake = await FakeDiscord.start({ shards: 1 });
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-test-" });
  const store = `${dir}/gatehouse.db`;
  const g = spawnGatehouse({ env: { ...fakeEnv(fake.apiHost), GATEHOUSE_STORE: store }, stdin: true });
  try {
    await g.waitFor(() => g.lines.some((l) => l.t === "READY"), 15_000, "READY");
    const url = await controlUrl(store);
    const rejected = () => g.lines.filter((l) => l.t === "GATEHOUSE_COMMAND_REJECTED");
    await g.write(`{"op":3,"d":"${"x".repeat(10 * 1024 * 1024)}"}\n`);
    await g.waitFor(() => rejected().length === 1, 10_000, "the rejection of the long line");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(rejected().length, 1, "exactly one rejection for one line");
    assert.equal(rejected()[0].d.reason, `line of ${10 * 1024 * 1024 + 15} bytes is longer than 64 KB`);
    assert.equal(rejected()[0].d.command, `{"op":3,"d":"${"x".repeat(187)}`);

    const before = g.stderr().length;
    await g.write("not a command\n".repeat(20_000));
    await g.waitFor(() => rejected().length === 20_001, 30_000, "20 001 rejections");
    assert.equal(
      await metric(url, 'gatehouse_commands_total{source="stdin",result="rejected"}'),
      20_001,
      "the metric counts every one",
    );
    g.kill("SIGTERM");
    assert.equal((await g.status).code, 0, g.stderr());
    const log = g.stderr().slice(before);
    const lines = log.split("\n").filter((l) => l.includes("command rejected"));
    // At most 10 lines per 10 s window (the burst may straddle two windows), the rest summed up.
    assert.ok(lines.length <= 20, `${lines.length} rejection lines`);
    assert.match(log, /\d+ more command\(s\) rejected in the last 10 s/);
    const summarised = [...log.matchAll(/(\d+) more command\(s\) rejected/g)].reduce(
      (n, m) => n + Number(m[1]),
      0,
    );
    assert.equal(lines.length + summarised, 20_000, "every rejection is in a line or a summary");
    assert.ok(log.length < 64 * 1024, `${log.length} bytes of log`);
  } finally {
    g.kill("SIGKILL");
    await g.status;
    await fake.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
