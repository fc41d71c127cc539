/**
 * Commands from the Redis stream `{prefix}:commands` (consumer group `[broker] group`): they reach the
 * fake Discord on the right shard, bad ones are reported as GATEHOUSE_COMMAND_REJECTED, and every entry
 * is acknowledged (nothing left pending in the group).
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, spawnGatehouse } from "../helpers/gatehouse.ts";
import { guildOf, PRESENCE } from "./commands_helpers.ts";

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
    await cleanUp(client, prefix);
  }
});

/** Waits until `check` holds, polling Redis. */
async function until(check: () => Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function pendingCount(client: Redis, key: string, group: string): Promise<number> {
  if (!(await client.exists(key))) return 0;
  return ((await client.xpending(key, group)) as [number])[0];
}

async function hasGroup(client: Redis, key: string): Promise<boolean> {
  if (!(await client.exists(key))) return false;
  return (await client.xinfo("GROUPS", key) as string[][]).some((fields) => fields.includes("gw"));
}

async function consumers(client: Redis, key: string, group: string): Promise<string[]> {
  if (!(await client.exists(key))) return [];
  const list = await client.call("XINFO", "CONSUMERS", key, group) as string[][];
  return list.map((fields) => fields[fields.indexOf("name") + 1]);
}

async function cleanUp(client: Redis, prefix: string): Promise<void> {
  // The sink's keys too (`{<prefix>:<event>}:seen`...): every key tagged with the prefix.
  const keys = [...await client.keys(`${prefix}:*`), ...await client.keys(`{${prefix}:*`)];
  if (keys.length > 0) await client.del(...keys);
  client.disconnect();
}

Deno.test("redis commands: two processes (shards 0-1 and 2-3 of 4) on one prefix: each command reaches its shard, presence all four", async () => {
  const prefix = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
  const inbox = `${prefix}:commands`;
  const client = new Redis(REDIS_URL);
  const fake = await FakeDiscord.start({ shards: 4, maxConcurrency: 4, guildsPerShard: 1 });
  const env = {
    ...fakeEnv(fake.apiHost),
    BROKER_TYPE: "stdout,redis",
    REDIS_URL,
    GATEHOUSE_REDIS_PREFIX: prefix,
    BROKER_GROUP: "gw",
    DISCORD_SHARD_COUNT: "4",
  };
  const a = spawnGatehouse({ env: { ...env, DISCORD_SHARD_IDS: "0-1" } });
  const b = spawnGatehouse({ env: { ...env, DISCORD_SHARD_IDS: "2-3" } });
  try {
    await a.waitFor(() => a.lines.filter((l) => l.t === "GUILD_CREATE").length === 2, 20_000, "a: 2 guilds");
    await b.waitFor(() => b.lines.filter((l) => l.t === "GUILD_CREATE").length === 2, 20_000, "b: 2 guilds");
    const created = [...a.lines, ...b.lines].filter((l) => l.t === "GUILD_CREATE");
    const guilds = created.map((l) => [l.shard, l.d.id]);
    // The inbox's group starts at new entries: wait until it exists. (A shard's stream is read from its
    // start, whenever the process running the shard gets to it.)
    await until(() => hasGroup(client, inbox), "the inbox group");
    const shardKeys = [0, 1, 2, 3].map((s) => `{${inbox}}:${s}`);
    for (const [, id] of guilds) {
      await client.xadd(
        inbox,
        "*",
        "data",
        JSON.stringify({ op: 8, d: { guild_id: id, query: "", limit: 0 } }),
      );
    }
    await client.xadd(inbox, "*", "data", JSON.stringify({ op: 3, d: PRESENCE }));
    await fake.waitFor(() => fake.commands.length === 8, 10_000, "4 op 8 and 4 op 3 at Discord");
    assert.deepEqual(
      fake.commands.map((c) => [c.shard, c.op, c.op === 8 ? (c.d as { guild_id: string }).guild_id : null])
        .sort(),
      [...guilds.map(([shard, id]) => [shard, 8, id]), [0, 3, null], [1, 3, null], [2, 3, null], [3, 3, null]]
        .sort(),
    );
    assert.deepEqual([...a.lines, ...b.lines].filter((l) => l.t === "GATEHOUSE_COMMAND_REJECTED"), []);
    // Everything acknowledged; the shards' streams keep nothing that was sent.
    await until(async () => {
      const pending = await Promise.all([inbox, ...shardKeys].map((k) => pendingCount(client, k, "gw")));
      const lengths = await Promise.all(shardKeys.map((k) => client.xlen(k)));
      return [...pending, ...lengths].every((n) => n === 0);
    }, "nothing pending, nothing left in the shards' streams");
    // A clean stop leaves no consumer behind.
    a.kill("SIGTERM");
    b.kill("SIGTERM");
    assert.equal((await a.status).code, 0, a.stderr());
    assert.equal((await b.status).code, 0, b.stderr());
    for (const key of [inbox, ...shardKeys]) assert.deepEqual(await consumers(client, key, "gw"), [], key);
  } finally {
    for (const g of [a, b]) g.kill("SIGKILL");
    await Promise.all([a.status, b.status]);
    await fake.stop();
    await cleanUp(client, prefix);
  }
});

Deno.test("redis commands: a stalled shard holds up no other; what a killed process held is sent after a restart", async () => {
  const prefix = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
  const inbox = `${prefix}:commands`;
  const shard1 = `{${inbox}}:1`;
  const client = new Redis(REDIS_URL);
  const fake = await FakeDiscord.start({
    shards: 2,
    maxConcurrency: 2,
    guildsPerShard: 1,
    heartbeatIntervalMs: 2000,
    identifyIntervalMs: 0,
  });
  // Discord does not answer shard 1 (no READY): its commands wait.
  fake.stallShard(1, true);
  const env = {
    ...fakeEnv(fake.apiHost),
    BROKER_TYPE: "stdout,redis",
    REDIS_URL,
    GATEHOUSE_REDIS_PREFIX: prefix,
    BROKER_GROUP: "gw",
    GATEHOUSE_COMMAND_CLAIM_IDLE_MS: "1000",
  };
  const a = spawnGatehouse({ env });
  let b: ReturnType<typeof spawnGatehouse> | null = null;
  try {
    await a.waitFor(
      () => a.lines.some((l) => l.t === "GUILD_CREATE" && l.shard === 0),
      15_000,
      "shard 0's guild",
    );
    const guild0 = a.lines.find((l) => l.t === "GUILD_CREATE" && l.shard === 0)!.d.id;
    await until(() => hasGroup(client, inbox), "the inbox group");
    const stalled = guildOf(1, 2);
    for (let i = 0; i < 60; i++) {
      await client.xadd(
        inbox,
        "*",
        "data",
        JSON.stringify({ op: 8, d: { guild_id: stalled, query: "", limit: i } }),
      );
    }
    await client.xadd(
      inbox,
      "*",
      "data",
      JSON.stringify({ op: 8, d: { guild_id: guild0, query: "", limit: 0 } }),
    );
    await fake.waitFor(
      () => fake.commands.some((c) => c.shard === 0),
      5000,
      "shard 0's command, past shard 1's",
    );
    // At most 50 of shard 1's commands are read (held, pending); the rest wait unread in its stream.
    await until(async () => (await pendingCount(client, shard1, "gw")) === 50, "50 pending on shard 1");
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(await pendingCount(client, shard1, "gw"), 50);
    assert.equal(await client.xlen(shard1), 60);

    // The process dies with them; Discord answers shard 1 again; a new process (new consumer) takes over.
    a.kill("SIGKILL");
    await a.status;
    fake.stallShard(1, false);
    b = spawnGatehouse({ env });
    await fake.waitFor(
      () => fake.commands.filter((c) => c.shard === 1).length === 60,
      20_000,
      "shard 1's 60 commands, sent by the new process",
    );
    const limits = fake.commands.filter((c) => c.shard === 1).map((c) => (c.d as { limit: number }).limit);
    assert.deepEqual([...limits].sort((x, y) => x - y), Array.from({ length: 60 }, (_, i) => i), "each once");
    await until(
      async () => (await pendingCount(client, shard1, "gw")) === 0 && (await client.xlen(shard1)) === 0,
      "all acknowledged",
    );
    // The dead process's consumer is removed once it has nothing pending.
    const dead = (name: string) => !name.endsWith(String(b!.pid)) && !name.includes(`-${b!.pid}-`);
    await until(
      async () => !(await consumers(client, shard1, "gw")).some(dead),
      "the dead consumer removed",
      10_000,
    );
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal(fake.commands.filter((c) => c.shard === 1).length, 60, "nothing sent twice");
    b.kill("SIGTERM");
    assert.equal((await b.status).code, 0, b.stderr());
  } finally {
    a.kill("SIGKILL");
    b?.kill("SIGKILL");
    await Promise.all([a.status, b?.status]);
    await fake.stop();
    await cleanUp(client, prefix);
  }
});
