/**
 * The shard as a state machine: a tagged union of states, each carrying its own data, and one pure
 * transition function `(state, input) → { state, effects }`. The driver (`shard.ts`) owns the socket
 * and the timers, turns what happens into inputs and carries out the effects; every protocol decision
 * (resume or identify, which URL, when to give up) is made here, where it is tested without a socket.
 *
 * A session's sequence number is part of its state (`SessionInfo.seq`): READY sets it, a lost session takes
 * it along. It changes on every dispatch, so that one change is made in place (`advanceSeq`), not by a
 * transition: the hot path allocates nothing for it.
 */
import { type Backoff, backoffDelay } from "../util/backoff.ts";
import { closeRule } from "./close_codes.ts";

/** What a RESUME needs: the session, where to resume it, and the last event handed over. */
export interface SessionInfo {
  id: string;
  resumeUrl: string;
  /** Highest sequence number handed over in this session; 0 = none yet. */
  seq: number;
}

/**
 * `attempt` counts failed connections since the last READY or RESUMED; it drives the backoff and,
 * after RESUME_URL_ATTEMPTS failures, the fallback from the resume URL to the main gateway URL.
 * `identifying.sent` is where an IDENTIFY stands: false while the identify queue has not granted it,
 * true once it is queued to be written (the queue entry itself tells the identify queue when it goes
 * out). There is no session while identifying: READY makes one.
 * `fatal` says which close code stopped the shard and what it means; what the process does about it
 * (its exit code) is the CLI's business (`src/cli/exit_codes.ts`).
 */
export type ShardState =
  | { kind: "idle"; session: SessionInfo | null }
  | { kind: "connecting"; attempt: number; url: string; session: SessionInfo | null }
  | { kind: "handshaking"; attempt: number; url: string; session: SessionInfo | null }
  | { kind: "identifying"; attempt: number; sent: boolean }
  | { kind: "resuming"; attempt: number; session: SessionInfo }
  | { kind: "ready"; session: SessionInfo }
  | { kind: "waiting"; attempt: number; session: SessionInfo | null; reason: string }
  | { kind: "fatal"; code: number; reason: string }
  | { kind: "stopped" };

export type ShardInput =
  | { type: "start" }
  | { type: "socket_open" }
  | { type: "hello"; heartbeatInterval: number }
  | { type: "identify_granted" }
  /** `seq`: what the session counts as handed over before the READY itself is (its seq − 1). */
  | { type: "ready"; sessionId: string; resumeUrl: string; seq: number }
  | { type: "resumed" }
  /** A heartbeat is due; `alive` = some frame arrived since the previous beat (or this is the first). */
  | { type: "heartbeat_due"; alive: boolean }
  /** Discord sent op 1: beat at once. */
  | { type: "heartbeat_requested" }
  /** Discord sent op 7 (or an operator asked, `by: "operator"`). */
  | { type: "reconnect_requested"; by?: "discord" | "operator" }
  | { type: "invalid_session"; resumable: boolean }
  /** The socket closed or failed without us asking (1006 for a drop without close frame). */
  | { type: "socket_closed"; code: number; reason: string }
  | { type: "connect_timeout" }
  /** A frame could not be decompressed: the stream context is broken, the connection must go. */
  | { type: "bad_stream"; reason: string }
  /**
   * Discord sent something the protocol does not allow (an unusable sequence number, a READY without a
   * session id, an absurd heartbeat interval), or an event could not be handed over: nothing after it on
   * this connection can be trusted. The connection goes and the session resumes from the last event
   * handed over, so Discord sends again what followed. `label` is a short stable name for metrics.
   */
  | { type: "protocol_error"; reason: string; label: string; newSession?: boolean }
  /** The wait before reconnecting has elapsed. */
  | { type: "retry" }
  | { type: "stop"; code: number };

export type RetryKind = "immediate" | "backoff" | "invalid_session";

export type ShardEffect =
  | { type: "connect"; url: string }
  /** Close our socket (if any) with `code`; clears heartbeat, connect timeout, pending identify and sends. */
  | { type: "disconnect"; code: number }
  | { type: "start_heartbeat"; interval: number }
  | { type: "send_heartbeat" }
  | { type: "request_identify" }
  | { type: "send_identify" }
  | { type: "send_resume"; session: SessionInfo }
  | { type: "session_established"; session: SessionInfo; resumed: boolean }
  /** The session is gone (op 9 false, a close code meaning "new session"): consumers may have a gap. */
  | { type: "session_lost"; session: SessionInfo; reason: string }
  /** `label`: a short stable name of the cause, for metrics (`zombie`, `op7`, `close_4000`, …). */
  | { type: "schedule_retry"; kind: RetryKind; attempt: number; label: string }
  | { type: "fatal"; code: number; reason: string }
  | { type: "log"; level: "info" | "warning" | "error"; message: string };

export interface Transition {
  state: ShardState;
  effects: ShardEffect[];
}

/** Fixed facts of a shard the transition needs. */
export interface ShardContext {
  /** The main gateway URL from GET /gateway/bot. */
  mainUrl: string;
}

/** Reconnect backoff: 1 s doubling up to 60 s, each delay between half and all of its ceiling. */
export const RECONNECT_BACKOFF: Backoff = { baseMs: 1000, maxMs: 60_000, jitter: 0.5 };

/** Failed connects to the resume URL before falling back to the main gateway URL. */
export const RESUME_URL_ATTEMPTS = 3;

/** Where to connect next: the session's resume URL while it still answers, else the main URL. */
export function connectUrl(session: SessionInfo | null, attempt: number, ctx: ShardContext): string {
  return session !== null && attempt < RESUME_URL_ATTEMPTS ? session.resumeUrl : ctx.mainUrl;
}

/**
 * Delay before reconnecting, in ms: capped exponential backoff with jitter, none for the first try
 * after a healthy connection ended, and Discord's 1–5 s after an invalid session.
 * `random` is in [0, 1).
 */
export function retryDelay(kind: RetryKind, attempt: number, random: number): number {
  if (kind === "invalid_session") return Math.round(1000 + random * 4000);
  if (kind === "immediate" && attempt === 0) return 0;
  // A backoff from a live connection (attempt 0) waits as long as after the first failure.
  return backoffDelay(RECONNECT_BACKOFF, Math.max(1, attempt), random);
}

const same = (state: ShardState): Transition => ({ state, effects: [] });

function sessionOf(state: ShardState): SessionInfo | null {
  switch (state.kind) {
    case "idle":
    case "connecting":
    case "handshaking":
    case "waiting":
      return state.session;
    case "resuming":
    case "ready":
      return state.session;
    default:
      return null;
  }
}

/** Failed-attempt count to carry into the next connection: a healthy (ready) connection resets it. */
function nextAttempt(state: ShardState): number {
  switch (state.kind) {
    case "connecting":
    case "handshaking":
    case "identifying":
    case "resuming":
    case "waiting":
      return state.attempt + 1;
    default:
      return 0;
  }
}

/**
 * Moves the session's seq forward to `s` (a dispatch was handed over). In place: the one change of the
 * state made outside `transition`, on every event.
 */
export function advanceSeq(state: ShardState, s: number): void {
  const session = sessionOf(state);
  if (session !== null && s > session.seq) session.seq = s;
}

/** The session's seq, 0 when there is none. */
export function seqOf(state: ShardState): number {
  return sessionOf(state)?.seq ?? 0;
}

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

/** Ends the current connection and waits to reconnect, keeping or dropping the session. */
function reconnect(
  state: ShardState,
  input: ShardInput,
  options: { code: number; keepSession: boolean; kind: RetryKind; reason: string; lostReason?: string },
): Transition {
  const session = sessionOf(state);
  const attempt = nextAttempt(state);
  const effects: ShardEffect[] = [{ type: "disconnect", code: options.code }];
  if (!options.keepSession && session !== null) {
    effects.push({ type: "session_lost", session, reason: options.lostReason ?? options.reason });
  }
  const kept = options.keepSession ? session : null;
  // A connection that was live retries at once; failures back off.
  const kind: RetryKind = options.kind === "immediate" && attempt > 0 ? "backoff" : options.kind;
  effects.push({ type: "schedule_retry", kind, attempt, label: reconnectLabel(input) });
  return { state: { kind: "waiting", attempt, session: kept, reason: options.reason }, effects };
}

const isConnected = (state: ShardState) =>
  state.kind === "handshaking" || state.kind === "identifying" || state.kind === "resuming" ||
  state.kind === "ready";

/** The whole protocol logic of one shard. Pure: same inputs, same outputs, no I/O. */
export function transition(state: ShardState, input: ShardInput, ctx: ShardContext): Transition {
  if (state.kind === "fatal" || state.kind === "stopped") return same(state);

  switch (input.type) {
    case "start": {
      if (state.kind !== "idle") return same(state);
      const url = connectUrl(state.session, 0, ctx);
      return {
        state: { kind: "connecting", attempt: 0, url, session: state.session },
        effects: [{ type: "connect", url }],
      };
    }

    case "stop":
      return { state: { kind: "stopped" }, effects: [{ type: "disconnect", code: input.code }] };

    case "socket_open":
      if (state.kind !== "connecting") return same(state);
      return {
        state: { kind: "handshaking", attempt: state.attempt, url: state.url, session: state.session },
        effects: [],
      };

    case "hello": {
      if (state.kind !== "handshaking") return same(state);
      const beat: ShardEffect = { type: "start_heartbeat", interval: input.heartbeatInterval };
      if (state.session !== null) {
        return {
          state: { kind: "resuming", attempt: state.attempt, session: state.session },
          effects: [beat, { type: "send_resume", session: state.session }],
        };
      }
      return {
        state: { kind: "identifying", attempt: state.attempt, sent: false },
        effects: [beat, { type: "request_identify" }],
      };
    }

    case "identify_granted":
      if (state.kind !== "identifying" || state.sent) return same(state);
      return { state: { ...state, sent: true }, effects: [{ type: "send_identify" }] };

    case "ready": {
      if (state.kind !== "identifying") return same(state);
      const session = { id: input.sessionId, resumeUrl: input.resumeUrl, seq: input.seq };
      return {
        state: { kind: "ready", session },
        effects: [{ type: "session_established", session, resumed: false }],
      };
    }

    case "resumed":
      if (state.kind !== "resuming") return same(state);
      return {
        state: { kind: "ready", session: state.session },
        effects: [{ type: "session_established", session: state.session, resumed: true }],
      };

    case "heartbeat_due":
      if (!isConnected(state)) return same(state);
      if (input.alive) return { state, effects: [{ type: "send_heartbeat" }] };
      return reconnect(state, input, {
        code: 4000,
        keepSession: true,
        kind: "immediate",
        reason: "zombie connection: nothing received since the last heartbeat",
      });

    case "heartbeat_requested":
      if (!isConnected(state)) return same(state);
      return { state, effects: [{ type: "send_heartbeat" }] };

    case "reconnect_requested":
      if (state.kind === "waiting" && input.by === "operator") {
        // An operator does not want to wait out the backoff: connect now (disconnect clears the timer).
        const url = connectUrl(state.session, state.attempt, ctx);
        return {
          state: { kind: "connecting", attempt: state.attempt, url, session: state.session },
          effects: [{ type: "disconnect", code: 4000 }, { type: "connect", url }],
        };
      }
      if (!isConnected(state) && state.kind !== "connecting") return same(state);
      return reconnect(state, input, {
        code: 4000,
        keepSession: true,
        kind: "immediate",
        reason: input.by === "operator"
          ? "an operator asked to reconnect"
          : "Discord asked to reconnect (op 7)",
      });

    case "invalid_session": {
      if (!isConnected(state)) return same(state);
      const session = sessionOf(state);
      const resumable = input.resumable && session !== null;
      return reconnect(state, input, {
        code: 4000,
        keepSession: resumable,
        kind: "invalid_session",
        reason: resumable ? "invalid session (resumable)" : "invalid session (not resumable)",
        lostReason: "Discord invalidated the session (op 9)",
      });
    }

    case "socket_closed": {
      if (!isConnected(state) && state.kind !== "connecting") return same(state);
      const rule = closeRule(input.code);
      const reason = `closed by Discord with ${input.code} (${rule.meaning})` +
        (input.reason ? `: ${input.reason}` : "");
      if (rule.action === "fatal") {
        return {
          state: { kind: "fatal", code: input.code, reason: rule.meaning },
          effects: [
            { type: "disconnect", code: 4000 },
            { type: "fatal", code: input.code, reason: rule.meaning },
          ],
        };
      }
      if (state.kind === "connecting") {
        // Nothing came from Discord yet: the connection could not be made (often a local problem:
        // DNS, a firewall, a proxy, an untrusted certificate), so say what failed, not "closed by".
        return reconnect(state, input, {
          code: 4000,
          keepSession: true,
          kind: "backoff",
          reason: `cannot connect: ${input.reason || rule.meaning}`,
        });
      }
      return reconnect(state, input, {
        code: 4000,
        keepSession: rule.action === "resume",
        kind: "immediate",
        reason,
        lostReason: `Discord closed the session with ${input.code} (${rule.meaning})`,
      });
    }

    case "connect_timeout":
      if (state.kind !== "connecting" && state.kind !== "handshaking") return same(state);
      return reconnect(state, input, {
        code: 4000,
        keepSession: true,
        kind: "backoff",
        reason: state.kind === "connecting" ? "connect timed out" : "no HELLO before the connect timeout",
      });

    case "bad_stream":
      if (!isConnected(state)) return same(state);
      return reconnect(state, input, {
        code: 4000,
        keepSession: true,
        kind: "immediate",
        reason: input.reason,
      });

    case "protocol_error":
      if (!isConnected(state)) return same(state);
      // Always a backoff (at least 0.5–1 s), even from a live connection: a peer that keeps sending the
      // same bad frame must not make the shard reconnect in a tight loop.
      return reconnect(state, input, {
        code: 4000,
        keepSession: !input.newSession,
        kind: "backoff",
        reason: input.reason,
        lostReason: `the session kept sending what cannot be used (${input.reason})`,
      });

    case "retry": {
      if (state.kind !== "waiting") return same(state);
      const url = connectUrl(state.session, state.attempt, ctx);
      const effects: ShardEffect[] = [];
      if (state.session !== null && state.attempt === RESUME_URL_ATTEMPTS) {
        effects.push({
          type: "log",
          level: "warning",
          message: `resume URL failed ${RESUME_URL_ATTEMPTS} times; resuming through the main gateway URL`,
        });
      }
      effects.push({ type: "connect", url });
      return { state: { kind: "connecting", attempt: state.attempt, url, session: state.session }, effects };
    }
  }
}
