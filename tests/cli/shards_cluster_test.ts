/**
 * `gatehouse shards` in cluster mode, run as users run it (a child process) against the real Redis where
 * two processes' reports are published (fake views) and the leases set: the table with its node column,
 * `--json` with the merged view, `--check` over the whole bot (0 healthy, 1 degraded, 2 down), and Redis
 * unreachable (exit 2, the message without the URL's password).
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { clusterKeys } from "../../src/cluster/keys.ts";
import { StatusPublisher } from "../../src/cluster/status_board.ts";
import { clusterView } from "../control/fake_view.ts";
import { REDIS_URL, testPrefix } from "../cluster/redis_helpers.ts";
import { ROOT, RUN_FLAGS } from "../helpers/gatehouse.ts";

const PASSWORD = "pw-for-the-test-7f3a9c";

async function shardsCommand(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; out: string; err: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [...RUN_FLAGS, "main.ts", "shards", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1", GATEHOUSE_CLUSTER: "redis", GATEHOUSE_STORE: "/nonexistent/gatehouse.db", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, out: decoder.decode(output.stdout), err: decoder.decode(output.stderr) };
}

/** Two nodes of a 4-shard bot: node-a owns 0 and 1, node-b owns 2 and 3 (`notReady` of them resuming). */
async function cluster(options: { notReady?: number[]; unowned?: number[] } = {}) {
  const client = new Redis(REDIS_URL);
  const prefix = testPrefix();
  const keys = clusterKeys(prefix);
  const owners: Record<string, number[]> = { "node-a": [0, 1], "node-b": [2, 3] };
  const publishers: StatusPublisher[] = [];
  for (const [node, ids] of Object.entries(owners)) {
    for (const id of ids) {
      if (!options.unowned?.includes(id)) await client.set(keys.lease(4, id), node, "PX", 60_000);
    }
    await client.zadd(keys.nodes, Date.now() + 60_000, node);
    const owned = ids.filter((id) => !options.unowned?.includes(id));
    const view = clusterView(node, 4, owned, { notReady: options.notReady });
    const publisher = new StatusPublisher({ client, prefix, node, view });
    await publisher.publish();
    publishers.push(publisher);
  }
  return {
    env: { REDIS_URL, GATEHOUSE_REDIS_PREFIX: prefix },
    async close() {
      for (const p of publishers) await p.stop();
      const left = await client.keys(`{${prefix}}:*`);
      if (left.length > 0) await client.del(...left);
      await client.quit();
    },
  };
}

Deno.test("shards (cluster): healthy bot, the table with each shard's node, --json with the merged view", async () => {
  const c = await cluster();
  try {
    const checked = await shardsCommand(["--check"], c.env);
    assert.equal(checked.code, 0, checked.err);
    assert.equal(
      checked.out,
      "OK: 4/4 shards ready on 2 node(s), max latency 40 ms, sink lag node-a/stdout 0, node-b/stdout 0\n",
    );

    const shown = await shardsCommand([], c.env);
    assert.equal(shown.code, 0, shown.err);
    assert.match(shown.out, /: 4\/4 shard\(s\) ready on 2 node\(s\)/);
    assert.match(shown.out, /SHARD\s+NODE\s+STATE/);
    assert.match(shown.out, /\n\s*2\s+node-b\s+ready\s+40 ms/);
    assert.match(shown.out, /\nnode-a\s+\d+\s+\S+\s+\d+ s\s+2\s+2\n/, "the node table");

    const json = await shardsCommand(["--json"], c.env);
    assert.equal(json.code, 0, json.err);
    const view = JSON.parse(json.out);
    assert.equal(view.live, true);
    assert.equal(view.shard_count, 4);
    assert.deepEqual(view.shards.map((s: { node: string }) => s.node), [
      "node-a",
      "node-a",
      "node-b",
      "node-b",
    ]);
    assert.deepEqual(view.nodes.map((n: { node: string; shards: number[] }) => [n.node, n.shards]), [
      ["node-a", [0, 1]],
      ["node-b", [2, 3]],
    ]);
    assert.deepEqual(view.unowned, []);
  } finally {
    await c.close();
  }
});

Deno.test("shards --check (cluster): one shard not ready or without an owner is degraded (exit 1)", async () => {
  let c = await cluster({ notReady: [2] });
  try {
    const checked = await shardsCommand(["--check"], c.env);
    assert.equal(checked.code, 1, checked.err);
    assert.match(
      checked.out,
      /^DEGRADED: 1 shard\(s\) not ready \(2: state resuming\) \(3\/4 shards ready on 2 node/,
    );
    // Tolerated by --max-not-ready.
    assert.equal((await shardsCommand(["--check", "--max-not-ready", "1"], c.env)).code, 0);
  } finally {
    await c.close();
  }
  c = await cluster({ unowned: [3] });
  try {
    const checked = await shardsCommand(["--check", "--max-not-ready", "1"], c.env);
    assert.equal(checked.code, 1, checked.out);
    assert.match(checked.out, /^DEGRADED: 1 shard\(s\) without an owner \(3\) \(3\/4 shards ready/);
    const json = JSON.parse((await shardsCommand(["--json"], c.env)).out);
    assert.deepEqual([json.shards[3].node, json.shards[3].state, json.unowned], [null, "unowned", [3]]);
  } finally {
    await c.close();
  }
});

Deno.test("shards --check (cluster): no shard ready, or Redis unreachable, is down (exit 2), no password shown", async () => {
  const c = await cluster({ notReady: [0, 1, 2, 3] });
  try {
    const checked = await shardsCommand(["--check"], c.env);
    assert.equal(checked.code, 2, checked.err);
    assert.match(checked.out, /^DOWN: 0\/4 shards ready on 2 node\(s\) \(0: state resuming/);
  } finally {
    await c.close();
  }
  // A port nobody listens on.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  const env = { REDIS_URL: `redis://:${PASSWORD}@127.0.0.1:${port}`, GATEHOUSE_REDIS_PREFIX: testPrefix() };
  const down = await shardsCommand(["--check", "--timeout", "2000"], env);
  assert.equal(down.code, 2);
  assert.equal(
    down.out,
    `DOWN: cannot read the cluster status from Redis ([redis] url, prefix "${env.GATEHOUSE_REDIS_PREFIX}"): ` +
      `connect ECONNREFUSED 127.0.0.1:${port}\n`,
  );
  const table = await shardsCommand([], env);
  assert.equal(table.code, 2);
  assert.match(table.err, /cannot read the cluster status from Redis .*ECONNREFUSED/);
  for (const text of [down.out, down.err, table.out, table.err]) assert.ok(!text.includes(PASSWORD));
});

Deno.test("shards --help: tells the cluster form", async () => {
  const help = await shardsCommand(["--help"], {});
  assert.equal(help.code, 0);
  const text = help.out.replace(/\s+/g, " ");
  assert.match(
    text,
    /In cluster mode \(\[cluster\] mode = "redis"\): every shard of the bot with its owner node/,
  );
  assert.match(text, /--check judges the whole bot/);
});
