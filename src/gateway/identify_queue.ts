/**
 * Who may IDENTIFY when (docs/protocol.md §5). Shards share buckets keyed `shard_id % max_concurrency`;
 * each bucket lets one IDENTIFY through per 5 s and buckets run in parallel, so shards 0…mc−1 start
 * together, then mc…2mc−1, and so on. The daily `session_start_limit` is respected: when only
 * `reserve` identifies are left, every bucket waits for `reset_after` and says why, because running
 * out gets the bot token reset by Discord.
 *
 * One method, `wait(shardId, signal)`, so a Redis-backed queue can replace this one for several
 * processes.
 */
import { backoffDelay } from "../util/backoff.ts";
import { type Clock, sleep, type TimerId } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { IDENTIFY_INTERVAL_MS } from "./protocol.ts";

/**
 * Added to the 5 s spacing: the IDENTIFY of one slot and of the next travel separately, and network or
 * event-loop jitter must not make the second arrive at Discord less than 5 s after the first.
 */
export const IDENTIFY_MARGIN_MS = 250;

export interface IdentifyQueue {
  /** Resolves when `shardId` may send IDENTIFY; rejects with the signal's reason when aborted. */
  wait(shardId: number, signal?: AbortSignal): Promise<void>;
  /**
   * The IDENTIFY of `shardId` has just been written to its socket. The bucket's next slot counts from
   * here, not from the grant, so a send delayed by a busy event loop cannot bring two IDENTIFYs of a
   * bucket closer than 5 s apart at Discord.
   */
  sent?(shardId: number): void;
}

export interface SessionStartLimit {
  total: number;
  remaining: number;
  /** Milliseconds from now until `remaining` refills. */
  resetAfter: number;
}

export interface LocalIdentifyQueueOptions {
  maxConcurrency: number;
  clock: Clock;
  /** From GET /gateway/bot; without it the daily budget is not tracked. */
  limit?: SessionStartLimit;
  /** Re-reads the budget after a reset (GET /gateway/bot again). */
  refresh?: () => Promise<SessionStartLimit>;
  /** Identifies always kept back from the daily budget. */
  reserve?: number;
  intervalMs?: number;
  logger?: Logger;
  /**
   * When each shard last identified (from the store): a process restarted within seconds must still
   * leave 5 s after the previous process's IDENTIFY in the same bucket.
   */
  lastIdentified?: Map<number, number>;
}

interface Waiter {
  shardId: number;
  resolve: () => void;
  reject: (reason: unknown) => void;
  signal?: AbortSignal;
  onAbort?: () => void;
}

interface Bucket {
  /** Earliest time the next IDENTIFY of this bucket may go. */
  nextAt: number;
  waiters: Waiter[];
  timer: TimerId | null;
}

export class LocalIdentifyQueue implements IdentifyQueue {
  readonly #options: LocalIdentifyQueueOptions;
  readonly #interval: number;
  readonly #buckets = new Map<number, Bucket>();
  #remaining: number;
  #resetAt: number;
  #total: number;
  /** Set while every bucket waits for the daily budget to refill. */
  #budgetWait: Promise<void> | null = null;

  constructor(options: LocalIdentifyQueueOptions) {
    if (!Number.isInteger(options.maxConcurrency) || options.maxConcurrency < 1) {
      throw new RangeError(`Cannot create identify queue: max_concurrency is ${options.maxConcurrency}`);
    }
    this.#options = options;
    this.#interval = options.intervalMs ?? IDENTIFY_INTERVAL_MS + IDENTIFY_MARGIN_MS;
    this.#remaining = options.limit?.remaining ?? Infinity;
    this.#total = options.limit?.total ?? Infinity;
    this.#resetAt = options.clock.now() + (options.limit?.resetAfter ?? 0);
    for (const [shard, at] of options.lastIdentified ?? []) {
      const key = shard % options.maxConcurrency;
      const bucket = this.#buckets.get(key) ?? { nextAt: 0, waiters: [], timer: null };
      bucket.nextAt = Math.max(bucket.nextAt, at + this.#interval);
      this.#buckets.set(key, bucket);
    }
  }

  /** Identifies left in the daily budget as far as this queue knows. */
  get remaining(): number {
    return this.#remaining;
  }

  /** The daily budget's size, and when it refills (epoch ms), as far as this queue knows. */
  get budget(): { total: number; resetAt: number; maxConcurrency: number; holding: boolean } {
    return {
      total: this.#total,
      resetAt: this.#resetAt,
      maxConcurrency: this.#options.maxConcurrency,
      holding: this.#budgetWait !== null,
    };
  }

  wait(shardId: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    const key = shardId % this.#options.maxConcurrency;
    let bucket = this.#buckets.get(key);
    if (!bucket) {
      bucket = { nextAt: 0, waiters: [], timer: null };
      this.#buckets.set(key, bucket);
    }
    return new Promise<void>((resolve, reject) => {
      const waiter: Waiter = { shardId, resolve, reject, signal };
      if (signal) {
        waiter.onAbort = () => {
          const index = bucket.waiters.indexOf(waiter);
          if (index >= 0) bucket.waiters.splice(index, 1);
          reject(signal.reason);
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      bucket.waiters.push(waiter);
      this.#pump(bucket);
    });
  }

  sent(shardId: number): void {
    const bucket = this.#buckets.get(shardId % this.#options.maxConcurrency);
    if (bucket) bucket.nextAt = Math.max(bucket.nextAt, this.#options.clock.now() + this.#interval);
  }

  #pump(bucket: Bucket): void {
    if (bucket.timer !== null || bucket.waiters.length === 0 || this.#budgetWait !== null) return;
    const clock = this.#options.clock;
    const wait = bucket.nextAt - clock.now();
    if (wait > 0) {
      bucket.timer = clock.setTimeout(() => {
        bucket.timer = null;
        this.#pump(bucket);
      }, wait);
      return;
    }
    const reserve = this.#options.reserve ?? 0;
    if (this.#remaining <= reserve) {
      this.#waitForBudget();
      return;
    }
    const waiter = bucket.waiters.shift()!;
    if (waiter.onAbort) waiter.signal!.removeEventListener("abort", waiter.onAbort);
    this.#remaining--;
    bucket.nextAt = clock.now() + this.#interval;
    waiter.resolve();
    this.#pump(bucket);
  }

  #waitForBudget(): void {
    const clock = this.#options.clock;
    const reserve = this.#options.reserve ?? 0;
    const ms = Math.max(0, this.#resetAt - clock.now());
    this.#options.logger?.warn(
      "Holding every IDENTIFY: {remaining} of {total} session starts left today (reserve {reserve}); " +
        "waiting {minutes} min until Discord resets the limit, so the token is not reset for overuse",
      { remaining: this.#remaining, total: this.#total, reserve, minutes: Math.ceil(ms / 60_000) },
    );
    this.#budgetWait = (async () => {
      await sleep(clock, ms);
      let limit: SessionStartLimit | null = null;
      while (limit === null) {
        try {
          limit = this.#options.refresh ? await this.#options.refresh() : null;
          if (limit === null) break;
        } catch (error) {
          this.#options.logger?.warn("Cannot refresh the session start limit: {error}; retrying in 60 s", {
            error: String(error),
          });
          await sleep(clock, 60_000);
        }
      }
      if (limit) {
        this.#remaining = limit.remaining;
        this.#total = limit.total;
        this.#resetAt = clock.now() + limit.resetAfter;
      } else {
        this.#remaining = Number.isFinite(this.#total) ? this.#total : Infinity;
        this.#resetAt = clock.now() + 86_400_000;
      }
      if (this.#remaining <= reserve && this.#resetAt <= clock.now()) {
        // Discord says the window has reset but gives no budget: wait a minute rather than spin.
        this.#resetAt = clock.now() + 60_000;
      }
      this.#budgetWait = null;
      for (const bucket of this.#buckets.values()) this.#pump(bucket);
    })();
  }
}

/** Where identifies are counted across restarts (the store). */
export interface IdentifyHistory {
  /** IDENTIFYs of `shard` since `time`. */
  since(shard: number, time: number): number;
  record(shard: number): void;
}

/**
 * Crash-loop protection in front of an identify queue. A shard that keeps starting new sessions — a
 * process that crashes before it can resume, a session Discord keeps invalidating — would otherwise
 * spend one of the day's session starts per attempt. Counted across restarts: after `free` identifies
 * of a shard within `windowMs`, each further one waits 30 s, then 60 s, … up to 10 min, and says why.
 */
export class IdentifyGuard implements IdentifyQueue {
  readonly #inner: IdentifyQueue;
  readonly #history: IdentifyHistory;
  readonly #clock: Clock;
  readonly #logger?: Logger;
  readonly #free: number;
  readonly #windowMs: number;

  constructor(options: {
    inner: IdentifyQueue;
    history: IdentifyHistory;
    clock: Clock;
    logger?: Logger;
    free?: number;
    windowMs?: number;
  }) {
    this.#inner = options.inner;
    this.#history = options.history;
    this.#clock = options.clock;
    this.#logger = options.logger;
    this.#free = options.free ?? 3;
    this.#windowMs = options.windowMs ?? 10 * 60_000;
  }

  /** The wait before the next IDENTIFY of a shard that identified `recent` times in the window. */
  static delayFor(recent: number, free = 3): number {
    // 30 s for the first identify past the free ones, doubling to 10 min.
    return backoffDelay({ baseMs: 30_000, maxMs: 10 * 60_000 }, recent - free + 1);
  }

  async wait(shardId: number, signal?: AbortSignal): Promise<void> {
    const recent = this.#history.since(shardId, this.#clock.now() - this.#windowMs);
    const delay = IdentifyGuard.delayFor(recent, this.#free);
    if (delay > 0) {
      this.#logger?.warn(
        "shard {shard} started {recent} sessions in the last {minutes} min: waiting {seconds} s before the next " +
          "IDENTIFY (crash-loop protection for the daily session start limit)",
        {
          shard: shardId,
          recent,
          minutes: Math.round(this.#windowMs / 60_000),
          seconds: Math.round(delay / 1000),
        },
      );
      await sleep(this.#clock, delay, signal);
    }
    await this.#inner.wait(shardId, signal);
    this.#history.record(shardId);
  }

  sent(shardId: number): void {
    this.#inner.sent?.(shardId);
  }
}
