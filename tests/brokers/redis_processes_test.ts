/**
 * Several gatehouse processes on one Redis, as big bots run them: the shards split between processes
 * (`DISCORD_SHARD_IDS`), one stream prefix, a process that starts later with a fresh store, one that is
 * killed with -9 and restarted on its store (it delivers its last batches again), one restarted without
 * its store (a container without a volume). Every event Discord sent must be in the streams exactly once.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, type Gatehouse, type Line, spawnGatehouse } from "../helpers/gatehouse.ts";
import { RedisServer } from "../helpers/redis_server.ts";
import { readStreams, seqsBySession } from "../helpers/redis_streams.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Per fake session: the seqs found in the streams, each uid checked against its line. */
function seqsOf(lines: Line[]): Map<string, number[]> {
  return seqsBySession(lines, (line, uid) => {
    assert.equal(uid.shard, line.shard, `uid ${line.uid} names the line's shard`);
    assert.equal(uid.seq, line.s, `uid ${line.uid} carries the line's seq`);
  });
}

/** Whether every live session's events are all in Redis (checked exactly by the caller afterwards). */
function complete(fake: FakeDiscord, lines: Line[]): boolean {
  const found = seqsOf(lines);
  return fake.sessions().every((s) =>
    s.invalidated || s.expired || (found.get(s.id)?.length ?? 0) >= s.lastSeq
  );
}

Deno.test("redis: 4 shards in two processes on one prefix, restarts with and without a store: every event exactly once", async () => {
  const redis = await RedisServer.start({ durable: false });
  const fake = await FakeDiscord.start({
    shards: 4,
    maxConcurrency: 4,
    guildsPerShard: 2,
    sessionTtlMs: 600_000,
  });
  const dirs = [
    await Deno.makeTempDir({ prefix: "gatehouse-a-" }),
    await Deno.makeTempDir({ prefix: "gatehouse-b-" }),
  ];
  const client = new Redis(redis.url);
  const prefix = "many";
  const running: Gatehouse[] = [];
  const start = (ids: string, store: string) => {
    const g = spawnGatehouse({
      env: {
        ...fakeEnv(fake.apiHost),
        GATEHOUSE_STORE: store,
        DISCORD_SHARD_COUNT: "4",
        DISCORD_SHARD_IDS: ids,
        BROKER_TYPE: "redis",
        REDIS_URL: redis.url,
        GATEHOUSE_REDIS_PREFIX: prefix,
        GATEHOUSE_LOG_LEVEL: "info",
      },
    });
    running.push(g);
    return g;
  };
  try {
    let a = start("0-1", `${dirs[0]}/gatehouse.db`);
    await fake.waitFor(() => fake.identifies.length === 2, 15_000, "process A's 2 shards identified");
    fake.startTraffic(100);
    await sleep(3000);
    // Process B starts later, on a fresh store: its ids start at 1, far below A's.
    let b = start("2-3", `${dirs[1]}/gatehouse.db`);
    await fake.waitFor(() => fake.identifies.length === 4, 15_000, "process B's 2 shards identified");
    await sleep(3000);
    // B dies in the middle of the traffic and comes back on its store: it resumes, and delivers what it
    // had not acknowledged again — already in the streams, so skipped.
    b.kill("SIGKILL");
    await b.status;
    b = start("2-3", `${dirs[1]}/gatehouse.db`);
    await fake.waitFor(() => fake.resumes.filter((r) => r.ok).length >= 2, 15_000, "B resumed both shards");
    await sleep(2000);
    // A is replaced by a process without its store (a container without a volume): new sessions, and
    // ids from 1 again. A's old sessions are complete first (traffic paused), so nothing of them is due.
    fake.stopTraffic();
    const until = Date.now() + 30_000;
    while (!complete(fake, await readStreams(client, prefix))) {
      assert.ok(Date.now() < until, "caught up before A is replaced");
      await sleep(200);
    }
    a.kill("SIGKILL");
    await a.status;
    await Deno.remove(dirs[0], { recursive: true });
    dirs[0] = await Deno.makeTempDir({ prefix: "gatehouse-a2-" });
    a = start("0-1", `${dirs[0]}/gatehouse.db`);
    await fake.waitFor(() => fake.identifies.length === 6, 20_000, "A's new process identified");
    fake.startTraffic(100);
    await sleep(3000);
    fake.stopTraffic();

    let lines: Line[] = [];
    const deadline = Date.now() + 30_000;
    for (;;) {
      lines = await readStreams(client, prefix);
      if (complete(fake, lines)) break;
      assert.ok(Date.now() < deadline, `caught up: ${lines.length} entries\n${a.stderr().slice(-1500)}`);
      await sleep(200);
    }
    await sleep(500);
    lines = await readStreams(client, prefix);
    const found = seqsOf(lines);
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
    assert.deepEqual(fake.violations, []);
    console.log(`${events} events of ${fake.sessions().length} sessions from 4 processes, each once`);
    for (const g of [a, b]) g.kill("SIGTERM");
    for (const g of [a, b]) assert.equal((await g.status).code, 0, g.stderr().slice(-2000));
  } finally {
    for (const g of running) g.kill("SIGKILL");
    await Promise.all(running.map((g) => g.status));
    client.disconnect();
    fake.stopTraffic();
    await fake.stop();
    await redis.stop();
    for (const dir of dirs) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
