/**
 * Cluster mode end to end: real gatehouse processes (`[cluster] mode = "redis"`) against the fake
 * Discord and a Redis of the test's own, sharing one prefix. Nobody lists shard ids: the members spread
 * the shards through leases, hand them off on SIGTERM, take over a killed member's shards once its
 * leases expire, and RESUME from the shared sessions. Every event Discord sent must be in the streams
 * exactly once, and no bucket may see two IDENTIFYs within 5 s across all processes.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, type Gatehouse, type Line, ROOT, RUN_FLAGS, spawnGatehouse } from "../helpers/gatehouse.ts";
import { RedisServer } from "../helpers/redis_server.ts";
import { readStreams, seqsBySession } from "../helpers/redis_streams.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const PREFIX = "bot";
const LEASE_MS = 3000;

/** Every session's events, each once, in the streams; returns how many events that is. */
function assertExactlyOnce(fake: FakeDiscord, lines: Line[]): number {
  const found = seqsBySession(lines);
  let events = 0;
  for (const session of fake.sessions()) {
    const seqs = (found.get(session.id) ?? []).sort((x, y) => x - y);
    events += seqs.length;
    assert.deepEqual(
      seqs,
      Array.from({ length: session.lastSeq }, (_, i) => i + 1),
      `session ${session.id} (shard ${session.shard}): each of its ${session.lastSeq} events once`,
    );
  }
  assert.equal(new Set(lines.map((l) => l.uid)).size, lines.length, "no uid twice in the streams");
  return events;
}

async function caughtUp(fake: FakeDiscord, client: Redis, members: Gatehouse[]): Promise<Line[]> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const lines = await readStreams(client, PREFIX);
    const found = seqsBySession(lines);
    const done = fake.sessions().every((s) =>
      s.invalidated || s.expired || (found.get(s.id)?.length ?? 0) >= s.lastSeq
    );
    if (done) return lines;
    assert.ok(
      Date.now() < deadline,
      `caught up: ${lines.length} entries\n${members.map((m) => m.stderr().slice(-1500)).join("\n---\n")}`,
    );
    await sleep(200);
  }
}

interface Cluster {
  fake: FakeDiscord;
  redis: RedisServer;
  client: Redis;
  /** Starts member `node`, on the store of its last run if it ran before (`fresh`: a new store). */
  start(node: string, fresh?: boolean): Gatehouse;
  members: Gatehouse[];
}

async function withCluster(
  shards: number,
  body: (c: Cluster) => Promise<void>,
  options: { durable?: boolean } = {},
): Promise<void> {
  const redis = await RedisServer.start({ durable: options.durable ?? false });
  const fake = await FakeDiscord.start({
    shards,
    maxConcurrency: 4,
    guildsPerShard: 1,
    sessionTtlMs: 600_000,
  });
  const client = new Redis(redis.url);
  client.on("error", () => {}); // the Redis restart test stops it for a moment
  const dirs: string[] = [];
  const members: Gatehouse[] = [];
  const stores = new Map<string, string>();
  const start = (node: string, fresh = false) => {
    let dir = stores.get(node);
    if (dir === undefined || fresh) {
      dir = Deno.makeTempDirSync({ prefix: `gatehouse-${node}-` });
      dirs.push(dir);
      stores.set(node, dir);
    }
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
        GATEHOUSE_LOG_LEVEL: "info",
      },
    });
    members.push(g);
    return g;
  };
  try {
    await body({ fake, redis, client, start, members });
  } finally {
    for (const g of members) g.kill("SIGKILL");
    await Promise.all(members.map((g) => g.status));
    client.disconnect();
    fake.stopTraffic();
    await fake.stop();
    await redis.stop();
    for (const dir of dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Waits until the leases show `counts` shards per member (and no shard without an owner). */
async function spread(c: Cluster, shards: number, counts: Record<string, number>, ms = 20_000) {
  const until = Date.now() + ms;
  for (;;) {
    const held = await owners(c.client, shards);
    const per: Record<string, number> = {};
    for (const o of held) if (o !== null) per[o] = (per[o] ?? 0) + 1;
    if (JSON.stringify(Object.entries(per).sort()) === JSON.stringify(Object.entries(counts).sort())) return;
    assert.ok(
      Date.now() < until,
      `spread ${JSON.stringify(counts)}: ${held}\n${
        c.members.map((m) => m.stderr().slice(-1500)).join("\n---\n")
      }`,
    );
    await sleep(100);
  }
}

/** Which member runs each shard now, from the leases in Redis. */
async function owners(client: Redis, shards: number): Promise<Array<string | null>> {
  return await Promise.all(
    Array.from({ length: shards }, (_, id) => client.get(`{${PREFIX}}:lease:${shards}:${id}`)),
  );
}

Deno.test("cluster: 2 members share 4 shards evenly; SIGTERM hands its shards off (RESUME, no IDENTIFY); every event once", async () => {
  await withCluster(4, async (c) => {
    const { fake, client, start, members } = c;
    const a = start("a");
    const b = start("b");
    await fake.waitFor(() => fake.identifies.length === 4, 30_000, "the 4 shards identified").catch((e) => {
      throw new Error(`${e.message}\n${a.stderr().slice(-3000)}\n---\n${b.stderr().slice(-3000)}`);
    });
    const until = Date.now() + 15_000;
    while (true) {
      const held = await owners(client, 4);
      if (held.filter((o) => o === "a").length === 2 && held.filter((o) => o === "b").length === 2) break;
      assert.ok(Date.now() < until, `2 each: ${held}\n${a.stderr().slice(-2000)}`);
      await sleep(100);
    }
    fake.startTraffic(100);
    await sleep(2000);
    // `gatehouse shards` sees the whole bot: every shard with its member, from Redis.
    const shards = async (...args: string[]) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [...RUN_FLAGS, "main.ts", "shards", ...args],
        cwd: ROOT,
        env: {
          NO_COLOR: "1",
          GATEHOUSE_CLUSTER: "redis",
          REDIS_URL: c.redis.url,
          GATEHOUSE_REDIS_PREFIX: PREFIX,
          GATEHOUSE_STORE: "/nonexistent/gatehouse.db",
        },
      }).output();
      return {
        code: out.code,
        text: new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr),
      };
    };
    const check = await shards("--check");
    assert.equal(check.code, 0, check.text);
    assert.match(check.text, /^OK: 4\/4 shards ready on 2 node\(s\)/);
    const view = JSON.parse((await shards("--json")).text);
    assert.deepEqual(
      view.shards.map((s: { node: string }) => s.node).sort(),
      ["a", "a", "b", "b"],
      "each shard with its member",
    );
    const identified = fake.identifies.length;
    b.kill("SIGTERM");
    assert.equal((await b.status).code, 0, b.stderr().slice(-2000));
    await fake.waitFor(
      () => fake.resumes.filter((r) => r.ok).length >= 2,
      LEASE_MS * 3,
      `a resumed b's 2 shards\n${a.stderr().slice(-3000)}`,
    );
    assert.equal(fake.identifies.length, identified, "a hand-off resumes: no IDENTIFY");
    assert.deepEqual(await owners(client, 4), ["a", "a", "a", "a"]);
    await sleep(1500);
    fake.stopTraffic();
    const lines = await caughtUp(fake, client, members);
    const events = assertExactlyOnce(fake, lines);
    assert.deepEqual(fake.violations, []);
    console.log(`${events} events, each once, across the hand-off`);
    a.kill("SIGTERM");
    assert.equal((await a.status).code, 0, a.stderr().slice(-2000));
  });
});

Deno.test("cluster: 3 members share 12 shards under load, a flood around a kill -9 of one: the others resume its shards after its leases expire; it comes back on its store, a fourth joins: rebalanced; every event once, no identify violation", async () => {
  await withCluster(12, async (c) => {
    const { fake, client, start, members } = c;
    const a = start("a"), b = start("b"), k = start("k");
    await fake.waitFor(() => fake.identifies.length === 12, 60_000, "the 12 shards identified");
    await spread(c, 12, { a: 4, b: 4, k: 4 });
    fake.startTraffic(100);
    await sleep(1500);
    const identified = fake.identifies.length;
    const resumedBefore = fake.resumes.filter((r) => r.ok).length;
    // A flood into Redis Streams while k dies: k has events it received and never delivered.
    fake.startFlood();
    await sleep(1000);
    const killedAt = Date.now();
    k.kill("SIGKILL");
    await k.status;
    await sleep(500);
    fake.stopFlood();
    await spread(c, 12, { a: 6, b: 6 }, LEASE_MS * 4);
    await fake.waitFor(
      () => fake.resumes.filter((r) => r.ok).length >= resumedBefore + 4,
      LEASE_MS * 4,
      "k's 4 shards resumed by a and b",
    );
    const failover = Date.now() - killedAt;
    assert.equal(
      fake.identifies.length,
      identified,
      "taken over by RESUME from the shared sessions: no IDENTIFY",
    );
    assert.ok(failover < LEASE_MS + 5_000, `failed over in ${failover} ms (lease ${LEASE_MS} ms)`);
    await sleep(1000);
    // k comes back on its store, holding events it received but never delivered: it appends none of
    // them (its shards' new owners resumed and Discord replayed them), and takes its share by hand-off.
    const k2 = start("k");
    await spread(c, 12, { a: 4, b: 4, k: 4 }, LEASE_MS * 6);
    await sleep(1000);
    // A fourth member: the shards spread again by hand-off, each resumed by its new owner.
    const d = start("d");
    await spread(c, 12, { a: 3, b: 3, k: 3, d: 3 }, LEASE_MS * 6);
    await sleep(1500);
    fake.stopTraffic();
    const lines = await caughtUp(fake, client, members);
    const events = assertExactlyOnce(fake, lines);
    assert.equal(fake.identifies.length, identified, "the rebalance resumed too: no IDENTIFY");
    assert.deepEqual(fake.violations, []);
    console.log(
      `failover after kill -9 in ${failover} ms (lease ${LEASE_MS} ms); ${events} events of ` +
        `${fake.sessions().length} sessions, each once, across the failover and the rebalance`,
    );
    for (const g of [a, b, k2, d]) g.kill("SIGTERM");
    for (const g of [a, b, k2, d]) assert.equal((await g.status).code, 0, g.stderr().slice(-2000));
  });
});

Deno.test("cluster: a member paused past its lease (SIGSTOP) has stopped its shards when it wakes, and writes nothing of them again", async () => {
  await withCluster(4, async (c) => {
    const { fake, client, start, members } = c;
    const a = start("a"), p = start("p");
    await fake.waitFor(() => fake.identifies.length === 4, 30_000, "the 4 shards identified");
    await spread(c, 4, { a: 2, p: 2 });
    fake.startTraffic(100);
    await sleep(1000);
    const paused = (await owners(client, 4)).flatMap((o, id) => (o === "p" ? [id] : []));
    Deno.kill(p.pid, "SIGSTOP");
    await spread(c, 4, { a: 4 }, LEASE_MS * 4);
    await sleep(500);
    Deno.kill(p.pid, "SIGCONT");
    // Awake, p finds its deadlines passed: it stops the shards (and takes its share back by hand-off).
    await sleep(LEASE_MS * 2);
    fake.stopTraffic();
    const lines = await caughtUp(fake, client, members);
    assertExactlyOnce(fake, lines);
    assert.match(p.stderr(), /lease lost; stopping it/, "p noticed it had lost its shards");
    assert.deepEqual(fake.violations, []);
    console.log(`shards ${paused} moved while p was stopped; every event once`);
    for (const g of [a, p]) g.kill("SIGTERM");
    for (const g of [a, p]) assert.equal((await g.status).code, 0, g.stderr().slice(-2000));
  });
});

Deno.test("cluster: Redis restarted (AOF) under load: the members keep or take back their shards; every event once", async () => {
  await withCluster(4, async (c) => {
    const { fake, client, redis, start, members } = c;
    const a = start("a"), b = start("b");
    await fake.waitFor(() => fake.identifies.length === 4, 30_000, "the 4 shards identified");
    await spread(c, 4, { a: 2, b: 2 });
    fake.startTraffic(100);
    await sleep(1500);
    await redis.kill();
    await sleep(500);
    await redis.restart();
    await sleep(LEASE_MS * 2);
    await spread(c, 4, { a: 2, b: 2 }, LEASE_MS * 6);
    fake.stopTraffic();
    const lines = await caughtUp(fake, client, members);
    const events = assertExactlyOnce(fake, lines);
    assert.deepEqual(fake.violations, []);
    console.log(`${events} events, each once, across a Redis restart`);
    for (const g of [a, b]) g.kill("SIGTERM");
    for (const g of [a, b]) assert.equal((await g.status).code, 0, g.stderr().slice(-2000));
  }, { durable: true });
});
