/**
 * `Shard` on an in-memory socket and a manual clock: the driver's own behaviour (heartbeats, zombie
 * detection, resume or identify, repeated seqs, fatal closes, backpressure) without a network or a real
 * timer. The fake socket records what the shard writes; the test plays Discord's side.
 */
import assert from "node:assert/strict";
import type { ConnectSocket, GatewaySocket } from "../../src/gateway/gateway_socket.ts";
import type { IdentifyQueue } from "../../src/gateway/identify_queue.ts";
import { type DispatchSink, type ResumableSession, Shard } from "../../src/gateway/shard.ts";
import { WS_CLOSED, WS_CONNECTING, WS_OPEN, type WsHandlers } from "../../src/gateway/ws_client.ts";
import { ManualClock } from "../../src/util/clock.ts";
import { logger } from "../../src/util/log.ts";
import { Secret } from "../../src/util/secret.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const INTERVAL = 1000;
const MAIN_URL = "wss://main.example";
const RESUME_URL = "wss://resume.example";

class FakeSocket implements GatewaySocket {
  readyState = WS_CONNECTING;
  closedCleanly = false;
  paused = false;
  /** Every text the shard wrote, parsed. */
  readonly sent: Array<{ op: number; d: unknown }> = [];
  /** The code the shard closed with (null: it did not close this socket). */
  closedWith: number | null = null;

  constructor(readonly url: string, readonly handlers: WsHandlers) {}

  send(text: string, onWritten?: () => void): void {
    if (this.readyState !== WS_OPEN) return;
    this.sent.push(JSON.parse(text));
    onWritten?.();
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  close(code: number): Promise<void> {
    this.closedWith = code;
    this.closedCleanly = this.readyState === WS_OPEN;
    this.readyState = WS_CLOSED;
    return Promise.resolve();
  }

  // ---- Discord's side ----
  open(): void {
    this.readyState = WS_OPEN;
    this.handlers.onOpen();
  }
  receive(message: unknown): void {
    this.handlers.onMessage(encoder.encode(JSON.stringify(message)), true);
  }
  hello(interval = INTERVAL): void {
    this.receive({ op: 10, d: { heartbeat_interval: interval } });
  }
  dispatch(t: string, s: number, d: unknown = {}): void {
    this.receive({ op: 0, t, s, d });
  }
  closeFromServer(code: number, reason = ""): void {
    this.readyState = WS_CLOSED;
    this.handlers.onClose(code, reason);
  }
  ops(op: number) {
    return this.sent.filter((m) => m.op === op);
  }
}

class RecordingSink implements DispatchSink {
  readonly events: Array<{ t: string; s: number }> = [];
  readonly internals: Array<{ t: string; d: Record<string, unknown> }> = [];
  dispatch(_shard: number, t: string, s: number, payload: Uint8Array, start: number): void {
    JSON.parse(decoder.decode(payload.subarray(start)));
    this.events.push({ t, s });
  }
  internal(_shard: number, t: string, d: Record<string, unknown>): void {
    this.internals.push({ t, d });
  }
}

function setup(session: ResumableSession | null = null) {
  const clock = new ManualClock();
  const sockets: FakeSocket[] = [];
  const sink = new RecordingSink();
  const fatal: Array<{ code: number; reason: string }> = [];
  const reconnects: string[] = [];
  const sessions: Array<{ resumed: boolean; reason: string }> = [];
  const identifies: number[] = [];
  const connect: ConnectSocket = (url, handlers) => {
    const socket = new FakeSocket(url, handlers);
    sockets.push(socket);
    return socket;
  };
  const identifyQueue: IdentifyQueue = {
    wait: () => Promise.resolve(),
    sent: (id) => identifies.push(id),
  };
  const shard = new Shard({
    id: 0,
    count: 1,
    token: new Secret("fake-token"),
    intents: 513,
    presence: null,
    largeThreshold: 50,
    compression: "none",
    apiVersion: 10,
    gatewayUrl: MAIN_URL,
    identifyQueue,
    sink,
    logger: logger("test", "shard"),
    onFatal: (_shard, code, reason) => fatal.push({ code, reason }),
    session,
    clock,
    random: () => 0.5,
    connect,
    observer: {
      latency() {},
      reconnect: (_shard, reason) => reconnects.push(reason),
      session: (_shard, resumed, reason) => sessions.push({ resumed, reason }),
      sessionLost() {},
    },
  });
  const last = () => sockets[sockets.length - 1];
  return { clock, sockets, last, sink, fatal, reconnects, sessions, identifies, shard };
}

type Setup = ReturnType<typeof setup>;

/** Starts the shard and brings it to READY (session "abc", seq 1). The first beat is due at INTERVAL / 2. */
async function ready(): Promise<Setup> {
  const t = setup();
  t.shard.start();
  t.last().open();
  t.last().hello();
  await t.clock.advance(0);
  t.last().dispatch("READY", 1, { session_id: "abc", resume_gateway_url: RESUME_URL });
  assert.equal(t.shard.state.kind, "ready");
  return t;
}

Deno.test("shard unit: HELLO → IDENTIFY (after the identify queue's grant), READY → ready", async () => {
  const t = setup();
  t.shard.start();
  assert.equal(t.sockets.length, 1);
  assert.equal(t.last().url, `${MAIN_URL}/?v=10&encoding=json`);
  t.last().open();
  await t.clock.advance(0);
  assert.deepEqual(t.last().sent, [], "nothing is sent before HELLO");
  t.last().hello();
  await t.clock.advance(0);
  const identify = t.last().ops(2);
  assert.equal(identify.length, 1);
  const d = identify[0].d as Record<string, unknown>;
  assert.equal(d.token, "fake-token");
  assert.deepEqual(d.shard, [0, 1]);
  assert.equal(d.intents, 513);
  assert.equal(d.large_threshold, 50);
  assert.deepEqual(t.identifies, [0], "the identify queue is told when IDENTIFY is written");
  assert.equal(t.shard.state.kind, "identifying");
  t.last().dispatch("READY", 1, { session_id: "abc", resume_gateway_url: RESUME_URL });
  assert.deepEqual(t.shard.state, { kind: "ready", session: { id: "abc", resumeUrl: RESUME_URL, seq: 1 } });
  assert.deepEqual(t.sessions, [{ resumed: false, reason: "identify" }]);
  assert.deepEqual(t.sink.events, [{ t: "READY", s: 1 }]);
});

Deno.test("shard unit: a heartbeat goes out each interval with the latest seq", async () => {
  const t = setup();
  t.shard.start();
  t.last().open();
  t.last().hello();
  await t.clock.advance(INTERVAL / 2 - 1);
  assert.deepEqual(t.last().ops(1), [], "the first beat is jittered: interval × random");
  await t.clock.advance(1);
  assert.deepEqual(t.last().ops(1), [{ op: 1, d: null }], "no seq before any dispatch");
  t.last().dispatch("READY", 1, { session_id: "abc", resume_gateway_url: RESUME_URL });
  t.last().dispatch("GUILD_CREATE", 2);
  t.last().dispatch("MESSAGE_CREATE", 3);
  await t.clock.advance(INTERVAL - 1);
  assert.equal(t.last().ops(1).length, 1, "not before the interval is over");
  await t.clock.advance(1);
  assert.deepEqual(t.last().ops(1)[1], { op: 1, d: 3 });
  t.last().receive({ op: 11 });
  t.last().dispatch("MESSAGE_CREATE", 4);
  await t.clock.advance(INTERVAL);
  assert.deepEqual(t.last().ops(1)[2], { op: 1, d: 4 });
  assert.equal(t.sockets.length, 1, "no reconnect while frames arrive");
});

Deno.test("shard unit: zombie (nothing received between two beats) → reconnect and RESUME", async () => {
  const t = await ready();
  t.last().dispatch("MESSAGE_CREATE", 2);
  await t.clock.advance(INTERVAL / 2);
  assert.equal(t.last().ops(1).length, 1);
  // No ACK, no event: at the next beat the connection is a zombie.
  await t.clock.advance(INTERVAL - 1);
  assert.equal(t.sockets.length, 1);
  await t.clock.advance(1);
  assert.equal(t.sockets[0].closedWith, 4000, "closed with 4000 so the session stays resumable");
  assert.equal(t.sockets[0].ops(1).length, 1, "the zombie beat is not sent");
  assert.deepEqual(t.reconnects, ["zombie"]);
  assert.equal(t.sockets.length, 2, "a live connection reconnects at once");
  assert.equal(t.last().url, `${RESUME_URL}/?v=10&encoding=json`);
  t.last().open();
  t.last().hello();
  assert.deepEqual(t.last().ops(6), [{ op: 6, d: { token: "fake-token", session_id: "abc", seq: 2 } }]);
  assert.deepEqual(t.last().ops(2), [], "no IDENTIFY on a resume");
  t.last().dispatch("RESUMED", 3);
  assert.equal(t.shard.state.kind, "ready");
  assert.deepEqual(t.sessions.at(-1), { resumed: true, reason: "zombie" });
});

Deno.test("shard unit: op 1 (Discord asks for a heartbeat) → a heartbeat at once", async () => {
  const t = await ready();
  t.last().dispatch("MESSAGE_CREATE", 7);
  t.last().receive({ op: 1, d: null });
  assert.deepEqual(t.last().ops(1), [{ op: 1, d: 7 }]);
});

Deno.test("shard unit: a repeated or older seq is dropped, not handed over again", async () => {
  const t = await ready();
  t.last().dispatch("MESSAGE_CREATE", 2);
  t.last().dispatch("MESSAGE_CREATE", 3);
  t.last().dispatch("MESSAGE_CREATE", 3);
  t.last().dispatch("MESSAGE_CREATE", 2);
  t.last().dispatch("MESSAGE_CREATE", 4);
  assert.deepEqual(t.sink.events.map((e) => e.s), [1, 2, 3, 4]);
  assert.equal(t.shard.status().seq, 4);
  assert.equal(t.shard.status().events, 4);
});

Deno.test("shard unit: op 7 → close with 4000, reconnect to the resume URL and RESUME", async () => {
  const t = await ready();
  t.last().dispatch("MESSAGE_CREATE", 5);
  t.last().receive({ op: 7, d: null });
  assert.equal(t.sockets[0].closedWith, 4000);
  assert.deepEqual(t.reconnects, ["op7"]);
  await t.clock.advance(0);
  assert.equal(t.sockets.length, 2);
  assert.equal(t.last().url, `${RESUME_URL}/?v=10&encoding=json`);
  t.last().open();
  t.last().hello();
  assert.deepEqual(t.last().ops(6), [{ op: 6, d: { token: "fake-token", session_id: "abc", seq: 5 } }]);
  t.last().dispatch("RESUMED", 6);
  assert.deepEqual(t.sessions.at(-1), { resumed: true, reason: "op7" });
  assert.equal(t.shard.status().seq, 6);
});

Deno.test("shard unit: op 9 resumable → wait 1–5 s, then RESUME on the resume URL", async () => {
  const t = await ready();
  t.last().dispatch("MESSAGE_CREATE", 2);
  t.last().receive({ op: 9, d: true });
  assert.equal(t.sockets[0].closedWith, 4000);
  assert.deepEqual(t.reconnects, ["op9_resumable"]);
  // random 0.5: 1000 + 0.5 × 4000.
  await t.clock.advance(2999);
  assert.equal(t.sockets.length, 1);
  await t.clock.advance(1);
  assert.equal(t.sockets.length, 2);
  assert.equal(t.last().url, `${RESUME_URL}/?v=10&encoding=json`);
  t.last().open();
  t.last().hello();
  await t.clock.advance(0);
  assert.deepEqual(t.last().ops(6), [{ op: 6, d: { token: "fake-token", session_id: "abc", seq: 2 } }]);
  assert.deepEqual(t.last().ops(2), []);
  assert.deepEqual(t.sink.internals, [], "the session was not lost");
});

Deno.test("shard unit: op 9 not resumable → session lost, IDENTIFY on the main URL", async () => {
  const t = await ready();
  t.last().dispatch("MESSAGE_CREATE", 2);
  t.last().receive({ op: 9, d: false });
  assert.deepEqual(t.reconnects, ["op9"]);
  assert.equal(t.sink.internals.length, 1);
  assert.equal(t.sink.internals[0].t, "GATEHOUSE_SESSION_INVALIDATED");
  assert.equal(t.sink.internals[0].d.session_id, "abc");
  assert.equal(t.sink.internals[0].d.last_seq, 2);
  assert.equal(t.shard.status().seq, null, "the lost session's seq is gone");
  await t.clock.advance(3000);
  assert.equal(t.sockets.length, 2);
  assert.equal(t.last().url, `${MAIN_URL}/?v=10&encoding=json`);
  t.last().open();
  t.last().hello();
  await t.clock.advance(0);
  assert.deepEqual(t.last().ops(6), []);
  assert.equal(t.last().ops(2).length, 1);
  // The new session numbers from its READY: seq 1 is not a repeat of the old session's 2.
  t.last().dispatch("READY", 1, { session_id: "def", resume_gateway_url: RESUME_URL });
  assert.deepEqual(t.sink.events.map((e) => e.s), [1, 2, 1]);
  assert.equal(t.shard.status().sessionId, "def");
});

Deno.test("shard unit: close code 4004 → fatal with the close code, never reconnects", async () => {
  const t = await ready();
  t.last().closeFromServer(4004, "Authentication failed.");
  assert.deepEqual(t.shard.state, {
    kind: "fatal",
    code: 4004,
    reason: "authentication failed: Discord rejected the token",
  });
  assert.deepEqual(t.fatal, [{ code: 4004, reason: "authentication failed: Discord rejected the token" }]);
  await t.clock.advance(120_000);
  assert.equal(t.sockets.length, 1, "a fatal close is not retried");
  assert.deepEqual(t.reconnects, []);
  assert.match(t.shard.send(3, { status: "idle" }) ?? "", /is fatal/);
});

Deno.test("shard unit: paused reading (backpressure) is not a zombie; unpaused silence is", async () => {
  const t = await ready();
  t.shard.setPaused(true);
  assert.equal(t.last().paused, true);
  await t.clock.advance(INTERVAL / 2);
  assert.equal(t.last().ops(1).length, 1);
  // Three intervals without a frame while paused: the silence is ours.
  await t.clock.advance(3 * INTERVAL);
  assert.equal(t.sockets.length, 1);
  assert.equal(t.last().ops(1).length, 4, "beats keep going out while paused");
  assert.deepEqual(t.reconnects, []);
  t.shard.setPaused(false);
  assert.equal(t.last().paused, false);
  await t.clock.advance(INTERVAL);
  assert.deepEqual(t.reconnects, ["zombie"], "once reading again, silence is a zombie connection");
});

Deno.test("shard unit: a stored session RESUMEs on its resume URL at its seq", () => {
  const t = setup({ id: "stored", resumeUrl: RESUME_URL, seq: 41 });
  t.shard.start();
  assert.equal(t.last().url, `${RESUME_URL}/?v=10&encoding=json`);
  t.last().open();
  t.last().hello();
  assert.deepEqual(t.last().ops(6), [{ op: 6, d: { token: "fake-token", session_id: "stored", seq: 41 } }]);
  t.last().dispatch("MESSAGE_CREATE", 41);
  t.last().dispatch("MESSAGE_CREATE", 42);
  t.last().dispatch("RESUMED", 43);
  assert.deepEqual(t.sink.events.map((e) => e.s), [42, 43]);
  assert.deepEqual(t.sessions, [{ resumed: true, reason: "restart" }]);
});

Deno.test("shard unit: no HELLO within the connect timeout → drop the socket, back off, connect again", async () => {
  const t = setup();
  t.shard.start();
  t.last().open();
  await t.clock.advance(15_000 - 1);
  assert.equal(t.shard.state.kind, "handshaking");
  await t.clock.advance(1);
  assert.equal(t.sockets[0].closedWith, 4000);
  assert.deepEqual(t.reconnects, ["connect_timeout"]);
  assert.equal(t.shard.status().waitingReason, "no HELLO before the connect timeout");
  // attempt 1, random 0.5: 1000 × (0.5 + 0.25).
  await t.clock.advance(749);
  assert.equal(t.sockets.length, 1);
  await t.clock.advance(1);
  assert.equal(t.sockets.length, 2);
  t.last().open();
  t.last().hello(60_000);
  await t.clock.advance(15_000);
  assert.equal(t.sockets.length, 2, "after HELLO the connect timeout changes nothing");
  assert.equal(t.shard.state.kind, "identifying");
});

Deno.test("shard unit: commands wait for a live session and go out after IDENTIFY", async () => {
  const t = setup();
  const sent: number[] = [];
  assert.equal(t.shard.send(3, { status: "idle" }, () => sent.push(1)), null);
  t.shard.start();
  t.last().open();
  t.last().hello();
  await t.clock.advance(0);
  assert.deepEqual(t.last().ops(3), [], "not before the session is live");
  assert.equal(t.shard.status().queuedCommands, 1);
  t.last().dispatch("READY", 1, { session_id: "abc", resume_gateway_url: RESUME_URL });
  assert.deepEqual(t.last().sent.map((m) => m.op), [2, 3]);
  assert.deepEqual(sent, [1]);
  assert.equal(t.shard.status().queuedCommands, 0);
});

Deno.test("shard unit: stop closes with the code given and nothing reconnects", async () => {
  const t = await ready();
  assert.equal(await t.shard.stop(4000), "clean");
  assert.equal(t.sockets[0].closedWith, 4000);
  assert.equal(t.shard.state.kind, "stopped");
  await t.clock.advance(60_000);
  assert.equal(t.sockets.length, 1);
  assert.equal(t.last().ops(1).length, 0, "no heartbeat after the stop");
  assert.equal(t.clock.pending, 0, "no timer left behind");
});
