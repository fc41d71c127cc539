import assert from "node:assert/strict";
import type { GatewaySocket } from "../../src/gateway/gateway_socket.ts";
import { SendQueue } from "../../src/gateway/send_queue.ts";
import { SEND_WINDOW_MARGIN_MS } from "../../src/gateway/send_limiter.ts";
import { SEND_LIMIT, SEND_WINDOW_MS } from "../../src/gateway/protocol.ts";
import { WS_OPEN } from "../../src/gateway/ws_client.ts";
import { ManualClock } from "../../src/util/clock.ts";

const WINDOW = SEND_WINDOW_MS + SEND_WINDOW_MARGIN_MS;

function setup() {
  const clock = new ManualClock();
  const sent: string[] = [];
  const socket: GatewaySocket = {
    readyState: WS_OPEN,
    closedCleanly: false,
    send: (text, onWritten) => {
      sent.push(text);
      onWritten?.();
    },
    pause() {},
    resume() {},
    close: () => Promise.resolve(),
  };
  let seq = 0;
  let live = true;
  const queue = new SendQueue({
    clock,
    heartbeatFrame: () => `beat ${seq}`,
    commandsAllowed: () => live,
  });
  queue.attach(socket);
  return {
    clock,
    sent,
    queue,
    setSeq: (s: number) => (seq = s),
    setLive: (l: boolean) => (live = l),
  };
}

Deno.test("send queue: at most one heartbeat waits, and it carries the seq of when it is written", async () => {
  const t = setup();
  for (let i = 0; i < SEND_LIMIT; i++) t.queue.priority(`frame ${i}`);
  assert.equal(t.sent.length, SEND_LIMIT, "the whole budget for priority frames");
  t.queue.heartbeat();
  t.setSeq(7);
  t.queue.heartbeat();
  t.queue.heartbeat();
  assert.equal(t.sent.length, SEND_LIMIT, "the budget is spent: the heartbeat waits");
  t.setSeq(9);
  await t.clock.advance(WINDOW);
  assert.deepEqual(t.sent.slice(SEND_LIMIT), ["beat 9"], "one heartbeat, with the seq at writing time");
});

Deno.test("send queue: commands go only while allowed, after the priority frames, within their share", async () => {
  const t = setup();
  t.setLive(false);
  t.queue.command("c1");
  t.queue.priority("identify");
  assert.deepEqual(t.sent, ["identify"]);
  t.setLive(true);
  t.queue.pump();
  assert.deepEqual(t.sent, ["identify", "c1"]);
  let acknowledged = 0;
  for (let i = 0; i < SEND_LIMIT; i++) t.queue.command(`c${i + 2}`, () => acknowledged++);
  // 10 slots are kept for heartbeats, IDENTIFY and RESUME.
  assert.equal(t.sent.length, SEND_LIMIT - 10);
  assert.equal(acknowledged, SEND_LIMIT - 12);
  t.queue.priority("resume");
  assert.equal(t.sent.at(-1), "resume", "a priority frame does not wait behind the commands");
  assert.equal(t.queue.queuedCommands, 12);
  await t.clock.advance(WINDOW);
  assert.equal(t.queue.queuedCommands, 0);
});

Deno.test("send queue: a connection's priority frames end with it; commands wait for the next", () => {
  const t = setup();
  t.setLive(false);
  t.queue.command("c1");
  t.queue.detach();
  t.queue.priority("resume");
  t.queue.detach();
  assert.deepEqual(t.sent, []);
  const again: string[] = [];
  t.queue.attach({
    readyState: WS_OPEN,
    closedCleanly: false,
    send: (text) => again.push(text),
    pause() {},
    resume() {},
    close: () => Promise.resolve(),
  });
  t.setLive(true);
  t.queue.pump();
  assert.deepEqual(again, ["c1"]);
});
