/**
 * The control listener of a real `gatehouse run` against the fake Discord: /metrics parsed with a
 * Prometheus text parser as events flow, /healthz, /readyz and /shards, actions behind the bearer
 * token, and `gatehouse shards` (table, --json, --check 0/1/2, the stored state when nothing answers).
 */
import assert from "node:assert/strict";
import parsePrometheus from "parse-prometheus-text-format";
import { FakeDiscord } from "../fake_discord/server.ts";
import { controlUrl, fakeEnv, RUN_FLAGS, spawnGatehouse } from "../helpers/gatehouse.ts";

const ROOT = new URL("../../", import.meta.url);
const TOKEN = "test-control-token-0123456789";

interface Family {
  name: string;
  type: string;
  help: string;
  metrics: Array<
    { value?: string; labels?: Record<string, string>; buckets?: Record<string, string>; count?: string }
  >;
}

async function scrape(url: string): Promise<Map<string, Family>> {
  const response = await fetch(`${url}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
  const families = parsePrometheus(await response.text()) as Family[];
  return new Map(families.map((f) => [f.name, f]));
}

/** The value of one series (0 when absent). */
function value(m: Map<string, Family>, name: string, labels: Record<string, string> = {}): number {
  const family = m.get(name);
  assert.ok(family, `metric ${name} exists`);
  const series = family.metrics.find((s) => Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
  return series?.value === undefined ? 0 : Number(series.value);
}

/** Runs `gatehouse shards …` and returns its exit code and output. */
async function shardsCommand(args: string[]): Promise<{ code: number; out: string; err: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [...RUN_FLAGS, "main.ts", "shards", ...args],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: output.code, out: decoder.decode(output.stdout), err: decoder.decode(output.stderr) };
}

async function json(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(url, init);
  return { status: response.status, body: await response.json() };
}

Deno.test("control listener: metrics move as events flow, health and status, actions need the token, shards --check", async () => {
  const fake = await FakeDiscord.start({
    shards: 2,
    maxConcurrency: 2,
    guildsPerShard: 3,
    heartbeatIntervalMs: 1000,
  });
  const dir = await Deno.makeTempDir();
  const store = `${dir}/gatehouse.db`;
  const g = spawnGatehouse({
    env: { ...fakeEnv(fake.apiHost), GATEHOUSE_STORE: store, GATEHOUSE_CONTROL_TOKEN: TOKEN },
  });
  try {
    const url = await controlUrl(store);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
    await g.waitFor(() => g.lines.filter((l) => l.t === "GUILD_CREATE").length === 6, 15_000, "guilds");

    // Health and readiness come from the shards' current state.
    assert.equal((await json(`${url}/healthz`)).status, 200);
    await fake.waitFor(() => fake.connections().every((c) => c.heartbeats > 0), 10_000, "heartbeats");
    const ready = await json(`${url}/readyz`);
    assert.equal(ready.status, 200, JSON.stringify(ready.body));
    assert.deepEqual(ready.body.not_ready, []);

    const before = await scrape(url);
    for (
      const name of [
        "gatehouse_events_received_total",
        "gatehouse_events_delivered_total",
        "gatehouse_shard_state",
        "gatehouse_shard_ready",
        "gatehouse_heartbeat_latency_seconds",
        "gatehouse_shard_reconnects_total",
        "gatehouse_shard_resumes_total",
        "gatehouse_identify_budget_remaining",
        "gatehouse_journal_size_bytes",
        "gatehouse_journal_last_id",
        "gatehouse_sink_lag_events",
        "gatehouse_sink_lag_seconds",
        "gatehouse_sink_errors_total",
        "gatehouse_command_queue_depth",
        "process_resident_memory_bytes",
        "nodejs_eventloop_lag_seconds",
      ]
    ) assert.ok(before.has(name), `${name} is exposed`);
    assert.equal(before.get("gatehouse_events_received_total")!.type, "COUNTER");
    assert.equal(before.get("gatehouse_heartbeat_latency_seconds")!.type, "HISTOGRAM");
    assert.equal(value(before, "gatehouse_events_received_total", { shard: "0", type: "GUILD_CREATE" }), 3);
    assert.equal(value(before, "gatehouse_shard_state", { shard: "1", state: "ready" }), 1);
    assert.equal(value(before, "gatehouse_shard_state", { shard: "1", state: "waiting" }), 0);
    assert.equal(value(before, "gatehouse_shard_ready", { shard: "0" }), 1);
    assert.equal(value(before, "gatehouse_shard_guilds", { shard: "1" }), 3);
    assert.equal(value(before, "gatehouse_identify_budget_remaining"), fake.sessionStartRemaining);
    assert.ok(value(before, "gatehouse_journal_size_bytes") > 0);
    assert.ok(
      value(before, "process_resident_memory_bytes") > 1e6,
      JSON.stringify(before.get("process_resident_memory_bytes")),
    );

    // Events flow: received and delivered counts, the journal id and the heartbeat histogram move.
    fake.startTraffic(100);
    await g.waitFor(() => g.lines.filter((l) => l.t === "MESSAGE_CREATE").length >= 100, 15_000, "messages");
    fake.stopTraffic();
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const after = await scrape(url);
    const created = (m: Map<string, Family>, metric: string, labels: Record<string, string> = {}) =>
      value(m, metric, { shard: "0", type: "MESSAGE_CREATE", ...labels }) +
      value(m, metric, { shard: "1", type: "MESSAGE_CREATE", ...labels });
    assert.ok(created(after, "gatehouse_events_received_total") >= 100);
    assert.equal(
      created(after, "gatehouse_events_delivered_total", { sink: "stdout" }),
      g.lines.filter((l) => l.t === "MESSAGE_CREATE").length,
    );
    assert.equal(value(after, "gatehouse_journal_last_id"), g.lines[g.lines.length - 1].id);
    assert.equal(value(after, "gatehouse_sink_lag_events", { sink: "stdout" }), 0);
    assert.equal(
      value(after, "gatehouse_sink_lag_seconds", { sink: "stdout" }),
      0,
      "caught up: no lag in time",
    );
    const histogram = (m: Map<string, Family>) =>
      Number(m.get("gatehouse_heartbeat_latency_seconds")!.metrics[0].count);
    assert.ok(histogram(after) > histogram(before), "heartbeat latencies are observed");

    // /shards: one row per shard, with what `gatehouse shards` shows.
    const status = (await json(`${url}/shards`)).body as {
      shards: Array<{ id: number; state: string; ready: boolean; guilds: number; seq: number }>;
    };
    assert.deepEqual(status.shards.map((s) => [s.id, s.state, s.ready, s.guilds]), [[0, "ready", true, 3], [
      1,
      "ready",
      true,
      3,
    ]]);

    // Actions: refused without the token or with a wrong one, done with it.
    assert.equal((await json(`${url}/shards/0/reconnect`, { method: "POST" })).status, 401);
    const wrong = { method: "POST", headers: { authorization: "Bearer not-the-token-at-all" } };
    assert.equal((await json(`${url}/shards/0/reconnect`, wrong)).status, 401);
    assert.equal((await json(`${url}/commands`, { ...wrong, body: '{"op":3,"d":{}}' })).status, 401);
    assert.equal(fake.resumes.length, 0);
    const auth = { authorization: `Bearer ${TOKEN}` };
    assert.equal((await json(`${url}/shards/0/reconnect`, { method: "POST", headers: auth })).status, 202);
    await fake.waitFor(() => fake.resumes.some((r) => r.shard === 0 && r.ok), 10_000, "resume of shard 0");
    assert.equal((await json(`${url}/shards/7/reconnect`, { method: "POST", headers: auth })).status, 404);
    const presence = '{"op":3,"d":{"since":null,"activities":[],"status":"idle","afk":false}}';
    assert.equal(
      (await json(`${url}/commands`, { method: "POST", headers: auth, body: presence })).status,
      202,
    );
    await fake.waitFor(
      () => fake.commands.filter((c) => c.op === 3).length === 2,
      10_000,
      "presence on both shards",
    );
    const bad = await json(`${url}/commands`, { method: "POST", headers: auth, body: '{"op":2,"d":{}}' });
    assert.equal(bad.status, 400);
    assert.match(String(bad.body.error), /op 2/);
    await g.waitFor(() => g.lines.some((l) => l.t === "GATEHOUSE_COMMAND_REJECTED"), 5000, "rejection event");
    const acted = await scrape(url);
    assert.equal(value(acted, "gatehouse_shard_reconnects_total", { shard: "0", reason: "operator" }), 1);
    assert.equal(value(acted, "gatehouse_shard_resumes_total", { shard: "0", reason: "operator" }), 1);
    assert.equal(value(acted, "gatehouse_commands_total", { source: "control", result: "accepted" }), 1);
    assert.equal(value(acted, "gatehouse_commands_total", { source: "control", result: "rejected" }), 1);
    assert.equal(
      await fetch(`${url}/metrics`, { method: "POST" }).then((r) => r.body?.cancel().then(() => r.status)),
      405,
    );

    // `gatehouse shards`: live table and JSON; --check healthy.
    await fake.waitFor(
      () => fake.connections().filter((c) => c.sessionId !== null).length === 2,
      10_000,
      "both live",
    );
    await new Promise((resolve) => setTimeout(resolve, 1200));
    const table = await shardsCommand(["--store", store]);
    assert.equal(table.code, 0, table.err);
    assert.match(table.out, /2\/2 shard\(s\) ready/);
    assert.match(table.out, /SHARD\s+STATE\s+LATENCY\s+GUILDS\s+SEQ\s+SESSION\s+EVENTS\/S\s+LAST EVENT/);
    assert.match(table.out, /^\s+1\s+ready\s+\d+ ms\s+3\s+\d+/m);
    const live = JSON.parse((await shardsCommand(["--store", store, "--json"])).out);
    assert.equal(live.live, true);
    assert.equal(live.shards.length, 2);
    const healthy = await shardsCommand(["--store", store, "--check"]);
    assert.equal(healthy.code, 0, healthy.out + healthy.err);
    assert.match(healthy.out, /^OK: 2\/2 shards ready/);
    // Start-up progress (not a terminal here): logged, and the end of start-up said once.
    assert.equal((g.stderr().match(/all 2 shard\(s\) ready in \d+ s/g) ?? []).length, 1);

    // --watch: the table again and again until interrupted.
    const watch = new Deno.Command(Deno.execPath(), {
      args: [...RUN_FLAGS, "main.ts", "shards", "--store", store, "--watch", "--interval", "0.2"],
      cwd: ROOT,
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "null",
    }).spawn();
    let watched = "";
    const reader = watch.stdout.pipeThrough(new TextDecoderStream()).getReader();
    while ((watched.match(/SHARD\s+STATE/g) ?? []).length < 3) {
      const { value, done } = await reader.read();
      if (done) break;
      watched += value;
    }
    watch.kill("SIGTERM");
    await reader.cancel();
    await watch.status;
    assert.equal((watched.match(/2\/2 shard\(s\) ready/g) ?? []).length >= 3, true, watched);

    // One shard stalled (Discord stops answering it): not ready → degraded (exit 1).
    fake.stallShard(1, true);
    let degraded = { code: -1, out: "", err: "" };
    for (let i = 0; i < 40 && degraded.code !== 1; i++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      degraded = await shardsCommand(["--store", store, "--check"]);
    }
    assert.equal(degraded.code, 1, degraded.out);
    assert.match(degraded.out, /^DEGRADED: 1 shard\(s\) not ready \(1: /);
    const readyz = await json(`${url}/readyz`);
    assert.equal(readyz.status, 503);
    assert.equal((readyz.body.not_ready as Array<{ id: number }>)[0].id, 1);
    assert.equal(value(await scrape(url), "gatehouse_shard_ready", { shard: "1" }), 0);

    // Every shard stalled: down (exit 2).
    fake.stallShard(0, true);
    let down = { code: -1, out: "", err: "" };
    for (let i = 0; i < 40 && down.code !== 2; i++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      down = await shardsCommand(["--store", store, "--check"]);
    }
    assert.equal(down.code, 2, down.out);
    assert.match(down.out, /^DOWN: 0\/2 shards ready/);

    // Back to healthy once Discord answers again: readiness is never latched.
    fake.stallShard(0, false);
    fake.stallShard(1, false);
    let again = { code: -1, out: "", err: "" };
    for (let i = 0; i < 80 && again.code !== 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      again = await shardsCommand(["--store", store, "--check"]);
    }
    assert.equal(again.code, 0, again.out);

    // Stopped: unreachable → exit 2; the table falls back to the store and says so.
    g.kill("SIGTERM");
    assert.equal((await g.status).code, 0);
    const gone = await shardsCommand(["--store", store, "--check", "--url", url]);
    assert.equal(gone.code, 2);
    assert.match(gone.out, /^DOWN: no gatehouse answers at http:\/\/127\.0\.0\.1:\d+/);
    const stored = await shardsCommand(["--store", store, "--url", url]);
    assert.equal(stored.code, 0, stored.err);
    assert.match(stored.out, /Not live: the last state stored in/);
    assert.match(stored.out, /^\s+0\s+\w{8}…\s+\d+/m);
    assert.equal(g.badLines.length, 0);
    assert.equal(fake.violations.length, 0, JSON.stringify(fake.violations));
  } finally {
    g.kill("SIGKILL");
    await g.status;
    await fake.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("control listener without a token: reads work, actions are refused (403)", async () => {
  const fake = await FakeDiscord.start({ shards: 1 });
  const dir = await Deno.makeTempDir();
  const store = `${dir}/gatehouse.db`;
  const g = spawnGatehouse({ env: { ...fakeEnv(fake.apiHost), GATEHOUSE_STORE: store } });
  try {
    const url = await controlUrl(store);
    await g.waitFor(() => g.lines.some((l) => l.t === "READY"), 10_000, "READY");
    assert.equal((await json(`${url}/shards`)).status, 200);
    const refused = await json(`${url}/shards/0/reconnect`, {
      method: "POST",
      headers: { authorization: "Bearer anything-at-all-here" },
    });
    assert.equal(refused.status, 403);
    assert.match(String(refused.body.error), /actions are disabled: set \[control\] token/);
    assert.equal((await json(`${url}/commands`, { method: "POST", body: '{"op":3,"d":{}}' })).status, 403);
    assert.equal(fake.resumes.length, 0);
    assert.equal(fake.commands.length, 0);
    assert.match(g.stderr(), /actions disabled \(no control\.token\)/);
  } finally {
    g.kill("SIGKILL");
    await g.status;
    await fake.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the control listener refuses a non-loopback address without a token (exit 2), and a taken port is not fatal", async () => {
  const refused = spawnGatehouse({
    env: { DISCORD_TOKEN: "x", GATEHOUSE_CONTROL_ADDRESS: "0.0.0.0:0" },
  });
  assert.equal((await refused.status).code, 2);
  assert.match(
    refused.stderr(),
    /control\.address = 0\.0\.0\.0:0 \(from env GATEHOUSE_CONTROL_ADDRESS\) is reachable from other machines, and control\.token is not set/,
  );

  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const fake = await FakeDiscord.start({ shards: 1 });
  const g = spawnGatehouse({
    env: {
      ...fakeEnv(fake.apiHost),
      GATEHOUSE_CONTROL_ADDRESS: `127.0.0.1:${(busy.addr as Deno.NetAddr).port}`,
    },
  });
  try {
    await g.waitFor(
      () => g.lines.some((l) => l.t === "GUILD_CREATE"),
      10_000,
      "events despite the taken port",
    );
    assert.match(g.stderr(), /control listener: cannot listen on 127\.0\.0\.1:\d+/);
  } finally {
    g.kill("SIGKILL");
    await g.status;
    busy.close();
    await fake.stop();
  }
});
