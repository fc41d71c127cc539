/**
 * Whether to reshard, and to how many shards: a pure decision, so every trigger (the periodic check,
 * an operator's request, a close with 4011) is decided by one rule the tests can pin down.
 *
 * - Discord stops a shard at 2 500 guilds (it closes with 4011 when the count is too small). The
 *   periodic check reshards once the guilds fill `threshold` of what the shards can hold:
 *   `guilds / (count × 2500) ≥ threshold`.
 * - The new count is Discord's recommendation (`GET /gateway/bot`'s `shards`), or the operator's,
 *   rounded up to a multiple of `max_concurrency` when that is above 1 (large bots identify in buckets
 *   of that size: a count that fills the buckets starts in the fewest rounds).
 * - A new set identifies every shard: a reshard that would leave fewer than `reserve` session starts
 *   of the day's budget is refused, with the reason, rather than risk the token being reset.
 */

/** Guilds one shard may hold before Discord refuses it (close 4011). */
export const GUILDS_PER_SHARD_LIMIT = 2500;

export type ReshardTrigger =
  | { kind: "periodic" }
  | { kind: "requested"; count?: number }
  | { kind: "close_4011" };

export interface ReshardInput {
  trigger: ReshardTrigger;
  /** The shard count running now. */
  currentCount: number;
  /** Guilds the bot is in now (from the READYs of the running set). */
  guilds: number;
  /** `GET /gateway/bot`: the recommended count, max_concurrency and the session starts left today. */
  recommended: number;
  maxConcurrency: number;
  sessionStartsRemaining: number;
  /** Session starts always kept back (`[gateway] identify_reserve`). */
  reserve: number;
  /** Fill at which the periodic check reshards (`[resharding] threshold`, 0 < t ≤ 1). */
  threshold: number;
  /**
   * The new count must be a multiple of this too (cluster mode: of the running count, so each new shard's
   * guilds are a subset of one old shard's and the overlap is met in one process). Default 1.
   */
  multipleOf?: number;
}

export type ReshardDecision =
  | { reshard: true; count: number; why: string }
  | { reshard: false; why: string; reason: "not_needed" | "budget" | "invalid" };

/** 0.8 → "80", 0.005 → "0.5". */
function percent(fraction: number): string {
  return String(Number((fraction * 100).toFixed(1)));
}

function lcm(a: number, b: number): number {
  let x = a, y = b;
  while (y !== 0) [x, y] = [y, x % y];
  return (a / x) * b;
}

/** `count` rounded up to a multiple of `maxConcurrency` (unchanged when that is 1). */
export function roundToBuckets(count: number, maxConcurrency: number): number {
  if (maxConcurrency <= 1) return count;
  return Math.ceil(count / maxConcurrency) * maxConcurrency;
}

export function decideReshard(input: ReshardInput): ReshardDecision {
  const { trigger, currentCount, guilds, recommended, maxConcurrency } = input;
  const fill = guilds / (currentCount * GUILDS_PER_SHARD_LIMIT);
  const fillText = `${guilds} guilds fill ${(fill * 100).toFixed(1)} % of ${currentCount} shard(s)`;
  let wanted: number;
  let why: string;
  switch (trigger.kind) {
    case "periodic":
      if (fill < input.threshold) {
        return {
          reshard: false,
          reason: "not_needed",
          why: `${fillText}, under the threshold of ${percent(input.threshold)} %`,
        };
      }
      wanted = recommended;
      why = `${fillText} (threshold ${percent(input.threshold)} %)`;
      break;
    case "requested":
      if (trigger.count !== undefined && (!Number.isSafeInteger(trigger.count) || trigger.count < 1)) {
        return {
          reshard: false,
          reason: "invalid",
          why: `a shard count must be a positive integer, not ${trigger.count}`,
        };
      }
      wanted = trigger.count ?? recommended;
      why = trigger.count !== undefined ? `requested: ${trigger.count} shards` : "requested";
      break;
    case "close_4011":
      wanted = recommended;
      why = "Discord closed a shard with 4011 (sharding required)";
      break;
  }
  // Enough shards for the guilds whatever was asked: a count Discord would refuse is no reshard.
  const least = Math.ceil(guilds / GUILDS_PER_SHARD_LIMIT);
  const step = lcm(Math.max(1, maxConcurrency), Math.max(1, input.multipleOf ?? 1));
  const count = roundToBuckets(Math.max(wanted, least, 1), step);
  if (count === currentCount) {
    return { reshard: false, reason: "not_needed", why: `${why}; the new count would be ${count}, as now` };
  }
  if (trigger.kind !== "requested" && count < currentCount) {
    return {
      reshard: false,
      reason: "not_needed",
      why: `${why}; Discord recommends ${recommended}, fewer than the ${currentCount} running`,
    };
  }
  const left = input.sessionStartsRemaining - input.reserve;
  if (left < count) {
    return {
      reshard: false,
      reason: "budget",
      why:
        `${why}; ${count} new sessions need ${count} IDENTIFYs, but only ${input.sessionStartsRemaining} ` +
        `session starts are left today and ${input.reserve} are kept in reserve`,
    };
  }
  return { reshard: true, count, why: `${why}: ${currentCount} → ${count} shards` };
}
