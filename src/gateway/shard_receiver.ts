/**
 * What a shard does with the frames its socket hands it. Synchronous on purpose: the WebSocket reads
 * the next frame only after the handler returns, which keeps memory bounded under a flood. Dispatches
 * are not parsed: `frame.ts` reads `op`, `s` and `t`, and the payload bytes go to the sink as they are.
 * Only READY, HELLO and op 9 are parsed. What the frames mean for the connection goes to the state
 * machine as inputs; the session's seq moves forward in the state (`advanceSeq`) once an event is
 * handed over.
 */
import type { Clock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { createDecompressor, type Decompressor } from "./decompress.ts";
import { BAD_SEQ, eventName, header, scanHeader } from "./frame.ts";
import { isGatewayUrl } from "./gateway_url.ts";
import type { Heartbeat } from "./heartbeat.ts";
import { isValidJson } from "./json_check.ts";
import { jsonProblem } from "./json_problem.ts";
import { type Compression, Op } from "./protocol.ts";
import { advanceSeq, seqOf, type ShardInput, type ShardState } from "./shard_state.ts";
import type { DispatchSink, ShardObserver } from "./shard_types.ts";

const decoder = new TextDecoder();
/** For showing bytes that are not valid UTF-8: replacement characters instead of an error. */
const lossy = new TextDecoder("utf-8", { fatal: false });

/**
 * A HELLO interval outside this range is refused as a protocol error. Discord's is about 41 s; below
 * 100 ms no connection could keep up (and a 1 ms interval declares a zombie before READY is read),
 * beyond 10 minutes a dead connection would go unnoticed.
 */
export const HEARTBEAT_INTERVAL_RANGE = { min: 100, max: 600_000 } as const;
/** Protocol errors at one seq, with nothing taken in between, before the session is given up. */
export const PROTOCOL_ERRORS_BEFORE_NEW_SESSION = 5;

/** The shard as its receiver sees it. */
export interface ReceiverHost {
  readonly id: number;
  /** The main gateway URL, for a READY whose resume URL cannot be used. */
  readonly mainUrl: string;
  readonly compression: Compression;
  readonly sink: DispatchSink;
  readonly log: Logger;
  readonly clock: Clock;
  readonly observer?: ShardObserver;
  readonly heartbeat: Heartbeat;
  state(): ShardState;
  input(input: ShardInput): void;
}

export class Receiver {
  readonly #h: ReceiverHost;
  readonly #decompressor: Decompressor;
  lastFrameAt: number | null = null;
  /** When the last dispatch arrived. */
  lastEventAt: number | null = null;
  events = 0;
  badFrames = 0;
  #invalidWindow = -Infinity;
  #invalidLogged = 0;
  #invalidSuppressed = 0;
  /** Protocol errors in a row at the same seq (no event taken in between). */
  #stuck = { seq: -1, count: 0 };

  constructor(host: ReceiverHost) {
    this.#h = host;
    this.#decompressor = createDecompressor(host.compression);
  }

  /** A new connection (or none): the decompression context starts over. */
  reset(): void {
    this.#decompressor.reset();
  }

  /** One WebSocket message. */
  onData(bytes: Uint8Array): void {
    this.#h.heartbeat.received();
    this.lastFrameAt = this.#h.clock.now();
    let payload: Uint8Array | null;
    try {
      payload = this.#decompressor.push(bytes);
    } catch (error) {
      this.badFrames++;
      this.#h.input({ type: "bad_stream", reason: `cannot decompress a frame: ${(error as Error).message}` });
      return;
    }
    if (payload === null) return;
    try {
      this.#onPayload(payload);
    } catch (error) {
      // One bad frame (or a failing sink) must not take the shard down.
      this.badFrames++;
      this.#h.log.error("shard {shard}: error while handling a frame: {error}", {
        shard: this.#h.id,
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
      this.#onDispatch(payload);
      return;
    }
    const h = this.#h;
    switch (op) {
      case Op.HeartbeatAck:
        h.observer?.latency(h.id, h.heartbeat.ack());
        return;
      case Op.Heartbeat:
        h.input({ type: "heartbeat_requested" });
        return;
      case Op.Reconnect:
        h.input({ type: "reconnect_requested" });
        return;
      case Op.InvalidSession: {
        const message = parse(payload);
        h.input({ type: "invalid_session", resumable: message?.d === true });
        return;
      }
      case Op.Hello: {
        const interval = (parse(payload)?.d as { heartbeat_interval?: unknown } | null)?.heartbeat_interval;
        const { min, max } = HEARTBEAT_INTERVAL_RANGE;
        if (typeof interval !== "number" || !(interval >= min && interval <= max)) {
          const shown = JSON.stringify(interval) ?? "missing";
          this.#protocolError(
            "bad_hello",
            `HELLO with heartbeat_interval ${shown} (allowed ${min}–${max} ms)`,
            payload,
          );
          return;
        }
        h.input({ type: "hello", heartbeatInterval: interval });
        return;
      }
      default:
        h.log.debug("shard {shard}: ignoring op {op}", { shard: h.id, op });
    }
  }

  #onDispatch(payload: Uint8Array): void {
    const h = this.#h;
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
    const seq = seqOf(h.state());
    if (t !== "READY" && s >= 0 && s <= seq) {
      // Already delivered (a replay overlapping what we had): forwarding it again would duplicate it.
      h.log.debug("shard {shard}: dropping repeated seq {s} (have {seq})", { shard: h.id, s, seq });
      return;
    }
    if (!isValidJson(payload, start)) {
      if (t === "READY" || t === "RESUMED") {
        // The session cannot start on bytes that are not JSON: this connection goes.
        const kind = t === "READY" ? "bad_ready" : "bad_resumed";
        this.#protocolError(kind, `a ${t} that is not valid JSON`, payload);
        return;
      }
      // Discord numbered it, so it counts (a RESUME would only bring the same bytes again); what goes
      // out instead is a GATEHOUSE_INVALID_PAYLOAD event, so every line gatehouse writes is JSON.
      if (!this.#invalidPayload(payload, t, s, jsonProblem(payload, start) ?? "invalid JSON")) return;
      if (s >= 0) advanceSeq(h.state(), s);
      return;
    }
    if (t === "READY" && !this.#onReady(payload, s)) return;
    // Handed over first, then counted as received: an event the pipeline did not take must not be
    // acknowledged (heartbeats, the RESUME seq), or Discord would never send it again.
    try {
      h.sink.dispatch(h.id, t, s, payload, start);
    } catch (error) {
      const why = `event ${t} (seq ${s}) could not be handed over: ${(error as Error)?.message ?? error}`;
      this.#protocolError("handover", why, null);
      return;
    }
    if (s >= 0) advanceSeq(h.state(), s);
    this.events++;
    this.lastEventAt = this.lastFrameAt;
    if (t === "RESUMED") h.input({ type: "resumed" });
  }

  /**
   * A READY starts a new session. Returns false (and drops the connection) when it is unusable: a
   * READY without a session id would leave the shard identifying forever while events flow. A missing
   * or unusable resume URL is replaced by the main URL.
   */
  #onReady(payload: Uint8Array, s: number): boolean {
    const h = this.#h;
    const d = parse(payload)?.d as { session_id?: unknown; resume_gateway_url?: unknown } | null | undefined;
    const sessionId = d?.session_id;
    if (typeof sessionId !== "string" || !/^[\x21-\x7e]{1,256}$/.test(sessionId)) {
      this.#protocolError("bad_ready", "READY without a usable session_id", payload);
      return false;
    }
    let resumeUrl = typeof d!.resume_gateway_url === "string" ? d!.resume_gateway_url : "";
    if (!isGatewayUrl(resumeUrl)) {
      h.observer?.protocolError?.(h.id, "bad_resume_url");
      h.log.warn(
        "shard {shard}: READY's resume_gateway_url {url} is not a ws:// or wss:// URL; resuming through the " +
          "main gateway URL instead",
        { shard: h.id, url: JSON.stringify(resumeUrl.slice(0, 200)) },
      );
      resumeUrl = h.mainUrl;
    }
    // A new session numbers its events from READY: never keep the previous session's seq. The READY
    // itself counts once it is handed over.
    h.input({ type: "ready", sessionId, resumeUrl, seq: s >= 0 ? s - 1 : 0 });
    return true;
  }

  /**
   * Something Discord sent cannot be trusted: logged, counted, and the connection resumes. When the
   * session makes no progress across PROTOCOL_ERRORS_BEFORE_NEW_SESSION of them (Discord replays the same
   * bad frame on every RESUME), the session is given up for a new one, with a GATEHOUSE_SESSION_INVALIDATED
   * so consumers learn of the gap, instead of resuming into it for ever.
   */
  #protocolError(kind: string, why: string, payload: Uint8Array | null): void {
    const h = this.#h;
    this.badFrames++;
    const seq = seqOf(h.state());
    // Only what a RESUME brings back again counts (a bad HELLO says nothing about the session).
    let giveUp = false;
    if (kind === "bad_seq" || kind === "handover" || kind === "bad_resumed") {
      if (this.#stuck.seq === seq) this.#stuck.count++;
      else this.#stuck = { seq, count: 1 };
      giveUp = this.#stuck.count >= PROTOCOL_ERRORS_BEFORE_NEW_SESSION;
      if (giveUp) this.#stuck = { seq: -1, count: 0 };
    }
    h.observer?.protocolError?.(h.id, kind);
    const text = payload ? `: ${decoder.decode(payload.subarray(0, 120))}` : "";
    h.log.warn("shard {shard}: protocol error ({why}); reconnecting to resume after seq {seq}{text}", {
      shard: h.id,
      why,
      seq,
      text,
    });
    h.input({
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
    const h = this.#h;
    this.badFrames++;
    h.observer?.protocolError?.(h.id, "invalid_payload");
    const now = h.clock.now();
    if (now - this.#invalidWindow >= 10_000) {
      if (this.#invalidSuppressed > 0) {
        h.log.warn("shard {shard}: {n} more invalid payload(s) in the last 10 s", {
          shard: h.id,
          n: this.#invalidSuppressed,
        });
      }
      this.#invalidWindow = now;
      this.#invalidLogged = this.#invalidSuppressed = 0;
    }
    const head = lossy.decode(payload.subarray(0, 200));
    if (this.#invalidLogged++ < 5) {
      h.log.warn("shard {shard}: held out a payload that is not valid JSON ({problem}): {head}", {
        shard: h.id,
        problem,
        head: JSON.stringify(head),
      });
    } else this.#invalidSuppressed++;
    try {
      h.sink.internal(h.id, "GATEHOUSE_INVALID_PAYLOAD", {
        shard_id: h.id,
        t,
        s: s >= 0 ? s : null,
        problem,
        bytes: payload.length,
        head,
      });
      return true;
    } catch (error) {
      // Not handed over: like any event the pipeline refused, it is not acknowledged.
      const why = `the report of an invalid payload was refused: ${(error as Error)?.message}`;
      this.#protocolError("handover", why, null);
      return false;
    }
  }

  #badFrame(payload: Uint8Array, why: string): void {
    this.badFrames++;
    this.#h.observer?.protocolError?.(this.#h.id, "bad_frame");
    const text = decoder.decode(payload.subarray(0, 120));
    this.#h.log.warn("shard {shard}: ignoring a bad frame ({why}): {text}", { shard: this.#h.id, why, text });
  }
}

function parse(payload: Uint8Array): { op?: unknown; d?: unknown } | null {
  try {
    return JSON.parse(decoder.decode(payload));
  } catch {
    return null;
  }
}
