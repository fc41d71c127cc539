/**
 * One bot connection to the proxy: the Discord gateway protocol as a server speaks it. HELLO, heartbeat
 * ACKs, IDENTIFY (token, shard, intents checked; close codes as Discord's), a synthesized start-up (READY,
 * then a GUILD_CREATE per cached guild, built a slice per turn), the live events with the client's own
 * sequence numbers (`d` copied byte for byte), RESUME (the missed events from the journal, then RESUMED),
 * commands to the shard, and a bound on what may wait for a slow reader (then 4000: it resumes): more
 * than `[proxy] max_buffer` waiting, the oldest of it for `SLOW_AFTER_MS` (see backlog.ts: bytes alone
 * also count what gatehouse's own busy loop has not written yet).
 */
import zlib from "node:zlib";
import { parseCommand } from "../commands/validate.ts";
import { type Compressor, createCompressor } from "../gateway/compress.ts";
import { dataOf, fieldOf } from "../gateway/frame.ts";
import { ALL_INTENTS, type Compression, MAX_PAYLOAD_BYTES, shardForGuild } from "../gateway/protocol.ts";
import type { Logger } from "../util/log.ts";
import { SendBacklog, SLOW_AFTER_MS } from "./backlog.ts";
import type { ProxyHub } from "./hub.ts";
import { deliverable, ProxySession } from "./sessions.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const GUILD_ID = encoder.encode("guild_id");

/** Commands per connection per 60 s, as Discord allows (more: 4008). */
const SENDS_PER_MINUTE = 120;
/** Payload compression (IDENTIFY `compress: true`): dispatches from this size go as zlib binary frames. */
const PAYLOAD_COMPRESS_FROM = 1024;
/** A start-up or a catch-up works at most this long per turn, so nothing else waits for it. */
const SLICE_MS = 4;
/** Events read from the journal per page while catching up. */
const CATCH_UP_PAGE = 500;

type State = "hello" | "starting" | "catching-up" | "live" | "closed";

export interface ClientOptions {
  socket: WebSocket;
  hub: ProxyHub;
  compression: Compression;
  /** The URL clients reach the proxy at (from the Host header), for `resume_gateway_url`. */
  url: string;
  logger: Logger;
}

/** An event waiting while the start-up is being sent. */
interface Queued {
  id: number;
  t: string;
  payload: Uint8Array;
  owners: ReadonlySet<string> | null;
}

export class ProxyClient {
  readonly #socket: WebSocket;
  readonly #hub: ProxyHub;
  readonly #log: Logger;
  readonly #url: string;
  readonly #compression: Compression;
  #compressor: Compressor | null;
  #payloadCompression = false;
  #state: State = "hello";
  session: ProxySession | null = null;
  /** Live events that came during the start-up, and their bytes. */
  #queue: Queued[] = [];
  #queuedBytes = 0;
  /** Start-up bytes handed to the socket: allowed on top of the bound until it drains once. */
  #burst = 0;
  /** What waits to be written, and since when. */
  readonly #backlog = new SendBacklog();
  /** Per guild sent in the start-up: the last journal id its GUILD_CREATE reflects. */
  #snapshots = new Map<string, number>();
  #sends: number[] = [];
  #lastReceived: number;
  #heartbeatCheck: ReturnType<typeof setInterval> | undefined;
  readonly connectedAt: number;

  constructor(options: ClientOptions) {
    this.#socket = options.socket;
    this.#hub = options.hub;
    this.#log = options.logger;
    this.#url = options.url;
    this.#compression = options.compression;
    this.#compressor = createCompressor(options.compression);
    this.connectedAt = this.#lastReceived = options.hub.now();
    const socket = this.#socket;
    socket.binaryType = "arraybuffer";
    socket.onopen = () => {
      this.#sendText(
        `{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":${this.#hub.heartbeatIntervalMs}}}`,
      );
      // Discord closes a connection that stops heartbeating; so does the proxy (resumably).
      const interval = this.#hub.heartbeatIntervalMs;
      this.#heartbeatCheck = setInterval(() => {
        if (this.#hub.now() - this.#lastReceived > interval * 2 + 5_000) {
          this.close(4000, "No heartbeat received: resume to go on.");
        }
      }, interval);
    };
    socket.onclose = () => this.#closed();
    socket.onerror = () => {};
    socket.onmessage = (event) => this.#received(event.data);
  }

  get state(): State {
    return this.#state;
  }

  /** Bytes given to the socket and not sent yet. */
  get buffered(): number {
    return this.#state === "closed" ? 0 : this.#socket.bufferedAmount;
  }

  // ---- from the bot ----

  #received(data: string | ArrayBuffer): void {
    this.#lastReceived = this.#hub.now();
    const text = typeof data === "string" ? data : decoder.decode(data);
    if (encoder.encode(text).length > MAX_PAYLOAD_BYTES) {
      this.close(4002, "Payload over 4096 bytes.");
      return;
    }
    let message: { op?: unknown; d?: unknown };
    try {
      message = JSON.parse(text);
    } catch {
      this.close(4002, "Error while decoding payload.");
      return;
    }
    if (typeof message !== "object" || message === null || Array.isArray(message)) {
      this.close(4002, "Error while decoding payload.");
      return;
    }
    // Every payload counts toward Discord's 120 per 60 s, heartbeats, IDENTIFY and RESUME too.
    if (!this.#spend()) return;
    const op = message.op;
    if (op === 1) {
      this.#sendText('{"t":null,"s":null,"op":11,"d":null}');
      return;
    }
    if (op === 2) return this.#identify(message.d);
    if (op === 6) return this.#resume(message.d);
    if (typeof op !== "number" || ![3, 4, 8, 31, 43].includes(op)) {
      this.close(4001, "Unknown opcode.");
      return;
    }
    if (this.session === null) {
      this.close(4003, "Not authenticated.");
      return;
    }
    this.#command(op, message.d, text);
  }

  #tokenOk(d: unknown): boolean {
    const token = (d as { token?: unknown } | null)?.token;
    if (typeof token === "string" && this.#hub.tokenMatches(token)) return true;
    this.#log.warn("proxy: closing a client that sent a wrong token (4004)");
    this.close(4004, "Authentication failed.");
    return false;
  }

  #identify(raw: unknown): void {
    if (this.session !== null || this.#state !== "hello") {
      this.close(4005, "Already authenticated.");
      return;
    }
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      this.close(4001, "Invalid payload for op 2.");
      return;
    }
    if (!this.#tokenOk(raw)) return;
    const d = raw as { shard?: unknown; intents?: unknown; compress?: unknown };
    if (
      !Number.isSafeInteger(d.intents) || (d.intents as number) < 0 ||
      (d.intents as number) > 0xffffffff || ((d.intents as number) & ~ALL_INTENTS) !== 0
    ) {
      this.close(4013, "Invalid intent(s).");
      return;
    }
    const [shard, count] = d.shard === undefined
      ? [0, 1]
      : Array.isArray(d.shard) && d.shard.length === 2
      ? d.shard
      : [NaN, NaN];
    const refusal = this.#hub.refuseShard(shard, count);
    if (refusal) {
      this.#log.warn("proxy: closing a client that identified as shard {shard}: {reason}", {
        shard: JSON.stringify(d.shard ?? null),
        reason: refusal.reason,
      });
      this.close(refusal.code, refusal.reason);
      return;
    }
    const missing = (d.intents as number) & ~this.#hub.intents;
    if (missing !== 0) {
      this.#log.warn(
        "proxy: a client on shard {shard} asked for intents {missing} that gatehouse does not identify with: " +
          "it gets only the events of gatehouse's intents",
        { shard, missing },
      );
    }
    this.#payloadCompression = d.compress === true && this.#compressor === null;
    const session = this.#hub.openSession(shard, count, this);
    this.session = session;
    this.#state = "starting";
    this.#log.info(
      "proxy: a client identified as shard [{shard}, {count}] (session {session}, compression {compression})",
      {
        shard,
        count,
        session: session.id.slice(0, 8),
        compression: this.#payloadCompression ? "payload" : this.#compression,
      },
    );
    void this.#startUp(session);
  }

  /** READY, then a GUILD_CREATE per available cached guild of the shard, a slice per turn. */
  async #startUp(session: ProxySession): Promise<void> {
    const hub = this.#hub;
    // The shard's own READY may not have come yet (the shard is connecting): wait for it.
    if (!(await hub.whenReady(session.shard, () => this.#state !== "starting"))) {
      if (this.#state === "starting") this.close(4000, "The shard is not ready yet: try again.");
      return;
    }
    if (this.#state !== "starting") return;
    const cache = hub.cache;
    const ids = cache.guildIds((id: string) => shardForGuild(id, session.count) === session.shard);
    session.position = hub.lastSeenId;
    this.#dispatch(
      "READY",
      `{"v":10,"user_settings":{},"user":${cache.user},"session_type":"normal","session_id":${
        JSON.stringify(session.id)
      },"resume_gateway_url":${JSON.stringify(this.#url)},"relationships":[],"private_channels":[],` +
        `"presences":[],"guilds":[${
          ids.map((id: string) => `{"id":${JSON.stringify(id)},"unavailable":true}`).join(",")
        }],"guild_join_requests":[],"geo_ordered_rtc_regions":[],"application":${
          cache.application ?? `{"id":${JSON.stringify(JSON.parse(cache.user!).id)},"flags":0}`
        },"shard":[${session.shard},${session.count}],"_trace":["gatehouse-proxy"]}`,
      session.next(),
    );
    let next = 0;
    while (next < ids.length) {
      if (this.#state !== "starting") return;
      const began = performance.now();
      while (next < ids.length && performance.now() - began < SLICE_MS) {
        const id = ids[next++];
        const d = cache.guildCreate(id);
        // Unavailable now: its GUILD_CREATE comes live when it is back.
        if (d === null) continue;
        this.#snapshots.set(id, hub.lastSeenId);
        this.#burst += this.#dispatch("GUILD_CREATE", d, session.next());
      }
      await hub.turn();
      while (this.#state === "starting" && this.buffered > hub.maxBufferBytes) await hub.pause(20);
    }
    if (this.#state !== "starting") return;
    // What came meanwhile, less what the GUILD_CREATEs already hold.
    session.checkpoint();
    const queue = this.#queue;
    this.#queue = [];
    this.#queuedBytes = 0;
    this.#state = "live";
    for (const q of queue) {
      const snapshot = this.#snapshots.get(guildOf(q.payload) ?? "");
      if (snapshot !== undefined && q.id <= snapshot && cache.handles(q.t)) session.skipped(q.id);
      else this.#deliver(q.id, q.t, q.payload, q.owners);
    }
    this.#snapshots.clear();
    hub.counters.startUps++;
  }

  #resume(raw: unknown): void {
    if (this.session !== null || this.#state !== "hello") {
      this.close(4005, "Already authenticated.");
      return;
    }
    if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
      this.close(4001, "Invalid payload for op 6.");
      return;
    }
    if (!this.#tokenOk(raw)) return;
    const d = raw as { session_id?: unknown; seq?: unknown };
    // Not String(): a session_id such as {"toString":0} would throw (and end the process).
    const sessionId = typeof d.session_id === "string" ? d.session_id : String(JSON.stringify(d.session_id));
    const found = this.#hub.resumeSession(sessionId, d.seq, this);
    if (typeof found === "string") {
      this.#log.info("proxy: a client cannot resume session {session}: {reason}; it starts afresh (op 9)", {
        session: sessionId.slice(0, 8),
        reason: found,
      });
      this.#hub.counters.invalidated++;
      this.#sendText('{"t":null,"s":null,"op":9,"d":false}');
      return;
    }
    this.session = found;
    this.#state = "catching-up";
    this.#log.info("proxy: a client resumed session {session} at seq {seq}", {
      session: found.id.slice(0, 8),
      seq: found.seq,
    });
    this.#hub.counters.resumes++;
    void this.#catchUp(found);
  }

  /** The events after the session's position, from the journal, then RESUMED and the live stream. */
  async #catchUp(session: ProxySession): Promise<void> {
    const hub = this.#hub;
    while (this.#state === "catching-up") {
      if (this.buffered > hub.maxBufferBytes / 2) {
        await hub.pause(10);
        continue;
      }
      const began = performance.now();
      let done = false;
      while (!done && performance.now() - began < SLICE_MS) {
        const rows = hub.read(session.position, CATCH_UP_PAGE);
        for (const row of rows) {
          if (row.shard !== session.shard || !deliverable(row.t)) {
            session.position = row.id;
            continue;
          }
          this.#deliver(row.id, row.t, row.payload, hub.ownersOf(row.t, row.payload));
        }
        // Caught up: from here on the live batches carry on (they are handed over in this same turn).
        if (rows.length < CATCH_UP_PAGE && session.position >= hub.lastSeenId) done = true;
        if (rows.length === 0) {
          session.position = Math.max(session.position, hub.lastSeenId);
          done = true;
        }
      }
      if (done) {
        this.#state = "live";
        this.#dispatch("RESUMED", "{}", session.synthetic());
        return;
      }
      await hub.turn();
    }
  }

  /** One more payload of the client's 120 per 60 s; false (and closed with 4008) past them. */
  #spend(): boolean {
    const now = this.#hub.now();
    const sends = this.#sends;
    let expired = 0;
    while (expired < sends.length && now - sends[expired] >= 60_000) expired++;
    if (expired > 0) sends.splice(0, expired);
    if (sends.length >= SENDS_PER_MINUTE) {
      this.close(4008, "You are being rate limited.");
      return false;
    }
    sends.push(now);
    return true;
  }

  #command(op: number, d: unknown, text: string): void {
    const session = this.session!;
    // Checked as Discord would: a bad payload of a known op closes the connection (4001).
    const parsed = parseCommand(
      op === 3 ? JSON.stringify({ op, d, shard: session.shard }) : text,
      session.count,
    );
    if (!parsed.ok) {
      this.#log.warn("proxy: closing a client on shard {shard} that sent a bad command (4001): {reason}", {
        shard: session.shard,
        reason: parsed.reason,
      });
      this.close(4001, `Invalid payload for op ${op}.`);
      return;
    }
    const part = parsed.parts.find((p) => p.shard === session.shard);
    if (!part) {
      this.#log.warn(
        "proxy: a client on shard {shard} sent op {op} for guilds of another shard: not sent (Discord " +
          "ignores it too)",
        { shard: session.shard, op },
      );
      return;
    }
    if (op === 8) {
      const nonce = (part.d as { nonce?: unknown }).nonce;
      if (typeof nonce === "string") this.#hub.claimNonce(nonce, session.id);
    }
    const refused = this.#hub.send(session.shard, session.count, op, part.d);
    if (refused !== null) {
      this.#log.warn("proxy: op {op} from a client on shard {shard} not sent: {reason}", {
        op,
        shard: session.shard,
        reason: refused,
      });
    }
    this.#hub.counters.commands++;
  }

  // ---- to the bot ----

  /** A committed event of this client's shard (the hub filters by shard). */
  offer(id: number, t: string, payload: Uint8Array, owners: ReadonlySet<string> | null): void {
    if (this.#state === "live") {
      if (deliverable(t)) this.#deliver(id, t, payload, owners);
      else if (this.session && id > this.session.position) this.session.position = id;
    } else if (this.#state === "starting" && deliverable(t)) {
      this.#queue.push({ id, t, payload, owners });
      this.#queuedBytes += payload.length;
      // The start-up waits for the socket to drain: a queue past the bound whose socket does not drain.
      if (
        this.#queuedBytes > this.#hub.maxBufferBytes &&
        this.#backlog.ageMs(this.buffered, this.#hub.now()) >= SLOW_AFTER_MS
      ) this.#tooSlow();
    }
    // Catching up: the journal has it, the catch-up reads it.
  }

  #deliver(id: number, t: string, payload: Uint8Array, owners: ReadonlySet<string> | null): void {
    const session = this.session!;
    if (id <= session.position) return;
    if (owners !== null && !owners.has(session.id)) {
      session.skipped(id);
      return;
    }
    const d = dataOf(payload);
    if (d === null) {
      session.skipped(id);
      return;
    }
    this.#dispatch(t, d, session.sent(id));
    this.judge();
  }

  /**
   * Closes the client (4000) if it reads too slowly: more than `[proxy] max_buffer` (plus a start-up not
   * drained yet) waits, the oldest of it for `SLOW_AFTER_MS`. After each event, and every second.
   */
  judge(): void {
    if (this.#state === "closed" || this.#state === "hello") return;
    const buffered = this.buffered;
    const bound = this.#hub.maxBufferBytes;
    if (buffered <= bound) this.#burst = 0;
    else if (this.#backlog.tooSlow(buffered, bound + this.#burst, this.#hub.now())) this.#tooSlow();
  }

  #tooSlow(): void {
    this.#hub.counters.slowClosed++;
    this.#log.warn(
      "proxy: closing the client of session {session} on shard {shard}, it reads too slowly (over " +
        "[proxy] max_buffer waiting, the oldest for {age} ms): it resumes and catches up from the journal",
      {
        shard: this.session?.shard ?? -1,
        session: this.session?.id.slice(0, 8) ?? "-",
        age: this.#backlog.ageMs(this.buffered, this.#hub.now()),
      },
    );
    this.close(4000, "Reading too slowly: resume to catch up.");
  }

  /** One dispatch with seq `s`; returns the bytes handed to the socket. */
  #dispatch(t: string, d: Uint8Array | string, s: number): number {
    const head = encoder.encode(`{"t":${JSON.stringify(t)},"s":${s},"op":0,"d":`);
    const body = typeof d === "string" ? encoder.encode(d) : d;
    const frame = new Uint8Array(head.length + body.length + 1);
    frame.set(head);
    frame.set(body, head.length);
    frame[frame.length - 1] = 0x7d;
    return this.#sendBytes(frame);
  }

  #sendText(text: string): void {
    this.#sendBytes(encoder.encode(text));
  }

  #sendBytes(bytes: Uint8Array): number {
    if (this.#state === "closed" || this.#socket.readyState !== WebSocket.OPEN) return 0;
    let handed: number;
    try {
      if (this.#compressor) {
        const compressed = this.#compressor.compress(bytes);
        this.#socket.send(compressed);
        handed = compressed.length;
      } else if (this.#payloadCompression && bytes.length >= PAYLOAD_COMPRESS_FROM) {
        const compressed = zlib.deflateSync(bytes);
        this.#socket.send(compressed);
        handed = compressed.length;
      } else {
        this.#socket.send(decoder.decode(bytes));
        handed = bytes.length;
      }
    } catch {
      // The socket went away meanwhile: its close event follows.
      return 0;
    }
    this.#backlog.sent(handed, this.#hub.now());
    return handed;
  }

  /**
   * The bot was resharded and this client's shard count no longer runs: op 7 (reconnect), as Discord
   * asks; nothing more is sent. Its RESUME is then answered with op 9 and an IDENTIFY with the old count
   * is refused with 4011, naming the new count (what `/gateway/bot` answers now). A client that does not
   * close within `graceMs` is closed with 4000.
   */
  reconnect(graceMs = 5_000): void {
    if (this.#state === "closed") return;
    this.#sendText('{"t":null,"s":null,"op":7,"d":null}');
    const socket = this.#socket;
    this.#closed();
    const timer = setTimeout(() => {
      try {
        if (socket.readyState === WebSocket.OPEN) socket.close(4000, "Reconnect: the bot was resharded.");
      } catch {
        // already closing
      }
    }, graceMs);
    socket.addEventListener("close", () => clearTimeout(timer));
  }

  /** Closes the connection (the session stays resumable unless the hub forgets it). */
  close(code: number, reason: string): void {
    if (this.#state === "closed") return;
    try {
      this.#socket.close(code, reason);
    } catch {
      // already closing
    }
    this.#closed();
  }

  #closed(): void {
    if (this.#state === "closed") return;
    this.#state = "closed";
    clearInterval(this.#heartbeatCheck);
    this.#queue = [];
    this.#compressor?.close();
    this.#compressor = null;
    this.#hub.detach(this);
  }
}

/** The guild id of a dispatch, from its `d` (null when it has none). */
function guildOf(payload: Uint8Array): string | null {
  const d = dataOf(payload);
  const id = d === null ? null : fieldOf(d, GUILD_ID);
  if (id !== null && id.length > 2 && id[0] === 0x22) return decoder.decode(id.subarray(1, id.length - 1));
  // A GUILD_CREATE / GUILD_UPDATE / GUILD_DELETE names its guild as `id`.
  const own = d === null ? null : fieldOf(d, ID);
  return own !== null && own.length > 2 && own[0] === 0x22
    ? decoder.decode(own.subarray(1, own.length - 1))
    : null;
}
const ID = encoder.encode("id");
