import assert from "node:assert/strict";
import { closeRule } from "../../src/gateway/close_codes.ts";
import {
  advanceSeq,
  connectUrl,
  RESUME_URL_ATTEMPTS,
  retryDelay,
  seqOf,
  type SessionInfo,
  type ShardEffect,
  type ShardInput,
  type ShardState,
  transition,
} from "../../src/gateway/shard_state.ts";

const ctx = { mainUrl: "wss://main.example" };
const session: SessionInfo = { id: "abc", resumeUrl: "wss://resume.example", seq: 5 };
const types = (effects: ShardEffect[]) => effects.map((e) => e.type);

/** Runs inputs from a state, returning the final state and every effect. */
function drive(state: ShardState, ...inputs: ShardInput[]) {
  const effects: ShardEffect[] = [];
  for (const input of inputs) {
    const next = transition(state, input, ctx);
    state = next.state;
    effects.push(...next.effects);
  }
  return { state, effects };
}

const idle: ShardState = { kind: "idle", session: null };
const readyState: ShardState = { kind: "ready", session };

Deno.test("fresh start: connect main URL → HELLO → wait for the identify queue → IDENTIFY → READY", () => {
  let r = drive(idle, { type: "start" });
  assert.deepEqual(r.state, { kind: "connecting", attempt: 0, url: ctx.mainUrl, session: null });
  assert.deepEqual(r.effects, [{ type: "connect", url: ctx.mainUrl }]);
  r = drive(r.state, { type: "socket_open" }, { type: "hello", heartbeatInterval: 41250 });
  assert.equal(r.state.kind, "identifying");
  assert.deepEqual(r.effects, [{ type: "start_heartbeat", interval: 41250 }, { type: "request_identify" }]);
  r = drive(r.state, { type: "identify_granted" });
  assert.deepEqual(r.effects, [{ type: "send_identify" }]);
  // A second grant (should never happen) sends nothing.
  assert.deepEqual(drive(r.state, { type: "identify_granted" }).effects, []);
  r = drive(r.state, { type: "ready", sessionId: "s1", resumeUrl: "wss://r", seq: 0 });
  assert.deepEqual(r.state, { kind: "ready", session: { id: "s1", resumeUrl: "wss://r", seq: 0 } });
  assert.deepEqual(r.effects, [{
    type: "session_established",
    session: { id: "s1", resumeUrl: "wss://r", seq: 0 },
    resumed: false,
  }]);
});

Deno.test("restored session: connect the resume URL → HELLO → RESUME (no identify) → RESUMED", () => {
  let r = drive({ kind: "idle", session }, { type: "start" });
  assert.deepEqual(r.effects, [{ type: "connect", url: session.resumeUrl }]);
  r = drive(r.state, { type: "socket_open" }, { type: "hello", heartbeatInterval: 1000 });
  assert.equal(r.state.kind, "resuming");
  assert.deepEqual(types(r.effects), ["start_heartbeat", "send_resume"]);
  r = drive(r.state, { type: "resumed" });
  assert.deepEqual(r.state, readyState);
  assert.deepEqual(r.effects, [{ type: "session_established", session, resumed: true }]);
});

Deno.test("op 7 when live: close 4000, reconnect at once to the resume URL, RESUME", () => {
  let r = drive(readyState, { type: "reconnect_requested" });
  assert.deepEqual(r.state, {
    kind: "waiting",
    attempt: 0,
    session,
    reason: "Discord asked to reconnect (op 7)",
  });
  assert.deepEqual(r.effects, [
    { type: "disconnect", code: 4000 },
    { type: "schedule_retry", kind: "immediate", attempt: 0, label: "op7" },
  ]);
  assert.equal(retryDelay("immediate", 0, 0.99), 0);
  r = drive(r.state, { type: "retry" });
  assert.deepEqual(r.effects, [{ type: "connect", url: session.resumeUrl }]);
  r = drive(r.state, { type: "socket_open" }, { type: "hello", heartbeatInterval: 1000 });
  assert.deepEqual(types(r.effects), ["start_heartbeat", "send_resume"]);
});

Deno.test("op 9 resumable: keep the session, wait 1–5 s, RESUME", () => {
  const r = drive(readyState, { type: "invalid_session", resumable: true });
  assert.equal(r.state.kind, "waiting");
  assert.deepEqual((r.state as { session: SessionInfo }).session, session);
  assert.deepEqual(r.effects, [
    { type: "disconnect", code: 4000 },
    { type: "schedule_retry", kind: "invalid_session", attempt: 0, label: "op9_resumable" },
  ]);
  for (const random of [0, 0.5, 0.999]) {
    const delay = retryDelay("invalid_session", 0, random);
    assert.ok(delay >= 1000 && delay <= 5000, String(delay));
  }
});

Deno.test("op 9 not resumable: drop the session (reported), wait, connect the MAIN URL, IDENTIFY", () => {
  let r = drive(readyState, { type: "invalid_session", resumable: false });
  assert.deepEqual(r.effects, [
    { type: "disconnect", code: 4000 },
    { type: "session_lost", session, reason: "Discord invalidated the session (op 9)" },
    { type: "schedule_retry", kind: "invalid_session", attempt: 0, label: "op9" },
  ]);
  r = drive(r.state, { type: "retry" });
  assert.deepEqual(r.effects, [{ type: "connect", url: ctx.mainUrl }]);
  r = drive(r.state, { type: "socket_open" }, { type: "hello", heartbeatInterval: 1000 });
  assert.deepEqual(types(r.effects), ["start_heartbeat", "request_identify"]);
});

Deno.test("op 9 during IDENTIFY (too early): no session to lose, retry through the queue", () => {
  const identifying: ShardState = { kind: "identifying", attempt: 0, sent: true };
  const r = drive(identifying, { type: "invalid_session", resumable: false });
  assert.deepEqual(types(r.effects), ["disconnect", "schedule_retry"]);
  assert.deepEqual(r.state, {
    kind: "waiting",
    attempt: 1,
    session: null,
    reason: "invalid session (not resumable)",
  });
});

Deno.test("op 9 true with no session is treated as false", () => {
  const identifying: ShardState = { kind: "identifying", attempt: 0, sent: true };
  const r = drive(identifying, { type: "invalid_session", resumable: true });
  assert.equal((r.state as { session: unknown }).session, null);
});

Deno.test("close codes while live: resume codes keep the session, identify codes drop it, fatal ones stop", () => {
  for (const code of [4000, 4001, 4002, 4005, 4008, 1000, 1001, 1006, 1011]) {
    const r = drive(readyState, { type: "socket_closed", code, reason: "" });
    assert.equal(r.state.kind, "waiting", String(code));
    assert.deepEqual((r.state as { session: unknown }).session, session, String(code));
    assert.deepEqual(types(r.effects), ["disconnect", "schedule_retry"], String(code));
  }
  for (const code of [4003, 4007, 4009]) {
    const r = drive(readyState, { type: "socket_closed", code, reason: "" });
    assert.equal((r.state as { session: unknown }).session, null, String(code));
    assert.deepEqual(types(r.effects), ["disconnect", "session_lost", "schedule_retry"], String(code));
  }
  for (const code of [4004, 4010, 4011, 4012, 4013, 4014]) {
    const r = drive(readyState, { type: "socket_closed", code, reason: "" });
    assert.deepEqual(r.state, { kind: "fatal", code, reason: closeRule(code).meaning }, String(code));
    assert.deepEqual(r.effects[1], { type: "fatal", code, reason: closeRule(code).meaning });
    // Nothing moves a fatal shard any more.
    assert.deepEqual(drive(r.state, { type: "retry" }, { type: "start" }).effects, []);
  }
});

Deno.test("fatal close during IDENTIFY (4004 bad token)", () => {
  const r = drive({ kind: "identifying", attempt: 0, sent: true }, {
    type: "socket_closed",
    code: 4004,
    reason: "",
  });
  assert.deepEqual(r.state, { kind: "fatal", code: 4004, reason: closeRule(4004).meaning });
});

Deno.test("zombie: a heartbeat due with nothing received since the last beat closes and resumes", () => {
  assert.deepEqual(drive(readyState, { type: "heartbeat_due", alive: true }).effects, [{
    type: "send_heartbeat",
  }]);
  const r = drive(readyState, { type: "heartbeat_due", alive: false });
  assert.equal(r.state.kind, "waiting");
  assert.deepEqual((r.state as { session: unknown }).session, session);
  assert.deepEqual(types(r.effects), ["disconnect", "schedule_retry"]);
});

Deno.test("op 1 from Discord: beat at once, in any connected state", () => {
  for (
    const state of [
      readyState,
      { kind: "identifying", attempt: 0, sent: false } as ShardState,
      { kind: "resuming", attempt: 0, session } as ShardState,
    ]
  ) {
    assert.deepEqual(drive(state, { type: "heartbeat_requested" }).effects, [{ type: "send_heartbeat" }]);
  }
  assert.deepEqual(
    drive({ kind: "waiting", attempt: 0, session, reason: "" }, { type: "heartbeat_requested" }).effects,
    [],
  );
});

Deno.test("op 7 before HELLO reconnects too", () => {
  const handshaking: ShardState = {
    kind: "handshaking",
    attempt: 0,
    url: "wss://main.example",
    session: null,
  };
  const r = drive(handshaking, { type: "reconnect_requested" });
  assert.equal(r.state.kind, "waiting");
});

Deno.test("failed connects back off with growing, capped, jittered delays", () => {
  let state: ShardState = { kind: "ready", session };
  state = drive(state, { type: "socket_closed", code: 1006, reason: "" }).state; // attempt 0: immediate
  const attempts: number[] = [];
  for (let i = 0; i < 10; i++) {
    state = drive(state, { type: "retry" }).state;
    const r = drive(state, { type: "socket_closed", code: 1006, reason: "" });
    state = r.state;
    const retry = r.effects.find((e) => e.type === "schedule_retry") as { kind: string; attempt: number };
    assert.equal(retry.kind, "backoff");
    attempts.push(retry.attempt);
  }
  assert.deepEqual(attempts, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  assert.deepEqual([1, 2, 3, 4].map((a) => retryDelay("backoff", a, 0.5)), [750, 1500, 3000, 6000]);
  assert.deepEqual([1, 2, 3].map((a) => retryDelay("backoff", a, 0)), [500, 1000, 2000]);
  assert.equal(retryDelay("backoff", 30, 0.5), 45_000);
  assert.equal(retryDelay("backoff", 30, 0), 30_000);
});

Deno.test("after a few failed connects to the resume URL, resume through the main URL", () => {
  let state: ShardState = { kind: "waiting", attempt: 0, session, reason: "" };
  const urls: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = drive(state, { type: "retry" });
    urls.push((r.effects.find((e) => e.type === "connect") as { url: string }).url);
    state = drive(r.state, { type: "socket_closed", code: 1006, reason: "" }).state;
  }
  assert.deepEqual(urls, [
    ...Array(RESUME_URL_ATTEMPTS).fill(session.resumeUrl),
    ctx.mainUrl,
    ctx.mainUrl,
  ]);
  // The session is still used: HELLO on the main URL sends RESUME, not IDENTIFY.
  const r = drive(state, { type: "retry" }, { type: "socket_open" }, { type: "hello", heartbeatInterval: 1 });
  assert.equal(r.state.kind, "resuming");
  assert.equal(connectUrl(session, RESUME_URL_ATTEMPTS - 1, ctx), session.resumeUrl);
  assert.equal(connectUrl(null, 0, ctx), ctx.mainUrl);
});

Deno.test("a successful RESUMED resets the attempt counter", () => {
  const r = drive(
    { kind: "waiting", attempt: 5, session, reason: "" },
    { type: "retry" },
    { type: "socket_open" },
    { type: "hello", heartbeatInterval: 1 },
    { type: "resumed" },
    { type: "socket_closed", code: 1006, reason: "" },
  );
  assert.deepEqual(r.effects.at(-1), {
    type: "schedule_retry",
    kind: "immediate",
    attempt: 0,
    label: "dropped",
  });
});

Deno.test("connect timeout before open and before HELLO back off and keep the session", () => {
  for (const kind of ["connecting", "handshaking"] as const) {
    const r = drive({ kind, attempt: 0, url: "u", session }, { type: "connect_timeout" });
    assert.equal(r.state.kind, "waiting");
    assert.deepEqual(r.effects, [
      { type: "disconnect", code: 4000 },
      { type: "schedule_retry", kind: "backoff", attempt: 1, label: "connect_timeout" },
    ]);
  }
  // A timeout that fires after HELLO is stale and ignored.
  assert.deepEqual(drive(readyState, { type: "connect_timeout" }).effects, []);
});

Deno.test("a broken compression stream closes and resumes", () => {
  const r = drive(readyState, { type: "bad_stream", reason: "zlib error" });
  assert.deepEqual(types(r.effects), ["disconnect", "schedule_retry"]);
  assert.deepEqual((r.state as { session: unknown }).session, session);
});

Deno.test("stop closes with the given code from any state and nothing restarts it", () => {
  for (
    const state of [
      idle,
      readyState,
      { kind: "waiting", attempt: 2, session, reason: "" } as ShardState,
      { kind: "connecting", attempt: 0, url: "u", session: null } as ShardState,
    ]
  ) {
    const r = drive(state, { type: "stop", code: 4000 });
    assert.deepEqual(r, { state: { kind: "stopped" }, effects: [{ type: "disconnect", code: 4000 }] });
    assert.deepEqual(drive(r.state, { type: "retry" }, { type: "socket_open" }).effects, []);
  }
});

Deno.test("stale inputs are ignored", () => {
  assert.deepEqual(drive(readyState, { type: "hello", heartbeatInterval: 1 }).effects, []);
  assert.deepEqual(drive(readyState, { type: "resumed" }).effects, []);
  assert.deepEqual(drive(readyState, { type: "ready", sessionId: "x", resumeUrl: "y", seq: 0 }).effects, []);
  assert.deepEqual(drive(idle, { type: "socket_closed", code: 1006, reason: "" }).effects, []);
  assert.deepEqual(
    drive({ kind: "waiting", attempt: 0, session, reason: "" }, {
      type: "socket_closed",
      code: 1006,
      reason: "",
    }).effects,
    [],
  );
});

Deno.test("protocol error: close 4000, keep the session, back off even from a live connection", () => {
  const r = drive(readyState, {
    type: "protocol_error",
    reason: "protocol error: bad seq",
    label: "protocol_error",
  });
  assert.deepEqual(r.state, { kind: "waiting", attempt: 0, session, reason: "protocol error: bad seq" });
  assert.deepEqual(r.effects, [
    { type: "disconnect", code: 4000 },
    { type: "schedule_retry", kind: "backoff", attempt: 0, label: "protocol_error" },
  ]);
  assert.ok(retryDelay("backoff", 0, 0) >= 500, "never an immediate reconnect after a protocol error");
  // Before a session (a bad READY while identifying): nothing to keep, IDENTIFY again.
  const identifying: ShardState = { kind: "identifying", attempt: 0, sent: true };
  const i = drive(identifying, { type: "protocol_error", reason: "bad READY", label: "protocol_error" });
  assert.deepEqual(i.state, { kind: "waiting", attempt: 1, session: null, reason: "bad READY" });
  assert.deepEqual(drive(idle, { type: "protocol_error", reason: "x", label: "x" }).state, idle);
});

Deno.test("operator reconnect while waiting out a backoff connects now; while idle it does nothing", () => {
  const waiting: ShardState = { kind: "waiting", attempt: 4, session, reason: "connect failed" };
  const r = drive(waiting, { type: "reconnect_requested", by: "operator" });
  assert.deepEqual(r.state, { kind: "connecting", attempt: 4, url: ctx.mainUrl, session });
  assert.deepEqual(r.effects, [{ type: "disconnect", code: 4000 }, { type: "connect", url: ctx.mainUrl }]);
  // Discord's op 7 cannot arrive while waiting; only an operator's request acts there.
  assert.deepEqual(drive(waiting, { type: "reconnect_requested" }).effects, []);
  assert.deepEqual(drive(idle, { type: "reconnect_requested", by: "operator" }).effects, []);
});

Deno.test("a connect that fails says what failed, not that Discord closed it", () => {
  const connecting: ShardState = { kind: "connecting", attempt: 2, url: ctx.mainUrl, session: null };
  const r = drive(connecting, { type: "socket_closed", code: 1006, reason: "cannot connect to x: refused" });
  assert.equal(r.state.kind, "waiting");
  assert.equal((r.state as { reason: string }).reason, "cannot connect: cannot connect to x: refused");
});

Deno.test("the session carries its seq: RESUME sends it, a lost session reports it, READY starts anew", () => {
  const stored: SessionInfo = { id: "abc", resumeUrl: "wss://resume.example", seq: 41 };
  let r = drive({ kind: "idle", session: stored }, { type: "start" }, { type: "socket_open" }, {
    type: "hello",
    heartbeatInterval: 1000,
  });
  assert.deepEqual(r.effects.at(-1), { type: "send_resume", session: { ...stored, seq: 41 } });
  // Replayed events move the seq forward in place; never back, and not without a session.
  advanceSeq(r.state, 43);
  advanceSeq(r.state, 42);
  assert.equal(seqOf(r.state), 43);
  r = drive(r.state, { type: "resumed" });
  assert.deepEqual(r.state, { kind: "ready", session: { ...stored, seq: 43 } });
  r = drive(r.state, { type: "invalid_session", resumable: false });
  assert.deepEqual(r.effects[1], {
    type: "session_lost",
    session: { ...stored, seq: 43 },
    reason: "Discord invalidated the session (op 9)",
  });
  assert.equal(seqOf(r.state), 0, "the seq went with the session");
  const identifying: ShardState = { kind: "identifying", attempt: 0, sent: true };
  advanceSeq(identifying, 9);
  assert.equal(seqOf(identifying), 0);
  r = drive(identifying, { type: "ready", sessionId: "new", resumeUrl: "wss://r", seq: 0 });
  assert.equal(seqOf(r.state), 0);
});

Deno.test("a reconnect's label comes with the transition that decides it", () => {
  const label = (state: ShardState, input: ShardInput) =>
    (drive(state, input).effects.find((e) => e.type === "schedule_retry") as { label: string }).label;
  assert.equal(label(readyState, { type: "heartbeat_due", alive: false }), "zombie");
  assert.equal(label(readyState, { type: "reconnect_requested", by: "operator" }), "operator");
  assert.equal(label(readyState, { type: "socket_closed", code: 4000, reason: "" }), "close_4000");
  assert.equal(label(readyState, { type: "bad_stream", reason: "zlib" }), "bad_stream");
  assert.equal(label(readyState, { type: "protocol_error", reason: "r", label: "bad_seq" }), "bad_seq");
});
