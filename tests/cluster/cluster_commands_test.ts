/**
 * Commands in cluster mode end to end: the bot XADDs to the Redis inbox while real gatehouse members
 * (`[cluster] mode = "redis"`, no shard ids given) take, hand off and take back the shards. Each command
 * must reach Discord once, on its guild's shard — from whichever member runs that shard then — also the
 * ones sent while a shard was moving.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, type Gatehouse, spawnGatehouse } from "../helpers/gatehouse.ts";
import { RedisServer } from "../helpers/redis_server.ts";
import { guildOf } from "../commands/commands_helpers.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const PREFIX = "bot";
const LEASE_MS = 3000;
const SHARDS = 4;

/** Which member runs each shard now, from the leases in Redis. */
async function owners(client: Redis): Promise<Array<string | null>> {
  return await Promise.all(
    Array.from({ length: SHARDS }, (_, id) => client.get(`{${PREFIX}}:lease:${SHARDS}:${id}`)),
  );
}

async function spread(client: Redis, counts: Record<string, number>, members: Gatehouse[]): Promise<void> {
  const until = Date.now() + 30_000;
  for (;;) {
    const per: Record<string, number> = {};
    for (const o of await owners(client)) if (o !== null) per[o] = (per[o] ?? 0) + 1;
    if (JSON.stringify(Object.entries(per).sort()) === JSON.stringify(Object.entries(counts).sort())) return;
    assert.ok(
      Date.now() < until,
      `spread ${JSON.stringify(counts)}: ${JSON.stringify(per)}\n${
        members.map((m) => m.stderr().slice(-1500)).join("\n---\n")
      }`,
    );
    await sleep(100);
  }
}

Deno.test("cluster commands: through the Redis inbox to the member running the guild's shard, across hand-offs, each once", async () => {
  const redis = await RedisServer.start({ durable: false });
  const fake = await FakeDiscord.start({
    shards: SHARDS,
    maxConcurrency: 4,
    guildsPerShard: 1,
    sessionTtlMs: 600_000,
  });
  const client = new Redis(redis.url);
  const dirs: string[] = [];
  const members: Gatehouse[] = [];
  const start = (node: string) => {
    const dir = Deno.makeTempDirSync({ prefix: `gatehouse-${node}-` });
    dirs.push(dir);
    const g = spawnGatehouse({
      env: {
        ...fakeEnv(fake.apiHost),
        GATEHOUSE_STORE: `${dir}/gatehouse.db`,
        GATEHOUSE_CLUSTER: "redis",
        GATEHOUSE_CLUSTER_LEASE_MS: String(LEASE_MS),
        GATEHOUSE_CLUSTER_NODE: node,
        BROKER_TYPE: "redis",
        REDIS_URL: redis.url,
        GATEHOUSE_REDIS_PREFIX: PREFIX,
        BROKER_GROUP: "gw",
        GATEHOUSE_COMMAND_CLAIM_IDLE_MS: "10000",
      },
    });
    members.push(g);
    return g;
  };
  const sent: Array<{ shard: number; nonce: string }> = [];
  let n = 0;
  const command = async (shard: number) => {
    const nonce = `c${n++}`;
    sent.push({ shard, nonce });
    const d = { guild_id: guildOf(shard, SHARDS, 2), query: "", limit: 0, nonce };
    await client.xadd(`${PREFIX}:commands`, "*", "data", JSON.stringify({ op: 8, d }));
  };
  const allFour = async () => {
    for (let shard = 0; shard < SHARDS; shard++) await command(shard);
  };
  const arrived = async (what: string) => {
    await fake.waitFor(
      () => fake.commands.filter((c) => c.op === 8).length >= sent.length,
      20_000,
      `${sent.length} commands at Discord (${what})\n${
        members.map((m) => m.stderr().slice(-2000)).join("\n---\n")
      }`,
    );
  };
  try {
    start("a");
    const b = start("b");
    await spread(client, { a: 2, b: 2 }, members);
    await fake.waitFor(() => fake.identifies.length === SHARDS, 30_000, "the 4 shards identified");
    // The inbox's group is created by the first member that reads it: commands before it are not seen.
    while ((await client.exists(`${PREFIX}:commands`)) === 0) await sleep(50);
    await allFour();
    await arrived("2 members");

    // b leaves: its shards go to a; commands meanwhile wait in their shards' streams.
    b.kill("SIGTERM");
    await allFour();
    assert.equal((await b.status).code, 0, b.stderr().slice(-2000));
    await spread(client, { a: 4 }, members);
    await allFour();
    await arrived("b handed off to a");

    // c joins: a hands two shards off to it; commands go on throughout.
    start("c");
    const joined = spread(client, { a: 2, c: 2 }, members);
    for (let i = 0; i < 5; i++) {
      await allFour();
      await sleep(300);
    }
    await joined;
    await allFour();
    await arrived("c took 2 of a's shards");

    await sleep(1000);
    const got = fake.commands.filter((c) => c.op === 8).map((c) => ({
      shard: c.shard,
      nonce: (c.d as { nonce: string }).nonce,
    }));
    const key = (x: { shard: number; nonce: string }) => `${x.nonce}@${x.shard}`;
    assert.deepEqual(got.map(key).sort(), sent.map(key).sort(), "each command once, on its guild's shard");
    for (const m of members) assert.doesNotMatch(m.stderr(), /command\(s\)? rejected/, "no command refused");
    for (const m of members) m.kill("SIGTERM");
    for (const m of members) assert.equal((await m.status).code, 0, m.stderr().slice(-2000));
  } finally {
    for (const g of members) g.kill("SIGKILL");
    await Promise.all(members.map((g) => g.status));
    client.disconnect();
    await fake.stop();
    await redis.stop();
    for (const dir of dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
