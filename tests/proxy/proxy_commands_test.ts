/**
 * Proxy mode end to end, commands and hostile clients: the real `gatehouse run` with `[proxy] listen`
 * against the fake Discord (2 shards of 3 guilds), and clients that are Deno's own WebSocket speaking raw
 * gateway JSON to the proxy (encoding=json, no transport compression).
 *
 * - Commands from proxy clients reach the shard they belong to, with the `d` the client sent; member chunks
 *   go only to the client whose nonce they carry.
 * - Bad clients get Discord's close codes (as src/proxy/client.ts implements them) and only they are closed:
 *   the other clients keep their events, gatehouse's own sessions with Discord are untouched.
 * - Arbitrary hostile frames (fast-check, seeded) before and after IDENTIFY: each is ignored, answered as
 *   Discord would (ACK, op 9, READY), or closes that one client with the code a model of Discord's rules
 *   allows; gatehouse stays up and a good client still works afterwards.
 */
import assert from "node:assert/strict";
import { inflateSync } from "node:zlib";
import fc from "npm:fast-check@4.11.0";
import { parseCommand } from "../../src/commands/validate.ts";
import { ALL_INTENTS } from "../../src/gateway/protocol.ts";
import { guildIdFor } from "../fake_discord/events.ts";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, proxyAddress, spawnGatehouse } from "../helpers/gatehouse.ts";

const TOKEN = "proxy-commands-token";
const SHARDS = 2;
const GUILDS_PER_SHARD = 3;
/** The fake's guild ids of each shard (guildIdFor is what it uses). */
const GUILDS = [0, 1].map((shard) =>
  Array.from({ length: GUILDS_PER_SHARD }, (_, i) => guildIdFor(shard, SHARDS, i))
);
const PROBE = '{"op":1,"d":null}';
/** Runs of the hostile-frames property. */
const RUNS = 200;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

// deno-lint-ignore no-explicit-any
type Frame = { op: number; t: string | null; s: number | null; d: any };

// ---- a raw gateway client ----

/** One WebSocket connection to the proxy, recording every frame it gets and how it was closed. */
class RawClient {
  readonly frames: Frame[] = [];
  acks = 0;
  closed: { code: number; reason: string } | null = null;
  readonly #ws: WebSocket;
  readonly #gone: Promise<void>;

  constructor(base: string) {
    this.#ws = new WebSocket(`${base}/?v=10&encoding=json`);
    this.#ws.binaryType = "arraybuffer";
    this.#ws.onmessage = (event) => {
      // Payload compression (IDENTIFY `compress: true`) sends big dispatches as zlib binary frames.
      const text = typeof event.data === "string"
        ? event.data
        : decoder.decode(inflateSync(new Uint8Array(event.data as ArrayBuffer)));
      const frame = JSON.parse(text) as Frame;
      this.frames.push(frame);
      if (frame.op === 11) this.acks++;
    };
    this.#ws.onerror = () => {};
    this.#gone = new Promise((resolve) => {
      this.#ws.onclose = (event) => {
        this.closed = { code: event.code, reason: event.reason };
        resolve();
      };
    });
  }

  static async connect(base: string, all: RawClient[]): Promise<RawClient> {
    const client = new RawClient(base);
    all.push(client);
    await client.until(() => client.frames.length > 0 || client.closed !== null, "HELLO");
    assert.equal(client.frames[0]?.op, 10, `HELLO first, got ${JSON.stringify(client.frames[0])}`);
    assert.ok(client.frames[0].d.heartbeat_interval > 0);
    return client;
  }

  send(data: string | Uint8Array): void {
    // After the proxy closed it (its close frame may still be on the way) there is nothing to send to.
    if (this.#ws.readyState === WebSocket.OPEN) this.#ws.send(data);
  }

  dispatches(t: string): Frame[] {
    return this.frames.filter((f) => f.op === 0 && f.t === t);
  }

  count(op: number): number {
    return this.frames.filter((f) => f.op === op).length;
  }

  async until(predicate: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) {
        const seen = this.frames.slice(-5).map((f) => `${f.op}:${f.t}`).join(" ");
        throw new Error(
          `timed out waiting for ${what} (closed: ${JSON.stringify(this.closed)}, last: ${seen})`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }

  /** Closes it (1000 from here) unless the proxy did, and waits for the close to complete. */
  async close(): Promise<void> {
    if (this.closed === null) {
      try {
        this.#ws.close(1000);
      } catch {
        // closing already
      }
    }
    await this.#gone;
  }
}

function identifyText(shard: number, extra = ""): string {
  return `{"op":2,"d":{"token":${JSON.stringify(TOKEN)},"intents":513,"properties":{"os":"linux",` +
    `"browser":"raw","device":"raw"},"shard":[${shard},${SHARDS}]${extra}}}`;
}

/** IDENTIFY as shard `shard`; resolves once READY and every GUILD_CREATE of the shard are in. */
async function identify(client: RawClient, shard: number): Promise<void> {
  client.send(identifyText(shard));
  await client.until(
    () => client.dispatches("GUILD_CREATE").length === GUILDS_PER_SHARD || client.closed !== null,
    `shard ${shard} start-up`,
  );
  assert.equal(client.closed, null);
  const ready = client.dispatches("READY");
  assert.equal(ready.length, 1);
  assert.deepEqual(ready[0].d.shard, [shard, SHARDS]);
  assert.deepEqual(client.dispatches("GUILD_CREATE").map((f) => f.d.id).sort(), [...GUILDS[shard]].sort());
}

/**
 * Sends `data`, which must close the connection, and returns the close code. Nothing is sent after it: a
 * frame that reaches Deno's server after its close frame makes it drop TCP at once, and the close frame
 * may then be lost to the reset (the client sees code 0).
 */
async function closeCodeOf(client: RawClient, data: string | Uint8Array): Promise<number> {
  const acks = client.acks;
  client.send(data);
  await client.until(() => client.closed !== null, `the close after ${String(data).slice(0, 120)}`, 10_000);
  assert.equal(client.acks, acks, "nothing answered after the frame that closed it");
  return client.closed!.code;
}

// ---- gatehouse with the proxy, against the fake ----

async function proxiedGatehouse() {
  // max_concurrency 2: both shards identify at once (no 5 s wait for the second one).
  const fake = await FakeDiscord.start({
    token: TOKEN,
    shards: SHARDS,
    guildsPerShard: GUILDS_PER_SHARD,
    maxConcurrency: 2,
  });
  const dir = await Deno.makeTempDir();
  const g = spawnGatehouse({
    env: {
      ...fakeEnv(fake.apiHost, TOKEN),
      GATEHOUSE_STORE: `${dir}/gatehouse.db`,
      GATEHOUSE_PROXY_LISTEN: "127.0.0.1:0",
      GATEHOUSE_LOG_LEVEL: "info",
    },
  });
  let exited = false;
  g.status.then(() => (exited = true));
  const clients: RawClient[] = [];
  const stop = async () => {
    for (const c of clients) await c.close();
    g.kill("SIGTERM");
    await g.status;
    await fake.stop();
    await Deno.remove(dir, { recursive: true });
  };
  try {
    const api = `ws://${await proxyAddress(g, 30_000)}`;
    await g.waitFor(
      () => g.lines.filter((l) => l.t === "GUILD_CREATE").length === SHARDS * GUILDS_PER_SHARD,
      30_000,
      "guilds",
    );
    assert.equal(fake.identifies.length, SHARDS);
    const sessions = fake.sessions().map((s) => s.id);
    /** gatehouse's sessions with the fake are the ones it started with: no IDENTIFY, RESUME, close since. */
    const upstreamUndisturbed = () => {
      assert.equal(exited, false, "gatehouse is running");
      assert.equal(fake.identifies.length, SHARDS, "no new IDENTIFY from gatehouse");
      assert.deepEqual(fake.resumes, [], "no RESUME from gatehouse");
      assert.deepEqual(fake.clientCloses, [], "gatehouse closed none of its connections");
      assert.deepEqual(fake.violations, []);
      const now = fake.sessions();
      assert.deepEqual(now.map((s) => s.id), sessions);
      assert.ok(now.every((s) => s.connected && !s.invalidated && !s.expired), JSON.stringify(now));
      assert.equal(fake.connections().length, SHARDS);
    };
    const connect = () => RawClient.connect(api, clients);
    return { fake, g, api, clients, connect, stop, exited: () => exited, upstreamUndisturbed };
  } catch (error) {
    await stop();
    throw error;
  }
}

let marker = 0;
/** A MESSAGE_CREATE on `shard` from the fake; resolves once every client in `to` has it. */
async function liveEvent(fake: FakeDiscord, shard: number, to: RawClient[]): Promise<number> {
  const n = ++marker;
  fake.dispatch(shard, "MESSAGE_CREATE", {
    id: String(3_000_000_000_000_000 + n),
    guild_id: GUILDS[shard][0],
    channel_id: "1",
    content: `live ${n}`,
    marker: n,
  });
  for (const c of to) {
    await c.until(() => c.dispatches("MESSAGE_CREATE").some((f) => f.d.marker === n), `event ${n}`);
  }
  return n;
}

// ---- 1. commands reach the right shard; member chunks the client that asked ----

Deno.test("proxy commands: op 3, op 4 and op 8 of proxy clients reach the shard of the double with their d; each member chunk goes only to the client whose nonce it carries", async () => {
  const p = await proxiedGatehouse();
  try {
    const { fake } = p;
    const [a, b, quiet, other] = [await p.connect(), await p.connect(), await p.connect(), await p.connect()];
    await identify(a, 0);
    await identify(b, 0);
    await identify(quiet, 0);
    await identify(other, 1);
    const sent: Array<{ shard: number; op: number; d: unknown }> = [];
    const command = async (c: RawClient, shard: number, op: number, d: unknown) => {
      c.send(JSON.stringify({ op, d }));
      sent.push({ shard, op, d });
      await p.g.waitFor(() => fake.commands.length === sent.length, 20_000, `op ${op} at the double`);
    };

    const presence = {
      since: null,
      activities: [{ name: "the proxy", type: 0 }],
      status: "dnd",
      afk: false,
    };
    await command(a, 0, 3, presence);
    const voice = { guild_id: GUILDS[0][1], channel_id: "1234567890123", self_mute: true, self_deaf: false };
    await command(b, 0, 4, voice);
    await command(a, 0, 8, { guild_id: GUILDS[0][0], query: "", limit: 0, nonce: "nonce-of-a" });
    await command(b, 0, 8, { guild_id: GUILDS[0][2], query: "member", limit: 2, nonce: "nonce-of-b" });
    // Shard 1's client: to shard 1 of the double, not shard 0.
    await command(other, 1, 8, {
      guild_id: GUILDS[1][0],
      user_ids: [String(900_000_000_000_000_001n)],
      nonce: "nonce-of-other",
    });
    await command(other, 1, 3, { ...presence, status: "idle" });
    assert.deepEqual(fake.commands.map(({ shard, op, d }) => ({ shard, op, d })), sent);

    const chunks = (c: RawClient) =>
      c.dispatches("GUILD_MEMBERS_CHUNK").map((f) => ({
        guild: f.d.guild_id,
        nonce: f.d.nonce,
        members: f.d.members.length,
      }));
    await a.until(() => chunks(a).length > 0, "a's chunk");
    await b.until(() => chunks(b).length > 0, "b's chunk");
    await other.until(() => chunks(other).length > 0, "other's chunk");
    // A live event after them on each shard: whatever chunk a client was to get came before it.
    await liveEvent(fake, 0, [a, b, quiet]);
    await liveEvent(fake, 1, [other]);
    assert.deepEqual(chunks(a), [{ guild: GUILDS[0][0], nonce: "nonce-of-a", members: 3 }]);
    assert.deepEqual(chunks(b), [{ guild: GUILDS[0][2], nonce: "nonce-of-b", members: 2 }]);
    assert.deepEqual(chunks(quiet), []);
    assert.deepEqual(chunks(other), [{ guild: GUILDS[1][0], nonce: "nonce-of-other", members: 1 }]);
    // gatehouse's own stream has all three chunks, each on its shard.
    assert.deepEqual(
      p.g.lines.filter((l) => l.t === "GUILD_MEMBERS_CHUNK").map((l) => [l.shard, l.d.nonce]).sort(),
      [[0, "nonce-of-a"], [0, "nonce-of-b"], [1, "nonce-of-other"]],
    );
    for (const c of [a, b, quiet, other]) assert.equal(c.closed, null);
    p.upstreamUndisturbed();
  } finally {
    await p.stop();
  }
});

// ---- 2. bad clients get Discord's close codes; only they are closed ----

interface BadCase {
  name: string;
  /** IDENTIFY as this shard first (null: straight after HELLO). */
  shard: number | null;
  frame: string | Uint8Array;
  code: number;
}

const badCases: BadCase[] = [
  { name: "unknown opcode before IDENTIFY", shard: null, frame: '{"op":99,"d":{}}', code: 4001 },
  { name: "unknown opcode (5, unused)", shard: 0, frame: '{"op":5,"d":null}', code: 4001 },
  { name: "a receive-only opcode (11)", shard: 1, frame: '{"op":11}', code: 4001 },
  { name: "op as a string", shard: 0, frame: '{"op":"3","d":{}}', code: 4001 },
  { name: "invalid JSON before IDENTIFY", shard: null, frame: '{"op":2,"d":', code: 4002 },
  { name: "invalid JSON", shard: 0, frame: "not json at all", code: 4002 },
  {
    name: "invalid JSON in a binary frame",
    shard: 1,
    frame: new Uint8Array([0xff, 0x00, 0x7b]),
    code: 4002,
  },
  { name: "a JSON number", shard: 0, frame: "42", code: 4002 },
  { name: "a JSON array", shard: 0, frame: '[{"op":1}]', code: 4002 },
  {
    name: "a heartbeat over 4096 bytes",
    shard: 0,
    frame: `{"op":1,"d":null,"pad":"${"x".repeat(4096)}"}`,
    code: 4002,
  },
  { name: "a command before IDENTIFY (op 8)", shard: null, frame: cmd8(0, "early"), code: 4003 },
  { name: "a presence before IDENTIFY (op 3)", shard: null, frame: presenceText("online"), code: 4003 },
  { name: "a second IDENTIFY", shard: 0, frame: identifyText(0), code: 4005 },
  { name: "a second IDENTIFY as the other shard", shard: 1, frame: identifyText(0), code: 4005 },
  {
    name: "RESUME after IDENTIFY",
    shard: 0,
    frame: `{"op":6,"d":{"token":${JSON.stringify(TOKEN)},"session_id":"x","seq":1}}`,
    code: 4005,
  },
  { name: "op 8 without guild_id", shard: 0, frame: '{"op":8,"d":{"query":"","limit":0}}', code: 4001 },
  {
    name: "op 4 with self_mute a string",
    shard: 0,
    frame: JSON.stringify({
      op: 4,
      d: { guild_id: GUILDS[0][0], channel_id: null, self_mute: "yes", self_deaf: false },
    }),
    code: 4001,
  },
  { name: "op 3 with an unknown status", shard: 1, frame: presenceText("busy"), code: 4001 },
  { name: "op 43 with d null", shard: 0, frame: '{"op":43,"d":null}', code: 4001 },
  {
    name: "IDENTIFY with a wrong token",
    shard: null,
    frame: identifyText(0).replace(TOKEN, "nope"),
    code: 4004,
  },
  { name: "IDENTIFY with d a string", shard: null, frame: '{"op":2,"d":"identify"}', code: 4001 },
  {
    name: "IDENTIFY with d an array",
    shard: null,
    frame: `{"op":2,"d":[${JSON.stringify(TOKEN)}]}`,
    code: 4001,
  },
  { name: "RESUME with d null", shard: null, frame: '{"op":6,"d":null}', code: 4001 },
  {
    name: "IDENTIFY as shard [2, 2]",
    shard: null,
    frame: identifyText(0).replace("[0,2]", "[2,2]"),
    code: 4010,
  },
  {
    name: "IDENTIFY as shard [0, 3]",
    shard: null,
    frame: identifyText(0).replace("[0,2]", "[0,3]"),
    code: 4010,
  },
  {
    name: "IDENTIFY as shard [0, 2, 1]",
    shard: null,
    frame: identifyText(0).replace("[0,2]", "[0,2,1]"),
    code: 4010,
  },
  {
    name: "IDENTIFY as shard [0, 1]",
    shard: null,
    frame: identifyText(0).replace("[0,2]", "[0,1]"),
    code: 4011,
  },
  {
    name: "IDENTIFY with intents -1",
    shard: null,
    frame: identifyText(0).replace("513", "-1"),
    code: 4013,
  },
  {
    name: "IDENTIFY with an undefined intent bit (17)",
    shard: null,
    frame: identifyText(0).replace("513", String(513 | (1 << 17))),
    code: 4013,
  },
  {
    name: "IDENTIFY with intents 2^32 + 513",
    shard: null,
    frame: identifyText(0).replace("513", String(2 ** 32 + 513)),
    code: 4013,
  },
];

function cmd8(shard: number, nonce: string): string {
  return JSON.stringify({ op: 8, d: { guild_id: GUILDS[shard][0], query: "", limit: 0, nonce } });
}

function presenceText(status: string): string {
  return JSON.stringify({ op: 3, d: { since: null, activities: [], status, afk: false } });
}

Deno.test("proxy commands: bad frames and commands close that client with Discord's code (4001 4002 4003 4004 4005 4008 4010 4011 4013; 120 payloads a minute, heartbeats counted); the other clients keep their events and gatehouse's shards are untouched", async () => {
  const p = await proxiedGatehouse();
  try {
    const { fake } = p;
    const bystanders = [await p.connect(), await p.connect()];
    await identify(bystanders[0], 0);
    await identify(bystanders[1], 1);
    const got: Record<string, number> = {};
    for (const bad of badCases) {
      const c = await p.connect();
      if (bad.shard !== null) await identify(c, bad.shard);
      got[bad.name] = await closeCodeOf(c, bad.frame);
      await c.close();
    }
    assert.deepEqual(got, Object.fromEntries(badCases.map((b) => [b.name, b.code])));

    // 120 payloads a minute, as Discord allows, the IDENTIFY and heartbeats among them; the 121st closes
    // with 4008. The commands are for a guild of shard 1 sent on shard 0, which the proxy does not pass on
    // (Discord ignores them too), so the real shard's send budget is not touched.
    const flood = await p.connect();
    await identify(flood, 0);
    for (let i = 0; i < 118; i++) flood.send(cmd8(1, `n${i}`));
    flood.send(PROBE);
    await flood.until(() => flood.acks === 1 || flood.closed !== null, "the ACK after 120 payloads");
    assert.equal(flood.closed, null, "120 payloads in a minute are allowed");
    assert.equal(await closeCodeOf(flood, cmd8(1, "one-too-many")), 4008);

    // RESUME of a session the proxy does not know: op 9 (not resumable), and the socket stays usable;
    // also when the session id is an object that cannot be made a string ({"toString":0}).
    const stale = await p.connect();
    for (const id of ['"0123456789abcdef"', '{"toString":0}', '{"valueOf":{},"toString":{}}']) {
      const invalid = stale.count(9);
      stale.send(`{"op":6,"d":{"token":${JSON.stringify(TOKEN)},"session_id":${id},"seq":7}}`);
      await stale.until(() => stale.count(9) > invalid || stale.closed !== null, `op 9 for session ${id}`);
      assert.equal(stale.closed, null);
      assert.deepEqual(stale.frames.at(-1), { t: null, s: null, op: 9, d: false });
    }
    await identify(stale, 1);
    assert.equal(p.exited(), false);

    // None of it reached the double; the clients that did nothing wrong go on.
    assert.deepEqual(fake.commands, []);
    for (const shard of [0, 1]) await liveEvent(fake, shard, [bystanders[shard]]);
    await liveEvent(fake, 1, [stale]);
    for (const c of bystanders) assert.equal(c.closed, null);
    assert.equal(bystanders[0].dispatches("MESSAGE_CREATE").length, 1);
    assert.equal(bystanders[1].dispatches("MESSAGE_CREATE").length, 2);
    p.upstreamUndisturbed();
  } finally {
    await p.stop();
  }
});

// ---- 3. hostile frames, generated ----

/** What a frame must get, by Discord's rules (as the proxy implements them: see src/proxy/client.ts). */
type Expected =
  | { kind: "close"; codes: number[] }
  | { kind: "ack" }
  | { kind: "ignored" }
  | { kind: "sent"; shard: number; op: number; d: unknown }
  | { kind: "invalid-session" }
  | { kind: "ready"; shard: number };

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function tokenOk(token: unknown): boolean {
  // gatehouse takes the token with or without a leading "Bot ", as its REST routes do.
  return typeof token === "string" && token.trim().replace(/^Bot\s+/i, "") === TOKEN;
}

/**
 * The text the proxy reads: a text frame as sent (lone surrogates became U+FFFD on the way; a BOM stays),
 * a binary frame decoded as UTF-8 (lossy, a leading BOM dropped).
 */
function received(data: string | Uint8Array): string {
  return typeof data === "string" ? data.toWellFormed() : decoder.decode(data);
}

/** The model: `shard` is the client's shard once identified, null before. */
function expected(text: string, shard: number | null): Expected {
  if (encoder.encode(text).length > 4096) return { kind: "close", codes: [4002] };
  let message: unknown;
  try {
    message = JSON.parse(text);
  } catch {
    return { kind: "close", codes: [4002] };
  }
  if (!isPlainObject(message)) return { kind: "close", codes: [4002] };
  const { op, d } = message;
  if (op === 1) return { kind: "ack" };
  if (op === 2 || op === 6) {
    if (shard !== null) return { kind: "close", codes: [4005] };
    // A bad payload for a known op: 4001.
    if (!isPlainObject(d)) return { kind: "close", codes: [4001] };
    if (op === 6) return tokenOk(d.token) ? { kind: "invalid-session" } : { kind: "close", codes: [4004] };
    const codes: number[] = [];
    if (!tokenOk(d.token)) codes.push(4004);
    const intents = d.intents;
    if (
      typeof intents !== "number" || !Number.isInteger(intents) || intents < 0 ||
      intents >= 2 ** 32 || (intents & ~ALL_INTENTS) !== 0
    ) codes.push(4013);
    const s = d.shard;
    if (s === undefined) codes.push(4011); // [0, 1], and the bot runs 2 shards
    else if (
      !Array.isArray(s) || s.length !== 2 || !Number.isInteger(s[0]) || !Number.isInteger(s[1]) ||
      s[1] < 1 || s[0] < 0 || s[0] >= s[1]
    ) codes.push(4010);
    else if (s[1] !== SHARDS) codes.push(s[1] === 1 ? 4011 : 4010);
    return codes.length > 0 ? { kind: "close", codes } : { kind: "ready", shard: (s as number[])[0] + 0 };
  }
  if (typeof op !== "number" || ![3, 4, 8, 31, 43].includes(op)) return { kind: "close", codes: [4001] };
  if (shard === null) return { kind: "close", codes: [4003] };
  // A command: checked against Discord's documented fields (op 3 goes on the client's own shard).
  const parsed = parseCommand(op === 3 ? JSON.stringify({ op, d, shard }) : text, SHARDS);
  if (!parsed.ok) return { kind: "close", codes: [4001] };
  const part = parsed.parts.find((x) => x.shard === shard);
  return part ? { kind: "sent", shard, op, d: part.d } : { kind: "ignored" };
}

/** A frame to send: text, bytes, or a big one built when sent (so a failure prints a short spec). */
type FrameSpec =
  | { text: string }
  | { bytes: Uint8Array }
  | { big: { op: string; size: number; chunk: string; binary: boolean } };

function materialize(spec: FrameSpec): string | Uint8Array {
  if ("text" in spec) return spec.text;
  if ("bytes" in spec) return spec.bytes;
  const { op, size, chunk, binary } = spec.big;
  const pad = chunk.repeat(Math.ceil(size / chunk.length)).slice(0, size);
  const text = `{"op":${op},"d":{"token":${JSON.stringify(TOKEN)},"pad":${JSON.stringify(pad)}}}`;
  return binary ? encoder.encode(text) : text;
}

function describe(spec: FrameSpec): string {
  const text = "text" in spec
    ? spec.text
    : "bytes" in spec
    ? `bytes[${spec.bytes.length}] ${decoder.decode(spec.bytes)}`
    : JSON.stringify(spec.big);
  return text.length > 300 ? `${text.slice(0, 300)}… (${text.length} chars)` : text;
}

/** `{"key":<raw JSON>,…}` from raw JSON texts: duplicate keys, 1e400, -0 and the like stay as written. */
function raw(entries: Array<readonly [string, string] | null>): string {
  return `{${entries.filter((e) => e !== null).map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`;
}

const hostileKey = fc.oneof(
  fc.constantFrom(
    "toString",
    "valueOf",
    "__proto__",
    "constructor",
    "toJSON",
    "hasOwnProperty",
    "then",
    "op",
    "d",
    "s",
    "t",
    "token",
    "session_id",
    "seq",
    "shard",
    "nonce",
    "guild_id",
    "intents",
    "",
  ),
  fc.string({ maxLength: 6 }),
);

const leaf = fc.oneof(
  fc.integer().map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => JSON.stringify(n)),
  fc.constantFrom(
    "1e400",
    "-1e400",
    "-0",
    "0.5",
    "1.0",
    "1E2",
    "9007199254740993",
    "1e-400",
    "true",
    "false",
    "null",
    '""',
    '"\\u0000"',
    '"\\ud800"',
    '"\\udfff\\ud800"',
    '"💥"',
  ),
  fc.string({ maxLength: 12 }).map((s) => JSON.stringify(s)),
  fc.string({ maxLength: 12, unit: "binary" }).map((s) => JSON.stringify(s)),
);

/** Any JSON value, as text, with hostile keys and numbers. */
const junk: fc.Arbitrary<string> = fc.letrec((tie) => ({
  value: fc.oneof(
    { maxDepth: 3, depthSize: "small" },
    { weight: 6, arbitrary: leaf },
    {
      weight: 2,
      arbitrary: fc.array(tie("value") as fc.Arbitrary<string>, { maxLength: 4 }).map((a) =>
        `[${a.join(",")}]`
      ),
    },
    {
      weight: 2,
      arbitrary: fc.array(fc.tuple(hostileKey, tie("value") as fc.Arbitrary<string>), { maxLength: 4 })
        .map(raw),
    },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        '{"toString":0}',
        '{"valueOf":0,"toString":0}',
        '{"toString":{},"valueOf":{}}',
        '{"__proto__":{"toString":0}}',
        '{"__proto__":null}',
        '{"toJSON":0}',
        "[]",
        "{}",
      ),
    },
    // Deep nesting (rare: it makes most frames it is in too big).
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 1500 }).map((n) => "[".repeat(n) + "]".repeat(n)) },
  ),
})).value;

const opText = fc.oneof(
  fc.constantFrom("1", "2", "3", "4", "6", "8", "31", "43"),
  fc.constantFrom(
    '"1"',
    '"2"',
    '"3"',
    "3.5",
    "2.0",
    "3e0",
    "-1",
    "-8",
    "1e400",
    "-1e400",
    "-0",
    "1e308",
    "9007199254740995",
    "4294967299",
    "0",
    "5",
    "7",
    "9",
    "10",
    "11",
    "null",
    "true",
    "[3]",
    '{"op":3}',
  ),
  fc.integer({ min: -100, max: 100 }).map(String),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((n) => JSON.stringify(n)),
  junk,
);

/** A field that is there most of the time (absent 1 in `freq`). */
const entry = (key: string, value: fc.Arbitrary<string>, freq = 4) =>
  fc.option(value.map((v) => [key, v] as const), { nil: null, freq });
const extras = fc.array(fc.tuple(hostileKey, junk), { maxLength: 2 });
const obj = (...entries: fc.Arbitrary<readonly [string, string] | null>[]) =>
  fc.tuple(fc.tuple(...entries), extras).map(([fields, more]) => raw([...fields, ...more]));
const snowflakeText = fc.oneof(
  fc.constantFrom(...GUILDS.flat().map((id) => JSON.stringify(id))),
  fc.constantFrom('"0"', '"123456789012345678901"', '"-1"', '"12a"', '""', "123"),
  junk,
);

const tokenText = fc.oneof(
  { weight: 6, arbitrary: fc.constant(JSON.stringify(TOKEN)) },
  fc.constantFrom(
    JSON.stringify(`Bot ${TOKEN}`),
    JSON.stringify(`${TOKEN}x`),
    JSON.stringify(` ${TOKEN}\n`),
    JSON.stringify(TOKEN.toUpperCase()),
    '""',
  ),
  fc.string({ maxLength: 30 }).map((s) => JSON.stringify(s)),
  junk,
);

// Mostly one field wrong at a time, so that each of the IDENTIFY checks is reached.
const identifyD = obj(
  entry("token", fc.oneof({ weight: 3, arbitrary: fc.constant(JSON.stringify(TOKEN)) }, tokenText), 10),
  entry(
    "intents",
    fc.oneof(
      // Mostly defined bits (a bitfield with an undefined one is 4013), some of anything.
      { weight: 12, arbitrary: fc.nat().map((n) => String(n & ALL_INTENTS)) },
      { weight: 3, arbitrary: fc.nat().map(String) },
      fc.constantFrom("-1", "1.5", "1e400", '"513"', "null", "513.0", "9007199254740993", "-0", "1e21"),
      junk,
    ),
    10,
  ),
  entry(
    "shard",
    fc.oneof(
      { weight: 6, arbitrary: fc.constantFrom("[0,2]", "[1,2]") },
      fc.constantFrom(
        "[2,2]",
        "[-1,2]",
        "[0,1]",
        "[0,3]",
        "[5,3]",
        "[0]",
        "[0,2,1]",
        "[1,2,0]",
        "[]",
        '["0","2"]',
        "[0.5,2]",
        '"0,2"',
        "{}",
        "null",
        "[1e400,2]",
        "[0,0]",
        "[0,-2]",
        "[[0],2]",
        "[0,2.0]",
        "[-0,2]",
        "[0,1e400]",
        "[null,2]",
      ),
      fc.tuple(fc.integer({ min: -3, max: 4 }), fc.integer({ min: -2, max: 5 })).map((t) =>
        JSON.stringify(t)
      ),
      fc.array(fc.integer({ min: -2, max: 3 }), { maxLength: 4 }).map((a) => JSON.stringify(a)),
      junk,
    ),
    8,
  ),
  entry("properties", fc.oneof(fc.constant('{"os":"linux","browser":"x","device":"x"}'), junk)),
  entry("compress", fc.oneof(fc.constantFrom("true", "false", '"true"', "1"), junk)),
  entry("large_threshold", fc.oneof(fc.constantFrom("50", "250", "0", "-1", "1e400"), junk)),
  entry("presence", junk),
);

const resumeD = obj(
  entry("token", tokenText),
  entry(
    "session_id",
    fc.oneof(
      fc.stringMatching(/^[0-9a-f]{32}$/).map((s) => JSON.stringify(s)),
      // Objects String() cannot convert (it throws), and other non-strings.
      {
        weight: 2,
        arbitrary: fc.constantFrom('{"toString":0}', '{"valueOf":0,"toString":0}', '{"toString":{}}'),
      },
      fc.constantFrom('""', "null", "[]", "7"),
      junk,
    ),
  ),
  entry("seq", fc.oneof(fc.nat().map(String), fc.constantFrom("-1", "1.5", "1e400", '"7"', "null"), junk)),
);

const bool = fc.oneof(fc.constantFrom("true", "false"), junk);
const commandD: Record<number, fc.Arbitrary<string>> = {
  3: obj(
    entry("since", fc.oneof(fc.constantFrom("null", "0", "1.5"), junk)),
    entry("activities", fc.oneof(fc.constantFrom("[]", '[{"name":"x","type":0}]', '[{"name":1}]'), junk)),
    entry("status", fc.oneof(fc.constantFrom('"online"', '"idle"', '"busy"'), junk)),
    entry("afk", bool),
  ),
  4: obj(
    entry("guild_id", snowflakeText),
    entry("channel_id", fc.oneof(fc.constant("null"), snowflakeText)),
    entry("self_mute", bool),
    entry("self_deaf", bool),
  ),
  8: obj(
    entry("guild_id", snowflakeText),
    entry("query", fc.oneof(fc.constantFrom('""', '"mem"'), junk)),
    entry("limit", fc.oneof(fc.constantFrom("0", "2", "-1"), junk)),
    entry(
      "user_ids",
      fc.oneof(fc.constantFrom('"900000000000000001"', '["900000000000000002"]', "[]"), junk),
    ),
    entry("presences", bool),
    entry("nonce", fc.oneof(fc.string({ maxLength: 40 }).map((s) => JSON.stringify(s)), junk)),
  ),
  31: obj(
    entry(
      "guild_ids",
      fc.oneof(
        fc.subarray(GUILDS.flat(), { minLength: 1 }).map((ids) => JSON.stringify(ids)),
        fc.constantFrom("[]", '["x"]'),
        junk,
      ),
    ),
  ),
  43: obj(
    entry("guild_id", snowflakeText),
    entry("fields", fc.oneof(fc.constantFrom('["status"]', '["status","status"]', '["x"]', "[]"), junk)),
  ),
};

/** Valid commands for a guild of either shard, as they are or with one field junk. */
const nearValidCommand: fc.Arbitrary<FrameSpec> = fc.tuple(
  fc.constantFrom(...GUILDS.flat()),
  fc.constantFrom<Array<(g: string) => { op: number; d: Record<string, unknown> }>>(
    () => ({
      op: 3,
      d: { since: null, activities: [{ name: "fuzz", type: 0 }], status: "online", afk: false },
    }),
    (g) => ({ op: 4, d: { guild_id: g, channel_id: null, self_mute: false, self_deaf: true } }),
    (g) => ({ op: 8, d: { guild_id: g, query: "", limit: 0, nonce: "fuzz" } }),
    (g) => ({ op: 8, d: { guild_id: g, user_ids: ["900000000000000001"] } }),
    (g) => ({ op: 31, d: { guild_ids: [g] } }),
    (g) => ({ op: 43, d: { guild_id: g, fields: ["status"] } }),
  ),
  fc.option(fc.tuple(fc.nat(), junk), { nil: null, freq: 2 }),
).map(([guild, make, change]) => {
  const { op, d } = make(guild);
  const fields: Array<[string, string]> = Object.entries(d).map(([k, v]) => [k, JSON.stringify(v)]);
  if (change) fields[change[0] % fields.length][1] = change[1];
  return { text: raw([["op", String(op)], ["d", raw(fields)]]) };
});

const envelope = (op: fc.Arbitrary<string | null>, d: fc.Arbitrary<string>) =>
  fc.tuple(op, fc.option(d, { nil: null, freq: 6 }), extras).map(([o, body, more]): FrameSpec => ({
    text: raw([o === null ? null : ["op", o], body === null ? null : ["d", body], ...more]),
  }));

const validTexts = [
  identifyText(0),
  identifyText(1, ',"compress":true'),
  `{"op":6,"d":{"token":${JSON.stringify(TOKEN)},"session_id":"abc","seq":3}}`,
  cmd8(0, "cut"),
  presenceText("online"),
  PROBE,
];

const frameSpec: fc.Arbitrary<FrameSpec> = fc.oneof(
  { weight: 1, arbitrary: fc.string({ maxLength: 200, unit: "binary" }).map((text) => ({ text })) },
  { weight: 1, arbitrary: fc.string({ maxLength: 40 }).map((text) => ({ text })) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 600 }).map((bytes) => ({ bytes })) },
  { weight: 1, arbitrary: junk.map((t) => ({ bytes: encoder.encode(t) })) },
  { weight: 1, arbitrary: junk.map((text) => ({ text })) },
  { weight: 3, arbitrary: envelope(fc.option(opText, { nil: null, freq: 8 }), junk) },
  { weight: 10, arbitrary: envelope(fc.constant("2"), identifyD) },
  { weight: 4, arbitrary: envelope(fc.constant("6"), resumeD) },
  {
    weight: 6,
    arbitrary: fc.constantFrom(3, 4, 8, 31, 43).chain((op) =>
      envelope(fc.constant(String(op)), commandD[op])
    ),
  },
  { weight: 2, arbitrary: nearValidCommand },
  { weight: 2, arbitrary: envelope(fc.constant("1"), junk) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constantFrom("1", "2", "3", "6", "8", "99"),
      size: fc.oneof(fc.integer({ min: 3_900, max: 4_300 }), fc.integer({ min: 4_097, max: 400_000 })),
      chunk: fc.string({ minLength: 1, maxLength: 4, unit: "binary" }),
      binary: fc.boolean(),
    }).map((big) => ({ big })),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(fc.constantFrom(...validTexts), fc.nat()).map(([t, k]) => ({
      text: t.slice(0, k % t.length),
    })),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '{"op":1}{"op":1}',
      '{"op":1,}',
      "{'op':1}",
      '{"op":1',
      "\ufeff" + PROBE,
      ` ${PROBE}\n`,
    )
      .map((text) => ({ text })),
  },
);

Deno.test("proxy commands: arbitrary hostile frames before and after IDENTIFY are ignored, answered, or close only that client with an allowed code; gatehouse stays up, its shards untouched, and a good client still gets READY, GUILD_CREATEs and live events", async () => {
  const p = await proxiedGatehouse();
  try {
    const { fake } = p;
    const bystander = await p.connect();
    await identify(bystander, 0);
    const outcomes = new Map<string, number>();
    const forwarded: Array<{ shard: number; op: number; d: unknown }> = [];
    let runs = 0;

    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<"before" | "after">("before", "after"),
        fc.constantFrom(0, 1),
        fc.array(frameSpec, { minLength: 1, maxLength: 6 }),
        async (phase, startShard, specs) => {
          runs++;
          assert.equal(p.exited(), false, `gatehouse exited:\n${p.g.stderr().slice(-3000)}`);
          let c: RawClient | null = null;
          let shard: number | null = null;
          try {
            for (const spec of specs) {
              // A frame that closed the connection: the next one goes on a new one, set up the same way.
              if (c === null || c.closed !== null) {
                await c?.close();
                c = await p.connect();
                shard = null;
                if (phase === "after") {
                  await identify(c, startShard);
                  shard = startShard;
                }
              }
              const client: RawClient = c;
              const data = materialize(spec);
              const want: Expected = expected(received(data), shard);
              const what: string =
                `${describe(spec)} (${shard === null ? "before IDENTIFY" : `on shard ${shard}`}, ` +
                `expected ${JSON.stringify(want)})`;
              const before = {
                acks: client.acks,
                invalid: client.count(9),
                ready: client.dispatches("READY").length,
              };
              if (want.kind === "close") {
                // Nothing after it (see closeCodeOf); the wait's limit only matters when it stays open.
                const code = await closeCodeOf(client, data).catch((error) => {
                  throw new Error(`${what}: ${(error as Error).message}`);
                });
                assert.ok(want.codes.includes(code), `closed with ${code} by ${what}`);
                assert.equal(
                  client.count(9) + client.dispatches("READY").length,
                  before.invalid + before.ready,
                  what,
                );
                outcomes.set(`close ${code}`, (outcomes.get(`close ${code}`) ?? 0) + 1);
                continue;
              }
              // Ignored or answered: a heartbeat after it is ACKed once all of that is done.
              client.send(data);
              client.send(PROBE);
              const acks = before.acks + (want.kind === "ack" ? 2 : 1);
              await client.until(
                () =>
                  client.closed !== null ||
                  (client.acks >= acks &&
                    (want.kind !== "ready" || client.dispatches("READY").length > before.ready)),
                `the answer to ${what}`,
              );
              assert.equal(client.closed, null, `closed (${JSON.stringify(client.closed)}) by ${what}`);
              assert.equal(client.acks, acks, `heartbeat ACKs after ${what}`);
              assert.equal(client.count(9), before.invalid + (want.kind === "invalid-session" ? 1 : 0), what);
              const readies = client.dispatches("READY");
              assert.equal(readies.length, before.ready + (want.kind === "ready" ? 1 : 0), what);
              if (want.kind === "ready") {
                assert.deepEqual(readies[readies.length - 1].d.shard, [want.shard, SHARDS]);
                shard = want.shard;
              }
              if (want.kind === "sent") forwarded.push({ shard: want.shard, op: want.op, d: want.d });
              outcomes.set(want.kind, (outcomes.get(want.kind) ?? 0) + 1);
            }
          } catch (error) {
            // A client closed with no code is how gatehouse dying looks from here: say so.
            await Promise.race([p.g.status, new Promise((resolve) => setTimeout(resolve, 2_000))]);
            if (p.exited()) {
              const why = p.g.stderr().split("\n").filter((l) => !l.startsWith("{")).join("\n").slice(-1500);
              throw new Error(`${(error as Error).message}\n\ngatehouse EXITED; its stderr ends:\n${why}`);
            }
            throw error;
          } finally {
            await c?.close();
          }
          assert.equal(p.exited(), false, `gatehouse exited:\n${p.g.stderr().slice(-3000)}`);
          assert.equal(fake.identifies.length, SHARDS, "gatehouse identified again");
        },
      ),
      // Seeded, so every run tries the same frames; no shrinking (a failure names its frame already).
      { numRuns: RUNS, seed: 0x6a7e, endOnFailure: true },
    );
    assert.equal(runs, RUNS);
    // The generators reach every rule: each of these was the answer to some frame.
    for (const kind of ["close 4001", "close 4002", "close 4003", "close 4004", "close 4005", "close 4010"]) {
      assert.ok(outcomes.has(kind), `no frame got ${kind}: ${JSON.stringify([...outcomes])}`);
    }
    for (const kind of ["close 4011", "close 4013", "ack", "invalid-session", "ready", "sent", "ignored"]) {
      assert.ok(outcomes.has(kind), `no frame got ${kind}: ${JSON.stringify([...outcomes])}`);
    }

    // The few valid commands among the junk reached the double, each on its shard, with its d.
    await p.g.waitFor(() => fake.commands.length === forwarded.length, 30_000, "the forwarded commands");
    const key = (x: { shard: number; op: number; d: unknown }) => JSON.stringify([x.shard, x.op, x.d]);
    assert.deepEqual(fake.commands.map(key).sort(), forwarded.map(key).sort());

    // Afterwards a good client starts up as usual and gets live events; so does the one that was there.
    const good = [await p.connect(), await p.connect()];
    await identify(good[0], 0);
    await identify(good[1], 1);
    await liveEvent(fake, 0, [good[0], bystander]);
    await liveEvent(fake, 1, [good[1]]);
    assert.equal(bystander.closed, null);
    p.upstreamUndisturbed();
  } finally {
    await p.stop();
  }
});
