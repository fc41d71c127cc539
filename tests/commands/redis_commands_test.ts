/**
 * Commands from the Redis stream `{prefix}:commands` (consumer group `[broker] group`): they reach the
 * fake Discord on the right shard, bad ones are reported as GATEHOUSE_COMMAND_REJECTED, and every entry
 * is acknowledged (nothing left pending in the group).
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, spawnGatehouse } from "../helpers/gatehouse.ts";

const REDIS_URL = Deno.env.get("GATEHOUSE_TEST_REDIS") ?? "redis://127.0.0.1:6379";

Deno.test("redis commands: from {prefix}:commands through the consumer group to the owning shard, acknowledged", async () => {
  const prefix = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
  const client = new Redis(REDIS_URL);
  const fake = await FakeDiscord.start({ shards: 2, maxConcurrency: 2, guildsPerShard: 2 });
  const g = spawnGatehouse({
    env: {
      ...fakeEnv(fake.apiHost),
      BROKER_TYPE: "stdout,redis",
      REDIS_URL,
      GATEHOUSE_REDIS_PREFIX: prefix,
      BROKER_GROUP: "gw",
    },
  });
  try {
    await g.waitFor(() => g.lines.filter((l) => l.t === "READY").length === 2, 15_000, "2 READY");
    const guild = g.lines.find((l) => l.t === "GUILD_CREATE" && l.shard === 1)!.d.id;
    // The group exists once gatehouse reads the stream.
    const until = Date.now() + 5000;
    while (!(await client.exists(`${prefix}:commands`))) {
      assert.ok(Date.now() < until, "the commands stream and group are created");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await client.xadd(
      `${prefix}:commands`,
      "*",
      "data",
      JSON.stringify({ op: 8, d: { guild_id: guild, query: "", limit: 0 } }),
    );
    await client.xadd(`${prefix}:commands`, "*", "data", '{"op":2,"d":{}}');
    await fake.waitFor(() => fake.commands.length === 1, 5000, "the command at Discord");
    assert.deepEqual(fake.commands.map((c) => [c.op, c.shard]), [[8, 1]]);
    await g.waitFor(() => g.lines.some((l) => l.t === "GATEHOUSE_COMMAND_REJECTED"), 5000, "the rejection");
    assert.match(
      g.lines.find((l) => l.t === "GATEHOUSE_COMMAND_REJECTED")!.d.reason,
      /op 2 is not a command/,
    );
    await g.waitFor(() => g.lines.some((l) => l.t === "GUILD_MEMBERS_CHUNK"), 5000, "the reply");
    const pending = await client.xpending(`${prefix}:commands`, "gw") as [number, ...unknown[]];
    assert.equal(pending[0], 0, "every command acknowledged");
    g.kill("SIGTERM");
    assert.equal((await g.status).code, 0, g.stderr());
  } finally {
    g.kill("SIGKILL");
    await g.status;
    await fake.stop();
    const keys = await client.keys(`${prefix}:*`);
    if (keys.length > 0) await client.del(...keys);
    client.disconnect();
  }
});
