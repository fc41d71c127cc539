/** Readiness, `shards --check` verdicts, start-up progress and the stats the control listener reads. */
import assert from "node:assert/strict";
import { check } from "../../src/cli/shards.ts";
import { describe, progressAt, StartupProgress } from "../../src/control/progress.ts";
import type { Logger } from "../../src/util/log.ts";
import { GatewayStats, topLevelId } from "../../src/control/stats.ts";
import { readiness, type StatusReport } from "../../src/control/status.ts";
import type { ShardStatus } from "../../src/gateway/shard.ts";
import { reconnectLabel } from "../../src/gateway/shard.ts";

const enc = (text: string) => new TextEncoder().encode(text);

function shard(over: Partial<ShardStatus> = {}): ShardStatus {
  return {
    id: 0,
    state: "ready",
    seq: 10,
    sessionId: "s",
    latencyMs: 40,
    lastFrameAt: 100_000,
    lastEventAt: 100_000,
    events: 10,
    reconnects: 0,
    badFrames: 0,
    heartbeatIntervalMs: 41_250,
    sessionSince: 0,
    queuedCommands: 0,
    attempt: 0,
    waitingReason: null,
    ...over,
  };
}

Deno.test("readiness: a live session heard from within 1.5 heartbeat intervals (+5 s); never latched", () => {
  assert.deepEqual(readiness(shard(), 100_000 + 61_000), { ready: true, why: null });
  assert.deepEqual(readiness(shard(), 100_000 + 67_000), { ready: false, why: "nothing received for 67 s" });
  assert.deepEqual(readiness(shard({ state: "resuming" }), 100_000), { ready: false, why: "state resuming" });
  assert.deepEqual(readiness(shard({ state: "waiting" }), 100_000), { ready: false, why: "state waiting" });
  assert.equal(readiness(shard({ lastFrameAt: null }), 100_000).ready, false);
  // Before HELLO told the interval: 60 s.
  assert.equal(readiness(shard({ heartbeatIntervalMs: 0 }), 100_000 + 59_000).ready, true);
  assert.equal(readiness(shard({ heartbeatIntervalMs: 0 }), 100_000 + 61_000).ready, false);
});

function report(shards: Array<Partial<StatusReport["shards"][number]>>, lag = 0): StatusReport {
  return {
    pid: 1,
    version: "0",
    uptime_s: 1,
    shard_count: shards.length,
    ready: shards.every((s) => s.ready !== false),
    shards_ready: shards.filter((s) => s.ready !== false).length,
    shards: shards.map((s, id) => ({
      id,
      count: shards.length,
      delivering: true,
      state: "ready",
      ready: true,
      why: null,
      latency_ms: 50,
      guilds: 1,
      seq: 1,
      session_age_s: 1,
      events_per_s: 0,
      events: 0,
      last_event_age_s: 0,
      last_frame_age_s: 0,
      reconnects: 0,
      queued_commands: 0,
      ...s,
    })),
    sinks: [{ name: "stdout", cursor: 1, lag, errors: 0 }],
    journal: { enabled: true, last_id: 1, size_bytes: 1, pending_events: 0 },
    identify: { remaining: 1, total: 1, max_concurrency: 1 },
  };
}

Deno.test("shards --check: 0 healthy, 1 degraded (not ready, latency, lag), 2 down or unreachable", () => {
  const t = { maxLatencyMs: 1000, maxNotReady: 0, maxLag: 100 };
  const ok = check({ ok: true, report: report([{}, {}]) }, t);
  assert.equal(ok.code, 0);
  assert.equal(ok.summary, "OK: 2/2 shards ready, max latency 50 ms, sink lag stdout 0");

  const stalled = check({
    ok: true,
    report: report([{}, { ready: false, why: "nothing received for 70 s" }]),
  }, t);
  assert.equal(stalled.code, 1);
  assert.match(stalled.summary, /^DEGRADED: 1 shard\(s\) not ready \(1: nothing received for 70 s\)/);
  // Tolerated with --max-not-ready 1.
  assert.equal(
    check({ ok: true, report: report([{}, { ready: false }]) }, { ...t, maxNotReady: 1 }).code,
    0,
  );
  const slow = check({ ok: true, report: report([{ latency_ms: 2500 }, {}]) }, t);
  assert.equal(slow.code, 1);
  assert.match(slow.summary, /latency over 1000 ms on shard\(s\) 0 \(2500 ms\)/);
  const lagging = check({ ok: true, report: report([{}], 5000) }, t);
  assert.equal(lagging.code, 1);
  assert.match(lagging.summary, /sink lag over 100 events: stdout 5000/);

  const down = check({ ok: true, report: report([{ ready: false }, { ready: false }]) }, t);
  assert.equal(down.code, 2);
  assert.match(down.summary, /^DOWN: 0\/2 shards ready/);
  const unreachable = check({ ok: false, reason: "no gatehouse answers at http://127.0.0.1:1 (refused)" }, t);
  assert.deepEqual(unreachable, {
    code: 2,
    status: "down",
    summary: "DOWN: no gatehouse answers at http://127.0.0.1:1 (refused)",
  });
});

Deno.test("start-up progress: ready/total, rate, and an ETA no faster than the identify buckets allow", () => {
  // 100 of 1000 shards in 50 s with max_concurrency 16: 900 left → at least 57 buckets × 5 s.
  const p = progressAt(100, 1000, 50_000, 16);
  assert.equal(p.rate, 2);
  assert.equal(p.etaS, 450); // the measured rate (2/s) is slower than the buckets (285 s)
  assert.equal(describe(p), "start-up: 100/1000 shards ready, 2.0 shards/s, about 7 min 30 s left");
  assert.equal(progressAt(0, 10, 1000, 1).etaS, 50);
  assert.equal(progressAt(10, 10, 1000, 1).etaS, 0);
});

Deno.test("start-up progress promises no time left while nothing can connect or identifies wait for the daily reset", () => {
  const nothing = {
    ...progressAt(0, 4, 30_000, 1),
    failing: { count: 4, reason: "cannot connect: refused" },
  };
  assert.equal(
    describe(nothing),
    "start-up: 0/4 shards ready, 0.0 shards/s; none of the 4 not ready can connect (cannot connect: refused)",
  );
  const some = { ...progressAt(2, 4, 30_000, 1), failing: { count: 1, reason: null } };
  assert.match(describe(some), /about \d+ s left; 1 cannot connect$/);
  const held = { ...progressAt(1, 4, 30_000, 1), budgetResetS: 3 * 3600 + 12 * 60 };
  assert.equal(
    describe(held),
    "start-up: 1/4 shards ready, 0.0 shards/s; identifies wait for Discord's daily session-start limit to reset in 3 h 12 min",
  );
});

Deno.test("guild ids of GUILD_CREATE are found without parsing the whole payload", () => {
  const payload = enc(
    '{"t":"GUILD_CREATE","s":3,"op":0,"d":{"roles":[{"id":"1"}],"name":"x \\"id\\": \\"no\\"","channels":[{"id":"2","nested":{"id":"3"}}],"id":"81384788765712384","members":[]}}',
  );
  assert.equal(topLevelId(payload, 0), "81384788765712384");
  assert.equal(topLevelId(enc('{"op":0,"d":{"name":"x"}}'), 0), null);
  assert.equal(topLevelId(enc('{"op":0,"d":null}'), 0), null);
  assert.equal(topLevelId(enc('{"op":0,"d":{"id":"1'), 0), null); // truncated

  const stats = new GatewayStats();
  stats.event(
    2,
    "READY",
    enc('{"op":0,"t":"READY","d":{"guilds":[{"id":"a","unavailable":true},{"id":"b"}]}}'),
    0,
  );
  assert.equal(stats.guilds(2), 2);
  stats.event(2, "GUILD_CREATE", enc('{"op":0,"t":"GUILD_CREATE","d":{"id":"a"}}'), 0);
  stats.event(2, "GUILD_CREATE", enc('{"op":0,"t":"GUILD_CREATE","d":{"members":[],"id":"c"}}'), 0);
  assert.equal(stats.guilds(2), 3);
  stats.event(2, "GUILD_DELETE", enc('{"op":0,"t":"GUILD_DELETE","d":{"id":"b","unavailable":true}}'), 0);
  assert.equal(stats.guilds(2), 3, "an outage is not leaving");
  stats.event(2, "GUILD_DELETE", enc('{"op":0,"t":"GUILD_DELETE","d":{"id":"b"}}'), 0);
  assert.equal(stats.guilds(2), 2);
  assert.deepEqual([...stats.received.entries()].sort(), [
    [2, "GUILD_CREATE", 2],
    [2, "GUILD_DELETE", 2],
    [2, "READY", 1],
  ]);
});

Deno.test("reconnect reasons are few and stable (metric labels)", () => {
  assert.equal(reconnectLabel({ type: "heartbeat_due", alive: false }), "zombie");
  assert.equal(reconnectLabel({ type: "reconnect_requested" }), "op7");
  assert.equal(reconnectLabel({ type: "reconnect_requested", by: "operator" }), "operator");
  assert.equal(reconnectLabel({ type: "invalid_session", resumable: true }), "op9_resumable");
  assert.equal(reconnectLabel({ type: "invalid_session", resumable: false }), "op9");
  assert.equal(reconnectLabel({ type: "socket_closed", code: 1006, reason: "" }), "dropped");
  assert.equal(reconnectLabel({ type: "socket_closed", code: 4000, reason: "anything" }), "close_4000");
  assert.equal(reconnectLabel({ type: "connect_timeout" }), "connect_timeout");
});

/** A view whose clock and shards the test moves. */
function fakeView(shards: ShardStatus[], clock: { now: number }) {
  return {
    stats: new GatewayStats(),
    startedAt: 0,
    shardCount: shards.length,
    now: () => clock.now,
    shards: () => shards,
    sinks: () => [],
    journal: () => ({
      enabled: true,
      lastId: 0,
      sizeBytes: 0,
      pendingEvents: 0,
      commits: 0,
      failedCommits: 0,
    }),
    identify: () => ({ remaining: 1, total: 1, resetAt: 0, maxConcurrency: 1 }),
    reconnect: () => false,
    command: () => null,
  };
}

function capture() {
  const lines: string[] = [];
  const logger = {
    info: (message: string, props: Record<string, unknown>) =>
      lines.push(message.replace(/\{(\w+)\}/g, (_, k) => String(props[k]))),
  } as unknown as Logger;
  return { lines, logger };
}

Deno.test("start-up progress on a terminal: one line redrawn in place, cleared once every shard is ready", () => {
  const clock = { now: 0 };
  const shards = [0, 1, 2, 3].map((id) => shard({ id, state: "identifying", lastFrameAt: 0 }));
  const drawn: string[] = [];
  const { lines, logger } = capture();
  const progress = new StartupProgress({
    view: fakeView(shards, clock),
    maxConcurrency: 1,
    logger,
    terminal: true,
    write: (text) => drawn.push(text),
  });
  progress.start();
  try {
    clock.now = 5000;
    shards[0] = { ...shards[0], state: "ready", lastFrameAt: 5000 };
    progress.tick();
    assert.deepEqual(drawn, ["\r\x1b[Kstart-up: 1/4 shards ready, 0.2 shards/s, about 15 s left"]);
    clock.now = 20_000;
    for (let i = 1; i < 4; i++) shards[i] = { ...shards[i], state: "ready", lastFrameAt: 20_000 };
    progress.tick();
    assert.equal(drawn.at(-1), "\r\x1b[K", "the line is cleared");
    assert.deepEqual(lines, ["all 4 shard(s) ready in 20 s"]);
  } finally {
    progress.stop();
  }
});

Deno.test("start-up progress elsewhere: a log line every 5 s, nothing drawn", () => {
  const clock = { now: 0 };
  const shards = [0, 1].map((id) => shard({ id, state: "waiting", lastFrameAt: 0 }));
  const drawn: string[] = [];
  const { lines, logger } = capture();
  const progress = new StartupProgress({
    view: fakeView(shards, clock),
    maxConcurrency: 2,
    logger,
    terminal: false,
    write: (text) => drawn.push(text),
  });
  progress.start();
  try {
    for (const t of [500, 1000, 4500]) {
      clock.now = t;
      progress.tick();
    }
    assert.deepEqual(lines, []);
    clock.now = 5000;
    progress.tick();
    assert.deepEqual(lines, ["start-up: 0/2 shards ready, 0.0 shards/s, about 5 s left"]);
    clock.now = 7000;
    progress.tick();
    assert.equal(lines.length, 1);
    assert.deepEqual(drawn, []);
  } finally {
    progress.stop();
  }
});
