/**
 * The shard plan: which shards this process runs, which stored sessions they resume, and what the
 * operator should be told about it. Pure: it reads the configuration, Discord's /gateway/bot answer and
 * the stored sessions, and touches nothing. Cluster mode and resharding replace this seam (a plan from
 * leases, a plan for a second shard count); the pool runs whatever plan it is given.
 */
import { isGatewayUrl } from "../gateway/gateway_url.ts";

/** A session as the store keeps it: keyed by shard count and shard id. */
export interface PlannedSessionSource {
  shard: number;
  shardCount: number;
  sessionId: string;
  seq: number;
  resumeUrl: string;
}

export interface PlanInput {
  /** `[shards] count`; null = Discord's recommendation. */
  configuredCount: number | null;
  /** `[shards] ids`; null = every shard of the count. */
  configuredIds: number[] | null;
  /** Discord's recommended shard count (/gateway/bot `shards`). */
  recommendedCount: number;
  /** Discord's gateway URL (/gateway/bot `url`): where a stored session with an untrusted URL resumes. */
  gatewayUrl: string;
  /** Session starts left in Discord's budget, and how many of them gatehouse keeps in reserve. */
  sessionStartsRemaining: number;
  identifyReserve: number;
  /** Sessions stored by earlier runs. */
  stored: PlannedSessionSource[];
}

/** A session a shard resumes instead of identifying. */
export interface PlannedSession {
  id: string;
  resumeUrl: string;
  seq: number;
}

export interface ShardPlan {
  /** The shard count every shard of this plan identifies with. */
  count: number;
  /** The shard ids this process runs, ascending. */
  ids: number[];
  /** Stored sessions the planned shards resume, by shard id. */
  resume: Map<number, PlannedSession>;
  /** Planned shards that must IDENTIFY (no usable stored session). */
  identifying: number;
  /** Stored sessions of a planned shard id made for another shard count (not resumed). */
  stale: Array<{ shard: number; storedCount: number }>;
  /** What the operator should know, one sentence each. */
  warnings: string[];
}

/** The configuration cannot give a plan (a shard id outside the count); `message` says which key. */
export class PlanError extends Error {
  override name = "PlanError";
}

export function planShards(input: PlanInput): ShardPlan {
  const count = input.configuredCount ?? input.recommendedCount;
  if (!Number.isInteger(count) || count < 1) {
    throw new PlanError(`the shard count must be a positive integer, not ${count}`);
  }
  const ids = input.configuredIds === null
    ? Array.from({ length: count }, (_, i) => i)
    : [...new Set(input.configuredIds)].sort((a, b) => a - b);
  const outside = ids.filter((id) => id >= count);
  if (outside.length > 0) {
    throw new PlanError(
      `shards.ids contains ${outside.join(", ")}, but the shard count is ${count} (ids must be below it${
        input.configuredCount === null ? "; the count is Discord's recommendation" : ""
      })`,
    );
  }

  const planned = new Set(ids);
  const resume = new Map<number, PlannedSession>();
  const stale: ShardPlan["stale"] = [];
  for (const stored of input.stored) {
    if (!planned.has(stored.shard)) continue;
    if (stored.shardCount !== count) {
      stale.push({ shard: stored.shard, storedCount: stored.shardCount });
      continue;
    }
    // A resume URL the store holds is not trusted either (an older version stored whatever READY said).
    const resumeUrl = isGatewayUrl(stored.resumeUrl) ? stored.resumeUrl : input.gatewayUrl;
    resume.set(stored.shard, { id: stored.sessionId, resumeUrl, seq: stored.seq });
  }
  // A session stored for this count wins over one for another count of the same shard.
  const staleOnly = stale.filter((s) => !resume.has(s.shard));

  const warnings: string[] = staleOnly.map((s) =>
    `shard ${s.shard}: stored session was for ${s.storedCount} shards, now ${count}: starting a new session`
  );
  const identifying = ids.length - resume.size;
  const usable = input.sessionStartsRemaining - input.identifyReserve;
  if (usable < identifying) {
    warnings.push(
      `Only ${input.sessionStartsRemaining} session starts left (reserve ${input.identifyReserve}) for ` +
        `${identifying} shard(s) that must IDENTIFY: some will wait for the limit to reset`,
    );
  }
  return { count, ids, resume, identifying, stale: staleOnly, warnings };
}
