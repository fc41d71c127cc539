/** The types of a shard's surface: its options, what it reports, and where its events go. */
import type { Clock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import type { Secret } from "../util/secret.ts";
import type { ConnectSocket } from "./gateway_socket.ts";
import type { IdentifyQueue } from "./identify_queue.ts";
import type { Compression, Presence } from "./protocol.ts";
import type { SessionInfo, ShardState } from "./shard_state.ts";

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
export type ResumableSession = SessionInfo;

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
  /** The shard count of its set (two sets run side by side during a reshard). */
  count?: number;
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
