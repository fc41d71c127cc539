/**
 * One shard: a WebSocket to Discord driven by the pure state machine in `shard_state.ts`.
 *
 * This file only does I/O: it turns socket events and timers into inputs, runs `transition`, and
 * carries out the effects. The hot path (`#onData` → `#onPayload`) is synchronous on purpose: Deno's
 * WebSocket reads the next frame only after the message handler returns, which keeps memory bounded
 * under a flood. Dispatches are not parsed: `frame.ts` reads `op`, `s` and `t`, and the payload bytes
 * go to the sink as they are. Only READY, HELLO and op 9 are parsed.
 */
import { type Clock, systemClock, type TimerId } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import type { Secret } from "../util/secret.ts";
import { createDecompressor, type Decompressor } from "./decompress.ts";
import { BAD_SEQ, eventName, header, scanHeader } from "./frame.ts";
import { isValidJson, jsonProblem } from "./json_check.ts";
import type { IdentifyQueue } from "./identify_queue.ts";
import { type Compression, MAX_PAYLOAD_BYTES, Op, type Presence } from "./protocol.ts";
import { SendLimiter } from "./send_limiter.ts";
import { WS_OPEN } from "./ws_client.ts";
import { type ConnectSocket, connectWebSocket, type GatewaySocket } from "./gateway_socket.ts";
import { VERSION } from "../version.ts";
import {
  retryDelay,
  type SessionInfo,
  type ShardEffect,
  type ShardInput,
  type ShardState,
  transition,
} from "./shard_state.ts";

/** Receives every dispatch of every shard. Called synchronously; `payload` is only valid during the call. */
export interface DispatchSink {
  /**
   * @param start index of the payload's opening `{`
   * @param s the dispatch's sequence number (-1 when absent)
   */
  dispatch(shard: number, t: string, s: number, payload: Uint8Array, start: number): void;
  /** An event gatehouse itself produces (`t` starts with `GATEHOUSE_`). */
  internal(shard: number, t: string, d: Record<string, unknown>): void;
}

/** A session restored from a store, to RESUME instead of IDENTIFY. */
export interface ResumableSession extends SessionInfo {
  seq: number;
}

export interface ShardOptions {
  id: number;
  count: number;
  token: Secret;
  intents: number;
  presence: Presence | null;
  largeThreshold: number;
  compression: Compression;
  apiVersion: number;
  /** The main gateway URL from GET /gateway/bot. */
  gatewayUrl: string;
  identifyQueue: IdentifyQueue;
  sink: DispatchSink;
  logger: Logger;
  /** Called once when Discord closes with a code that forbids reconnecting. */
  onFatal: (shard: number, code: number, reason: string) => void;
  /** Called when a session starts or resumes, and when it is lost (null). */
  onSession?: (shard: number, session: ResumableSession | null) => void;
  session?: ResumableSession | null;
  clock?: Clock;
  random?: () => number;
  /** Time allowed from opening the socket to receiving HELLO. */
  connectTimeoutMs?: number;
  /** Told about heartbeat latencies, reconnects and sessions (metrics). */
  observer?: ShardObserver;
  /** Opens the WebSocket (tests pass an in-memory one). */
  connect?: ConnectSocket;
}

/** What a shard reports as it happens, for metrics. Called synchronously; must not throw. */
export interface ShardObserver {
  latency(shard: number, ms: number): void;
  /** A reconnect was scheduled; `reason` is a short stable label (`zombie`, `op7`, `close_4000`, …). */
  reconnect(shard: number, reason: string): void;
  /** A session was established: resumed (after `reason`) or a new one (IDENTIFY). */
  session(shard: number, resumed: boolean, reason: string): void;
  /** A session was lost (events may have been missed). */
  sessionLost(shard: number): void;
  /**
   * Discord sent something unusable (`bad_seq`, `bad_ready`, `bad_hello`, `bad_resume_url`,
   * `bad_frame`), or an event could not be handed over (`handover`).
   */
  protocolError?(shard: number, kind: string): void;
}

/** A point-in-time view of a shard, for logs, health and `gatehouse shards`. */
export interface ShardStatus {
  id: number;
  state: ShardState["kind"];
  seq: number | null;
  sessionId: string | null;
  latencyMs: number | null;
  lastFrameAt: number | null;
  /** When the last dispatch arrived. */
  lastEventAt: number | null;
  events: number;
  reconnects: number;
  badFrames: number;
  /** Discord's heartbeat interval on the current connection (0 before HELLO). */
  heartbeatIntervalMs: number;
  /** When the current session was established (READY) or taken over (RESUMED after a restart). */
  sessionSince: number | null;
  /** Commands waiting to be sent. */
  queuedCommands: number;
  /** Failed connection attempts since the last READY or RESUMED. */
  attempt: number;
  /** Why the shard waits to reconnect, while it does. */
  waitingReason: string | null;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** For showing bytes that are not valid UTF-8: replacement characters instead of an error. */
const lossy = new TextDecoder("utf-8", { fatal: false });
const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;
/** Stands for a heartbeat in the priority queue; its seq is filled in when it is written. */
const HEARTBEAT = "\u0000heartbeat";
/**
 * A HELLO interval outside this range is refused as a protocol error. Discord's is about 41 s; below
 * 100 ms no connection could keep up (and a 1 ms interval declares a zombie before READY is read),
 * beyond 10 minutes a dead connection would go unnoticed.
 */
export const HEARTBEAT_INTERVAL_RANGE = { min: 100, max: 600_000 } as const;
/**
 * Commands waiting for one shard at most; more are refused. At Discord's 120 sends per minute this is
 * minutes of backlog already: a bot that sends faster must be told, not buffered without bound.
 */
export const MAX_QUEUED_COMMANDS = 1000;
/** Protocol errors at one seq, with nothing taken in between, before the session is given up. */
export const PROTOCOL_ERRORS_BEFORE_NEW_SESSION = 5;

export class Shard {
  readonly id: number;
  readonly #o: ShardOptions;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #log: Logger;
  readonly #ctx: { mainUrl: string };
  readonly #decompressor: Decompressor;
  readonly #limiter: SendLimiter;

  #state: ShardState;
  #inbox: ShardInput[] = [];
  #busy = false;

  #ws: GatewaySocket | null = null;
  /** Highest sequence number of the current session; 0 = none yet. */
  #seq = 0;
  #receivedSinceBeat = true;
  #heartbeatInterval = 0;
  #heartbeatTimer: TimerId | null = null;
  #connectTimer: TimerId | null = null;
  #retryTimer: TimerId | null = null;
  #sendTimer: TimerId | null = null;
  #identifyAbort: AbortController | null = null;
  /** The IDENTIFY frame waiting in the priority queue, to tell the identify queue when it goes out. */
  #pendingIdentify: string | null = null;
  /** Heartbeats, IDENTIFY and RESUME: sent before anything else. */
  #priorityQueue: string[] = [];
  /** The bot's commands: sent only while the session is live, within the budget left. */
  #commandQueue: string[] = [];
  /** Per queued command (same order): called once it is written to the socket. */
  #commandSent: Array<(() => void) | undefined> = [];
  /** The last connection's close, and whether its handshake completed ("none": no connection). */
  #closed: Promise<"clean" | "dropped" | "none"> = Promise.resolve("none");

  #lastBeatAt = 0;
  /** Reading is paused (the journal cannot keep up): silence is ours, not a zombie connection. */
  #paused = false;
  #latency: number | null = null;
  #lastFrameAt: number | null = null;
  #lastEventAt: number | null = null;
  #events = 0;
  #reconnects = 0;
  #badFrames = 0;
  #invalidWindow = -Infinity;
  /** Protocol errors in a row at the same seq (no event taken in between). */
  #stuck = { seq: -1, count: 0 };
  #invalidLogged = 0;
  #invalidSuppressed = 0;
  #sessionSince: number | null = null;
  /** The input being handled, and the label of the last reconnect's cause (for metrics). */
  #handling: ShardInput | null = null;
  #lastReconnectReason = "restart";

  constructor(options: ShardOptions) {
    this.id = options.id;
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#log = options.logger;
    this.#ctx = { mainUrl: options.gatewayUrl };
    this.#decompressor = createDecompressor(options.compression);
    this.#limiter = new SendLimiter({ clock: this.#clock });
    const stored = options.session ?? null;
    this.#seq = stored?.seq ?? 0;
    this.#state = {
      kind: "idle",
      session: stored ? { id: stored.id, resumeUrl: stored.resumeUrl } : null,
    };
  }

  get state(): ShardState {
    return this.#state;
  }

  status(): ShardStatus {
    const state = this.#state;
    const session = "session" in state ? state.session : null;
    return {
      id: this.id,
      state: state.kind,
      seq: this.#seq > 0 ? this.#seq : null,
      sessionId: session?.id ?? null,
      latencyMs: this.#latency,
      lastFrameAt: this.#lastFrameAt,
      lastEventAt: this.#lastEventAt,
      events: this.#events,
      reconnects: this.#reconnects,
      badFrames: this.#badFrames,
      heartbeatIntervalMs: this.#heartbeatInterval,
      sessionSince: session ? this.#sessionSince : null,
      queuedCommands: this.#commandQueue.length,
      attempt: "attempt" in state ? state.attempt : 0,
      waitingReason: state.kind === "waiting" ? state.reason : null,
    };
  }

  start(): void {
    this.#input({ type: "start" });
  }

  /** Stops (or resumes) reading from Discord; used for backpressure when the store cannot keep up. */
  setPaused(paused: boolean): void {
    this.#paused = paused;
    if (paused) this.#ws?.pause();
    else this.#ws?.resume();
  }

  /**
   * An operator's request: a live connection is closed with 4000 and resumed at once, one being opened
   * is given up and opened again; a shard waiting out a backoff connects now. Returns false when the
   * state machine had nothing to do (not started, stopped or fatal).
   */
  reconnect(): boolean {
    const before = this.#state;
    this.#input({ type: "reconnect_requested", by: "operator" });
    return this.#state !== before;
  }

  /**
   * Closes the connection with `code` (4000 keeps the session resumable) and waits a bounded time for
   * Discord to acknowledge the close. Says how it went: "clean" (Discord answered the close), "dropped"
   * (TCP ended without that), "none" (there was no connection to close).
   */
  stop(code = 4000): Promise<"clean" | "dropped" | "none"> {
    this.#input({ type: "stop", code });
    return this.#closed;
  }

  /**
   * Queues a command (op 3, 4, 8, 31, 43) for this shard. It is sent while the session is live and the
   * send budget allows; over-budget commands wait. Returns an error text when the payload is refused.
   */
  send(op: number, d: unknown, onSent?: () => void): string | null {
    const text = JSON.stringify({ op, d });
    const size = encoder.encode(text).length;
    if (size > MAX_PAYLOAD_BYTES) {
      return `payload is ${size} bytes; Discord accepts at most ${MAX_PAYLOAD_BYTES}`;
    }
    if (this.#state.kind === "stopped" || this.#state.kind === "fatal") {
      return `shard ${this.id} is ${this.#state.kind}: it sends nothing any more`;
    }
    if (this.#commandQueue.length >= MAX_QUEUED_COMMANDS) {
      return `shard ${this.id} already has ${this.#commandQueue.length} commands waiting ` +
        `(state ${this.#state.kind}; Discord takes about 110 per minute)`;
    }
    this.#commandQueue.push(text);
    this.#commandSent.push(onSent);
    this.#pumpSends();
    return null;
  }

  // ---- state machine plumbing ----

  #input(input: ShardInput): void {
    this.#inbox.push(input);
    if (this.#busy) return;
    this.#busy = true;
    try {
      while (this.#inbox.length > 0) {
        const next = this.#inbox.shift()!;
        this.#handling = next;
        const before = this.#state;
        const { state, effects } = transition(before, next, this.#ctx);
        this.#state = state;
        if (state.kind !== before.kind) {
          this.#log.debug("shard {shard}: {from} → {to} on {input}", {
            shard: this.id,
            from: before.kind,
            to: state.kind,
            input: next.type,
          });
        }
        for (const effect of effects) {
          try {
            this.#run(effect);
          } catch (error) {
            // A bug or a throwing callback must not leave the loop (nor escape into a timer).
            this.#log.error("shard {shard}: carrying out {effect} failed: {error}", {
              shard: this.id,
              effect: effect.type,
              error: (error as Error)?.stack ?? String(error),
            });
          }
        }
      }
    } finally {
      this.#busy = false;
    }
  }

  #run(effect: ShardEffect): void {
    switch (effect.type) {
      case "connect":
        this.#connect(effect.url);
        break;
      case "disconnect":
        this.#disconnect(effect.code);
        break;
      case "start_heartbeat":
        this.#startHeartbeat(effect.interval);
        break;
      case "send_heartbeat":
        this.#sendHeartbeat();
        break;
      case "request_identify":
        this.#requestIdentify();
        break;
      case "send_identify":
        this.#sendIdentify();
        break;
      case "send_resume":
        this.#sendPriority(JSON.stringify({
          op: Op.Resume,
          d: { token: this.#o.token.reveal(), session_id: this.#sessionId(), seq: this.#seq },
        }));
        this.#log.info("shard {shard}: resuming session at seq {seq}", { shard: this.id, seq: this.#seq });
        break;
      case "session_established":
        if (!effect.resumed || this.#sessionSince === null) this.#sessionSince = this.#clock.now();
        this.#o.observer?.session(
          this.id,
          effect.resumed,
          effect.resumed ? this.#lastReconnectReason : "identify",
        );
        this.#log.info(
          effect.resumed ? "shard {shard}: resumed at seq {seq}" : "shard {shard}: ready (new session)",
          { shard: this.id, seq: this.#seq },
        );
        this.#pumpSends();
        this.#o.onSession?.(this.id, { ...effect.session, seq: this.#seq });
        break;
      case "session_lost":
        this.#log.warn("shard {shard}: session lost after seq {seq}: {reason}", {
          shard: this.id,
          seq: this.#seq,
          reason: effect.reason,
        });
        this.#o.sink.internal(this.id, "GATEHOUSE_SESSION_INVALIDATED", {
          shard_id: this.id,
          session_id: effect.session.id,
          last_seq: this.#seq > 0 ? this.#seq : null,
          reason: effect.reason,
        });
        this.#seq = 0;
        this.#sessionSince = null;
        this.#o.observer?.sessionLost(this.id);
        this.#o.onSession?.(this.id, null);
        break;
      case "schedule_retry": {
        const delay = retryDelay(effect.kind, effect.attempt, this.#random());
        this.#reconnects++;
        this.#lastReconnectReason = reconnectLabel(this.#handling);
        this.#o.observer?.reconnect(this.id, this.#lastReconnectReason);
        const state = this.#state;
        // The first failures may be a blip; after a few in a row somebody should look.
        const level = effect.attempt >= 6 ? "error" : effect.attempt >= 3 ? "warn" : "info";
        this.#log[level]("shard {shard}: reconnecting in {delay} ms ({reason}){count}", {
          shard: this.id,
          delay,
          reason: state.kind === "waiting" ? state.reason : effect.kind,
          count: effect.attempt >= 3 ? `; ${effect.attempt} failed attempts in a row` : "",
        });
        this.#retryTimer = this.#clock.setTimeout(() => {
          this.#retryTimer = null;
          this.#input({ type: "retry" });
        }, delay);
        break;
      }
      case "fatal":
        this.#log.error("shard {shard}: Discord closed with {code} ({reason}); not reconnecting", {
          shard: this.id,
          code: effect.code,
          reason: effect.reason,
        });
        this.#o.onFatal(this.id, effect.code, effect.reason);
        break;
      case "log":
        this.#log[effect.level === "warning" ? "warn" : effect.level]("shard {shard}: {message}", {
          shard: this.id,
          message: effect.message,
        });
        break;
    }
  }

  #sessionId(): string | null {
    const state = this.#state;
    return "session" in state && state.session ? state.session.id : null;
  }

  // ---- connection ----

  #connect(base: string): void {
    this.#decompressor.reset();
    this.#limiter.reset();
    this.#receivedSinceBeat = true;
    let ws: GatewaySocket | null = null;
    try {
      const url = gatewayConnectUrl(base, this.#o.apiVersion, this.#o.compression);
      this.#log.debug("shard {shard}: connecting to {url}", { shard: this.id, url });
      ws = (this.#o.connect ?? connectWebSocket)(url, {
        onOpen: () => {
          if (this.#ws === ws) this.#input({ type: "socket_open" });
        },
        onMessage: (data) => {
          if (this.#ws === ws) this.#onData(data);
        },
        onClose: (code, reason) => {
          if (this.#ws !== ws) return;
          this.#ws = null;
          this.#input({ type: "socket_closed", code, reason });
        },
      }, { headers: { "User-Agent": `DiscordBot (gatehouse, ${VERSION})` } });
    } catch (error) {
      // A URL that cannot be used (validated before, but never trusted): a failed connect, backed off.
      queueMicrotask(() =>
        this.#input({ type: "socket_closed", code: 1006, reason: (error as Error).message })
      );
      return;
    }
    this.#ws = ws;
    if (this.#paused) ws.pause();
    this.#connectTimer = this.#clock.setTimeout(() => {
      this.#connectTimer = null;
      this.#input({ type: "connect_timeout" });
    }, this.#o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
  }

  /** The one way out of a connection: clears everything that belongs to it. */
  #disconnect(code: number): void {
    for (const timer of [this.#heartbeatTimer, this.#connectTimer, this.#retryTimer, this.#sendTimer]) {
      if (timer !== null) this.#clock.clearTimeout(timer);
    }
    this.#heartbeatTimer =
      this.#connectTimer =
      this.#retryTimer =
      this.#sendTimer =
        null;
    this.#identifyAbort?.abort(new DOMException("connection closed", "AbortError"));
    this.#identifyAbort = null;
    this.#priorityQueue = [];
    this.#pendingIdentify = null;
    this.#decompressor.reset();
    const ws = this.#ws;
    this.#ws = null;
    if (ws === null) {
      this.#closed = Promise.resolve("none");
      return;
    }
    if (ws.readyState !== WS_OPEN) {
      // Still connecting (or already closing): dropped, not closed with a handshake.
      this.#closed = ws.close(code).then(() => "none" as const, () => "none" as const);
      return;
    }
    // Bounded: a server that never answers the close frame is dropped by the client's close timeout.
    this.#closed = ws.close(code).then(
      () => (ws.closedCleanly ? "clean" as const : "dropped" as const),
      () => "dropped" as const,
    );
  }

  // ---- receiving ----

  #onData(bytes: Uint8Array): void {
    this.#receivedSinceBeat = true;
    this.#lastFrameAt = this.#clock.now();
    let payload: Uint8Array | null;
    try {
      payload = this.#decompressor.push(bytes);
    } catch (error) {
      this.#badFrames++;
      this.#input({ type: "bad_stream", reason: `cannot decompress a frame: ${(error as Error).message}` });
      return;
    }
    if (payload === null) return;
    try {
      this.#onPayload(payload);
    } catch (error) {
      // One bad frame (or a failing sink) must not take the shard down.
      this.#badFrames++;
      this.#log.error("shard {shard}: error while handling a frame: {error}", {
        shard: this.id,
        error: (error as Error).stack ?? String(error),
      });
    }
  }

  #onPayload(payload: Uint8Array): void {
    if (!scanHeader(payload)) {
      this.#invalidPayload(payload, null, -1, jsonProblem(payload) ?? "not a JSON object with an op");
      return;
    }
    const op = header.op;
    if (op === Op.Dispatch) {
      if (header.tStart < 0) {
        this.#badFrame(payload, "dispatch without an event name");
        return;
      }
      const s = header.s;
      const start = header.start;
      const t = eventName(payload, header.tStart, header.tEnd);
      if (s === BAD_SEQ) {
        this.#protocolError("bad_seq", `a ${t} dispatch with an unusable sequence number`, payload);
        return;
      }
      if (t !== "READY" && s >= 0 && s <= this.#seq) {
        // Already delivered (a replay overlapping what we had): forwarding it again would duplicate it.
        this.#log.debug("shard {shard}: dropping repeated seq {s} (have {seq})", {
          shard: this.id,
          s,
          seq: this.#seq,
        });
        return;
      }
      if (!isValidJson(payload, start)) {
        if (t === "READY" || t === "RESUMED") {
          // The session cannot start on bytes that are not JSON: this connection goes.
          this.#protocolError(
            t === "READY" ? "bad_ready" : "bad_resumed",
            `a ${t} that is not valid JSON`,
            payload,
          );
          return;
        }
        // Discord numbered it, so it counts (a RESUME would only bring the same bytes again); what goes
        // out instead is a GATEHOUSE_INVALID_PAYLOAD event, so every line gatehouse writes is JSON.
        if (!this.#invalidPayload(payload, t, s, jsonProblem(payload, start) ?? "invalid JSON")) return;
        if (s >= 0) this.#seq = s;
        return;
      }
      if (t === "READY" && !this.#onReady(payload, s)) return;
      // Handed over first, then counted as received: an event the pipeline did not take must not be
      // acknowledged (heartbeats, the RESUME seq), or Discord would never send it again.
      try {
        this.#o.sink.dispatch(this.id, t, s, payload, start);
      } catch (error) {
        this.#protocolError(
          "handover",
          `event ${t} (seq ${s}) could not be handed over: ${(error as Error)?.message ?? error}`,
          null,
        );
        return;
      }
      if (s >= 0) this.#seq = s;
      this.#events++;
      this.#lastEventAt = this.#lastFrameAt;
      if (t === "RESUMED") this.#input({ type: "resumed" });
      return;
    }
    switch (op) {
      case Op.HeartbeatAck:
        this.#latency = this.#clock.now() - this.#lastBeatAt;
        this.#o.observer?.latency(this.id, this.#latency);
        return;
      case Op.Heartbeat:
        this.#input({ type: "heartbeat_requested" });
        return;
      case Op.Reconnect:
        this.#input({ type: "reconnect_requested" });
        return;
      case Op.InvalidSession: {
        const message = parse(payload);
        this.#input({ type: "invalid_session", resumable: message?.d === true });
        return;
      }
      case Op.Hello: {
        const interval = (parse(payload)?.d as { heartbeat_interval?: unknown } | null)?.heartbeat_interval;
        const { min, max } = HEARTBEAT_INTERVAL_RANGE;
        if (typeof interval !== "number" || !(interval >= min && interval <= max)) {
          this.#protocolError(
            "bad_hello",
            `HELLO with heartbeat_interval ${
              JSON.stringify(interval) ?? "missing"
            } (allowed ${min}–${max} ms)`,
            payload,
          );
          return;
        }
        if (this.#connectTimer !== null) this.#clock.clearTimeout(this.#connectTimer);
        this.#connectTimer = null;
        this.#input({ type: "hello", heartbeatInterval: interval });
        return;
      }
      default:
        this.#log.debug("shard {shard}: ignoring op {op}", { shard: this.id, op });
    }
  }

  /**
   * A READY starts a new session. Returns false (and drops the connection) when it is unusable: a
   * READY without a session id would leave the shard identifying forever while events flow. A missing
   * or unusable resume URL is replaced by the main URL.
   */
  #onReady(payload: Uint8Array, s: number): boolean {
    const d = parse(payload)?.d as { session_id?: unknown; resume_gateway_url?: unknown } | null | undefined;
    const sessionId = d?.session_id;
    if (typeof sessionId !== "string" || !/^[\x21-\x7e]{1,256}$/.test(sessionId)) {
      this.#protocolError("bad_ready", "READY without a usable session_id", payload);
      return false;
    }
    let resumeUrl = typeof d!.resume_gateway_url === "string" ? d!.resume_gateway_url : "";
    if (!isGatewayUrl(resumeUrl)) {
      this.#o.observer?.protocolError?.(this.id, "bad_resume_url");
      this.#log.warn(
        "shard {shard}: READY's resume_gateway_url {url} is not a ws:// or wss:// URL; resuming through the " +
          "main gateway URL instead",
        { shard: this.id, url: JSON.stringify(resumeUrl.slice(0, 200)) },
      );
      resumeUrl = this.#ctx.mainUrl;
    }
    // A new session numbers its events from READY: never keep the previous session's seq.
    this.#seq = s >= 0 ? s - 1 : 0;
    this.#input({ type: "ready", sessionId, resumeUrl });
    return true;
  }

  /**
   * Something Discord sent cannot be trusted: logged, counted, and the connection resumes. When the
   * session makes no progress across PROTOCOL_ERRORS_BEFORE_NEW_SESSION of them (Discord replays the same
   * bad frame on every RESUME), the session is given up for a new one, with a GATEHOUSE_SESSION_INVALIDATED
   * so consumers learn of the gap, instead of resuming into it for ever.
   */
  #protocolError(kind: string, why: string, payload: Uint8Array | null): void {
    this.#badFrames++;
    // Only what a RESUME brings back again counts (a bad HELLO says nothing about the session).
    let giveUp = false;
    if (kind === "bad_seq" || kind === "handover" || kind === "bad_resumed") {
      if (this.#stuck.seq === this.#seq) this.#stuck.count++;
      else this.#stuck = { seq: this.#seq, count: 1 };
      giveUp = this.#stuck.count >= PROTOCOL_ERRORS_BEFORE_NEW_SESSION;
      if (giveUp) this.#stuck = { seq: -1, count: 0 };
    }
    this.#o.observer?.protocolError?.(this.id, kind);
    const text = payload ? `: ${decoder.decode(payload.subarray(0, 120))}` : "";
    this.#log.warn("shard {shard}: protocol error ({why}); reconnecting to resume after seq {seq}{text}", {
      shard: this.id,
      why,
      seq: this.#seq,
      text,
    });
    this.#input({
      type: "protocol_error",
      reason: `protocol error: ${why}`,
      label: "protocol_error",
      newSession: giveUp,
    });
  }

  /**
   * A payload that is not valid JSON in valid UTF-8 is held out: counted, logged (at most a few lines
   * per 10 s), and a GATEHOUSE_INVALID_PAYLOAD event takes its place so consumers learn of the gap.
   */
  #invalidPayload(payload: Uint8Array, t: string | null, s: number, problem: string): boolean {
    this.#badFrames++;
    this.#o.observer?.protocolError?.(this.id, "invalid_payload");
    const now = this.#clock.now();
    if (now - this.#invalidWindow >= 10_000) {
      if (this.#invalidSuppressed > 0) {
        this.#log.warn("shard {shard}: {n} more invalid payload(s) in the last 10 s", {
          shard: this.id,
          n: this.#invalidSuppressed,
        });
      }
      this.#invalidWindow = now;
      this.#invalidLogged = this.#invalidSuppressed = 0;
    }
    const head = lossy.decode(payload.subarray(0, 200));
    if (this.#invalidLogged++ < 5) {
      this.#log.warn("shard {shard}: held out a payload that is not valid JSON ({problem}): {head}", {
        shard: this.id,
        problem,
        head: JSON.stringify(head),
      });
    } else this.#invalidSuppressed++;
    try {
      this.#o.sink.internal(this.id, "GATEHOUSE_INVALID_PAYLOAD", {
        shard_id: this.id,
        t,
        s: s >= 0 ? s : null,
        problem,
        bytes: payload.length,
        head,
      });
      return true;
    } catch (error) {
      // Not handed over: like any event the pipeline refused, it is not acknowledged.
      this.#protocolError(
        "handover",
        `the report of an invalid payload was refused: ${(error as Error)?.message}`,
        null,
      );
      return false;
    }
  }

  #badFrame(payload: Uint8Array, why: string): void {
    this.#badFrames++;
    this.#o.observer?.protocolError?.(this.id, "bad_frame");
    const text = decoder.decode(payload.subarray(0, 120));
    this.#log.warn("shard {shard}: ignoring a bad frame ({why}): {text}", { shard: this.id, why, text });
  }

  // ---- heartbeats ----

  #startHeartbeat(interval: number): void {
    this.#heartbeatInterval = interval;
    this.#limiter.reserveForHeartbeat(interval);
    if (this.#heartbeatTimer !== null) this.#clock.clearTimeout(this.#heartbeatTimer);
    this.#receivedSinceBeat = true;
    // Jitter the first beat so shards started together do not beat together.
    this.#scheduleBeat(interval * this.#random());
  }

  #scheduleBeat(delay: number): void {
    this.#heartbeatTimer = this.#clock.setTimeout(() => {
      this.#heartbeatTimer = null;
      this.#scheduleBeat(this.#heartbeatInterval);
      this.#input({ type: "heartbeat_due", alive: this.#receivedSinceBeat || this.#paused });
    }, delay);
  }

  /**
   * At most one heartbeat waits to be sent, and it carries the seq of when it is written: a beat due
   * while the previous one still waits for the send budget (an interval too short for 120 sends per
   * minute) does not queue another.
   */
  #sendHeartbeat(): void {
    this.#receivedSinceBeat = false;
    this.#lastBeatAt = this.#clock.now();
    if (this.#priorityQueue.includes(HEARTBEAT)) return;
    this.#sendPriority(HEARTBEAT);
  }

  // ---- identify ----

  #requestIdentify(): void {
    const abort = new AbortController();
    this.#identifyAbort = abort;
    this.#o.identifyQueue.wait(this.id, abort.signal).then(
      () => {
        if (this.#identifyAbort === abort) {
          this.#identifyAbort = null;
          this.#input({ type: "identify_granted" });
        }
      },
      () => {/* aborted: the connection ended while waiting */},
    );
  }

  #sendIdentify(): void {
    const o = this.#o;
    this.#seq = 0;
    const d: Record<string, unknown> = {
      token: o.token.reveal(),
      properties: { os: Deno.build.os, browser: "gatehouse", device: "gatehouse" },
      large_threshold: o.largeThreshold,
      shard: [o.id, o.count],
      intents: o.intents,
    };
    if (o.presence) d.presence = o.presence;
    const text = JSON.stringify({ op: Op.Identify, d });
    this.#pendingIdentify = text;
    this.#sendPriority(text);
    this.#log.info("shard {shard}: identifying", { shard: this.id });
  }

  // ---- sending ----

  #sendPriority(text: string): void {
    this.#priorityQueue.push(text);
    this.#pumpSends();
  }

  /**
   * Writes what the send budget allows. Heartbeats, IDENTIFY and RESUME go first and never wait behind
   * commands: they use slots the commands may not touch, so only the commands wait (on a timer) when the
   * budget is spent.
   */
  #pumpSends(): void {
    const ws = this.#ws;
    if (ws === null || ws.readyState !== WS_OPEN) return;
    let wait = 0;
    while (this.#priorityQueue.length > 0) {
      wait = this.#limiter.delay(true);
      if (wait > 0) break;
      this.#limiter.record();
      const text = this.#priorityQueue.shift()!;
      ws.send(text === HEARTBEAT ? `{"op":1,"d":${this.#seq > 0 ? this.#seq : "null"}}` : text);
      if (text === this.#pendingIdentify) {
        this.#pendingIdentify = null;
        this.#o.identifyQueue.sent?.(this.id);
      }
    }
    if (wait === 0 && this.#state.kind === "ready") {
      while (this.#commandQueue.length > 0) {
        wait = this.#limiter.delay(false);
        if (wait > 0) break;
        this.#limiter.record();
        ws.send(this.#commandQueue.shift()!);
        this.#commandSent.shift()?.();
      }
    }
    if (this.#sendTimer !== null) {
      this.#clock.clearTimeout(this.#sendTimer);
      this.#sendTimer = null;
    }
    if (wait > 0) {
      this.#sendTimer = this.#clock.setTimeout(() => {
        this.#sendTimer = null;
        this.#pumpSends();
      }, wait);
    }
  }
}

function parse(payload: Uint8Array): { op?: unknown; d?: unknown } | null {
  try {
    return JSON.parse(decoder.decode(payload));
  } catch {
    return null;
  }
}

/** `<base>/?v=10&encoding=json[&compress=…]`, keeping any path the base URL has. */
/** A short, stable label for what made a shard reconnect (a metric label: few distinct values). */
export function reconnectLabel(input: ShardInput | null): string {
  switch (input?.type) {
    case "heartbeat_due":
      return "zombie";
    case "reconnect_requested":
      return input.by === "operator" ? "operator" : "op7";
    case "invalid_session":
      return input.resumable ? "op9_resumable" : "op9";
    case "socket_closed":
      return input.code === 1006 ? "dropped" : `close_${input.code}`;
    case "connect_timeout":
      return "connect_timeout";
    case "bad_stream":
      return "bad_stream";
    case "protocol_error":
      return input.label;
    default:
      return input?.type ?? "unknown";
  }
}

/** Whether `text` is a URL a shard can connect to: ws:// or wss:// with a host. */
export function isGatewayUrl(text: string): boolean {
  if (text.length === 0 || text.length > 2048) return false;
  try {
    const url = new URL(text);
    return (url.protocol === "ws:" || url.protocol === "wss:") && url.hostname.length > 0;
  } catch {
    return false;
  }
}

export function gatewayConnectUrl(base: string, version: number, compression: Compression): string {
  const url = new URL(base);
  if (url.pathname === "") url.pathname = "/";
  url.searchParams.set("v", String(version));
  url.searchParams.set("encoding", "json");
  if (compression !== "none") url.searchParams.set("compress", compression);
  else url.searchParams.delete("compress");
  return url.toString();
}
