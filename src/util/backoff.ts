/**
 * The one backoff formula of gatehouse: capped exponential growth, optionally jittered.
 *
 *   delay(n) = min(maxMs, baseMs × 2^(n − 1))            for the n-th consecutive failure (n ≥ 1)
 *   jittered: delay(n) × (1 − jitter + jitter × random)   random in [0, 1)
 *
 * Every part that retries (shard reconnects, GET /gateway/bot, journal writes, sink deliveries, broker
 * connections, listener rebinding, repeated IDENTIFYs) names its base and cap here instead of writing its
 * own formula.
 */
export interface Backoff {
  /** The delay after the first failure (ms). */
  baseMs: number;
  /** No delay is longer than this (ms). */
  maxMs: number;
  /** Fraction of the delay that is random: 0 = none, 0.5 = between half and all of it. */
  jitter?: number;
}

/**
 * The delay (ms, rounded) before the next try after `failures` consecutive failures. 0 failures (or
 * fewer) is no delay. `random` is in [0, 1); it matters only with jitter.
 */
export function backoffDelay(policy: Backoff, failures: number, random = 1): number {
  if (!(failures >= 1)) return 0;
  // 2^(n−1) is past any cap long before it overflows; the exponent is bounded so it stays finite.
  const raw = policy.baseMs * 2 ** Math.min(failures - 1, 52);
  const capped = Math.min(policy.maxMs, raw);
  const jitter = policy.jitter ?? 0;
  return Math.round(capped * (1 - jitter + jitter * Math.min(Math.max(random, 0), 1)));
}
