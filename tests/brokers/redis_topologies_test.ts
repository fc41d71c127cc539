/**
 * Redis Sentinel and Redis Cluster URLs, against real servers the tests start themselves: events reach the
 * streams exactly once with their journal ids, and commands come in from `{prefix}:commands`.
 */
import assert from "node:assert/strict";
import { Cluster, Redis } from "ioredis";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, type Gatehouse, spawnGatehouse } from "../helpers/gatehouse.ts";
import { RedisCluster, RedisSentinel, RedisTls } from "../helpers/redis_topologies.ts";
import { parseRedisUrl } from "../../src/redis/url.ts";

const PRESENCE = '{"op":3,"d":{"since":null,"activities":[],"status":"idle","afk":false}}';

/** Flows traffic until `n` messages are out, sends a presence through the commands stream, stops cleanly. */
async function exercise(
  fake: FakeDiscord,
  g: Gatehouse,
  client: Redis | Cluster,
  prefix: string,
): Promise<void> {
  await g.waitFor(() => g.lines.filter((l) => l.t === "READY").length === 2, 15_000, "2 READY");
  fake.startTraffic(200);
  await g.waitFor(() => g.lines.length >= 500, 15_000, "500 events");
  fake.stopTraffic();
  const until = Date.now() + 10_000;
  while (!(await client.exists(`${prefix}:commands`))) {
    assert.ok(Date.now() < until, "the commands stream and group are created");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await client.xadd(`${prefix}:commands`, "*", "data", PRESENCE);
  await fake.waitFor(
    () => fake.commands.filter((c) => c.op === 3).length === 2,
    10_000,
    "presence on both shards",
  );
  g.kill("SIGTERM");
  assert.equal((await g.status).code, 0, g.stderr());
}

/** The journal ids of a stream's entries, in stream order (each event's uid once). */
async function streamIds(client: Redis | Cluster, stream: string): Promise<number[]> {
  const entries = await client.xrange(stream, "-", "+");
  const lines = entries.map(([, fields]) => JSON.parse(fields[1]));
  assert.equal(new Set(lines.map((line) => line.uid)).size, lines.length, "each uid once");
  return lines.map((line) => line.id as number);
}

Deno.test("redis+sentinel:// finds the master through the sentinel: every event once, commands in", async () => {
  const sentinel = await RedisSentinel.start();
  const fake = await FakeDiscord.start({ shards: 2, maxConcurrency: 2 });
  const client = new Redis({ port: sentinel.masterPort, host: "127.0.0.1" });
  const prefix = "gh";
  const g = spawnGatehouse({
    env: {
      ...fakeEnv(fake.apiHost),
      BROKER_TYPE: "stdout,redis",
      REDIS_URL: sentinel.url,
      GATEHOUSE_REDIS_STREAMS: "single",
      GATEHOUSE_REDIS_PREFIX: prefix,
    },
  });
  try {
    await exercise(fake, g, client, prefix);
    const ids = await streamIds(client, `${prefix}:events`);
    assert.deepEqual(ids, g.lines.map((l) => l.id), "the master's stream holds every event once, in order");
  } finally {
    g.kill("SIGKILL");
    await g.status;
    client.disconnect();
    await fake.stop();
    await sentinel.stop();
  }
});

Deno.test("redis+cluster:// spreads per-event streams over the nodes: every event once, commands in", async () => {
  const cluster = await RedisCluster.start(3);
  const fake = await FakeDiscord.start({ shards: 2, maxConcurrency: 2 });
  const client = new Cluster(cluster.ports.map((port) => ({ host: "127.0.0.1", port })));
  const prefix = "gh";
  const g = spawnGatehouse({
    env: {
      ...fakeEnv(fake.apiHost),
      BROKER_TYPE: "stdout,redis",
      REDIS_URL: cluster.url,
      GATEHOUSE_REDIS_PREFIX: prefix,
    },
  });
  try {
    await exercise(fake, g, client, prefix);
    const types = [...new Set(g.lines.map((l) => l.t))];
    assert.ok(types.length >= 5, `several event types (${types.join(", ")})`);
    // The streams live on different nodes (slots).
    const slots = new Set(await Promise.all(types.map((t) => client.cluster("KEYSLOT", `${prefix}:${t}`))));
    assert.ok(slots.size > 1);
    const ids: number[] = [];
    for (const t of types) ids.push(...await streamIds(client, `${prefix}:${t}`));
    assert.deepEqual(
      ids.sort((a, b) => a - b),
      g.lines.map((l) => l.id),
      "every event once across the streams",
    );
  } finally {
    g.kill("SIGKILL");
    await g.status;
    client.disconnect();
    await fake.stop();
    await cluster.stop();
  }
});

Deno.test("rediss:// with [redis] tls_ca: events and commands over TLS; without the CA nothing is taken", async () => {
  const server = await RedisTls.start();
  const fake = await FakeDiscord.start({ shards: 2, maxConcurrency: 2 });
  const client = new Redis(server.url, { tls: { ca: Deno.readTextFileSync(server.caFile) } });
  const prefix = "gh";
  const env = {
    ...fakeEnv(fake.apiHost),
    BROKER_TYPE: "stdout,redis",
    REDIS_URL: server.url,
    GATEHOUSE_REDIS_STREAMS: "single",
    GATEHOUSE_REDIS_PREFIX: prefix,
  };
  // The system's roots do not know this certificate: the sink fails and says so, events wait.
  const untrusted = spawnGatehouse({ env });
  // The trusting gateway starts once the other is gone: both write the same stream.
  let g: ReturnType<typeof spawnGatehouse> | null = null;
  try {
    await untrusted.waitFor(
      () =>
        /sink redis did not take events after id \d+: redis: .*\(connecting: self-signed certificate\)/.test(
          untrusted.stderr(),
        ),
      15_000,
      "the refusal, named in the sink's warning",
    );
    untrusted.kill("SIGKILL");
    await untrusted.status;
    assert.equal(await client.exists(`${prefix}:events`), 0, "nothing reached Redis without the CA");
    g = spawnGatehouse({ env: { ...env, GATEHOUSE_REDIS_TLS_CA: server.caFile } });
    await exercise(fake, g, client, prefix);
    const ids = await streamIds(client, `${prefix}:events`);
    assert.deepEqual(ids, g.lines.map((l) => l.id), "every event once, in order");
  } finally {
    untrusted.kill("SIGKILL");
    await untrusted.status;
    g?.kill("SIGKILL");
    await g?.status;
    client.disconnect();
    await fake.stop();
    await server.stop();
  }
});

Deno.test("Redis URLs: server, sentinel and cluster forms; errors name the problem, not the password", () => {
  assert.deepEqual(parseRedisUrl("redis://:pw@127.0.0.1:6379/2"), {
    kind: "server",
    url: "redis://:pw@127.0.0.1:6379/2",
  });
  assert.deepEqual(parseRedisUrl("redis+sentinel://u:p%40ss@s1:26379,s2/mymaster/3?sentinelPassword=sp"), {
    kind: "sentinel",
    sentinels: [{ host: "s1", port: 26379 }, { host: "s2", port: 26379 }],
    name: "mymaster",
    db: 3,
    username: "u",
    password: "p@ss",
    sentinelPassword: "sp",
    tls: false,
  });
  assert.deepEqual(parseRedisUrl("rediss+cluster://:secret@[::1]:7000,10.0.0.2:7001"), {
    kind: "cluster",
    nodes: [{ host: "::1", port: 7000 }, { host: "10.0.0.2", port: 7001 }],
    username: undefined,
    password: "secret",
    tls: true,
  });
  assert.throws(() => parseRedisUrl("redis+sentinel://:secret@s1:26379"), /names the master/);
  assert.throws(() => parseRedisUrl("redis+cluster://:secret@/"), /at least one host/);
  assert.throws(() => parseRedisUrl("http://x"), (error: Error) => !error.message.includes("x"));
});
