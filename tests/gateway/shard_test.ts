/**
 * The shard driver against the fake Discord in this process: a real socket, real timers, a sink that
 * records what it is handed. These are the behaviours that only show with a connection: what Discord
 * sends that cannot be trusted, sends under a spent budget, a pipeline that refuses an event.
 */
import assert from "node:assert/strict";
import { LocalIdentifyQueue } from "../../src/gateway/identify_queue.ts";
import { type DispatchSink, Shard, type ShardOptions } from "../../src/gateway/shard.ts";
import { systemClock } from "../../src/util/clock.ts";
import { logger } from "../../src/util/log.ts";
import { Secret } from "../../src/util/secret.ts";
import { FakeDiscord, type FakeDiscordOptions } from "../fake_discord/server.ts";

const decoder = new TextDecoder();

interface Received {
  t: string;
  s: number;
  d: unknown;
}

class RecordingSink implements DispatchSink {
  readonly events: Received[] = [];
  readonly internals: Array<{ t: string; d: Record<string, unknown> }> = [];
  /** Called before recording; throw to refuse the event. */
  refuse: ((t: string, s: number) => boolean) | null = null;

  dispatch(_shard: number, t: string, s: number, payload: Uint8Array, start: number): void {
    if (this.refuse?.(t, s)) throw new Error(`refusing ${t} ${s}`);
    const message = JSON.parse(decoder.decode(payload.subarray(start)));
    this.events.push({ t, s, d: message.d });
  }

  internal(_shard: number, t: string, d: Record<string, unknown>): void {
    this.internals.push({ t, d });
  }
}

class Counts {
  protocol = new Map<string, number>();
  reconnects: string[] = [];
}

async function withShard(
  fakeOptions: FakeDiscordOptions,
  fn: (ctx: { fake: FakeDiscord; shard: Shard; sink: RecordingSink; counts: Counts }) => Promise<void>,
  shardOptions: Partial<ShardOptions> = {},
  prepare?: (fake: FakeDiscord) => void,
): Promise<void> {
  const fake = await FakeDiscord.start({ identifyIntervalMs: 50, ...fakeOptions });
  prepare?.(fake);
  const sink = new RecordingSink();
  const counts = new Counts();
  const shard = new Shard({
    id: 0,
    count: 1,
    token: new Secret("fake-token"),
    intents: 513,
    presence: null,
    largeThreshold: 50,
    compression: "zlib-stream",
    apiVersion: 10,
    gatewayUrl: fake.gatewayUrl,
    identifyQueue: new LocalIdentifyQueue({ maxConcurrency: 1, clock: systemClock, intervalMs: 60 }),
    sink,
    logger: logger("test", "shard"),
    onFatal: (_shard, code) => {
      throw new Error(`unexpected fatal close ${code}`);
    },
    random: () => 0.5,
    observer: {
      latency() {},
      reconnect: (_shard, reason) => counts.reconnects.push(reason),
      session() {},
      sessionLost() {},
      protocolError: (_shard, kind) => counts.protocol.set(kind, (counts.protocol.get(kind) ?? 0) + 1),
    },
    ...shardOptions,
  });
  try {
    await fn({ fake, shard, sink, counts });
  } finally {
    await shard.stop(4000);
    await fake.stop();
  }
}

const readyNow = (shard: Shard) => shard.state.kind === "ready";

Deno.test("shard: heartbeats go out while commands wait for a spent send budget", async () => {
  // A 2 s interval reserves 32 of the 120 slots per minute: 88 commands go at once, the rest wait ~60 s.
  await withShard({ heartbeatIntervalMs: 2000 }, async ({ fake, shard }) => {
    shard.start();
    await fake.waitFor(() => readyNow(shard), 5000, "READY");
    for (let i = 0; i < 150; i++) {
      assert.equal(shard.send(3, { since: null, activities: [], status: "idle", afk: false }), null);
    }
    // The identify and the first heartbeat used two of the 88 slots commands may have.
    await fake.waitFor(() => fake.commands.length >= 86, 5000, "the commands the budget allows");
    const sent = fake.commands.length;
    const beatsBefore = fake.connections()[0].heartbeats;
    await new Promise((resolve) => setTimeout(resolve, 5000));
    const beats = fake.connections()[0].heartbeats - beatsBefore;
    assert.ok(beats >= 2, `only ${beats} heartbeat(s) in 5 s at a 2 s interval while commands waited`);
    assert.deepEqual(fake.violations, []);
    assert.equal(fake.commands.length, sent, "commands stay within their share of the budget");
    assert.ok(sent <= 88, `${sent} commands sent; at most 88 may be`);
    assert.equal(shard.status().queuedCommands, 150 - sent);
  });
});

Deno.test("shard: a command queue has a bound; over it a command is refused, not buffered", async () => {
  await withShard({}, ({ shard }) => {
    // Not started: nothing is sent, everything queues.
    for (let i = 0; i < 1000; i++) assert.equal(shard.send(3, { status: "idle" }), null);
    const refused = shard.send(3, { status: "idle" });
    assert.match(refused ?? "", /already has 1000 commands waiting/);
    return Promise.resolve();
  });
});

Deno.test("shard: an event the pipeline refuses is not acknowledged; the shard resumes and gets it again", async () => {
  await withShard({}, async ({ fake, shard, sink, counts }) => {
    shard.start();
    await fake.waitFor(() => readyNow(shard) && sink.events.length === 3, 5000, "READY and 2 GUILD_CREATEs");
    let refusals = 0;
    sink.refuse = (t) => t === "MESSAGE_CREATE" && refusals++ === 0;
    for (let i = 0; i < 5; i++) fake.dispatch(0, "MESSAGE_CREATE", { content: `m${i}` });
    const messages = () => sink.events.filter((e) => e.t === "MESSAGE_CREATE");
    await fake.waitFor(() => messages().length === 5, 10_000, "all five messages");
    assert.deepEqual(messages().map((e) => e.s), [4, 5, 6, 7, 8]);
    assert.deepEqual(sink.events.map((e) => e.t).slice(-1), ["RESUMED"]);
    assert.equal(counts.protocol.get("handover"), 1);
    assert.ok(fake.resumes.some((r) => r.ok && r.seq === 3), "resumed from the last event handed over");
    assert.equal(fake.identifies.length, 1);
  });
});

Deno.test("shard: a sequence number beyond 2^53 is a protocol error; later events are not lost as repeats", async () => {
  for (const s of ["99999999999999999999", "9007199254740993", "-4"]) {
    await withShard({}, async ({ fake, shard, sink, counts }) => {
      shard.start();
      await fake.waitFor(() => readyNow(shard) && sink.events.length === 3, 5000, "READY");
      fake.sendRaw(0, `{"t":"MESSAGE_CREATE","s":${s},"op":0,"d":{"content":"bad"}}`);
      await fake.waitFor(() => counts.protocol.get("bad_seq") === 1, 5000, "the protocol error");
      fake.dispatch(0, "MESSAGE_CREATE", { content: "after" });
      fake.dispatch(0, "MESSAGE_CREATE", { content: "after 2" });
      const messages = () => sink.events.filter((e) => e.t === "MESSAGE_CREATE");
      await fake.waitFor(() => messages().length === 2, 10_000, `the events after s = ${s}`);
      assert.deepEqual(messages().map((e) => e.s), [4, 5]);
      assert.ok(!sink.events.some((e) => (e.d as { content?: string }).content === "bad"));
      assert.ok(counts.reconnects.includes("protocol_error"));
      assert.equal(fake.identifies.length, 1, "the session was resumed, not replaced");
    });
  }
});

Deno.test("shard: a READY without session_id (or with d null) is refused; the shard identifies again", async () => {
  const patches: Array<(d: Record<string, unknown>) => unknown> = [
    (d) => ({ ...d, session_id: undefined }),
    () => null,
    (d) => ({ ...d, session_id: 42 }),
  ];
  for (const patch of patches) {
    await withShard(
      {},
      async ({ fake, shard, sink, counts }) => {
        shard.start();
        await fake.waitFor(() => readyNow(shard), 10_000, "a usable READY");
        assert.equal(counts.protocol.get("bad_ready"), 1);
        assert.equal(fake.identifies.length, 2);
        const ready = sink.events.filter((e) => e.t === "READY");
        assert.equal(ready.length, 1, "the bad READY is not handed over");
        assert.equal(shard.status().sessionId, fake.sessions()[1].id);
      },
      {},
      (fake) => fake.nextReadyPatches.push(patch),
    );
  }
});

Deno.test("shard: an absurd HELLO interval is refused before anything is identified", async () => {
  for (const interval of ["1", "1e400", "-5", '"41250"', "null"]) {
    await withShard(
      {},
      async ({ fake, shard, counts }) => {
        shard.start();
        await fake.waitFor(() => readyNow(shard), 10_000, "READY after a good HELLO");
        assert.equal(counts.protocol.get("bad_hello"), 1, `HELLO interval ${interval}`);
        assert.equal(fake.identifies.length, 1, "no IDENTIFY went out on the connection with the bad HELLO");
        assert.equal(fake.sessions().filter((s) => s.invalidated || s.expired).length, 0);
      },
      {},
      (fake) => fake.nextHellos.push(`{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":${interval}}}`),
    );
  }
});

Deno.test("shard: an unusable resume_gateway_url is replaced by the main URL; the next RESUME goes there", async () => {
  for (const url of ["not a url", "ws://[::1", "https://gateway.example", ""]) {
    await withShard(
      {},
      async ({ fake, shard, sink, counts }) => {
        shard.start();
        await fake.waitFor(() => readyNow(shard), 5000, "READY");
        assert.equal(counts.protocol.get("bad_resume_url"), 1);
        fake.sendReconnect(0);
        await fake.waitFor(() => fake.resumes.length === 1 && readyNow(shard), 5000, "the resume");
        assert.equal(fake.resumes[0].ok, true);
        assert.equal(fake.resumes[0].listener, "main");
        fake.dispatch(0, "MESSAGE_CREATE", { content: "after the resume" });
        await fake.waitFor(() => sink.events.some((e) => e.t === "MESSAGE_CREATE"), 5000, "an event");
      },
      {},
      (fake) => fake.nextReadyPatches.push((d) => ({ ...d, resume_gateway_url: url })),
    );
  }
});

Deno.test("shard: an operator's reconnect works only where it does something", async () => {
  await withShard({ sessionTtlMs: 60_000 }, async ({ fake, shard }) => {
    assert.equal(shard.reconnect(), false, "not started: nothing to reconnect");
    shard.start();
    await fake.waitFor(() => readyNow(shard), 5000, "READY");
    // The resume host refuses connections: the shard backs off between attempts.
    fake.setResumeHostDown(true);
    fake.dropConnection(0);
    await fake.waitFor(() => shard.state.kind === "waiting" && shard.state.attempt >= 2, 10_000, "a backoff");
    fake.setResumeHostDown(false);
    assert.equal(shard.reconnect(), true, "waiting out a backoff: connect now");
    assert.equal(shard.state.kind, "connecting");
    await fake.waitFor(() => readyNow(shard), 3000, "resumed without waiting out the backoff");
    assert.equal(shard.reconnect(), true, "live: close and resume");
  });
});

Deno.test("shard: stop says whether there was a connection and whether Discord answered the close", async () => {
  await withShard({}, async ({ shard }) => {
    assert.equal(await shard.stop(4000), "none", "never connected");
  });
  await withShard({}, async ({ fake, shard }) => {
    shard.start();
    await fake.waitFor(() => readyNow(shard), 5000, "READY");
    assert.equal(await shard.stop(4000), "clean");
    assert.deepEqual(fake.clientCloses.map((c) => c.code), [4000]);
  });
});

Deno.test("shard: a dispatch that is not valid JSON or UTF-8 is held out; a GATEHOUSE_INVALID_PAYLOAD takes its place", async () => {
  await withShard({}, async ({ fake, shard, sink, counts }) => {
    shard.start();
    await fake.waitFor(() => readyNow(shard) && sink.events.length === 3, 5000, "READY");
    const enc = new TextEncoder();
    const bad: Uint8Array[] = [
      enc.encode('{"t":"MESSAGE_CREATE","s":4,"op":0,"d":{"content":"cut short'),
      new Uint8Array([
        ...enc.encode('{"t":"MESSAGE_CREATE","s":5,"op":0,"d":{"content":"'),
        0xff,
        0xfe,
        ...enc.encode('"}}'),
      ]),
      enc.encode("not json at all"),
    ];
    for (const bytes of bad) fake.sendRaw(0, bytes);
    // The session's own next event: seq 4 in the fake's numbering, already used by the bad frame above,
    // so a 6 is what shows the seq went on past the held-out ones.
    fake.sendRaw(0, '{"t":"MESSAGE_CREATE","s":6,"op":0,"d":{"content":"fine"}}');
    await fake.waitFor(() => sink.events.some((e) => e.s === 6), 5000, "the good event after");
    const invalid = sink.internals.filter((e) => e.t === "GATEHOUSE_INVALID_PAYLOAD");
    assert.deepEqual(invalid.map((e) => [e.d.t, e.d.s]), [["MESSAGE_CREATE", 4], ["MESSAGE_CREATE", 5], [
      null,
      null,
    ]]);
    assert.match(String(invalid[0].d.problem), /unterminated string/);
    assert.match(String(invalid[1].d.problem), /invalid UTF-8/);
    for (const e of invalid) JSON.stringify(e.d); // plain data, printable as JSON
    assert.equal(counts.protocol.get("invalid_payload"), 3);
    assert.ok(!sink.events.some((e) => e.s === 4 || e.s === 5), "the invalid ones are not handed over");
    assert.equal(counts.reconnects.length, 0, "no reconnect: resuming would bring the same bytes again");
  });
});

Deno.test("shard: with a heartbeat interval too short for the send budget, one beat waits at a time and carries the current seq", async () => {
  // 200 ms: 300 beats a minute, more than the 120 sends Discord allows.
  await withShard({ heartbeatIntervalMs: 200 }, async ({ fake, shard }) => {
    shard.start();
    await fake.waitFor(() => readyNow(shard), 5000, "READY");
    fake.startTraffic(50);
    await new Promise((resolve) => setTimeout(resolve, 4000));
    fake.stopTraffic();
    const conn = fake.connections()[0];
    const seq = shard.status().seq ?? 0;
    assert.ok(
      seq - (conn.lastHeartbeatSeq ?? 0) < 50,
      `the last beat carried ${conn.lastHeartbeatSeq}, seq ${seq}`,
    );
    assert.ok(!fake.violations.some((v) => v.kind === "over_send_limit"), "never over the send limit");
  });
});

Deno.test("shard: the same protocol error at the same seq five times gives the session up for a new one", async () => {
  await withShard({ sessionTtlMs: 60_000 }, async ({ fake, shard, sink }) => {
    shard.start();
    await fake.waitFor(() => readyNow(shard) && sink.events.length === 3, 5000, "READY");
    // The pipeline refuses this event whenever Discord replays it.
    sink.refuse = (t) => t === "MESSAGE_CREATE";
    fake.dispatch(0, "MESSAGE_CREATE", { content: "never taken" });
    await fake.waitFor(() => fake.identifies.length === 2 && readyNow(shard), 20_000, "a new session");
    assert.equal(fake.resumes.filter((r) => r.ok).length, 4, "resumed four times first");
    const lost = sink.internals.filter((e) => e.t === "GATEHOUSE_SESSION_INVALIDATED");
    assert.equal(lost.length, 1);
    assert.equal(lost[0].d.last_seq, 3);
    assert.match(String(lost[0].d.reason), /kept sending what cannot be used/);
  });
});

Deno.test("shard: a READY that is not valid JSON is a protocol error, not a held-out event", async () => {
  await withShard({}, async ({ fake, shard, sink, counts }) => {
    // Discord takes the IDENTIFY and answers nothing; then a READY arrives with a byte that is not UTF-8.
    fake.stallShard(0, true);
    shard.start();
    await fake.waitFor(() => fake.identifies.length === 1, 5000, "the IDENTIFY");
    const enc = new TextEncoder();
    fake.sendRaw(
      0,
      new Uint8Array([
        ...enc.encode(
          '{"t":"READY","s":1,"op":0,"d":{"session_id":"abc","resume_gateway_url":"ws://x","user":"',
        ),
        0xff,
        ...enc.encode('"}}'),
      ]),
    );
    await fake.waitFor(() => counts.protocol.get("bad_ready") === 1, 5000, "the protocol error");
    fake.stallShard(0, false);
    await fake.waitFor(() => readyNow(shard) && fake.identifies.length === 2, 10_000, "a usable READY");
    assert.equal(counts.protocol.get("bad_ready"), 1);
    assert.equal(sink.internals.filter((e) => e.t === "GATEHOUSE_INVALID_PAYLOAD").length, 0);
    assert.equal(shard.status().sessionId, fake.sessions()[1].id);
  });
});

Deno.test("shard: a stopped shard refuses commands instead of queueing them for nobody", async () => {
  await withShard({}, async ({ fake, shard }) => {
    shard.start();
    await fake.waitFor(() => readyNow(shard), 5000, "READY");
    await shard.stop(4000);
    assert.match(shard.send(3, { status: "idle" }) ?? "", /shard 0 is stopped/);
  });
});
