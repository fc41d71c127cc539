/**
 * Redis Streams, end to end: `gatehouse run` with `[broker] type = "redis"` against the fake Discord
 * and a redis-server of the test's own. A flood of 4 shards goes on while redis-server is killed with -9 and
 * started again (AOF) 5 s later: every event ends up in the stream exactly once, in order.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { FakeDiscord } from "../fake_discord/server.ts";
import { assertExactlyOnce, CatchUp } from "../helpers/delivery.ts";
import { fakeEnv, type Line, spawnGatehouse } from "../helpers/gatehouse.ts";
import { RedisServer } from "../helpers/redis_server.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Reads the stream from `after` on, parsing each entry's line. */
async function readStream(client: Redis, key: string, lines: Line[], ids: string[]): Promise<void> {
  let start = ids.length === 0 ? "-" : `(${ids[ids.length - 1]}`;
  for (;;) {
    const entries = await client.xrange(key, start, "+", "COUNT", 5000);
    if (entries.length === 0) return;
    for (const [id, fields] of entries) {
      ids.push(id);
      lines.push(JSON.parse(fields[1]));
    }
    start = `(${entries[entries.length - 1][0]}`;
  }
}

Deno.test("redis: kill -9 redis-server in a flood of 4 shards, back 5 s later: every event in the stream exactly once", async () => {
  const redis = await RedisServer.start();
  const fake = await FakeDiscord.start({ shards: 4, maxConcurrency: 4, guildsPerShard: 2 });
  const g = spawnGatehouse({
    env: {
      ...fakeEnv(fake.apiHost),
      BROKER_TYPE: "redis",
      REDIS_URL: redis.url,
      GATEHOUSE_REDIS_STREAMS: "single",
      GATEHOUSE_REDIS_PREFIX: "gw",
      GATEHOUSE_LOG_LEVEL: "info",
    },
  });
  let client: Redis | null = null;
  try {
    await fake.waitFor(() => fake.identifies.length === 4, 15_000, "4 shards identified");
    fake.startFlood();
    client = new Redis(redis.url, { lazyConnect: true, retryStrategy: () => 100, maxRetriesPerRequest: 1 });
    await client.connect();
    // Entries arrive while the fake floods 4 shards.
    const deadline = Date.now() + 15_000;
    while ((await client.xlen("gw:events")) < 5000) {
      assert.ok(Date.now() < deadline, "events reach Redis");
      await sleep(100);
    }
    client.disconnect();
    await redis.kill();
    const sentAtKill = fake.stats().eventsSent;
    await sleep(5000);
    assert.ok(fake.stats().eventsSent > sentAtKill + 10_000, "Discord kept sending while Redis was down");
    await redis.restart();
    await sleep(1000);
    fake.stopFlood();

    client = new Redis(redis.url);
    const lines: Line[] = [];
    const ids: string[] = [];
    const catchUp = new CatchUp();
    // The journal took the flood while Redis was down: the backlog (a few 100 000 events) drains now.
    const until = Date.now() + 150_000;
    for (;;) {
      await readStream(client, "gw:events", lines, ids);
      if (catchUp.check(fake, lines)) break;
      assert.ok(Date.now() < until, `caught up: ${lines.length} entries so far\n${g.stderr().slice(-2000)}`);
      await sleep(200);
    }
    // Nothing twice (by uid too), nothing missing, in order.
    assert.equal(new Set(lines.map((l) => l.uid)).size, lines.length);
    const report = assertExactlyOnce(fake, lines);
    assert.deepEqual(fake.violations, []);
    assert.deepEqual(g.lines, [], "stdout is not a sink here");
    console.log(
      `redis outage: ${report.lines} events in the stream, ${fake.stats().eventsSent} sent by the fake; ` +
        `${(await client.xinfo("GROUPS", "gw:events") as unknown[][]).length} consumer group`,
    );
    g.kill("SIGTERM");
    assert.equal((await g.status).code, 0, g.stderr());
  } finally {
    client?.disconnect();
    g.kill("SIGKILL");
    await g.status;
    fake.stopFlood();
    await fake.stop();
    await redis.stop();
  }
});
