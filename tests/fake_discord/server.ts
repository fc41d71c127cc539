/**
 * A faithful test double of Discord's gateway and REST API (docs/protocol.md §12), on 127.0.0.1 port 0.
 *
 * It models what a gateway client must get right — identify buckets and the daily session-start
 * counter, READY with a `resume_gateway_url` on a second listener, per-session replay buffers with
 * expiry, RESUME/RESUMED, every close-code check, the 120/60 s send limit, heartbeats — and lets tests
 * inject what Discord does to connections: op 7, op 9, close codes, dropped TCP, stalled connections,
 * floods, messages split over several WebSocket messages. The client's protocol violations are
 * recorded rather than thrown, so a test can assert at the end that there were none.
 */
import {
  ALL_INTENTS,
  IDENTIFY_INTERVAL_MS,
  MAX_PAYLOAD_BYTES,
  Op,
  PRIVILEGED_INTENTS,
  SEND_LIMIT,
  SEND_WINDOW_MS,
} from "../../src/gateway/protocol.ts";
import { type Compressor, precompress, TemplateZlib, ZlibCompressor, ZstdCompressor } from "./compress.ts";
import {
  channelIdFor,
  guildCreatePayload,
  guildIdFor,
  member as memberPayload,
  readyPayload,
  trafficEvent,
} from "./events.ts";
import { type GuildEvent, GuildSet } from "./guilds.ts";
import { frameHeaderLength, writeFrameHeader, type WsConnection, WsServer } from "./ws_server.ts";

export interface FakeDiscordOptions {
  /** The accepted bot token, default "fake-token"; any other → REST 401 / gateway close 4004. */
  token?: string;
  /** `shards` returned by /gateway/bot, default 1. */
  shards?: number;
  /** `max_concurrency` returned by /gateway/bot: the number of identify buckets. Default 1. */
  maxConcurrency?: number;
  /** Defaults 1000 / 1000 / 86_400_000. */
  sessionStartLimit?: { total?: number; remaining?: number; resetAfter?: number };
  /** HELLO's interval, default 41250 ms. */
  heartbeatIntervalMs?: number;
  /** Identify spacing enforced per bucket (shard_id % max_concurrency), default 5000 ms. */
  identifyIntervalMs?: number;
  /** How long a session stays resumable after its connection ended, default 120 s. */
  sessionTtlMs?: number;
  /** Privileged intents enabled for the application, default all three. */
  enabledPrivilegedIntents?: number;
  /** A shard whose guild share exceeds this → close 4011. Default 2500. */
  maxGuildsPerShard?: number;
  /** Guilds each shard owns (a GUILD_CREATE each after READY), default 2. Ignored with `guilds`. */
  guildsPerShard?: number;
  /**
   * The bot's guilds as one fixed set of this many (guilds.ts): a session owns those with
   * `(guild_id >> 22) % count == shard`, and live traffic happens once per guild, sent to every session
   * that owns it (see `burstGuilds`, `guildEvents`). Also limits IDENTIFY to the accepted counts
   * (`acceptCounts`). Default 0: guilds per session (`guildsPerShard`), any count accepted.
   */
  guilds?: number;
  /** Member count of the first guild of each shard; default 0 = no large guild. */
  largeGuildMembers?: number;
  /** Events kept per session for RESUME, default 100_000; resuming from an older seq → 4007. */
  replayBufferSize?: number;
  /** zlib-stream: split every payload over 2–3 WebSocket messages. Default false. */
  splitMessages?: boolean;
  /**
   * zlib-stream from independently compressed blocks and precompressed event bodies for every
   * connection (cheap for benchmarks). Default false: one real deflate context per connection, as
   * Discord does, until a flood starts (floods always use precompressed bodies).
   */
  precompressed?: boolean;
  /**
   * Stamp the send time into every templated dispatch (floods, and paced traffic with `precompressed`):
   * `d` starts with `"sent_at":<ms since the epoch, three decimals>`, read from
   * `performance.timeOrigin + performance.now()` when the frame is built, so a reader in another process
   * can tell each event's latency. Default false (the payloads are the templates, byte for byte).
   */
  stampSendTime?: boolean;
  /** Keep the name of every event of every session (for exactly-once checks). Default true; off for long benchmarks. */
  recordEvents?: boolean;
  /** After op 7 (`sendReconnect`), close TCP this long later unless the client did. Default 1000 ms. */
  reconnectCloseMs?: number;
  /** After a server close frame, end TCP this long later unless the client answered. Default 1000 ms. */
  closeTimeoutMs?: number;
  hostname?: string;
}

export type ViolationKind =
  | "identify_too_early"
  | "over_send_limit"
  | "resume_wrong_url"
  | "missed_heartbeat"
  | "session_start_limit_exhausted"
  | "payload_before_identify"
  | "second_identify"
  | "payload_too_large"
  | "invalid_json"
  | "unknown_op";

export interface Violation {
  kind: ViolationKind;
  shard: number | null;
  at: number;
  detail: string;
}

type Listener = "main" | "resume";
type Compression = "zlib-stream" | "zstd-stream" | "none";

/** One dispatch in a replay buffer. Flood events share a few entries, so buffers cost a pointer each. */
interface Entry {
  t: string;
  /** The JSON of `d`. */
  body: string;
  /** `{"t":"…","s":` — the envelope up to the sequence number. */
  head: string;
  /** ASCII of `head`, for templates. */
  headBytes?: Uint8Array;
  /** UTF-8 of `${body}}`, for templates. */
  bytes?: Uint8Array;
  /** `${body}}` precompressed into independent raw deflate blocks, for templates. */
  tail?: Uint8Array;
  /** UTF-8 of `body` after its `{`, then `}`: what follows a send-time stamp (see `templateHead`). */
  stampedBytes?: Uint8Array;
  /** `stampedBytes` precompressed like `tail`. */
  stampedTail?: Uint8Array;
}

/** Event names of a session, one byte (or two) per event: a flood may generate millions. */
class NameLog {
  #names: string[] = [];
  #codes = new Map<string, number>();
  #log: Uint8Array | Uint16Array = new Uint8Array(256);
  length = 0;

  push(t: string): void {
    let code = this.#codes.get(t);
    if (code === undefined) {
      code = this.#names.length;
      this.#names.push(t);
      this.#codes.set(t, code);
      if (code > 255 && this.#log instanceof Uint8Array) this.#log = Uint16Array.from(this.#log);
    }
    if (this.length === this.#log.length) {
      const bigger = new (this.#log.constructor as Uint8ArrayConstructor)(this.#log.length * 2);
      bigger.set(this.#log);
      this.#log = bigger;
    }
    this.#log[this.length++] = code;
  }

  list(): Array<{ s: number; t: string }> {
    const out = new Array<{ s: number; t: string }>(this.length);
    for (let i = 0; i < this.length; i++) out[i] = { s: i + 1, t: this.#names[this.#log[i]] };
    return out;
  }
}

interface Session {
  id: string;
  shard: number;
  count: number;
  guildIds: string[];
  /** Last sequence number given out. */
  seq: number;
  /** Replay buffer: the event with `s` is at index `s - bufferStart`. */
  buffer: Entry[];
  bufferStart: number;
  names: NameLog | null;
  conn: Conn | null;
  invalidated: boolean;
  expired: boolean;
  expiryTimer: ReturnType<typeof setTimeout> | undefined;
  trafficDebt: number;
}

interface Conn {
  id: number;
  ws: WsConnection;
  listener: Listener;
  compression: Compression;
  compressor: Compressor | null;
  /** Whether the compressor has produced output (the zlib header is out). */
  compressedAny: boolean;
  shard: number | null;
  session: Session | null;
  identified: boolean;
  /** The session this connection last served (RESUME of it on the same socket is no wrong-URL resume). */
  lastSessionId: string | null;
  /** Highest `s` written to this connection. */
  sentSeq: number;
  helloAt: number;
  lastHeartbeatAt: number | null;
  lastHeartbeatSeq: number | null;
  heartbeats: number;
  heartbeatFlagged: boolean;
  sendTimes: number[];
  stalled: boolean;
}

/** Distinct event bodies a flood cycles through. */
const FLOOD_BODIES = 64;
/** A flood keeps up to this many bytes queued per connection: enough to keep the socket busy. */
const FLOOD_QUEUE_BYTES = 1 << 20;
const TRACE = `["gateway-prd-us-east1-c-fake",{"micros":0.0}]`;
/** Close codes after which the session cannot be resumed (§4): new session or fatal. */
const SESSION_ENDING_CODES = new Set([4003, 4004, 4007, 4009, 4010, 4011, 4012, 4013, 4014]);
const KNOWN_OPS = new Set<number>([
  Op.Heartbeat,
  Op.Identify,
  Op.PresenceUpdate,
  Op.VoiceStateUpdate,
  Op.Resume,
  Op.RequestGuildMembers,
  Op.RequestSoundboardSounds,
  Op.RequestChannelInfo,
]);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function entry(t: string, body: string): Entry {
  return { t, body, head: `{"t":${JSON.stringify(t)},"s":` };
}

export class FakeDiscord {
  readonly options: Required<Omit<FakeDiscordOptions, "sessionStartLimit">> & {
    sessionStartLimit: { total: number; remaining: number; resetAfter: number };
  };
  readonly violations: Violation[] = [];
  readonly identifies: Array<{
    shard: number;
    count: number;
    at: number;
    intents: number;
    properties: unknown;
    presence: unknown;
    largeThreshold: number | undefined;
  }> = [];
  readonly resumes: Array<
    { shard: number; sessionId: string; seq: number; at: number; listener: Listener; ok: boolean }
  > = [];
  /** Close frames the client started (its answers to the fake's own close frames are not listed). */
  readonly clientCloses: Array<{ shard: number | null; code: number; at: number }> = [];
  /** Every op other than 1, 2 and 6 that an authenticated client sent. */
  readonly commands: Array<{ shard: number; op: number; d: unknown; at: number }> = [];
  /** Decremented per accepted IDENTIFY; an IDENTIFY at 0 → violation and op 9 false. */
  sessionStartRemaining: number;
  /**
   * Hostile Discord, for tests: each new connection takes the first entry (if any) as the raw text of
   * its HELLO instead of a well-formed one (`{"op":10,"d":{"heartbeat_interval":1e400}}`).
   */
  readonly nextHellos: string[] = [];
  /** Each new session's READY `d` goes through the first of these (if any), e.g. to drop `session_id`. */
  readonly nextReadyPatches: Array<(d: Record<string, unknown>) => unknown> = [];

  #rest!: Deno.HttpServer<Deno.NetAddr>;
  #main!: WsServer;
  #resume!: WsServer;
  #conns = new Map<number, Conn>();
  #nextConnId = 1;
  #sessions = new Map<string, Session>();
  #sessionOrder: Session[] = [];
  #bucketLastIdentify = new Map<number, number>();
  #resumeHostDown = false;
  /** Shards whose every connection stalls once it says who it is (see `stallShard`). */
  #stalledShards = new Set<number>();
  #restFailures = 0;
  #restFailureStatus = 502;
  #trafficRate = 0;
  #trafficTimer: ReturnType<typeof setInterval> | undefined;
  #trafficLast = 0;
  #trafficSeed = 0;
  #watchdog: ReturnType<typeof setInterval> | undefined;
  #floodShards: Set<number> | null = null;
  #floodLoop: Promise<void> | null = null;
  #flooding = false;
  #templateEntries: Entry[] = [];
  #eventsSent = 0;
  #closedBytes = 0;
  #stopped = false;
  /** Counts whose IDENTIFY gets no READY (`withholdReady`). */
  #withheldReady = new Set<number>();
  /** The fixed guild set (`guilds` option), or null: guilds per session. */
  #guilds: GuildSet | null;
  /** Counts set by `acceptCounts`; null = the recommended count (or any count without `guilds`). */
  #acceptedCounts: Set<number> | null = null;
  #strictCounts = false;
  #guildCursor = 0;
  #guildDebt = 0;
  /** With `guilds`: every event generated for a guild (global number, guild, where it went), in order. */
  readonly guildEvents: GuildEvent[] = [];
  /** One-off timers (drops after op 7), cleared by stop(). */
  #timers = new Set<ReturnType<typeof setTimeout>>();

  private constructor(options: FakeDiscordOptions) {
    this.options = {
      token: options.token ?? "fake-token",
      shards: options.shards ?? 1,
      maxConcurrency: options.maxConcurrency ?? 1,
      sessionStartLimit: {
        total: options.sessionStartLimit?.total ?? 1000,
        remaining: options.sessionStartLimit?.remaining ?? options.sessionStartLimit?.total ?? 1000,
        resetAfter: options.sessionStartLimit?.resetAfter ?? 86_400_000,
      },
      heartbeatIntervalMs: options.heartbeatIntervalMs ?? 41_250,
      identifyIntervalMs: options.identifyIntervalMs ?? IDENTIFY_INTERVAL_MS,
      sessionTtlMs: options.sessionTtlMs ?? 120_000,
      enabledPrivilegedIntents: options.enabledPrivilegedIntents ?? PRIVILEGED_INTENTS,
      maxGuildsPerShard: options.maxGuildsPerShard ?? 2500,
      guildsPerShard: options.guildsPerShard ?? 2,
      guilds: options.guilds ?? 0,
      largeGuildMembers: options.largeGuildMembers ?? 0,
      replayBufferSize: options.replayBufferSize ?? 100_000,
      splitMessages: options.splitMessages ?? false,
      precompressed: options.precompressed ?? false,
      stampSendTime: options.stampSendTime ?? false,
      recordEvents: options.recordEvents ?? true,
      reconnectCloseMs: options.reconnectCloseMs ?? 1000,
      closeTimeoutMs: options.closeTimeoutMs ?? 1000,
      hostname: options.hostname ?? "127.0.0.1",
    };
    for (const key of ["shards", "maxConcurrency", "heartbeatIntervalMs", "replayBufferSize"] as const) {
      const value = this.options[key];
      if (!Number.isInteger(value) || value < 1) {
        throw new RangeError(
          `Cannot start the fake Discord with ${key} = ${value}: a positive integer is required`,
        );
      }
    }
    this.sessionStartRemaining = this.options.sessionStartLimit.remaining;
    this.#guilds = this.options.guilds > 0 ? new GuildSet(this.options.guilds) : null;
  }

  /** Starts the REST server and both gateway listeners on free ports. */
  static start(options: FakeDiscordOptions = {}): Promise<FakeDiscord> {
    const fake = new FakeDiscord(options);
    fake.#listen();
    return Promise.resolve(fake);
  }

  #listen(): void {
    const { hostname, closeTimeoutMs } = this.options;
    this.#rest = Deno.serve(
      { hostname, port: 0, onListen: () => {} },
      (request) => this.#handleRest(request),
    );
    this.#main = WsServer.listen({
      hostname,
      closeTimeoutMs,
      onConnection: (ws) => this.#onConnection(ws, "main"),
    });
    this.#resume = WsServer.listen({
      hostname,
      closeTimeoutMs,
      onConnection: (ws) => this.#onConnection(ws, "resume"),
      refuse: () => this.#resumeHostDown,
    });
    this.#watchdog = setInterval(() => this.#checkHeartbeats(), 100);
  }

  /** `127.0.0.1:PORT` of the REST server (scheme http). */
  get apiHost(): string {
    return `${this.options.hostname}:${this.#rest.addr.port}`;
  }

  /** The main gateway listener: `/gateway/bot`'s `url`. */
  get gatewayUrl(): string {
    return `ws://${this.options.hostname}:${this.#main.port}`;
  }

  /** A second listener: READY's `resume_gateway_url`, so tests see which URL a RESUME used. */
  get resumeUrl(): string {
    return `ws://${this.options.hostname}:${this.#resume.port}`;
  }

  // ---- REST ----

  #handleRest(request: Request): Response {
    const url = new URL(request.url);
    const match = /^\/api\/v(9|10)\/gateway(\/bot)?\/?$/.exec(url.pathname);
    if (!match) return Response.json({ message: "404: Not Found", code: 0 }, { status: 404 });
    if (request.method !== "GET") {
      return Response.json({ message: "405: Method Not Allowed", code: 0 }, { status: 405 });
    }
    if (!match[2]) return Response.json({ url: this.gatewayUrl });
    if (this.#restFailures > 0) {
      // An outage in front of the API (Cloudflare, a proxy): it answers before any auth check.
      this.#restFailures--;
      return new Response("<html><body>upstream failure</body></html>", {
        status: this.#restFailureStatus,
        headers: { "content-type": "text/html" },
      });
    }
    if (request.headers.get("authorization") !== `Bot ${this.options.token}`) {
      return Response.json({ message: "401: Unauthorized", code: 0 }, { status: 401 });
    }
    return Response.json({
      url: this.gatewayUrl,
      shards: this.options.shards,
      session_start_limit: {
        total: this.options.sessionStartLimit.total,
        remaining: this.sessionStartRemaining,
        reset_after: this.options.sessionStartLimit.resetAfter,
        max_concurrency: this.options.maxConcurrency,
      },
    });
  }

  // ---- connections ----

  #onConnection(ws: WsConnection, listener: Listener): void {
    const query = new URL(ws.target, "http://fake").searchParams;
    const compress = query.get("compress");
    const compression: Compression = compress === "zlib-stream" || compress === "zstd-stream"
      ? compress
      : "none";
    const conn: Conn = {
      id: this.#nextConnId++,
      ws,
      listener,
      compression,
      compressor: compression === "zlib-stream"
        ? (this.options.precompressed ? new TemplateZlib() : new ZlibCompressor())
        : compression === "zstd-stream"
        ? new ZstdCompressor()
        : null,
      compressedAny: false,
      shard: null,
      session: null,
      identified: false,
      lastSessionId: null,
      sentSeq: 0,
      helloAt: Date.now(),
      lastHeartbeatAt: null,
      lastHeartbeatSeq: null,
      heartbeats: 0,
      heartbeatFlagged: false,
      sendTimes: [],
      stalled: false,
    };
    this.#conns.set(conn.id, conn);
    ws.setHandlers({
      onMessage: (data) => {
        try {
          this.#onClientMessage(conn, data);
        } catch (error) {
          // A bug in the fake must not look like a client fault: drop, and say why on stderr.
          console.error("fake Discord: handler failed", error);
          ws.drop();
        }
      },
      onClose: (code, _reason, byPeer) => this.#onConnClosed(conn, code, byPeer),
    });
    const version = query.get("v");
    if (version !== "10" && version !== "9") {
      ws.close(4012, "Invalid API version");
      return;
    }
    if ((query.get("encoding") ?? "json") !== "json") {
      // Only JSON is modelled (§11); Discord would speak ETF here.
      ws.close(4002, "Error while decoding payload.");
      return;
    }
    const hostileHello = this.nextHellos.shift();
    if (hostileHello !== undefined) {
      this.#sendText(conn, hostileHello);
      return;
    }
    this.#sendControl(conn, {
      t: null,
      s: null,
      op: Op.Hello,
      d: { heartbeat_interval: this.options.heartbeatIntervalMs, _trace: [TRACE] },
    });
  }

  #onConnClosed(conn: Conn, code: number | null, byPeer: boolean): void {
    this.#conns.delete(conn.id);
    this.#closedBytes += conn.ws.bytesWritten;
    conn.compressor?.close();
    conn.compressor = null;
    if (code !== null && byPeer) this.clientCloses.push({ shard: conn.shard, code, at: Date.now() });
    const session = conn.session;
    if (session && session.conn === conn) this.#detach(conn, byPeer && (code === 1000 || code === 1001));
  }

  /** Separates a session from its connection; the session then expires after its TTL (or now). */
  #detach(conn: Conn, expireNow: boolean): void {
    const session = conn.session!;
    conn.session = null;
    conn.identified = false;
    session.conn = null;
    clearTimeout(session.expiryTimer);
    session.expiryTimer = undefined;
    if (expireNow) session.expired = true;
    else if (!this.#stopped && !session.invalidated && !session.expired) {
      session.expiryTimer = setTimeout(() => {
        session.expiryTimer = undefined;
        if (session.conn === null) session.expired = true;
      }, this.options.sessionTtlMs);
    }
  }

  #onClientMessage(conn: Conn, data: string | Uint8Array): void {
    if (conn.ws.closing) return;
    const now = Date.now();
    conn.sendTimes.push(now);
    while (conn.sendTimes[0] <= now - SEND_WINDOW_MS) conn.sendTimes.shift();
    if (conn.sendTimes.length > SEND_LIMIT) {
      this.#violate("over_send_limit", conn.shard, `${conn.sendTimes.length} payloads within 60 s`);
      conn.ws.close(4008, "Rate limited.");
      return;
    }
    const size = typeof data === "string" ? encoder.encode(data).length : data.length;
    if (size > MAX_PAYLOAD_BYTES) {
      this.#violate("payload_too_large", conn.shard, `${size} bytes (limit ${MAX_PAYLOAD_BYTES})`);
      conn.ws.close(4002, "Error while decoding payload.");
      return;
    }
    const text = typeof data === "string" ? data : decoder.decode(data);
    let message: { op?: unknown; d?: unknown };
    try {
      message = JSON.parse(text);
      if (typeof message !== "object" || message === null || Array.isArray(message)) {
        throw new TypeError("not an object");
      }
    } catch {
      this.#violate("invalid_json", conn.shard, text.slice(0, 100));
      conn.ws.close(4002, "Error while decoding payload.");
      return;
    }
    const op = message.op;
    if (typeof op !== "number" || !KNOWN_OPS.has(op)) {
      this.#violate("unknown_op", conn.shard, `op ${JSON.stringify(op)}`);
      conn.ws.close(4001, "Unknown opcode.");
      return;
    }
    if (op === Op.Heartbeat) {
      conn.heartbeats++;
      conn.lastHeartbeatAt = now;
      conn.heartbeatFlagged = false;
      conn.lastHeartbeatSeq = typeof message.d === "number" ? message.d : null;
      this.#sendControl(conn, { t: null, s: null, op: Op.HeartbeatAck, d: null });
      return;
    }
    const d = typeof message.d === "object" && message.d !== null
      ? message.d as Record<string, unknown>
      : null;
    if (op === Op.Identify) return this.#identify(conn, d);
    if (op === Op.Resume) return this.#resumeSession(conn, d);
    if (!conn.identified) {
      this.#violate("payload_before_identify", conn.shard, `op ${op}`);
      conn.ws.close(4003, "Not authenticated.");
      return;
    }
    this.commands.push({ shard: conn.shard!, op, d: message.d, at: now });
    this.#answerCommand(conn.session!, op, d ?? {});
  }

  #identify(conn: Conn, d: Record<string, unknown> | null): void {
    if (conn.identified) {
      this.#violate("second_identify", conn.shard, "IDENTIFY on an authenticated connection");
      conn.ws.close(4005, "Already authenticated.");
      return;
    }
    if (!d || d.token !== this.options.token) {
      conn.ws.close(4004, "Authentication failed.");
      return;
    }
    const intents = d.intents;
    if (
      typeof intents !== "number" || !Number.isInteger(intents) || intents < 0 ||
      (intents & ~ALL_INTENTS) !== 0
    ) {
      conn.ws.close(4013, "Invalid intent(s).");
      return;
    }
    if ((intents & PRIVILEGED_INTENTS & ~this.options.enabledPrivilegedIntents) !== 0) {
      conn.ws.close(4014, "Disallowed intent(s).");
      return;
    }
    const shardArray = d.shard ?? [0, 1];
    const [shard, count] = Array.isArray(shardArray) ? shardArray : [];
    if (
      !Array.isArray(shardArray) || shardArray.length !== 2 || !Number.isInteger(shard) ||
      !Number.isInteger(count) ||
      count < 1 || shard < 0 || shard >= count
    ) {
      conn.ws.close(4010, "Invalid shard.");
      return;
    }
    conn.shard = shard;
    if (this.#stalledShards.has(shard)) conn.stalled = true;
    const totalGuilds = this.options.guildsPerShard * this.options.shards;
    const share = this.#guilds ? this.#guilds.largestShare(count) : Math.ceil(totalGuilds / count);
    const refused = (this.#guilds !== null || this.#strictCounts) && !this.acceptedCounts.includes(count);
    if (refused || share > this.options.maxGuildsPerShard) {
      conn.ws.close(4011, "Sharding required.");
      return;
    }
    const now = Date.now();
    const bucket = shard % this.options.maxConcurrency;
    const last = this.#bucketLastIdentify.get(bucket);
    if (last !== undefined && now - last < this.options.identifyIntervalMs) {
      this.#violate(
        "identify_too_early",
        shard,
        `bucket ${bucket} identified ${now - last} ms after the previous`,
      );
      this.#sendControl(conn, { t: null, s: null, op: Op.InvalidSession, d: false });
      return;
    }
    if (this.sessionStartRemaining <= 0) {
      this.#violate("session_start_limit_exhausted", shard, "IDENTIFY with no session starts left");
      this.#sendControl(conn, { t: null, s: null, op: Op.InvalidSession, d: false });
      return;
    }
    this.#bucketLastIdentify.set(bucket, now);
    this.sessionStartRemaining--;
    this.identifies.push({
      shard,
      count,
      at: now,
      intents,
      properties: d.properties,
      presence: d.presence,
      largeThreshold: d.large_threshold as number | undefined,
    });
    // A count whose READY is withheld: the connection stays open and heartbeats are answered, nothing else.
    if (this.#withheldReady.has(count)) return;
    const guildIds = this.#guilds?.owned(shard, count) ??
      Array.from({ length: this.options.guildsPerShard }, (_, i) => guildIdFor(shard, count, i));
    const session: Session = {
      id: crypto.randomUUID().replaceAll("-", ""),
      shard,
      count,
      guildIds,
      seq: 0,
      buffer: [],
      bufferStart: 1,
      names: this.options.recordEvents ? new NameLog() : null,
      conn,
      invalidated: false,
      expired: false,
      expiryTimer: undefined,
      trafficDebt: 0,
    };
    this.#sessions.set(session.id, session);
    this.#sessionOrder.push(session);
    conn.session = session;
    conn.identified = true;
    conn.lastSessionId = session.id;
    conn.sentSeq = 0;
    const ready = readyPayload({ sessionId: session.id, resumeUrl: this.resumeUrl, shard, count, guildIds });
    const patch = this.nextReadyPatches.shift();
    this.#generate(session, "READY", patch ? patch(ready) : ready);
    guildIds.forEach((id, index) => {
      this.#generate(session, "GUILD_CREATE", guildCreatePayload(id, index, this.#memberCount(index)));
    });
  }

  /** Members of a shard's guild number `index`: the first one is large when so configured. */
  #memberCount(index: number): number {
    return index === 0 && this.options.largeGuildMembers > 0 ? this.options.largeGuildMembers : 3;
  }

  #resumeSession(conn: Conn, d: Record<string, unknown> | null): void {
    const now = Date.now();
    if (conn.identified) {
      this.#violate("second_identify", conn.shard, "RESUME on an authenticated connection");
      conn.ws.close(4005, "Already authenticated.");
      return;
    }
    if (!d || d.token !== this.options.token) {
      conn.ws.close(4004, "Authentication failed.");
      return;
    }
    const sessionId = String(d.session_id);
    const session = this.#sessions.get(sessionId);
    const seq = Number(d.seq);
    const record = (ok: boolean) =>
      this.resumes.push({
        shard: session?.shard ?? -1,
        sessionId,
        seq,
        at: now,
        listener: conn.listener,
        ok,
      });
    if (session) conn.shard = session.shard;
    if (session && this.#stalledShards.has(session.shard)) conn.stalled = true;
    if (!session || session.invalidated || session.expired) {
      record(false);
      this.#sendControl(conn, { t: null, s: null, op: Op.InvalidSession, d: false });
      return;
    }
    if (conn.listener === "main" && !this.#resumeHostDown && conn.lastSessionId !== session.id) {
      this.#violate(
        "resume_wrong_url",
        session.shard,
        "RESUME on the main gateway URL, not resume_gateway_url",
      );
    }
    if (!Number.isInteger(seq) || seq < session.bufferStart - 1 || seq > session.seq) {
      record(false);
      session.invalidated = true;
      clearTimeout(session.expiryTimer);
      conn.ws.close(4007, "Invalid seq.");
      return;
    }
    record(true);
    const old = session.conn;
    if (old && old !== conn) {
      // The client gave up on that connection (a zombie): the session moves here, the old one is cut.
      old.session = null;
      old.identified = false;
      old.ws.drop();
    }
    clearTimeout(session.expiryTimer);
    session.expiryTimer = undefined;
    session.conn = conn;
    conn.session = session;
    conn.identified = true;
    conn.lastSessionId = session.id;
    conn.sentSeq = seq;
    this.#pump(session);
    this.#generate(session, "RESUMED", { _trace: [TRACE] });
  }

  /** Replies to the commands that have one (§9), so command round trips can be tested. */
  #answerCommand(session: Session, op: number, d: Record<string, unknown>): void {
    if (op === Op.RequestGuildMembers) {
      const guildId = String(d.guild_id);
      const index = session.guildIds.indexOf(guildId);
      const count = index < 0 ? 0 : this.#memberCount(index);
      const all = Array.from({ length: count }, (_, i) => i);
      let found: number[];
      const notFound: string[] = [];
      if (d.user_ids !== undefined) {
        const ids = (Array.isArray(d.user_ids) ? d.user_ids : [d.user_ids]).map(String).slice(0, 100);
        found = [];
        for (const id of ids) {
          const n = Number(BigInt(/^\d+$/.test(id) ? id : "0") - 900_000_000_000_000_000n);
          if (n >= 0 && n < count) found.push(n);
          else notFound.push(id);
        }
      } else {
        const query = typeof d.query === "string" ? d.query : "";
        const limit = typeof d.limit === "number" && d.limit > 0 ? d.limit : query === "" ? count : 100;
        found = all.filter((n) => `member${n}`.startsWith(query)).slice(
          0,
          Math.min(limit, query === "" ? count : 100),
        );
      }
      const chunks = Math.max(1, Math.ceil(found.length / 1000));
      for (let i = 0; i < chunks; i++) {
        const members = found.slice(i * 1000, (i + 1) * 1000);
        this.#generate(session, "GUILD_MEMBERS_CHUNK", {
          guild_id: guildId,
          members: members.map((n) => memberPayload(n)),
          chunk_index: i,
          chunk_count: chunks,
          ...(i === 0 && notFound.length > 0 ? { not_found: notFound } : {}),
          ...(d.presences === true ? { presences: [] } : {}),
          ...(d.nonce !== undefined ? { nonce: d.nonce } : {}),
        });
      }
    } else if (op === Op.RequestSoundboardSounds) {
      const ids = Array.isArray(d.guild_ids) ? d.guild_ids : [];
      for (const id of ids) {
        this.#generate(session, "SOUNDBOARD_SOUNDS", { guild_id: id, soundboard_sounds: [] });
      }
    } else if (op === Op.RequestChannelInfo) {
      const guildId = String(d.guild_id);
      this.#generate(session, "CHANNEL_INFO", {
        guild_id: guildId,
        channels: [6, 7].map((i) => ({ id: channelIdFor(guildId, i), status: null, voice_start_time: null })),
      });
    }
  }

  // ---- events ----

  /** Adds an event to the session (and its replay buffer) and sends it if the session is connected. */
  #generate(session: Session, t: string, d: unknown): number {
    return this.#append(session, entry(t, JSON.stringify(d)));
  }

  #append(session: Session, event: Entry): number {
    const s = ++session.seq;
    session.buffer.push(event);
    // Trim in bulk (amortised): the buffer keeps at least replayBufferSize events.
    if (session.buffer.length > this.options.replayBufferSize * 1.25 + 64) {
      const drop = session.buffer.length - this.options.replayBufferSize;
      session.buffer.splice(0, drop);
      session.bufferStart += drop;
    }
    session.names?.push(event.t);
    this.#pump(session);
    return s;
  }

  /** Writes the buffered events the session's connection has not had yet. */
  #pump(session: Session): void {
    const conn = session.conn;
    if (!conn || conn.stalled || conn.ws.closing) return;
    if (conn.sentSeq < session.bufferStart - 1) {
      // Stalled for longer than the replay buffer holds: what Discord does then is a new session.
      session.invalidated = true;
      conn.ws.close(4009, "Session timed out.");
      return;
    }
    while (conn.sentSeq < session.seq) {
      const s = ++conn.sentSeq;
      this.#sendDispatch(conn, s, session.buffer[s - session.bufferStart]);
    }
  }

  #sendDispatch(conn: Conn, s: number, event: Entry): void {
    this.#eventsSent++;
    if (event.headBytes && !(this.options.splitMessages && conn.compression === "zlib-stream")) {
      // Templates (floods, benchmark traffic): one small frame head built by hand, then the shared body.
      // A send-time stamp rides in that head (uncompressed, in the stored block), so the body stays
      // precompressed: it costs ~26 bytes per frame and a few digit writes, no deflate.
      const stamp = this.options.stampSendTime && event.stampedTail !== undefined;
      const sentAt = stamp ? Math.round((performance.timeOrigin + performance.now()) * 1000) : -1;
      if (conn.compressor instanceof TemplateZlib) {
        const tail = stamp ? event.stampedTail! : event.tail!;
        conn.ws.sendFrames([
          templateHead(event.headBytes, s, tail.length, conn.compressor.takeHeader(), sentAt),
          tail,
        ]);
        conn.compressedAny = true;
        return;
      }
      if (conn.compressor === null) {
        const bytes = stamp ? event.stampedBytes! : event.bytes!;
        conn.ws.sendFrames([templateHead(event.headBytes, s, bytes.length, -1, sentAt), bytes]);
        return;
      }
    }
    const prefix = `${event.head}${s},"op":0,"d":`;
    if (conn.compressor instanceof TemplateZlib && event.tail) {
      const parts = conn.compressor.parts(encoder.encode(prefix), event.tail);
      conn.compressedAny = true;
      if (this.options.splitMessages) this.#sendBytes(conn, concat(parts));
      else conn.ws.sendChunks(parts, true);
      return;
    }
    if (conn.compressor === null && event.bytes) {
      conn.ws.sendChunks([encoder.encode(prefix), event.bytes], false);
      return;
    }
    this.#sendText(conn, `${prefix}${event.body}}`);
  }

  /** Sends a non-dispatch payload (HELLO, ACK, op 1/7/9), unless the connection is stalled. */
  #sendControl(conn: Conn, payload: { t: null; s: null; op: number; d: unknown }): void {
    if (conn.stalled || conn.ws.closing) return;
    this.#sendText(conn, JSON.stringify(payload));
  }

  #sendText(conn: Conn, text: string): void {
    if (conn.compressor === null) {
      conn.ws.send(text);
      return;
    }
    conn.compressedAny = true;
    this.#sendBytes(conn, conn.compressor.compress(encoder.encode(text)));
  }

  #sendBytes(conn: Conn, bytes: Uint8Array): void {
    if (conn.compression === "zlib-stream" && this.options.splitMessages && bytes.length >= 3) {
      const parts = 2 + (bytes.length % 2);
      const cuts = [0];
      for (let i = 1; i < parts; i++) cuts.push(Math.floor((bytes.length * i) / parts));
      cuts.push(bytes.length);
      conn.ws.sendParts(cuts.slice(0, -1).map((from, i) => bytes.subarray(from, cuts[i + 1])));
      return;
    }
    conn.ws.send(bytes);
  }

  #violate(kind: ViolationKind, shard: number | null, detail: string): void {
    this.violations.push({ kind, shard, at: Date.now(), detail });
  }

  /** Records (once per lapse) a connection that has not sent a heartbeat in time; Discord would close it. */
  #checkHeartbeats(): void {
    const now = Date.now();
    const interval = this.options.heartbeatIntervalMs;
    for (const conn of this.#conns.values()) {
      if (conn.heartbeatFlagged || conn.ws.closing) continue;
      const late = conn.lastHeartbeatAt === null
        ? now - conn.helloAt > interval + 1000
        : now - conn.lastHeartbeatAt > interval * 1.5 + 1000;
      if (late) {
        conn.heartbeatFlagged = true;
        this.#violate(
          "missed_heartbeat",
          conn.shard,
          `no heartbeat for ${now - (conn.lastHeartbeatAt ?? conn.helloAt)} ms (interval ${interval} ms)`,
        );
      }
    }
  }

  // ---- inspection ----

  /** Every session ever created, in creation order. `events` (built when read) = every dispatch, READY included. */
  sessions(): Array<{
    id: string;
    shard: number;
    count: number;
    invalidated: boolean;
    expired: boolean;
    lastSeq: number;
    events: Array<{ s: number; t: string }>;
    connected: boolean;
  }> {
    return this.#sessionOrder.map((session) => {
      const view = {
        id: session.id,
        shard: session.shard,
        count: session.count,
        invalidated: session.invalidated,
        expired: session.expired,
        lastSeq: session.seq,
        events: [] as Array<{ s: number; t: string }>,
        connected: session.conn !== null,
      };
      // Built on demand: tests poll sessions() often, and a flooded session has millions of events.
      Object.defineProperty(view, "events", { enumerable: true, get: () => session.names?.list() ?? [] });
      return view;
    });
  }

  /** Live connections (authenticated or not). */
  connections(): Array<{
    id: number;
    shard: number | null;
    sessionId: string | null;
    listener: Listener;
    compression: Compression;
    lastHeartbeatSeq: number | null;
    lastHeartbeatAt: number | null;
    heartbeats: number;
    stalled: boolean;
  }> {
    return [...this.#conns.values()].map((conn) => ({
      id: conn.id,
      shard: conn.shard,
      sessionId: conn.session?.id ?? null,
      listener: conn.listener,
      compression: conn.compression,
      lastHeartbeatSeq: conn.lastHeartbeatSeq,
      lastHeartbeatAt: conn.lastHeartbeatAt,
      heartbeats: conn.heartbeats,
      stalled: conn.stalled,
    }));
  }

  stats(): { eventsSent: number; bytesSent: number; perShardLastSeq: Record<number, number> } {
    const perShardLastSeq: Record<number, number> = {};
    for (const session of this.#sessionOrder) perShardLastSeq[session.shard] = session.seq;
    let bytesSent = this.#closedBytes;
    for (const conn of this.#conns.values()) bytesSent += conn.ws.bytesWritten;
    return { eventsSent: this.#eventsSent, bytesSent, perShardLastSeq };
  }

  // ---- injection ----

  /** The shard's newest session, if it can still receive events. */
  #currentSession(shard: number): Session | null {
    for (let i = this.#sessionOrder.length - 1; i >= 0; i--) {
      const session = this.#sessionOrder[i];
      if (session.shard === shard) return session.invalidated || session.expired ? null : session;
    }
    return null;
  }

  #liveConns(shard: number): Conn[] {
    return [...this.#conns.values()].filter((conn) => conn.shard === shard && !conn.ws.closing);
  }

  /**
   * Generates one event on the shard's current session (buffered while it is disconnected) and
   * returns its `s`. Throws when the shard has no live or resumable session.
   */
  dispatch(shard: number, t: string, d: unknown): number {
    const session = this.#currentSession(shard);
    if (!session) {
      throw new Error(`Cannot dispatch ${t} on shard ${shard}: it has no live or resumable session`);
    }
    return this.#generate(session, t, d);
  }

  /** `n` live-traffic events (the realistic mix) on the shard's current session. */
  burst(shard: number, n: number): void {
    const session = this.#currentSession(shard);
    if (!session) throw new Error(`Cannot burst on shard ${shard}: it has no live or resumable session`);
    for (let i = 0; i < n; i++) this.#trafficOne(session);
  }

  #trafficOne(session: Session): void {
    if (this.options.precompressed) {
      // Benchmarks: the same realistic bodies as the flood, without building each event anew.
      this.#append(session, this.#templates()[this.#trafficSeed++ % FLOOD_BODIES]);
      return;
    }
    const seed = this.#trafficSeed++;
    const guildId = session.guildIds.length > 0
      ? session.guildIds[seed % session.guildIds.length]
      : guildIdFor(session.shard, session.count, 0);
    const event = trafficEvent(guildId, seed);
    this.#generate(session, event.t, event.d);
  }

  /**
   * With `guilds`: `n` live-traffic events, round robin over the guild set, each generated once (one
   * `d`, byte for byte) and sent to the newest live or resumable session of every shard, of every
   * accepted count, that owns its guild, each with its own `s`. Returns what it recorded in `guildEvents`.
   */
  burstGuilds(n: number): GuildEvent[] {
    const guilds = this.#guilds;
    if (!guilds) throw new Error("Cannot burstGuilds: the fake was started without the guilds option");
    const targets = new Map<string, Session>();
    for (const session of this.#sessionOrder) targets.set(`${session.shard}/${session.count}`, session);
    const accepted = this.acceptedCounts;
    const live = [...targets.values()].filter((session) =>
      !session.invalidated && !session.expired && accepted.includes(session.count)
    );
    const out: GuildEvent[] = [];
    for (let k = 0; k < n; k++) {
      const index = this.#guildCursor++ % guilds.size;
      const guildId = guilds.ids[index];
      const event = trafficEvent(guildId, this.#trafficSeed++);
      const shared = entry(event.t, JSON.stringify(event.d));
      const record: GuildEvent = { n: this.guildEvents.length + 1, guildId, t: event.t, deliveries: [] };
      this.guildEvents.push(record);
      for (const session of live) {
        if (guilds.ownerOf(index, session.count) !== session.shard) continue;
        const s = this.#append(session, shared);
        record.deliveries.push({ sessionId: session.id, shard: session.shard, count: session.count, s });
      }
      out.push(record);
    }
    return out;
  }

  /**
   * The shard count `/gateway/bot` recommends from now on. Unless `acceptCounts` set others, IDENTIFY
   * (with `guilds`) then accepts this count only; sessions of the old count are left as they are.
   */
  setRecommendedShards(n: number): void {
    if (!Number.isInteger(n) || n < 1) {
      throw new RangeError(`Cannot recommend ${n} shards: a positive integer is required`);
    }
    this.options.shards = n;
  }

  /**
   * The shard counts IDENTIFY accepts (an overlap: `[4, 8]`); any other count → close 4011. Also applies
   * without `guilds`. Only sessions of an accepted count get `burstGuilds` and paced guild traffic.
   * `null` goes back to the default: the recommended count (or, without `guilds`, any count).
   */
  acceptCounts(counts: number[] | null): void {
    this.#acceptedCounts = counts === null ? null : new Set(counts);
    this.#strictCounts = counts !== null;
  }

  /**
   * IDENTIFYs with one of `counts` are taken (a session start is counted) but never answered with READY:
   * a new shard set that never becomes ready. `[]` answers every count again.
   */
  withholdReady(counts: number[]): void {
    this.#withheldReady = new Set(counts);
  }

  /** The counts IDENTIFY accepts now (without `guilds` and `acceptCounts`, any count is: see there). */
  get acceptedCounts(): number[] {
    return this.#acceptedCounts ? [...this.#acceptedCounts] : [this.options.shards];
  }

  /**
   * Continuous realistic traffic on every live or resumable session: one timer every 10 ms generates
   * the events that are due, so each connection gets them in one TCP write. With `guilds` the rate is
   * per recommended shard (`eventsPerShardPerSecond` × `shards` events a second in all), as `burstGuilds`.
   */
  startTraffic(eventsPerShardPerSecond: number): void {
    this.#trafficRate = eventsPerShardPerSecond;
    if (this.#trafficTimer !== undefined || this.#stopped) return;
    this.#trafficLast = Date.now();
    this.#trafficTimer = setInterval(() => {
      const now = Date.now();
      const elapsed = (now - this.#trafficLast) / 1000;
      this.#trafficLast = now;
      if (this.#guilds) {
        const rate = this.#trafficRate * this.options.shards;
        this.#guildDebt = Math.min(this.#guildDebt + rate * elapsed, rate / 10 + 1);
        const due = Math.floor(this.#guildDebt);
        this.#guildDebt -= due;
        this.burstGuilds(due);
        return;
      }
      const latest = new Map<number, Session>();
      for (const session of this.#sessionOrder) latest.set(session.shard, session);
      for (const session of latest.values()) {
        if (session.invalidated || session.expired) continue;
        // Never more than 100 ms of traffic per tick: a fake that falls behind must stay responsive
        // (answer heartbeats) rather than block for seconds catching up.
        session.trafficDebt = Math.min(
          session.trafficDebt + this.#trafficRate * elapsed,
          this.#trafficRate / 10 + 1,
        );
        while (session.trafficDebt >= 1) {
          session.trafficDebt--;
          this.#trafficOne(session);
        }
      }
    }, 10);
  }

  stopTraffic(): void {
    clearInterval(this.#trafficTimer);
    this.#trafficTimer = undefined;
  }

  /**
   * Floods the given shards (default: all) with live traffic as fast as their sockets accept it, until
   * stopFlood(). zlib-stream connections switch to precompressed bodies for good (see compress.ts), so
   * an event costs the fake a few small copies and no deflate.
   */
  startFlood(options: { shards?: number[] } = {}): void {
    if (this.#stopped) return;
    this.#floodShards = options.shards ? new Set(options.shards) : null;
    this.#templates();
    this.#flooding = true;
    this.#floodLoop ??= this.#flood();
  }

  stopFlood(): void {
    this.#flooding = false;
  }

  /** A fixed pool of realistic event bodies, built (and precompressed) once. */
  #templates(): Entry[] {
    if (this.#templateEntries.length === 0) {
      for (let i = 0; i < FLOOD_BODIES; i++) {
        const event = trafficEvent(guildIdFor(0, 1, 0), i);
        const template = entry(event.t, JSON.stringify(event.d));
        template.headBytes = encoder.encode(template.head);
        template.bytes = encoder.encode(`${template.body}}`);
        template.tail = precompress(template.bytes);
        if (template.body.startsWith('{"')) {
          template.stampedBytes = encoder.encode(`${template.body.slice(1)}}`);
          template.stampedTail = precompress(template.stampedBytes);
        }
        this.#templateEntries.push(template);
      }
    }
    return this.#templateEntries;
  }

  /**
   * One loop serves every flooded connection in turn: each round tops up the queue of every connection
   * with room, then yields so writes complete and heartbeats are answered. Per-connection loops starve
   * each other, because a write to a socket with room completes without an event-loop turn.
   */
  async #flood(): Promise<void> {
    let i = 0;
    try {
      while (this.#flooding && !this.#stopped) {
        let produced = 0;
        for (const conn of this.#conns.values()) {
          const session = conn.session;
          if (!session || session.conn !== conn || conn.stalled || conn.ws.closing) continue;
          if (this.#floodShards && !this.#floodShards.has(conn.shard!)) continue;
          if (conn.compression === "zlib-stream" && !(conn.compressor instanceof TemplateZlib)) {
            conn.compressor?.close();
            conn.compressor = new TemplateZlib(conn.compressedAny);
          }
          for (let k = 0; k < 2048 && conn.ws.queuedBytes < FLOOD_QUEUE_BYTES; k++) {
            this.#append(session, this.#templateEntries[i++ % FLOOD_BODIES]);
            produced++;
          }
        }
        await new Promise((resolve) => setTimeout(resolve, produced === 0 ? 1 : 0));
      }
    } finally {
      // Cleared in the turn the loop ends, so a startFlood() after it starts a new loop.
      this.#floodLoop = null;
    }
  }

  /** Op 7 on the shard's connection(s); TCP is cut `reconnectCloseMs` later if the client has not closed. */
  sendReconnect(shard: number): void {
    for (const conn of this.#liveConns(shard)) {
      this.#sendControl(conn, { t: null, s: null, op: Op.Reconnect, d: null });
      const timer = setTimeout(() => {
        this.#timers.delete(timer);
        conn.ws.drop();
      }, this.options.reconnectCloseMs);
      this.#timers.add(timer);
    }
  }

  /**
   * Op 9 on the shard's connection(s). The connection stays open but unauthenticated, so the client
   * may IDENTIFY or RESUME on it or on a new one. Not resumable → the session is destroyed.
   */
  invalidateSession(shard: number, resumable: boolean): void {
    for (const conn of this.#liveConns(shard)) {
      this.#sendControl(conn, { t: null, s: null, op: Op.InvalidSession, d: resumable });
      if (!conn.session) continue;
      if (!resumable) conn.session.invalidated = true;
      this.#detach(conn, false);
    }
  }

  /**
   * A server close frame. The session stays resumable, except after codes that mean "new session"
   * (4003, 4007, 4009) and the fatal ones.
   */
  closeWith(shard: number, code: number, reason = ""): void {
    for (const conn of this.#liveConns(shard)) {
      if (SESSION_ENDING_CODES.has(code) && conn.session) conn.session.invalidated = true;
      conn.ws.close(code, reason);
    }
  }

  /** Cuts TCP without a close frame; the session stays resumable. */
  dropConnection(shard: number): void {
    for (const conn of this.#liveConns(shard)) conn.ws.drop();
  }

  /** A zombie connection: while stalled nothing is sent to it (no ACKs, no events; events wait in the session). */
  stall(shard: number, stalled: boolean): void {
    for (const conn of this.#liveConns(shard)) {
      conn.stalled = stalled;
      if (!stalled && conn.session) this.#pump(conn.session);
    }
  }

  /**
   * A shard Discord stops answering for good: its live connection stalls, and so does every new one as
   * soon as it identifies or resumes as this shard (no READY/RESUMED, no ACKs), until called with false.
   */
  stallShard(shard: number, stalled: boolean): void {
    if (stalled) this.#stalledShards.add(shard);
    else this.#stalledShards.delete(shard);
    this.stall(shard, stalled);
  }

  /**
   * Sends `text` as it is on the shard's live connection(s), outside any session (not replayed on
   * RESUME): a malformed frame, an event with a broken sequence number, invalid JSON.
   */
  sendRaw(shard: number, text: string | Uint8Array): void {
    for (const conn of this.#liveConns(shard)) {
      if (typeof text === "string") this.#sendText(conn, text);
      else if (conn.compressor === null) conn.ws.send(text);
      else {
        conn.compressedAny = true;
        this.#sendBytes(conn, conn.compressor.compress(text));
      }
    }
  }

  /** Op 1: the client must beat at once. */
  requestHeartbeat(shard: number): void {
    for (const conn of this.#liveConns(shard)) {
      this.#sendControl(conn, { t: null, s: null, op: Op.Heartbeat, d: null });
    }
  }

  /** While down, the resume listener accepts TCP and closes it at once (a dead resume host). */
  setResumeHostDown(down: boolean): void {
    this.#resumeHostDown = down;
  }

  setSplitMessages(on: boolean): void {
    this.options.splitMessages = on;
  }

  /** The next `times` GET /gateway/bot answer `status` (an outage in front of the API). */
  failRest(times: number, status = 502): void {
    this.#restFailures = times;
    this.#restFailureStatus = status;
  }

  /** Polls `predicate` every 10 ms; throws naming `what` after `timeoutMs`. */
  async waitFor(predicate: () => boolean, timeoutMs = 10_000, what = "condition"): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!predicate()) {
      if (Date.now() > deadline) {
        throw new Error(`fake Discord: timed out after ${timeoutMs} ms waiting for ${what}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  /** Closes every listener and connection and clears every timer. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    this.stopTraffic();
    this.stopFlood();
    clearInterval(this.#watchdog);
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
    await this.#floodLoop;
    await Promise.all([this.#rest.shutdown(), this.#main.close(), this.#resume.close()]);
    for (const session of this.#sessionOrder) {
      clearTimeout(session.expiryTimer);
      session.expiryTimer = undefined;
    }
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  let total = 0;
  for (const part of parts) total += part.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

const OP_D = encoder.encode(`,"op":0,"d":`);
const SENT_AT = encoder.encode(`{"sent_at":`);

/** Decimal digits of a non-negative integer. */
function digitCount(n: number): number {
  let digits = 1;
  for (; n >= 10; n = Math.floor(n / 10)) digits++;
  return digits;
}

/**
 * The start of one dispatch frame whose payload ends with a `bodyLength`-byte shared body: the WebSocket
 * frame header, then either (zlibHeader -1) the text prefix `{"t":"…","s":123,"op":0,"d":`, or
 * (zlibHeader 0 or 2) the zlib stream header if due and a stored deflate block carrying that prefix.
 * With `sentAtUs` ≥ 0 (µs since the epoch) the prefix goes on with `{"sent_at":1796222209937.404,` (ms,
 * three decimals), and the body must be the stamped one (without its `{`).
 * Built by hand, without TextEncoder, because a flood builds one per event.
 */
function templateHead(
  headBytes: Uint8Array,
  s: number,
  bodyLength: number,
  zlibHeader: number,
  sentAtUs = -1,
): Uint8Array {
  const digits = digitCount(s);
  const ms = sentAtUs >= 0 ? Math.floor(sentAtUs / 1000) : 0;
  const msDigits = digitCount(ms);
  // `{"sent_at":` + ms + `.` + three digits + `,`
  const stampLength = sentAtUs >= 0 ? SENT_AT.length + msDigits + 5 : 0;
  const prefixLength = headBytes.length + digits + OP_D.length + stampLength;
  const blockStart = zlibHeader < 0 ? 0 : zlibHeader + 5;
  const payloadLength = blockStart + prefixLength + bodyLength;
  const out = new Uint8Array(frameHeaderLength(payloadLength) + blockStart + prefixLength);
  let at = writeFrameHeader(out, 0, zlibHeader < 0 ? 0x1 : 0x2, payloadLength);
  if (zlibHeader === 2) {
    out[at++] = 0x78;
    out[at++] = 0x9c;
  }
  if (zlibHeader >= 0) {
    // A non-final stored block: BFINAL 0, BTYPE 00, then LEN and NLEN little-endian.
    out[at] = 0x00;
    out[at + 1] = prefixLength & 0xff;
    out[at + 2] = prefixLength >> 8;
    out[at + 3] = ~prefixLength & 0xff;
    out[at + 4] = (~prefixLength >> 8) & 0xff;
    at += 5;
  }
  out.set(headBytes, at);
  at += headBytes.length;
  for (let i = at + digits - 1, n = s; i >= at; i--, n = Math.floor(n / 10)) out[i] = 48 + (n % 10);
  out.set(OP_D, at + digits);
  if (sentAtUs >= 0) {
    at += digits + OP_D.length;
    out.set(SENT_AT, at);
    at += SENT_AT.length;
    for (let i = at + msDigits - 1, n = ms; i >= at; i--, n = Math.floor(n / 10)) out[i] = 48 + (n % 10);
    at += msDigits;
    const us = sentAtUs % 1000;
    out[at] = 0x2e; // .
    out[at + 1] = 48 + Math.floor(us / 100);
    out[at + 2] = 48 + (Math.floor(us / 10) % 10);
    out[at + 3] = 48 + (us % 10);
    out[at + 4] = 0x2c; // ,
  }
  return out;
}
