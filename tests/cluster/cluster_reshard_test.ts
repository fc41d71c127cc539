/**
 * Resharding a cluster: two real gatehouse members sharing a bot through a Redis of the test's own, the
 * fake Discord in its guild mode. One POST /reshard to one member reshards the whole bot 4 → 8: each
 * member runs the new shards that overlap its old ones, the bot switches once (one GATEHOUSE_RESHARDED),
 * and every guild event the fake sent is in the streams exactly once, with no IDENTIFY too early.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { FakeDiscord } from "../fake_discord/server.ts";
import type { GuildEvent } from "../fake_discord/guilds.ts";
import { controlUrl, fakeEnv, type Gatehouse, type Line, spawnGatehouse } from "../helpers/gatehouse.ts";
import { RedisServer } from "../helpers/redis_server.ts";
import { readStreams } from "../helpers/redis_streams.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const PREFIX = "bot";
const TOKEN = "cluster-reshard-token";
const GUILDS = 64;

/** How many times each guild event is in the streams (by uid: its session and seq there). */
function deliveredCounts(events: GuildEvent[], lines: Line[]): Map<number, number> {
  const where = new Map<string, GuildEvent>();
  for (const event of events) {
    for (const d of event.deliveries) where.set(`${d.shard}:${d.sessionId}:${d.s}`, event);
  }
  const counts = new Map<number, number>();
  for (const line of lines) {
    const event = where.get(line.uid);
    if (event) counts.set(event.n, (counts.get(event.n) ?? 0) + 1);
  }
  return counts;
}

Deno.test("cluster: one POST /reshard reshards the bot 4 → 8 across 2 members; every guild event in the streams once, one switch", async () => {
  const redis = await RedisServer.start();
  const fake = await FakeDiscord.start({
    guilds: GUILDS,
    shards: 4,
    maxConcurrency: 4,
    sessionTtlMs: 600_000,
  });
  const client = new Redis(redis.url);
  const dirs: string[] = [];
  const members: Gatehouse[] = [];
  const stores: string[] = [];
  const start = (node: string) => {
    const dir = Deno.makeTempDirSync({ prefix: `gatehouse-${node}-` });
    dirs.push(dir);
    stores.push(`${dir}/gatehouse.db`);
    const g = spawnGatehouse({
      env: {
        ...fakeEnv(fake.apiHost),
        GATEHOUSE_STORE: `${dir}/gatehouse.db`,
        GATEHOUSE_CLUSTER: "redis",
        GATEHOUSE_CLUSTER_LEASE_MS: "3000",
        GATEHOUSE_CLUSTER_NODE: node,
        GATEHOUSE_CONTROL_TOKEN: TOKEN,
        GATEHOUSE_RESHARD_INTERVAL: "0",
        BROKER_TYPE: "redis",
        REDIS_URL: redis.url,
        GATEHOUSE_REDIS_PREFIX: PREFIX,
        GATEHOUSE_LOG_LEVEL: "info",
      },
    });
    members.push(g);
    return g;
  };
  let timer: ReturnType<typeof setInterval> | undefined;
  try {
    const [a, b] = [start("worker-a"), start("worker-b")];
    const logs = () => members.map((m) => m.stderr().slice(-3000)).join("\n---\n");
    // Both members run 2 shards each before anything else.
    for (const until = Date.now() + 30_000;; await sleep(100)) {
      const owners = await client.mget(...Array.from({ length: 4 }, (_, id) => `{${PREFIX}}:lease:4:${id}`));
      const ready = fake.sessions().filter((s) => s.count === 4 && !s.invalidated).length;
      if (
        owners.filter((o) => o === "worker-a").length === 2 && owners.filter((o) =>
            o === "worker-b"
          ).length === 2 &&
        ready >= 4
      ) break;
      assert.ok(Date.now() < until, `2 shards each: ${owners}\n${logs()}`);
    }
    await sleep(500);
    fake.acceptCounts([4, 8]);
    fake.setRecommendedShards(8);
    timer = setInterval(() => fake.burstGuilds(3), 10);
    await sleep(1_000);

    const url = await controlUrl(stores[1]);
    const response = await fetch(`${url}/reshard`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const body = await response.json();
    assert.equal(response.status, 202, JSON.stringify(body));
    assert.equal(body.count, 8);
    // A second request while it runs is refused, from either member.
    const again = await fetch(`${await controlUrl(stores[0])}/reshard`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    const busy = await again.json();
    assert.equal(again.status, 409);
    assert.match(busy.why, /already resharding \(4 → 8\)/);
    // gatehouse shards reads the bot from Redis: the reshard under way, the old set delivering.
    const shardsCli = async (args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", "main.ts", "shards", ...args],
        env: {
          NO_COLOR: "1",
          GATEHOUSE_CLUSTER: "redis",
          REDIS_URL: redis.url,
          GATEHOUSE_REDIS_PREFIX: PREFIX,
        },
        stdout: "piped",
        stderr: "piped",
      }).output();
      return new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    };
    const view = JSON.parse(await shardsCli(["--json"]));
    assert.equal(view.resharding.state, "preparing", JSON.stringify(view.resharding));
    assert.deepEqual([view.resharding.from, view.resharding.to], [4, 8]);
    assert.equal(view.shard_count, 4);
    assert.match(
      await shardsCli([]),
      /resharding 4 → 8 \(requested, by worker-b\): \d\/8 new shard\(s\) loaded/,
    );

    for (const until = Date.now() + 40_000;; await sleep(200)) {
      const lines = await readStreams(client, PREFIX);
      if (lines.some((l) => l.t === "GATEHOUSE_RESHARDED")) break;
      assert.ok(Date.now() < until, `the switch\n${logs()}`);
    }
    await sleep(1_500);
    clearInterval(timer);
    timer = undefined;

    const sent = fake.guildEvents;
    let lines: Line[] = [];
    for (const until = Date.now() + 20_000;; await sleep(200)) {
      lines = await readStreams(client, PREFIX);
      if (deliveredCounts(sent, lines).size === sent.length) break;
      const missing = sent.filter((e) => !deliveredCounts(sent, lines).has(e.n)).slice(0, 5);
      assert.ok(Date.now() < until, `every guild event: missing ${JSON.stringify(missing)}\n${logs()}`);
    }
    await sleep(500);
    lines = await readStreams(client, PREFIX);
    const counts = deliveredCounts(sent, lines);
    const repeats = [...counts].filter(([, n]) => n > 1);
    const both = sent.filter((e) => new Set(e.deliveries.map((d) => d.count)).size === 2).length;
    const resharded = lines.filter((l) => l.t === "GATEHOUSE_RESHARDED");
    assert.equal(resharded.length, 1, "one switch for the bot");
    assert.deepEqual([resharded[0].d.old_count, resharded[0].d.new_count], [4, 8]);
    assert.deepEqual(repeats, [], "no event twice in the streams");
    assert.ok(both > 0, "the overlap was exercised");
    assert.equal(await client.get(`{${PREFIX}}:shard_count`), "8");
    assert.deepEqual(fake.violations, []);
    // Each member ran the new shards overlapping its old ones: every count-8 shard identified once.
    const identified = fake.identifies.filter((i) => i.count === 8).map((i) => i.shard).sort((x, y) => x - y);
    assert.deepEqual(identified, [0, 1, 2, 3, 4, 5, 6, 7]);
    for (const g of [a, b]) assert.match(g.stderr(), /running new shard\(s\) \d, \d, \d, \d here/);
    console.log(
      `cluster 4 → 8: switched ${resharded[0].d.took_ms} ms after the request; ${sent.length} guild events ` +
        `sent, ${counts.size} in the streams once, ${both} reached both sets, 0 repeats`,
    );
  } finally {
    if (timer !== undefined) clearInterval(timer);
    for (const g of members) g.kill("SIGKILL");
    await Promise.all(members.map((g) => g.status));
    client.disconnect();
    await fake.stop();
    await redis.stop();
    for (const dir of dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
