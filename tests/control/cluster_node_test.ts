/**
 * A process of a cluster, seen by its own control listener (real listener, fake view): /readyz judges only
 * the shards this process owns (2 of a count of 4 are all it needs), /shards and /metrics name the node.
 */
import assert from "node:assert/strict";
import { Metrics } from "../../src/control/metrics.ts";
import { ControlServer } from "../../src/control/server.ts";
import { logger } from "../../src/util/log.ts";
import { clusterView, type FakeView, fakeView } from "./fake_view.ts";

async function withServer(view: FakeView, body: (url: string) => Promise<void>): Promise<void> {
  const server = new ControlServer({
    address: { hostname: "127.0.0.1", port: 0 },
    token: null,
    metricsPath: "/metrics",
    view,
    logger: logger("control"),
  });
  const { port } = server.start();
  try {
    await body(`http://127.0.0.1:${port}`);
  } finally {
    await server.stop();
  }
}

async function get(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url);
  return { status: response.status, body: await response.json() };
}

Deno.test("cluster node: /readyz is ready with its 2 owned shards of 4, and not when one of those is not", async () => {
  const view = clusterView("node-a", 4, [1, 3]);
  await withServer(view, async (url) => {
    let ready = await get(`${url}/readyz`);
    assert.equal(ready.status, 200, "shards 0 and 2 are another process's business");
    assert.deepEqual(ready.body, {
      node: "node-a",
      ready: true,
      shards_ready: 2,
      shards_total: 2,
      not_ready: [],
    });
    const shards = await get(`${url}/shards`);
    assert.equal(shards.body.node, "node-a");
    assert.equal(shards.body.shard_count, 4);
    assert.deepEqual((shards.body.shards as Array<{ id: number }>).map((s) => s.id), [1, 3]);

    view.shards = () => clusterView("node-a", 4, [1, 3], { notReady: [3] }).shards();
    ready = await get(`${url}/readyz`);
    assert.equal(ready.status, 503);
    assert.deepEqual(ready.body.not_ready, [{ id: 3, state: "resuming", why: "state resuming" }]);
    assert.equal(ready.body.shards_total, 2);
  });
});

Deno.test("cluster node: /metrics names the node and counts the shards it owns of the bot's count", async () => {
  const view = clusterView("worker-1", 4, [1, 3]);
  await withServer(view, async (url) => {
    const text = await (await fetch(`${url}/metrics`)).text();
    assert.match(text, /^gatehouse_cluster_node_info\{node="worker-1"\} 1$/m);
    assert.match(text, /^gatehouse_cluster_shards_owned 2$/m);
    assert.match(text, /^gatehouse_cluster_shard_count 4$/m);
    assert.match(text, /^gatehouse_shard_ready\{shard="3"\} 1$/m);
    assert.doesNotMatch(text, /gatehouse_shard_ready\{shard="0"\}/, "only its own shards");
  });
  // Without a node (cluster mode off) there is no cluster series.
  const text = await new Metrics(fakeView()).text();
  assert.doesNotMatch(text, /gatehouse_cluster_/);
});
