/**
 * The cluster's status board against the real Redis: processes publish their reports (fake views, as the
 * control tests build them), the reader merges them with the leases — each shard with its owner node,
 * unowned and unreported shards said so — and a report goes when its publisher stops or dies.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { clusterKeys } from "../../src/cluster/keys.ts";
import { readClusterStatus, StatusPublisher } from "../../src/cluster/status_board.ts";
import { clusterView } from "../control/fake_view.ts";
import { logger, setupLogging } from "../../src/util/log.ts";
import { REDIS_URL, sleep, testPrefix } from "./redis_helpers.ts";

async function open() {
  const client = new Redis(REDIS_URL);
  await client.ping();
  const prefix = testPrefix();
  const keys = clusterKeys(prefix);
  return {
    client,
    prefix,
    keys,
    /** Leases `shard → node` of `count`, and the nodes as members. */
    async own(count: number, owners: Record<number, string>) {
      for (const [shard, node] of Object.entries(owners)) {
        await client.set(keys.lease(count, Number(shard)), node, "PX", 60_000);
        await client.zadd(keys.nodes, Date.now() + 60_000, node);
      }
    },
    async close() {
      const left = await client.keys(`{${prefix}}:*`);
      if (left.length > 0) await client.del(...left);
      await client.quit();
    },
  };
}

Deno.test("status board: every shard of the count with its owner node and state; no lease = unowned", async () => {
  const env = await open();
  const a = new StatusPublisher({
    client: env.client,
    prefix: env.prefix,
    node: "node-a",
    view: clusterView("node-a", 4, [0, 1]),
  });
  const viewB = clusterView("node-b", 4, [2], { notReady: [2] });
  const b = new StatusPublisher({ client: env.client, prefix: env.prefix, node: "node-b", view: viewB });
  try {
    await env.own(4, { 0: "node-a", 1: "node-a", 2: "node-b" });
    await a.publish();
    await b.publish();
    const raw = JSON.parse((await env.client.get(env.keys.status("node-a")))!);
    assert.equal(raw.node, "node-a");
    assert.deepEqual(raw.shards.map((s: { id: number }) => s.id), [0, 1], "its own shards only");
    assert.ok(!JSON.stringify(raw).includes("session-0"), "no session id (nor any secret) in the report");
    const status = await readClusterStatus(env.client, env.prefix);
    assert.equal(status.shard_count, 4, "the count the reports give");
    assert.deepEqual(status.shards.map((s) => [s.id, s.node, s.state, s.ready]), [
      [0, "node-a", "ready", true],
      [1, "node-a", "ready", true],
      [2, "node-b", "resuming", false],
      [3, null, "unowned", false],
    ]);
    assert.equal(status.shards[0].latency_ms, 40, "the owner's row as it reported it");
    assert.equal(status.shards[3].why, "no process holds its lease");
    assert.deepEqual(status.unowned, [3]);
    assert.deepEqual(status.unreported, []);
    assert.equal(status.shards_ready, 2);
    assert.equal(status.ready, false);
    assert.deepEqual(status.nodes.map((n) => [n.node, n.shards, n.report?.node]), [
      ["node-a", [0, 1], "node-a"],
      ["node-b", [2], "node-b"],
    ]);
    assert.ok(!("shards" in status.nodes[0].report!), "node rows carry no shard rows");

    // A lease to a node that reports nothing; the given count wins over the reports'.
    await env.own(4, { 3: "node-c" });
    const again = await readClusterStatus(env.client, env.prefix, 4);
    assert.deepEqual([again.shards[3].node, again.shards[3].state], ["node-c", "unreported"]);
    assert.equal(again.shards[3].why, "node node-c publishes no status report");
    assert.deepEqual(again.unreported, [3]);
    assert.deepEqual(again.nodes.map((n) => n.node), ["node-a", "node-b", "node-c"]);
    assert.equal(again.nodes[2].report, null);

    // Another count: no leases of it, so every shard is unowned.
    const other = await readClusterStatus(env.client, env.prefix, 2);
    assert.deepEqual(other.unowned, [0, 1]);
    // A lease of that count held by node-a, whose report is of count 4: its rows do not count for it.
    await env.own(2, { 0: "node-a" });
    const moving = await readClusterStatus(env.client, env.prefix, 2);
    assert.deepEqual([moving.shards[0].node, moving.shards[0].state], ["node-a", "unreported"]);
    assert.deepEqual(moving.reported_counts, [4]);
  } finally {
    await a.stop();
    await b.stop();
    await env.close();
  }
});

Deno.test("status board: republished every period; stop deletes the report, a dead publisher's expires", async () => {
  const env = await open();
  const view = clusterView("node-a", 2, [0, 1]);
  const live = new StatusPublisher({
    client: env.client,
    prefix: env.prefix,
    node: "node-a",
    view,
    everyMs: 50,
  });
  const dead = new StatusPublisher({
    client: env.client,
    prefix: env.prefix,
    node: "node-b",
    view: clusterView("node-b", 2, []),
    everyMs: 50,
  });
  try {
    await env.own(2, { 0: "node-a", 1: "node-a" });
    await env.client.zadd(env.keys.nodes, Date.now() + 60_000, "node-b");
    live.start();
    await dead.publish();
    const ttl = await env.client.pttl(env.keys.status("node-b"));
    assert.ok(ttl > 0 && ttl <= 150, `expires after three periods (pttl ${ttl})`);
    await sleep(20);
    let status = await readClusterStatus(env.client, env.prefix);
    assert.deepEqual(status.nodes.map((n) => n.node), ["node-a", "node-b"], "a node without shards shows");
    assert.equal(status.ready, true);

    // The view changes; the next publication says so.
    view.shards = () => clusterView("node-a", 2, [0, 1], { notReady: [1] }).shards();
    await sleep(200);
    status = await readClusterStatus(env.client, env.prefix);
    assert.equal(status.shards[1].state, "resuming");
    // node-b never publishes again: its report is gone after three periods.
    assert.deepEqual(status.nodes.map((n) => n.node), ["node-a"]);
    assert.equal(await env.client.exists(env.keys.status("node-b")), 0);

    await live.stop();
    assert.equal(await env.client.exists(env.keys.status("node-a")), 0, "stop deletes the report");
    await sleep(120);
    assert.equal(await env.client.exists(env.keys.status("node-a")), 0, "and publishes no more");
    status = await readClusterStatus(env.client, env.prefix, 2);
    assert.deepEqual(status.unreported, [0, 1], "its leases remain, without a report");
  } finally {
    await live.stop();
    await dead.stop();
    await env.close();
  }
});

Deno.test("status board: a publication Redis refuses is logged once and never thrown; it resumes", async () => {
  const lines: Array<{ level: string; message: string }> = [];
  setupLogging({ level: "info", format: "json", write: (line) => lines.push(JSON.parse(line)) });
  const env = await open();
  // Disconnected on purpose: every command is refused at once until it connects again.
  const client = new Redis(REDIS_URL);
  await client.ping();
  client.disconnect();
  const publisher = new StatusPublisher({
    client,
    prefix: env.prefix,
    node: "node-a",
    view: clusterView("node-a", 1, [0]),
    logger: logger("cluster"),
  });
  try {
    await publisher.publish();
    await publisher.publish();
    const warned = lines.filter((l) => l.level === "WARNING" && /cannot publish/.test(l.message));
    assert.equal(warned.length, 1, "once per failing streak");
    assert.equal(await env.client.exists(env.keys.status("node-a")), 0);
    await client.connect();
    await publisher.publish();
    assert.equal(await env.client.exists(env.keys.status("node-a")), 1);
    assert.ok(lines.some((l) => /publishing again/.test(l.message)));
  } finally {
    await publisher.stop();
    client.disconnect();
    await env.close();
  }
});
