/**
 * What the control listener reports, computed from the gateway's current state every time it is
 * asked — never from a flag set once at start-up: a shard is ready only while its session is live and
 * Discord was heard from recently.
 */
import type { ShardStatus } from "../gateway/shard.ts";
import type { ReshardAnswer, ReshardOutcome, ReshardStatus } from "../pool/resharder.ts";
import type { ProxyStatus } from "../proxy/start.ts";
import type { GatewayStats } from "./stats.ts";
import type { TransformCounts } from "../sinks/transforms.ts";

/** Everything the control listener reads; implemented by `gatehouse run`, faked in tests. */

export interface GatewayView {
  readonly stats: GatewayStats;
  readonly startedAt: number;
  readonly shardCount: number;
  /**
   * This process's node name in cluster mode (`[cluster] node`): the status report and the metrics say
   * it. The shards are still only this process's (those it owns), never the whole bot's.
   */
  readonly node?: string;
  now(): number;
  shards(): ShardStatus[];
  /** Resharding here: where it stands (absent where it cannot run). */
  resharding?(): ReshardStatus;
  /** Proxy mode, when `[proxy] listen` is set: its clients, sessions and cache. */
  proxy?(): ProxyStatus;
  /** Requests a reshard (to `count`, else Discord's recommendation); resolves with the decision. */
  reshard?(count?: number): Promise<ReshardAnswer>;
  /**
   * `duplicates`: events a de-duplicating sink skipped as already delivered. `lagEvents`, `lagSeconds`:
   * the sink's lag as pacing measures it (committed head − cursor; age of the oldest committed event not
   * acknowledged); `pacedSeconds`: time its runner has held reading by pacing. `transforms`: what the
   * sink's transforms did (absent when `[transforms]` is off).
   */
  sinks(): Array<{
    name: string;
    cursor: number;
    errors: number;
    duplicates?: number;
    lagEvents?: number;
    lagSeconds?: number;
    pacedSeconds?: number;
    transforms?: TransformCounts;
  }>;
  journal(): {
    enabled: boolean;
    lastId: number;
    sizeBytes: number;
    pendingEvents: number;
    commits: number;
    failedCommits: number;
  };
  /** `holding`: identifies wait for the daily session-start budget to refill (at `resetAt`). */
  identify(): {
    remaining: number;
    total: number;
    resetAt: number;
    maxConcurrency: number;
    holding?: boolean;
  };
  reconnect(shard: number): boolean;
  /** A command line as on stdin; resolves with null when routed, else the reason it was refused. */
  command(line: string): string | null;
}

/** A shard without any frame for this long past its heartbeat interval is not ready. */
const SILENCE_GRACE_MS = 5_000;
/** Before the first HELLO tells the interval. */
const DEFAULT_SILENCE_MS = 60_000;

export interface Readiness {
  ready: boolean;
  /** Why not, in words. */
  why: string | null;
}

/** Whether the shard's session is live now: state ready and a frame seen within 1.5 heartbeat intervals. */
export function readiness(status: ShardStatus, now: number): Readiness {
  if (status.state !== "ready") return { ready: false, why: `state ${status.state}` };
  const allowed = status.heartbeatIntervalMs > 0
    ? status.heartbeatIntervalMs * 1.5 + SILENCE_GRACE_MS
    : DEFAULT_SILENCE_MS;
  if (status.lastFrameAt === null) return { ready: false, why: "nothing received yet" };
  const silent = now - status.lastFrameAt;
  if (silent > allowed) {
    return { ready: false, why: `nothing received for ${Math.round(silent / 1000)} s` };
  }
  return { ready: true, why: null };
}

/** One row of `/shards` and `gatehouse shards`. */
export interface ShardReport {
  id: number;
  /** The shard count of its set. */
  count: number;
  /** Whether its set delivers (during a reshard the new set's events are held until the switch). */
  delivering: boolean;
  state: string;
  ready: boolean;
  why: string | null;
  latency_ms: number | null;
  guilds: number;
  seq: number | null;
  session_age_s: number | null;
  events_per_s: number;
  events: number;
  last_event_age_s: number | null;
  last_frame_age_s: number | null;
  reconnects: number;
  queued_commands: number;
}

export interface StatusReport {
  /** In cluster mode: the node this report is from. */
  node?: string;
  pid: number;
  version: string;
  uptime_s: number;
  shard_count: number;
  ready: boolean;
  shards_ready: number;
  shards: ShardReport[];
  sinks: Array<{ name: string; cursor: number; lag: number; errors: number }>;
  journal: { enabled: boolean; last_id: number; size_bytes: number; pending_events: number };
  identify: { remaining: number | null; total: number | null; max_concurrency: number };
  /** Proxy mode (absent when `[proxy] listen` is not set). */
  proxy?: {
    url: string;
    sessions: number;
    clients: Array<{
      session: string;
      shard: number;
      count: number;
      state: string;
      seq: number;
      behind: number;
      buffered_bytes: number;
      connected_s: number;
    }>;
    cache: { guilds: number; unavailable: number; bytes: number; bytes_per_guild: number };
  };
  /** Where resharding stands (absent where it cannot run). */
  resharding?: {
    state: ReshardStatus["state"];
    delivering: number;
    other: number | null;
    ready?: number;
    loaded?: number;
    total?: number;
    held_events?: number;
    held_bytes?: number;
    started_at?: string;
    last: (Omit<ReshardOutcome, "at" | "tookMs"> & { at: string; took_ms?: number }) | null;
    counts: {
      started: number;
      switched: number;
      aborted: number;
      refused: Record<string, number>;
      repeats_removed: number;
      released: number;
      old_dropped: number;
      last_switch_ms: number | null;
    };
  };
}

/** Events/s per shard from the last two samples (taken by `RateSampler`). */
export class RateSampler {
  #previous = new Map<number, { at: number; events: number }>();
  #current = new Map<number, { at: number; events: number }>();

  sample(shards: ShardStatus[], now: number): void {
    this.#previous = this.#current;
    this.#current = new Map(shards.map((s) => [s.id, { at: now, events: s.events }]));
  }

  rate(status: ShardStatus, now: number): number {
    const base = this.#previous.get(status.id) ?? this.#current.get(status.id);
    if (!base || now - base.at < 500) return 0;
    return Math.max(0, (status.events - base.events) * 1000 / (now - base.at));
  }
}

export function statusReport(view: GatewayView, rates: RateSampler, version: string): StatusReport {
  const now = view.now();
  const shards = view.shards().map((s): ShardReport => {
    const r = readiness(s, now);
    const count = s.count ?? view.shardCount;
    return {
      id: s.id,
      count,
      delivering: count === view.shardCount,
      state: s.state,
      ready: r.ready,
      why: r.why,
      latency_ms: s.latencyMs,
      guilds: view.stats.guilds(s.id),
      seq: s.seq,
      session_age_s: s.sessionSince === null ? null : round1((now - s.sessionSince) / 1000),
      events_per_s: round1(rates.rate(s, now)),
      events: s.events,
      last_event_age_s: s.lastEventAt === null ? null : round1((now - s.lastEventAt) / 1000),
      last_frame_age_s: s.lastFrameAt === null ? null : round1((now - s.lastFrameAt) / 1000),
      reconnects: s.reconnects,
      queued_commands: s.queuedCommands,
    };
  });
  const journal = view.journal();
  const identify = view.identify();
  // Readiness is the delivering set's: a new set coming up beside it is not yet the bot's.
  const delivering = shards.filter((s) => s.delivering);
  const ready = delivering.filter((s) => s.ready).length;
  const resharding = view.resharding?.();
  return {
    ...(view.node === undefined ? {} : { node: view.node }),
    pid: Deno.pid,
    version,
    uptime_s: round1((now - view.startedAt) / 1000),
    shard_count: view.shardCount,
    ready: ready === delivering.length && delivering.length > 0,
    shards_ready: ready,
    shards,
    sinks: view.sinks().map((s) => ({
      name: s.name,
      cursor: s.cursor,
      lag: Math.max(0, journal.lastId - s.cursor),
      errors: s.errors,
    })),
    journal: {
      enabled: journal.enabled,
      last_id: journal.lastId,
      size_bytes: journal.sizeBytes,
      pending_events: journal.pendingEvents,
    },
    identify: {
      remaining: Number.isFinite(identify.remaining) ? identify.remaining : null,
      total: Number.isFinite(identify.total) ? identify.total : null,
      max_concurrency: identify.maxConcurrency,
    },
    ...(resharding ? { resharding: reshardingReport(resharding) } : {}),
    ...(view.proxy ? { proxy: proxyReport(view.proxy(), now) } : {}),
  };
}

function proxyReport(p: ProxyStatus, now: number): NonNullable<StatusReport["proxy"]> {
  const available = p.cache.guilds - p.cache.unavailable;
  return {
    url: p.url,
    sessions: p.sessions,
    clients: p.clients.map((c) => ({
      session: c.session,
      shard: c.shard,
      count: c.count,
      state: c.state,
      seq: c.seq,
      behind: c.behind,
      buffered_bytes: c.bufferedBytes,
      connected_s: round1((now - c.connectedAt) / 1000),
    })),
    cache: {
      guilds: p.cache.guilds,
      unavailable: p.cache.unavailable,
      bytes: p.cache.bytes,
      bytes_per_guild: available > 0 ? Math.round(p.cache.bytes / available) : 0,
    },
  };
}

function reshardingReport(r: ReshardStatus): NonNullable<StatusReport["resharding"]> {
  const { last, startedAt, heldEvents, heldBytes, counts, ...rest } = r;
  return {
    ...rest,
    counts: {
      started: counts.started,
      switched: counts.switched,
      aborted: counts.aborted,
      refused: { ...counts.refused },
      repeats_removed: counts.repeatsRemoved,
      released: counts.released,
      old_dropped: counts.oldDropped,
      last_switch_ms: counts.lastSwitchMs,
    },
    ...(heldEvents === undefined ? {} : { held_events: heldEvents, held_bytes: heldBytes }),
    ...(startedAt === undefined ? {} : { started_at: new Date(startedAt).toISOString() }),
    last: last && {
      outcome: last.outcome,
      from: last.from,
      to: last.to,
      trigger: last.trigger,
      why: last.why,
      at: new Date(last.at).toISOString(),
      ...(last.tookMs === undefined ? {} : { took_ms: last.tookMs }),
    },
  };
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}
