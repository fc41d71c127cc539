/**
 * The control side of `gatehouse run` on its own: the listener answers, its address is recorded next to
 * the store (and removed at the stop); `address = off` records nothing. And the view over the parts.
 */
import assert from "node:assert/strict";
import type { GatehouseConfig } from "../../src/config/load.ts";
import { controlFilePath } from "../../src/control/control_file.ts";
import { startControl } from "../../src/control/start.ts";
import { GatewayStats } from "../../src/control/stats.ts";
import { gatewayView } from "../../src/control/view.ts";
import type { ShardStatus } from "../../src/gateway/shard.ts";
import { setupLogging } from "../../src/util/log.ts";
import { fakeView } from "./fake_view.ts";

/** The part of the configuration the control side reads. */
function controlConfig(address: { hostname: string; port: number } | null): GatehouseConfig {
  return { control: { address, token: null, metricsPath: "/metrics" } } as unknown as GatehouseConfig;
}

Deno.test("startControl: the listener answers and its address is in the control file until the stop", async () => {
  setupLogging({ level: "error", format: "json", write: () => {} });
  const dir = await Deno.makeTempDir();
  const storePath = `${dir}/gatehouse.db`;
  const view = fakeView(2);
  const control = await startControl(controlConfig({ hostname: "127.0.0.1", port: 0 }), storePath, view, {
    maxConcurrency: 1,
  });
  try {
    const recorded = JSON.parse(await Deno.readTextFile(controlFilePath(storePath)));
    assert.equal(recorded.pid, Deno.pid);
    assert.equal(recorded.started_at, new Date(view.startedAt).toISOString());
    assert.match(recorded.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    const health = await fetch(`${recorded.url}/healthz`);
    assert.equal(health.status, 200);
    assert.equal((await health.json()).status, "ok");
    assert.equal((Deno.statSync(controlFilePath(storePath)).mode ?? 0) & 0o777, 0o600);
  } finally {
    await control.stop();
  }
  assert.throws(() => Deno.statSync(controlFilePath(storePath)), Deno.errors.NotFound);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("startControl: with address off nothing listens and no control file is written", async () => {
  setupLogging({ level: "error", format: "json", write: () => {} });
  const dir = await Deno.makeTempDir();
  const storePath = `${dir}/gatehouse.db`;
  const control = await startControl(controlConfig(null), storePath, fakeView(1), { maxConcurrency: 1 });
  assert.throws(() => Deno.statSync(controlFilePath(storePath)), Deno.errors.NotFound);
  await control.stop();
  await Deno.remove(dir, { recursive: true });
});

Deno.test("gatewayView: reads the parts at each call; reconnect and commands go to them", () => {
  const shards = [0, 1].map((id) => ({
    id,
    reconnects: 0,
    reconnect() {
      this.reconnects++;
      return id === 1;
    },
  }));
  const runner = {
    sink: { name: "redis", duplicates: 3 },
    cursor: 5,
    errors: 1,
    lagEvents: 2,
    lagMs: 1500,
    pacedMs: 250,
  };
  const journal = { lastAssignedId: 7, pendingEvents: 2, commits: 4, failedCommits: 0 };
  const commands: string[] = [];
  let size = 4096;
  const view = gatewayView({
    stats: new GatewayStats(),
    startedAt: 1_000,
    shardCount: 4,
    pool: {
      status: () => shards.map((s) => ({ id: s.id }) as ShardStatus),
      get: (id) => shards.find((s) => s.id === id),
    },
    runners: [runner],
    journalEnabled: true,
    journal,
    storeSize: () => {
      if (size < 0) throw new Error("busy");
      return size;
    },
    identify: { remaining: 990, budget: { total: 1000, resetAt: 5, maxConcurrency: 2, holding: false } },
    command: (line) => (commands.push(line), line === "bad" ? "refused" : null),
    now: () => 2_000,
  });
  assert.deepEqual(view.shards().map((s) => s.id), [0, 1]);
  assert.deepEqual(view.sinks(), [{
    name: "redis",
    cursor: 5,
    errors: 1,
    duplicates: 3,
    lagEvents: 2,
    lagSeconds: 1.5,
    pacedSeconds: 0.25,
  }]);
  runner.cursor = 6;
  journal.lastAssignedId = 9;
  assert.equal(view.sinks()[0].cursor, 6, "read at each call");
  assert.deepEqual(view.journal(), {
    enabled: true,
    lastId: 9,
    sizeBytes: 4096,
    pendingEvents: 2,
    commits: 4,
    failedCommits: 0,
  });
  size = -1;
  assert.equal(view.journal().sizeBytes, 0, "a store that cannot say its size now reports 0");
  assert.deepEqual(view.identify(), {
    remaining: 990,
    total: 1000,
    resetAt: 5,
    maxConcurrency: 2,
    holding: false,
  });
  assert.equal(view.reconnect(1), true);
  assert.equal(view.reconnect(0), false);
  assert.equal(view.reconnect(3), false, "a shard not run here");
  assert.deepEqual(shards.map((s) => s.reconnects), [1, 1]);
  assert.equal(view.command("ok"), null);
  assert.equal(view.command("bad"), "refused");
  assert.deepEqual(commands, ["ok", "bad"]);
  assert.equal(view.now(), 2_000);
});
