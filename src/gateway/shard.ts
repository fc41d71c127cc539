/**
 * One shard: a WebSocket to Discord driven by the pure state machine in `shard_state.ts`.
 *
 * This file only does I/O: it turns socket events and timers into inputs, runs `transition`, and
 * carries out the effects. Its parts: `shard_receiver.ts` handles the frames (the synchronous hot path),
 * `heartbeat.ts` beats and notices a silent connection, `send_queue.ts` writes within the send budget.
 * Everything that belongs to one connection is cleared in one place, `#disconnect`.
 */
import { type Clock, systemClock, type TimerId } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { VERSION } from "../version.ts";
import { connectWebSocket, type GatewaySocket } from "./gateway_socket.ts";
import { gatewayConnectUrl } from "./gateway_url.ts";
import { Heartbeat } from "./heartbeat.ts";
import { MAX_PAYLOAD_BYTES, Op } from "./protocol.ts";
import { Receiver } from "./shard_receiver.ts";
import { MAX_QUEUED_COMMANDS, SendQueue } from "./send_queue.ts";
import {
  retryDelay,
  seqOf,
  type SessionInfo,
  type ShardEffect,
  type ShardInput,
  type ShardState,
  transition,
} from "./shard_state.ts";
import type { ShardOptions, ShardStatus } from "./shard_types.ts";
import { WS_OPEN } from "./ws_client.ts";

// What other modules take from here, now kept in the shard's parts.
export type {
  DispatchSink,
  ResumableSession,
  ShardObserver,
  ShardOptions,
  ShardStatus,
} from "./shard_types.ts";
export { isGatewayUrl } from "./gateway_url.ts";
export { reconnectLabel } from "./shard_state.ts";

const encoder = new TextEncoder();
const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;

export class Shard {
  readonly id: number;
  readonly #o: ShardOptions;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #log: Logger;
  readonly #ctx: { mainUrl: string };
  readonly #heartbeat: Heartbeat;
  readonly #sends: SendQueue;
  readonly #receiver: Receiver;

  #state: ShardState;
  #inbox: ShardInput[] = [];
  #busy = false;

  // The current connection: its socket and what waits on it.
  #ws: GatewaySocket | null = null;
  #connectTimer: TimerId | null = null;
  #retryTimer: TimerId | null = null;
  /** The identify queue's wait for this connection (aborted when the connection ends). */
  #identifyAbort: AbortController | null = null;
  /** The last connection's close, and whether its handshake completed ("none": no connection). */
  #closed: Promise<"clean" | "dropped" | "none"> = Promise.resolve("none");

  #reconnects = 0;
  #sessionSince: number | null = null;
  /** The label of the last reconnect's cause: what a RESUMED resumed after (for metrics). */
  #lastReconnectLabel = "restart";

  constructor(options: ShardOptions) {
    this.id = options.id;
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? Math.random;
    this.#log = options.logger;
    this.#ctx = { mainUrl: options.gatewayUrl };
    const stored = options.session ?? null;
    this.#state = {
      kind: "idle",
      session: stored ? { id: stored.id, resumeUrl: stored.resumeUrl, seq: stored.seq } : null,
    };
    this.#heartbeat = new Heartbeat({
      clock: this.#clock,
      random: this.#random,
      onDue: (alive) => this.#input({ type: "heartbeat_due", alive }),
    });
    this.#sends = new SendQueue({
      clock: this.#clock,
      heartbeatFrame: () => {
        const seq = seqOf(this.#state);
        return `{"op":1,"d":${seq > 0 ? seq : "null"}}`;
      },
      commandsAllowed: () => this.#state.kind === "ready",
    });
    this.#receiver = new Receiver({
      id: this.id,
      mainUrl: options.gatewayUrl,
      compression: options.compression,
      sink: options.sink,
      log: this.#log,
      clock: this.#clock,
      observer: options.observer,
      heartbeat: this.#heartbeat,
      state: () => this.#state,
      input: (input) => this.#input(input),
    });
  }

  get state(): ShardState {
    return this.#state;
  }

  status(): ShardStatus {
    const state = this.#state;
    const session = "session" in state ? state.session : null;
    const seq = session?.seq ?? 0;
    const r = this.#receiver;
    return {
      id: this.id,
      count: this.#o.count,
      state: state.kind,
      seq: seq > 0 ? seq : null,
      sessionId: session?.id ?? null,
      latencyMs: this.#heartbeat.latency,
      lastFrameAt: r.lastFrameAt,
      lastEventAt: r.lastEventAt,
      events: r.events,
      reconnects: this.#reconnects,
      badFrames: r.badFrames,
      heartbeatIntervalMs: this.#heartbeat.interval,
      sessionSince: session ? this.#sessionSince : null,
      queuedCommands: this.#sends.queuedCommands,
      attempt: "attempt" in state ? state.attempt : 0,
      waitingReason: state.kind === "waiting" ? state.reason : null,
    };
  }

  start(): void {
    this.#input({ type: "start" });
  }

  /** Stops (or resumes) reading from Discord; used for backpressure when the store cannot keep up. */
  setPaused(paused: boolean): void {
    this.#heartbeat.paused = paused;
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
    const queued = this.#sends.queuedCommands;
    if (queued >= MAX_QUEUED_COMMANDS) {
      return `shard ${this.id} already has ${queued} commands waiting ` +
        `(state ${this.#state.kind}; Discord takes about 110 per minute)`;
    }
    this.#sends.command(text, onSent);
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
        // HELLO came: the connect timeout is over.
        if (this.#connectTimer !== null) this.#clock.clearTimeout(this.#connectTimer);
        this.#connectTimer = null;
        this.#sends.reserveForHeartbeat(effect.interval);
        this.#heartbeat.start(effect.interval);
        break;
      case "send_heartbeat":
        this.#heartbeat.beat();
        this.#sends.heartbeat();
        break;
      case "request_identify":
        this.#requestIdentify();
        break;
      case "send_identify":
        this.#sendIdentify();
        break;
      case "send_resume": {
        const { id, seq } = effect.session;
        const d = { token: this.#o.token.reveal(), session_id: id, seq };
        this.#sends.priority(JSON.stringify({ op: Op.Resume, d }));
        this.#log.info("shard {shard}: resuming session at seq {seq}", { shard: this.id, seq });
        break;
      }
      case "session_established":
        this.#sessionEstablished(effect.session, effect.resumed);
        break;
      case "session_lost":
        this.#sessionLost(effect.session, effect.reason);
        break;
      case "schedule_retry":
        this.#scheduleRetry(effect);
        break;
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

  #sessionEstablished(session: SessionInfo, resumed: boolean): void {
    if (!resumed || this.#sessionSince === null) this.#sessionSince = this.#clock.now();
    this.#o.observer?.session(this.id, resumed, resumed ? this.#lastReconnectLabel : "identify");
    this.#log.info(
      resumed ? "shard {shard}: resumed at seq {seq}" : "shard {shard}: ready (new session)",
      { shard: this.id, seq: session.seq },
    );
    this.#sends.pump();
    this.#o.onSession?.(this.id, { ...session });
  }

  #sessionLost(session: SessionInfo, reason: string): void {
    this.#log.warn("shard {shard}: session lost after seq {seq}: {reason}", {
      shard: this.id,
      seq: session.seq,
      reason,
    });
    this.#o.sink.internal(this.id, "GATEHOUSE_SESSION_INVALIDATED", {
      shard_id: this.id,
      session_id: session.id,
      last_seq: session.seq > 0 ? session.seq : null,
      reason,
    });
    this.#sessionSince = null;
    this.#o.observer?.sessionLost(this.id);
    this.#o.onSession?.(this.id, null);
  }

  #scheduleRetry(effect: Extract<ShardEffect, { type: "schedule_retry" }>): void {
    const delay = retryDelay(effect.kind, effect.attempt, this.#random());
    this.#reconnects++;
    this.#lastReconnectLabel = effect.label;
    this.#o.observer?.reconnect(this.id, effect.label);
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
  }

  // ---- connection ----

  #connect(base: string): void {
    this.#receiver.reset();
    let ws: GatewaySocket | null = null;
    try {
      const url = gatewayConnectUrl(base, this.#o.apiVersion, this.#o.compression);
      this.#log.debug("shard {shard}: connecting to {url}", { shard: this.id, url });
      ws = (this.#o.connect ?? connectWebSocket)(url, {
        onOpen: () => {
          if (this.#ws === ws) this.#input({ type: "socket_open" });
        },
        onMessage: (data) => {
          if (this.#ws === ws) this.#receiver.onData(data);
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
    this.#sends.attach(ws);
    if (this.#heartbeat.paused) ws.pause();
    this.#connectTimer = this.#clock.setTimeout(() => {
      this.#connectTimer = null;
      this.#input({ type: "connect_timeout" });
    }, this.#o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS);
  }

  /** The one way out of a connection: clears everything that belongs to it. */
  #disconnect(code: number): void {
    this.#heartbeat.stop();
    this.#sends.detach();
    for (const timer of [this.#connectTimer, this.#retryTimer]) {
      if (timer !== null) this.#clock.clearTimeout(timer);
    }
    this.#connectTimer = this.#retryTimer = null;
    this.#identifyAbort?.abort(new DOMException("connection closed", "AbortError"));
    this.#identifyAbort = null;
    this.#receiver.reset();
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
    const d: Record<string, unknown> = {
      token: o.token.reveal(),
      properties: { os: Deno.build.os, browser: "gatehouse", device: "gatehouse" },
      large_threshold: o.largeThreshold,
      shard: [o.id, o.count],
      intents: o.intents,
    };
    if (o.presence) d.presence = o.presence;
    // The identify queue counts the next slot from when IDENTIFY is written, not from the grant.
    this.#sends.priority(JSON.stringify({ op: Op.Identify, d }), () => o.identifyQueue.sent?.(this.id));
    this.#log.info("shard {shard}: identifying", { shard: this.id });
  }
}
