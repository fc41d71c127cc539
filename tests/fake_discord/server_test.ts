/**
 * Tests of the fake Discord itself, with a bare client (Deno's `WebSocket` and `node:zlib`, see
 * test_client.ts): if the double is wrong, every integration test built on it proves nothing.
 */
import assert from "node:assert/strict";
import zlib from "node:zlib";
import { shardForGuild } from "../../src/gateway/protocol.ts";
import { TRAFFIC_EVENTS } from "./events.ts";
import { FakeDiscord, type FakeDiscordOptions } from "./server.ts";
import {
  type Client,
  type Compression,
  concat,
  connect,
  identified,
  identify,
  JsonSplitter,
} from "./test_client.ts";

const COMPRESSIONS: Compression[] = ["zlib-stream", "zstd-stream", "none"];

async function withFake(options: FakeDiscordOptions, fn: (fake: FakeDiscord) => Promise<void>) {
  const fake = await FakeDiscord.start({ identifyIntervalMs: 0, closeTimeoutMs: 200, ...options });
  try {
    await fn(fake);
  } finally {
    await fake.stop();
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const hello = (c: Client) => c.waitFor(() => c.messages.length >= 1, "HELLO");
const closedWith = async (c: Client, code: number) => {
  await c.waitFor(() => c.closed !== null, `close ${code}`);
  assert.equal(c.closed!.code, code);
  await c.done();
};
const resume = (sessionId: string, seq: number, token = "fake-token") => ({
  op: 6,
  d: { token, session_id: sessionId, seq },
});
/** Real Discord's envelope key order. */
const ENVELOPE = /^\{"t":(null|"[A-Z_]+"),"s":(null|\d+),"op":\d+,"d":/;

Deno.test("REST: /gateway/bot answers §1's JSON with a good token, 401 otherwise; /gateway needs none", async () => {
  await withFake(
    { shards: 4, maxConcurrency: 2, sessionStartLimit: { total: 2000, remaining: 7 } },
    async (fake) => {
      const base = `http://${fake.apiHost}/api`;
      const bot = (version = "v10", auth: string | null = "Bot fake-token") =>
        fetch(`${base}/${version}/gateway/bot`, { headers: auth === null ? {} : { Authorization: auth } });
      for (const version of ["v10", "v9"]) {
        const ok = await bot(version);
        assert.equal(ok.status, 200);
        assert.deepEqual(await ok.json(), {
          url: fake.gatewayUrl,
          shards: 4,
          session_start_limit: { total: 2000, remaining: 7, reset_after: 86_400_000, max_concurrency: 2 },
        });
      }
      for (const auth of ["Bot nope", "fake-token", null]) {
        const bad = await bot("v10", auth);
        assert.equal(bad.status, 401);
        assert.deepEqual(await bad.json(), { message: "401: Unauthorized", code: 0 });
      }
      const plain = await fetch(`${base}/v10/gateway`);
      assert.deepEqual(await plain.json(), { url: fake.gatewayUrl });
      const missing = await fetch(`${base}/v10/users/@me`);
      assert.equal(missing.status, 404);
      await missing.body?.cancel();
      assert.notEqual(fake.gatewayUrl, fake.resumeUrl);
      assert.match(fake.apiHost, /^127\.0\.0\.1:\d+$/);
    },
  );
});

Deno.test("REST: failRest(n, status) fails the next n /gateway/bot requests, then recovers", async () => {
  await withFake({}, async (fake) => {
    const url = `http://${fake.apiHost}/api/v10/gateway/bot`;
    const get = () => fetch(url, { headers: { Authorization: "Bot fake-token" } });
    fake.failRest(2, 503);
    for (const expected of [503, 503, 200, 200]) {
      const response = await get();
      assert.equal(response.status, expected);
      await response.body?.cancel();
    }
    fake.failRest(1);
    const failed = await get();
    assert.equal(failed.status, 502);
    await failed.body?.cancel();
  });
});

for (const compression of COMPRESSIONS) {
  Deno.test(`HELLO → IDENTIFY → READY → GUILD_CREATEs → live traffic (${compression})`, async () => {
    await withFake({ guildsPerShard: 3, shards: 2, heartbeatIntervalMs: 5000 }, async (fake) => {
      const c = connect(fake.gatewayUrl, compression);
      await hello(c);
      assert.deepEqual(c.messages[0].op, 10);
      assert.equal(c.messages[0].d.heartbeat_interval, 5000);
      assert.ok(Array.isArray(c.messages[0].d._trace));
      c.send(identify([1, 2], { large_threshold: 100, presence: { status: "idle" } }));
      await c.waitFor(() => c.dispatches().length === 4, "READY and 3 GUILD_CREATEs");
      const [ready, ...guilds] = c.dispatches();
      assert.equal(ready.t, "READY");
      assert.equal(ready.s, 1);
      assert.equal(ready.d.v, 10);
      assert.equal(ready.d.user.bot, true);
      assert.equal(ready.d.resume_gateway_url, fake.resumeUrl);
      assert.deepEqual(ready.d.shard, [1, 2]);
      assert.equal(typeof ready.d.session_id, "string");
      assert.equal(typeof ready.d.application.id, "string");
      assert.ok(Array.isArray(ready.d._trace));
      assert.deepEqual(ready.d.guilds, guilds.map((g) => ({ unavailable: true, id: g.d.id })));
      assert.deepEqual(guilds.map((g) => [g.t, g.s]), [["GUILD_CREATE", 2], ["GUILD_CREATE", 3], [
        "GUILD_CREATE",
        4,
      ]]);
      for (const g of guilds) assert.equal(shardForGuild(g.d.id, 2), 1);
      assert.deepEqual(fake.identifies.map((i) => [i.shard, i.count, i.intents, i.largeThreshold]), [[
        1,
        2,
        513,
        100,
      ]]);
      assert.deepEqual(fake.identifies[0].presence, { status: "idle" });
      assert.equal(fake.sessionStartRemaining, 999);

      fake.burst(1, 40);
      await c.waitFor(() => c.dispatches().length === 44, "burst");
      assert.deepEqual(c.dispatches().map((m) => m.s), Array.from({ length: 44 }, (_, i) => i + 1));
      assert.deepEqual(new Set(c.dispatches().slice(4).map((m) => m.t)), new Set(TRAFFIC_EVENTS));
      for (const m of c.dispatches().slice(4)) assert.equal(shardForGuild(m.d.guild_id, 2), 1);
      assert.equal(fake.dispatch(1, "CUSTOM_EVENT", { x: 1 }), 45);
      await c.waitFor(() => c.dispatches().length === 45, "dispatch");
      assert.deepEqual(c.dispatches()[44], { t: "CUSTOM_EVENT", s: 45, op: 0, d: { x: 1 } });

      c.send({ op: 1, d: 45 });
      await c.waitFor(() => c.messages.some((m) => m.op === 11), "ACK");
      assert.equal(fake.connections()[0].lastHeartbeatSeq, 45);
      assert.equal(fake.connections()[0].heartbeats, 1);
      assert.equal(fake.connections()[0].compression, compression);
      for (const text of c.texts) assert.match(text.slice(0, 60), ENVELOPE);
      if (compression === "zlib-stream") {
        assert.equal(c.suffixes, c.raw, "every payload ends with 00 00 ff ff");
      }
      if (compression !== "none") assert.equal(c.raw, c.messages.length, "one WebSocket message per payload");
      await c.close();
      assert.deepEqual(fake.violations, []);
      assert.deepEqual(fake.clientCloses.map((x) => [x.shard, x.code]), [[1, 4000]]);
      const stats = fake.stats();
      assert.equal(stats.eventsSent, 45);
      assert.equal(stats.perShardLastSeq[1], 45);
      assert.ok(stats.bytesSent > 1000, "bytes of closed connections still count");
    });
  });
}

Deno.test("zlib-stream payloads split over 2–3 WebSocket messages still decode", async () => {
  await withFake({}, async (fake) => {
    const c = connect(fake.gatewayUrl, "zlib-stream");
    await hello(c);
    fake.setSplitMessages(true);
    c.send(identify());
    await c.waitFor(() => c.dispatches().length === 3, "READY + guilds");
    fake.burst(0, 20);
    fake.startFlood();
    await c.waitFor(() => c.dispatches().length > 300, "flood, split");
    fake.stopFlood();
    fake.setSplitMessages(false);
    fake.burst(0, 1);
    const last = fake.stats().perShardLastSeq[0];
    await c.waitFor(() => c.dispatches().at(-1)?.s === last, "last event");
    assert.deepEqual(c.dispatches().map((m) => m.s), Array.from({ length: last }, (_, i) => i + 1));
    assert.ok(
      c.raw >= 2 * (c.messages.length - 1),
      `${c.raw} WebSocket messages for ${c.messages.length} payloads`,
    );
    assert.equal(c.suffixes, c.messages.length, "the suffix only ends a payload's last part");
    await c.close();
  });
});

Deno.test("a large guild makes a GUILD_CREATE of hundreds of KB", async () => {
  await withFake({ largeGuildMembers: 1000 }, async (fake) => {
    const c = await identified(fake.gatewayUrl, "zlib-stream");
    const [large, small] = c.dispatches().slice(1);
    assert.equal(large.d.large, true);
    assert.equal(large.d.member_count, 1000);
    assert.equal(large.d.members.length, 1000);
    assert.ok(large.d.presences.length > 0);
    assert.ok(JSON.stringify(large).length > 300_000);
    assert.equal(small.d.large, false);
    await c.close();
  });
});

for (const compression of COMPRESSIONS) {
  Deno.test(`RESUME on the resume URL replays exactly the missed events, then RESUMED (${compression})`, async () => {
    await withFake({}, async (fake) => {
      const a = await identified(fake.gatewayUrl, compression);
      fake.burst(0, 5);
      await a.waitFor(() => a.dispatches().length === 8, "burst");
      const sessionId = a.dispatches()[0].d.session_id;
      await a.close(4000);
      assert.equal(fake.sessions()[0].connected, false);
      fake.burst(0, 4); // while disconnected: buffered
      const b = connect(fake.resumeUrl, compression);
      await hello(b);
      b.send(resume(sessionId, 6)); // the client missed 7 and 8 too
      await b.waitFor(() => b.dispatches().some((m) => m.t === "RESUMED"), "RESUMED");
      assert.deepEqual(b.dispatches().map((m) => [m.s, m.t === "RESUMED"]), [
        [7, false],
        [8, false],
        [9, false],
        [10, false],
        [11, false],
        [12, false],
        [13, true],
      ]);
      assert.deepEqual(b.dispatches().slice(0, 2), a.dispatches().slice(6, 8), "the same events again");
      fake.burst(0, 1);
      await b.waitFor(() => b.dispatches().at(-1)?.s === 14, "live after RESUMED");
      assert.deepEqual(fake.resumes.map((r) => [r.shard, r.sessionId, r.seq, r.listener, r.ok]), [
        [0, sessionId, 6, "resume", true],
      ]);
      assert.deepEqual(fake.violations, []);
      const [session] = fake.sessions();
      assert.equal(session.lastSeq, 14);
      assert.equal(session.connected, true);
      assert.deepEqual(session.events.map((e) => e.s), Array.from({ length: 14 }, (_, i) => i + 1));
      assert.equal(session.events[12].t, "RESUMED");
      assert.equal(fake.sessionStartRemaining, 999, "a RESUME is no session start");
      await b.close();
    });
  });
}

Deno.test("RESUME on the main URL is a violation while the resume host is up, and still served", async () => {
  await withFake({}, async (fake) => {
    const a = await identified(fake.gatewayUrl);
    const sessionId = a.dispatches()[0].d.session_id;
    await a.close(4000);
    const b = connect(fake.gatewayUrl);
    await hello(b);
    b.send(resume(sessionId, 3));
    await b.waitFor(() => b.dispatches().some((m) => m.t === "RESUMED"), "RESUMED");
    assert.deepEqual(fake.violations.map((v) => [v.kind, v.shard]), [["resume_wrong_url", 0]]);
    assert.equal(fake.resumes[0].listener, "main");
    // With the resume host down, falling back to the main URL is right.
    fake.setResumeHostDown(true);
    await b.close(4000);
    const c = connect(fake.gatewayUrl);
    await hello(c);
    c.send(resume(sessionId, 4));
    await c.waitFor(() => c.dispatches().some((m) => m.t === "RESUMED"), "RESUMED");
    assert.equal(fake.violations.length, 1);
    await c.close();
  });
});

Deno.test("unknown, expired or closed-with-1000 sessions → op 9 false", async () => {
  await withFake({ sessionTtlMs: 150 }, async (fake) => {
    const unknown = connect(fake.resumeUrl);
    await hello(unknown);
    unknown.send(resume("nope", 1));
    await unknown.waitFor(() => unknown.messages.some((m) => m.op === 9), "op 9");
    assert.equal(unknown.messages.find((m) => m.op === 9)!.d, false);
    assert.equal(unknown.closed, null, "op 9 does not close the socket");
    await unknown.close();

    // A client close with 1000 ends the session at once.
    const a = await identified(fake.gatewayUrl);
    await a.close(1000);
    assert.equal(fake.sessions()[0].expired, true);
    const b = connect(fake.resumeUrl);
    await hello(b);
    b.send(resume(a.dispatches()[0].d.session_id, 3));
    await b.waitFor(() => b.messages.some((m) => m.op === 9), "op 9");
    assert.equal(b.messages.find((m) => m.op === 9)!.d, false);
    await b.close();

    // Any other close keeps it resumable for sessionTtlMs.
    const c = await identified(fake.gatewayUrl);
    await c.close(4000);
    assert.equal(fake.sessions()[1].expired, false);
    await fake.waitFor(() => fake.sessions()[1].expired, 1000, "expiry");
    const d = connect(fake.resumeUrl);
    await hello(d);
    d.send(resume(c.dispatches()[0].d.session_id, 3));
    await d.waitFor(() => d.messages.some((m) => m.op === 9), "op 9");
    await d.close();
    assert.deepEqual(fake.resumes.map((r) => r.ok), [false, false, false]);
    assert.deepEqual(fake.clientCloses.map((x) => x.code), [4000, 1000, 4000, 4000, 4000]);
    assert.throws(() => fake.dispatch(0, "X", {}), /no live or resumable session/);
  });
});

Deno.test("a server close 1000 keeps the session resumable; the client's answer is not a client close", async () => {
  await withFake({}, async (fake) => {
    const a = await identified(fake.gatewayUrl);
    fake.closeWith(0, 1000, "bye");
    await closedWith(a, 1000);
    assert.equal(a.closed!.reason, "bye");
    assert.deepEqual(fake.clientCloses, []);
    const [session] = fake.sessions();
    assert.equal(session.expired || session.invalidated, false);
    const b = connect(fake.resumeUrl);
    await hello(b);
    b.send(resume(session.id, 3));
    await b.waitFor(() => b.dispatches().some((m) => m.t === "RESUMED"), "RESUMED");
    await b.close();
  });
});

Deno.test("a seq older than the replay buffer (or newer than the session) → close 4007, session gone", async () => {
  await withFake({ replayBufferSize: 5 }, async (fake) => {
    const a = await identified(fake.gatewayUrl);
    const sessionId = a.dispatches()[0].d.session_id;
    await a.close(4000);
    fake.burst(0, 200); // trimmed in bulk, to replayBufferSize
    const b = connect(fake.resumeUrl);
    await hello(b);
    b.send(resume(sessionId, 3));
    await closedWith(b, 4007);
    assert.equal(fake.sessions()[0].invalidated, true);

    const c = await identified(fake.gatewayUrl);
    await c.close(4000);
    const d = connect(fake.resumeUrl);
    await hello(d);
    d.send(resume(c.dispatches()[0].d.session_id, 99));
    await closedWith(d, 4007);
    assert.deepEqual(fake.resumes.map((r) => r.ok), [false, false]);
  });
});

const CLOSE_CHECKS: Array<{
  what: string;
  code: number;
  act: (c: Client) => void;
  violation?: string;
  options?: FakeDiscordOptions;
}> = [
  { what: "unknown op", code: 4001, act: (c) => c.send({ op: 5, d: null }), violation: "unknown_op" },
  {
    what: "op that is not a number",
    code: 4001,
    act: (c) => c.send({ op: "1", d: null }),
    violation: "unknown_op",
  },
  { what: "invalid JSON", code: 4002, act: (c) => c.send("{not json"), violation: "invalid_json" },
  { what: "JSON that is not an object", code: 4002, act: (c) => c.send("[1,2]"), violation: "invalid_json" },
  {
    what: "payload over 4096 bytes",
    code: 4002,
    act: (c) => c.send({ op: 1, d: null, pad: "x".repeat(4096) }),
    violation: "payload_too_large",
  },
  {
    what: "payload before identify",
    code: 4003,
    act: (c) => c.send({ op: 3, d: { status: "online" } }),
    violation: "payload_before_identify",
  },
  { what: "bad token", code: 4004, act: (c) => c.send(identify([0, 1], { token: "wrong" })) },
  { what: "bad token on RESUME", code: 4004, act: (c) => c.send(resume("x", 1, "wrong")) },
  { what: "IDENTIFY without d", code: 4004, act: (c) => c.send({ op: 2, d: null }) },
  { what: "shard id out of range", code: 4010, act: (c) => c.send(identify([2, 2])) },
  { what: "malformed shard", code: 4010, act: (c) => c.send(identify([0, 1], { shard: [0] })) },
  {
    what: "sharding required",
    code: 4011,
    act: (c) => c.send(identify([0, 1])),
    options: { shards: 4, guildsPerShard: 1000, maxGuildsPerShard: 2500 },
  },
  { what: "undefined intent bit", code: 4013, act: (c) => c.send(identify([0, 1], { intents: 1 << 17 })) },
  { what: "missing intents", code: 4013, act: (c) => c.send(identify([0, 1], { intents: undefined })) },
  {
    what: "privileged intent not enabled",
    code: 4014,
    act: (c) => c.send(identify([0, 1], { intents: 513 | (1 << 15) })),
    options: { enabledPrivilegedIntents: 1 << 8 },
  },
];

for (const { what, code, act, violation, options } of CLOSE_CHECKS) {
  Deno.test(`close ${code}: ${what}`, async () => {
    await withFake(options ?? {}, async (fake) => {
      const c = connect(fake.gatewayUrl);
      await hello(c);
      act(c);
      await closedWith(c, code);
      assert.deepEqual(fake.violations.map((v) => v.kind), violation ? [violation] : []);
      // The fake ends the connection once the client's answer arrives, maybe after the client saw it closed.
      await fake.waitFor(() => fake.connections().length === 0, 2000, "the connection ended");
      assert.deepEqual(fake.clientCloses, [], "the client's answer to a server close is not a client close");
    });
  });
}

Deno.test("close 4012: a missing or unsupported API version; v9 is accepted", async () => {
  await withFake({}, async (fake) => {
    for (const query of ["v=6&encoding=json", "encoding=json", "v=11&encoding=json"]) {
      const c = connect(fake.gatewayUrl, "none", { query });
      await closedWith(c, 4012);
      assert.equal(c.messages.length, 0);
    }
    const ok = connect(fake.gatewayUrl, "none", { query: "v=9&encoding=json" });
    await hello(ok);
    await ok.close();
  });
});

Deno.test("close 4005: a second IDENTIFY (or a RESUME) on an authenticated connection", async () => {
  await withFake({}, async (fake) => {
    const c = await identified(fake.gatewayUrl);
    c.send(identify());
    await closedWith(c, 4005);
    const d = await identified(fake.gatewayUrl);
    d.send(resume(d.dispatches()[0].d.session_id, 3));
    await closedWith(d, 4005);
    assert.deepEqual(fake.violations.map((v) => v.kind), ["second_identify", "second_identify"]);
    assert.equal(fake.sessions()[0].invalidated, false, "4005 leaves the session resumable");
  });
});

Deno.test("close 4008: more than 120 payloads in 60 s on one connection (heartbeats count)", async () => {
  await withFake({}, async (fake) => {
    const ok = connect(fake.gatewayUrl);
    await hello(ok);
    for (let i = 0; i < 120; i++) ok.send({ op: 1, d: null });
    await ok.waitFor(() => ok.messages.filter((m) => m.op === 11).length === 120, "120 ACKs");
    const c = connect(fake.gatewayUrl);
    await hello(c);
    for (let i = 0; i < 130; i++) c.send({ op: 1, d: null });
    await closedWith(c, 4008);
    assert.deepEqual(fake.violations.map((v) => v.kind), ["over_send_limit"], "recorded once");
    await ok.close();
  });
});

Deno.test("identify spacing per bucket, measured from the last accepted IDENTIFY: too early → op 9 false", async () => {
  await withFake({ shards: 4, maxConcurrency: 2, identifyIntervalMs: 400 }, async (fake) => {
    const c0 = await identified(fake.gatewayUrl, "none", [0, 4]);
    const c1 = await identified(fake.gatewayUrl, "none", [1, 4]); // bucket 1: free
    const c2 = connect(fake.gatewayUrl);
    await hello(c2);
    await sleep(150);
    c2.send(identify([2, 4])); // bucket 0 again, ~150 ms after shard 0
    await c2.waitFor(() => c2.messages.some((m) => m.op === 9), "op 9");
    assert.equal(c2.messages.find((m) => m.op === 9)!.d, false);
    assert.equal(c2.closed, null);
    // 300 ms after the rejected one but 450 ms after the accepted one: fine, on the same socket.
    await sleep(300);
    c2.send(identify([2, 4]));
    await c2.waitFor(() => c2.dispatches().length === 3, "READY");
    assert.deepEqual(fake.violations.map((v) => [v.kind, v.shard]), [["identify_too_early", 2]]);
    assert.deepEqual(fake.identifies.map((i) => i.shard), [0, 1, 2]);
    assert.equal(fake.sessionStartRemaining, 997);
    for (const c of [c0, c1, c2]) await c.close();
  });
});

Deno.test("identify buckets are one per bot: checked across every connection, on both listeners", async () => {
  await withFake({ shards: 4, maxConcurrency: 2, identifyIntervalMs: 400 }, async (fake) => {
    // Four connections as four processes would open them, two on the resume host.
    const clients = [fake.gatewayUrl, fake.resumeUrl, fake.gatewayUrl, fake.resumeUrl].map((url) =>
      connect(url)
    );
    for (const c of clients) await hello(c);
    const answered = (c: Client) =>
      c.waitFor(() => c.messages.some((m) => m.op === 9 || m.t === "READY"), "answer");
    // Shards 0 and 1 first (their order at the fake is then known), 2 and 3 right after.
    for (const shard of [0, 1]) clients[shard].send(identify([shard, 4]));
    for (const c of clients.slice(0, 2)) await answered(c);
    for (const shard of [2, 3]) clients[shard].send(identify([shard, 4]));
    for (const c of clients.slice(2)) await answered(c);
    assert.deepEqual(
      fake.violations.map((v) => [v.kind, v.shard]).sort(),
      [["identify_too_early", 2], ["identify_too_early", 3]],
      "shard 2 shares bucket 0 with shard 0, shard 3 bucket 1 with shard 1",
    );
    assert.deepEqual(fake.identifies.map((i) => i.shard).sort(), [0, 1]);
    for (const c of clients) await c.close();
  });
});

Deno.test("session start counter: visible in /gateway/bot; IDENTIFY at 0 → op 9 false and a violation", async () => {
  await withFake({ sessionStartLimit: { total: 1000, remaining: 1 } }, async (fake) => {
    const a = await identified(fake.gatewayUrl);
    assert.equal(fake.sessionStartRemaining, 0);
    const response = await fetch(`http://${fake.apiHost}/api/v10/gateway/bot`, {
      headers: { Authorization: "Bot fake-token" },
    });
    assert.equal((await response.json()).session_start_limit.remaining, 0);
    const b = connect(fake.gatewayUrl);
    await hello(b);
    b.send(identify());
    await b.waitFor(() => b.messages.some((m) => m.op === 9), "op 9");
    assert.deepEqual(fake.violations.map((v) => v.kind), ["session_start_limit_exhausted"]);
    assert.equal(fake.sessions().length, 1);
    await a.close();
    await b.close();
  });
});

Deno.test("op 7: the client may close and resume; if it does not, TCP is cut after reconnectCloseMs", async () => {
  await withFake({ reconnectCloseMs: 100 }, async (fake) => {
    const polite = await identified(fake.gatewayUrl, "zlib-stream", [0, 1], 2, {
      onMessage: (m, c) => m.op === 7 && c.close(4000),
    });
    fake.sendReconnect(0);
    await polite.done();
    assert.deepEqual(fake.clientCloses.map((x) => x.code), [4000]);
    assert.equal(polite.messages.at(-1)!.op, 7);
    assert.equal(polite.texts.at(-1), '{"t":null,"s":null,"op":7,"d":null}');

    const b = connect(fake.resumeUrl);
    await hello(b);
    b.send(resume(fake.sessions()[0].id, 3));
    await b.waitFor(() => b.dispatches().some((m) => m.t === "RESUMED"), "RESUMED");
    fake.sendReconnect(0);
    await b.waitFor(() => b.closed !== null, "cut after op 7");
    assert.ok([0, 1006].includes(b.closed!.code), `no close frame: ${b.closed!.code}`);
    await b.done();
    assert.equal(fake.sessions()[0].invalidated, false);
  });
});

Deno.test("op 9 true: RESUME on the same socket replays what came meanwhile (no wrong-URL violation)", async () => {
  await withFake({}, async (fake) => {
    const c = await identified(fake.gatewayUrl);
    fake.invalidateSession(0, true);
    await c.waitFor(() => c.messages.some((m) => m.op === 9 && m.d === true), "op 9 true");
    fake.burst(0, 2); // buffered: the session has no connection now
    c.send({ op: 3, d: { status: "online", since: null, activities: [], afk: false } });
    await closedWith(c, 4003); // unauthenticated again

    const d = await identified(fake.gatewayUrl);
    fake.invalidateSession(0, true);
    await d.waitFor(() => d.messages.some((m) => m.op === 9), "op 9");
    fake.burst(0, 2);
    d.send(resume(fake.sessions()[1].id, 3));
    await d.waitFor(() => d.dispatches().some((m) => m.t === "RESUMED"), "RESUMED");
    assert.deepEqual(d.dispatches().map((m) => m.s), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(fake.violations.map((v) => v.kind), ["payload_before_identify"]);
    await d.close();
  });
});

Deno.test("op 9 false: the session is destroyed; a new IDENTIFY on the same socket starts a new one at s=1", async () => {
  await withFake({}, async (fake) => {
    const c = await identified(fake.gatewayUrl, "zstd-stream");
    fake.invalidateSession(0, false);
    await c.waitFor(() => c.messages.some((m) => m.op === 9 && m.d === false), "op 9 false");
    assert.equal(fake.sessions()[0].invalidated, true);
    c.send(identify());
    await c.waitFor(() => c.dispatches().length === 6, "new READY");
    assert.deepEqual(c.dispatches().map((m) => m.s), [1, 2, 3, 1, 2, 3]);
    assert.notEqual(c.dispatches()[3].d.session_id, c.dispatches()[0].d.session_id);
    assert.deepEqual(fake.violations, []);
    await c.close();
  });
});

Deno.test("op 1 on demand; a stalled connection gets nothing, not even ACKs, until unstalled", async () => {
  await withFake({}, async (fake) => {
    const c = await identified(fake.gatewayUrl, "zlib-stream");
    fake.requestHeartbeat(0);
    await c.waitFor(() => c.messages.some((m) => m.op === 1), "op 1");
    assert.equal(c.texts.at(-1), '{"t":null,"s":null,"op":1,"d":null}');
    fake.stall(0, true);
    assert.equal(fake.connections()[0].stalled, true);
    fake.burst(0, 3);
    c.send({ op: 1, d: 3 });
    await fake.waitFor(() => fake.connections()[0].heartbeats === 1, 1000, "heartbeat read");
    await sleep(50);
    assert.equal(c.dispatches().length, 3, "nothing arrives while stalled");
    assert.ok(!c.messages.some((m) => m.op === 11), "no ACK while stalled");
    fake.stall(0, false);
    await c.waitFor(() => c.dispatches().length === 6, "buffered events after unstall");
    c.send({ op: 1, d: 6 });
    await c.waitFor(() => c.messages.some((m) => m.op === 11), "ACK");
    assert.equal(c.texts.at(-1), '{"t":null,"s":null,"op":11,"d":null}');
    await c.close();
  });
});

Deno.test("a RESUME takes a session over from a connection that is still open (a zombie), which is cut", async () => {
  await withFake({}, async (fake) => {
    const zombie = await identified(fake.gatewayUrl);
    fake.stall(0, true);
    fake.burst(0, 2);
    const fresh = connect(fake.resumeUrl);
    await hello(fresh);
    fresh.send(resume(fake.sessions()[0].id, 3));
    await fresh.waitFor(() => fresh.dispatches().some((m) => m.t === "RESUMED"), "RESUMED");
    assert.deepEqual(fresh.dispatches().map((m) => m.s), [4, 5, 6]);
    await zombie.waitFor(() => zombie.closed !== null, "zombie cut");
    await zombie.done();
    assert.equal(fake.connections().length, 1);
    assert.equal(fake.sessions()[0].connected, true);
    fake.burst(0, 1);
    await fresh.waitFor(() => fresh.dispatches().at(-1)?.s === 7, "live");
    await fresh.close();
  });
});

Deno.test("dropConnection cuts TCP without a close frame; the session stays resumable", async () => {
  await withFake({}, async (fake) => {
    const c = await identified(fake.gatewayUrl, "zlib-stream");
    fake.dropConnection(0);
    await c.waitFor(() => c.closed !== null, "drop");
    // No close frame: an abnormal closure (Deno's client reports it as 0 rather than 1006).
    assert.ok([0, 1006].includes(c.closed!.code), String(c.closed!.code));
    await c.done();
    assert.deepEqual(fake.clientCloses, []);
    const [session] = fake.sessions();
    assert.equal(session.invalidated || session.expired, false);
    const d = connect(fake.resumeUrl, "zlib-stream");
    await hello(d);
    d.send(resume(session.id, 3));
    await d.waitFor(() => d.dispatches().some((m) => m.t === "RESUMED"), "RESUMED");
    await d.close();
  });
});

Deno.test("closeWith: 4000 keeps the session, 4009 and the fatal codes end it", async () => {
  await withFake({ shards: 2, maxConcurrency: 2 }, async (fake) => {
    const a = await identified(fake.gatewayUrl, "none", [0, 2]);
    const b = await identified(fake.gatewayUrl, "none", [1, 2]);
    fake.closeWith(0, 4000, "unknown error");
    fake.closeWith(1, 4009, "Session timed out.");
    await closedWith(a, 4000);
    await closedWith(b, 4009);
    assert.equal(b.closed!.reason, "Session timed out.");
    assert.deepEqual(fake.sessions().map((s) => s.invalidated), [false, true]);
  });
});

Deno.test("a dead resume host accepts TCP and closes it at once", async () => {
  await withFake({}, async (fake) => {
    fake.setResumeHostDown(true);
    const c = connect(fake.resumeUrl);
    await c.waitFor(() => c.closed !== null, "refused");
    await c.done();
    assert.equal(c.messages.length, 0);
    fake.setResumeHostDown(false);
    const d = connect(fake.resumeUrl);
    await hello(d);
    await d.close();
  });
});

Deno.test("missed heartbeats are recorded (not closed); a client that beats in time has none", async () => {
  await withFake({ heartbeatIntervalMs: 100 }, async (fake) => {
    const silent = connect(fake.gatewayUrl);
    const beating = connect(fake.gatewayUrl);
    await hello(silent);
    await hello(beating);
    const timer = setInterval(() => beating.send({ op: 1, d: null }), 100);
    try {
      await fake.waitFor(() => fake.violations.length > 0, 3000, "missed heartbeat");
      await sleep(200);
    } finally {
      clearInterval(timer);
    }
    assert.deepEqual(fake.violations.map((v) => v.kind), ["missed_heartbeat"]);
    assert.equal(silent.closed, null);
    assert.ok(fake.connections().some((c) => c.heartbeats >= 10));
    await silent.close();
    await beating.close();
  });
});

Deno.test("commands are recorded; op 8, 31 and 43 get their replies", async () => {
  await withFake({ largeGuildMembers: 1500 }, async (fake) => {
    const c = await identified(fake.gatewayUrl);
    const guildId = c.dispatches()[1].d.id;
    c.send({ op: 8, d: { guild_id: guildId, query: "", limit: 0, nonce: "all" } });
    c.send({ op: 8, d: { guild_id: guildId, user_ids: ["900000000000000007", "1"], nonce: "ids" } });
    c.send({ op: 3, d: { since: null, activities: [], status: "dnd", afk: false } });
    c.send({ op: 31, d: { guild_ids: [guildId] } });
    c.send({ op: 43, d: { guild_id: guildId, fields: ["status"] } });
    c.send({ op: 4, d: { guild_id: guildId, channel_id: null, self_mute: false, self_deaf: false } });
    await c.waitFor(() => c.dispatches().some((m) => m.t === "CHANNEL_INFO"), "replies");
    const chunks = c.dispatches().filter((m) => m.t === "GUILD_MEMBERS_CHUNK");
    const all = chunks.filter((m) => m.d.nonce === "all");
    assert.deepEqual(all.map((m) => [m.d.chunk_index, m.d.chunk_count, m.d.members.length]), [[0, 2, 1000], [
      1,
      2,
      500,
    ]]);
    const ids = chunks.find((m) => m.d.nonce === "ids")!;
    assert.deepEqual(ids.d.members.map((m: { user: { id: string } }) => m.user.id), ["900000000000000007"]);
    assert.deepEqual(ids.d.not_found, ["1"]);
    assert.equal(c.dispatches().find((m) => m.t === "SOUNDBOARD_SOUNDS")!.d.guild_id, guildId);
    assert.deepEqual(fake.commands.map((x) => [x.shard, x.op]), [[0, 8], [0, 8], [0, 3], [0, 31], [0, 43], [
      0,
      4,
    ]]);
    assert.deepEqual(fake.violations, []);
    await c.close();
  });
});

for (
  const [compression, precompressed] of [
    ["zlib-stream", false],
    ["zlib-stream", true],
    ["zstd-stream", false],
    ["none", false],
  ] as const
) {
  Deno.test(`flood: decodes in order (${compression}${precompressed ? ", precompressed" : ""})`, async () => {
    await withFake({ precompressed }, async (fake) => {
      const c = await identified(fake.gatewayUrl, compression, [0, 1], 2, { keepRaw: true });
      fake.burst(0, 3);
      fake.startFlood();
      await c.waitFor(() => c.dispatches().length > 5000, "flood", 10_000);
      fake.stopFlood();
      fake.burst(0, 30); // live events after the flood use the same stream
      const last = fake.stats().perShardLastSeq[0];
      await c.waitFor(() => c.dispatches().at(-1)?.s === last, "the last event");
      const seqs = c.dispatches().map((m) => m.s);
      assert.deepEqual(seqs, seqs.map((_, i) => i + 1));
      assert.ok(c.dispatches().slice(3).every((m) => typeof m.d.guild_id === "string"));
      for (const text of c.texts) assert.match(text.slice(0, 60), ENVELOPE);
      if (compression === "zlib-stream") {
        // One inflate over the whole connection's bytes gives the same payloads: one valid zlib stream.
        const whole = zlib.inflateSync(concat(c.rawMessages), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
        const texts: string[] = [];
        new JsonSplitter().push(new Uint8Array(whole), (json) => texts.push(new TextDecoder().decode(json)));
        assert.deepEqual(texts, c.texts);
        assert.equal(c.suffixes, c.raw);
      }
      assert.equal(fake.sessions()[0].events.length, last);
      await c.close();
    });
  });
}

Deno.test("flood: only the chosen shards; memory stays bounded (old events leave the replay buffer)", async () => {
  await withFake(
    { shards: 2, maxConcurrency: 2, replayBufferSize: 1000, recordEvents: false },
    async (fake) => {
      const a = await identified(fake.gatewayUrl, "zlib-stream", [0, 2]);
      const b = await identified(fake.gatewayUrl, "zlib-stream", [1, 2]);
      fake.startFlood({ shards: [1] });
      await b.waitFor(() => b.dispatches().length > 5000, "flood on shard 1");
      fake.stopFlood();
      assert.equal(a.dispatches().length, 3);
      assert.deepEqual(fake.sessions()[1].events, [], "recordEvents: false");
      await b.close(4000);
      const c = connect(fake.resumeUrl, "zlib-stream");
      await hello(c);
      c.send(resume(fake.sessions()[1].id, 3));
      await closedWith(c, 4007);
      await a.close();
    },
  );
});

Deno.test("paced traffic reaches every live session at about the asked rate", async () => {
  await withFake({ shards: 2, maxConcurrency: 2 }, async (fake) => {
    const a = await identified(fake.gatewayUrl, "zlib-stream", [0, 2]);
    const b = await identified(fake.gatewayUrl, "none", [1, 2]);
    const started = Date.now();
    fake.startTraffic(500);
    await a.waitFor(() => a.dispatches().length > 103 && b.dispatches().length > 103, "traffic");
    fake.stopTraffic();
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 150, `100 events at 500/s took ${elapsed} ms`);
    for (const c of [a, b]) {
      const seqs = c.dispatches().map((m) => m.s);
      assert.deepEqual(seqs, seqs.map((_, i) => i + 1));
    }
    await a.close();
    await b.close();
  });
});

Deno.test("stop() during a flood, paced traffic and open connections leaks nothing", async () => {
  const fake = await FakeDiscord.start({ identifyIntervalMs: 0, sessionTtlMs: 60_000 });
  const a = await identified(fake.gatewayUrl, "zlib-stream");
  const b = connect(fake.resumeUrl, "zstd-stream");
  await hello(b);
  fake.startTraffic(100);
  fake.startFlood();
  fake.sendReconnect(0);
  await a.waitFor(() => a.dispatches().length > 100, "flood");
  await fake.stop();
  await a.done();
  await b.done();
  assert.equal(fake.connections().length, 0);
});

for (const compression of ["zlib-stream", "none"] as const) {
  Deno.test(`stampSendTime: flood and paced dispatches carry d.sent_at, the send time in ms (${compression})`, async () => {
    await withFake({ precompressed: true, stampSendTime: true }, async (fake) => {
      const c = await identified(fake.gatewayUrl, compression);
      const before = performance.timeOrigin + performance.now();
      fake.startFlood();
      await c.waitFor(() => c.dispatches().length > 300, "flood");
      fake.stopFlood();
      const flooded = c.dispatches().length;
      fake.startTraffic(1000);
      await c.waitFor(() => c.dispatches().length > flooded + 20, "paced traffic");
      fake.stopTraffic();
      const after = performance.timeOrigin + performance.now();
      const events = c.dispatches().slice(3);
      for (const m of events) {
        assert.equal(typeof m.d.sent_at, "number", `s ${m.s}: ${JSON.stringify(m.d).slice(0, 80)}`);
        assert.ok(m.d.sent_at >= before - 1 && m.d.sent_at <= after + 1, `s ${m.s}: ${m.d.sent_at}`);
        assert.equal(typeof m.d.guild_id, "string", "the body follows the stamp");
      }
      const stamps = events.map((m) => m.d.sent_at);
      assert.ok(stamps.some((x) => !Number.isInteger(x)), "sub-millisecond stamps");
      assert.deepEqual(stamps, [...stamps].sort((a, b) => a - b), "stamps rise with s");
      await c.close();
    });
  });
}

Deno.test("without stampSendTime, flood dispatches carry no sent_at", async () => {
  await withFake({ precompressed: true }, async (fake) => {
    const c = await identified(fake.gatewayUrl, "zlib-stream");
    fake.startFlood();
    await c.waitFor(() => c.dispatches().length > 100, "flood");
    fake.stopFlood();
    assert.ok(c.dispatches().every((m) => !("sent_at" in m.d)));
    await c.close();
  });
});
