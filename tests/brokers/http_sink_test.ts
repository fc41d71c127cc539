/**
 * The HTTP sink in `gatehouse run`: a slow endpoint (1 s per POST, failing at first) does not slow the
 * shards — stdout keeps pace with Discord while the HTTP sink lags, retries, and catches up from the
 * journal with every event, in order.
 */
import assert from "node:assert/strict";
import { FakeDiscord } from "../fake_discord/server.ts";
import { assertExactlyOnce, caughtUp } from "../helpers/delivery.ts";
import { fakeEnv, type Line, spawnGatehouse } from "../helpers/gatehouse.ts";

Deno.test("http sink: a slow, at first failing endpoint does not slow the shards; it catches up in order", async () => {
  const received: Line[] = [];
  let posts = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (request) => {
    posts++;
    const body = await request.text();
    if (request.headers.get("authorization") !== "Bearer s3cret") return new Response(null, { status: 401 });
    if (posts <= 2) return new Response("warming up", { status: 503 });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    for (const line of body.split("\n")) if (line !== "") received.push(JSON.parse(line));
    return new Response(null, { status: 200 });
  });
  const fake = await FakeDiscord.start({ shards: 2, maxConcurrency: 2, guildsPerShard: 2 });
  const g = spawnGatehouse({
    env: {
      ...fakeEnv(fake.apiHost),
      BROKER_TYPE: "stdout,http",
      GATEHOUSE_HTTP_URL: `http://127.0.0.1:${server.addr.port}/events`,
      GATEHOUSE_HTTP_AUTHORIZATION: "Bearer s3cret",
      GATEHOUSE_LOG_LEVEL: "info",
    },
  });
  try {
    await g.waitFor(() => g.lines.filter((l) => l.t === "READY").length === 2, 15_000, "2 READY");
    fake.startTraffic(500);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    // stdout keeps up with Discord while the endpoint is far behind.
    assert.ok(caughtUp(fake, g.lines) || fake.stats().eventsSent - g.lines.length < 200, "stdout keeps pace");
    assert.ok(received.length < g.lines.length, "the endpoint lags");
    fake.stopTraffic();
    await g.waitFor(() => caughtUp(fake, g.lines), 10_000, "stdout caught up");
    const until = Date.now() + 30_000;
    while (!caughtUp(fake, received)) {
      assert.ok(Date.now() < until, `http caught up: ${received.length} of ${g.lines.length}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assertExactlyOnce(fake, received);
    assert.deepEqual(received.map((l) => l.id), g.lines.map((l) => l.id), "the same events, same ids");
    assert.match(g.stderr(), /sink http did not take events .* 503/);
    assert.ok(!g.stderr().includes("s3cret"), "the Authorization header is never logged");
    g.kill("SIGTERM");
    assert.equal((await g.status).code, 0, g.stderr());
  } finally {
    g.kill("SIGKILL");
    await g.status;
    fake.stopTraffic();
    await fake.stop();
    await server.shutdown();
  }
});
