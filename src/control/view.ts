/**
 * The `GatewayView` of a running gateway: what the control listener and the start-up progress read,
 * taken from the parts as they are at each call (the pool's shards, the sink runners, the journal, the
 * identify queue). Each part is described by the little the view reads of it.
 */
import type { ShardStatus } from "../gateway/shard.ts";
import type { ProxyStatus } from "../proxy/start.ts";
import type { GatewayStats } from "./stats.ts";
import type { GatewayView } from "./status.ts";
import type { ReshardAnswer, ReshardStatus } from "../pool/resharder.ts";
import type { TransformCounts } from "../sinks/transforms.ts";

export interface GatewayViewParts {
  stats: GatewayStats;
  startedAt: number;
  shardCount: number;
  /** The shard count now, when a reshard may change it (else `shardCount`). */
  currentCount?: () => number;
  /** Resharding: its status, and a request (resolves with the decision). */
  resharding?: {
    status(): ReshardStatus;
    request(count?: number): Promise<ReshardAnswer>;
  };
  /** Proxy mode's status, when it runs. */
  proxy?: () => ProxyStatus;
  /** This process's node name in cluster mode (see `GatewayView.node`); unset otherwise. */
  node?: string;
  /** The shards this process runs, as they are now. */
  pool: { status(): ShardStatus[]; get(id: number): { reconnect(): boolean } | undefined };
  runners: ReadonlyArray<{
    readonly sink: { name: string };
    readonly cursor: number;
    readonly errors: number;
    /** Pacing's lag (events, ms) and the time held by pacing (ms); see src/sinks/runner.ts. */
    readonly lagEvents?: number;
    readonly lagMs?: number;
    readonly pacedMs?: number;
    /** The runner's transforms (`[transforms]`), when any. */
    readonly transforms?: { readonly counts: TransformCounts } | null;
  }>;
  /** Whether events are kept in the store (`[store] journal`). */
  journalEnabled: boolean;
  journal: {
    readonly lastAssignedId: number;
    readonly pendingEvents: number;
    readonly commits: number;
    readonly failedCommits: number;
  };
  /** Live bytes of the store. */
  storeSize(): number;
  identify: {
    readonly remaining: number;
    readonly budget: { total: number; resetAt: number; maxConcurrency: number; holding: boolean };
  };
  /** A command line as on stdin: null when routed, else why it was refused. */
  command(line: string): string | null;
  now?: () => number;
}

export function gatewayView(parts: GatewayViewParts): GatewayView {
  const { pool, runners, journal, identify } = parts;
  return {
    stats: parts.stats,
    startedAt: parts.startedAt,
    get shardCount() {
      return parts.currentCount?.() ?? parts.shardCount;
    },
    ...(parts.resharding
      ? {
        resharding: () => parts.resharding!.status(),
        reshard: (count?: number) => parts.resharding!.request(count),
      }
      : {}),
    ...(parts.node === undefined ? {} : { node: parts.node }),
    ...(parts.proxy ? { proxy: parts.proxy } : {}),
    now: parts.now ?? (() => Date.now()),
    shards: () => pool.status(),
    sinks: () =>
      runners.map((r) => ({
        name: r.sink.name,
        cursor: r.cursor,
        errors: r.errors,
        duplicates: (r.sink as { duplicates?: number }).duplicates,
        lagEvents: r.lagEvents,
        lagSeconds: r.lagMs === undefined ? undefined : r.lagMs / 1000,
        pacedSeconds: r.pacedMs === undefined ? undefined : r.pacedMs / 1000,
        ...(r.transforms ? { transforms: r.transforms.counts } : {}),
      })),
    journal: () => ({
      enabled: parts.journalEnabled,
      lastId: journal.lastAssignedId,
      sizeBytes: safeSize(parts.storeSize),
      pendingEvents: journal.pendingEvents,
      commits: journal.commits,
      failedCommits: journal.failedCommits,
    }),
    identify: () => ({ remaining: identify.remaining, ...identify.budget }),
    reconnect: (id) => pool.get(id)?.reconnect() ?? false,
    command: (line) => parts.command(line),
  };
}

/** Live bytes of the store, or 0 when it cannot be read just now. */
function safeSize(size: () => number): number {
  try {
    return size();
  } catch {
    return 0;
  }
}
