/**
 * The identify queue of cluster mode: every gatehouse process of one bot, on any host, shares one set
 * of buckets and one daily budget in Redis, because Discord counts IDENTIFYs per bot, not per process
 * (docs/protocol.md §5). Same contract as LocalIdentifyQueue (tests/gateway/identify_queue_contract.ts).
 *
 * Keys (`prefix` is the cluster's, `gatehouse` by default):
 * - `{prefix}:identify:bucket:{b}` — held while bucket `b = shard_id % max_concurrency` may not
 *   IDENTIFY again. `wait` takes it with `SET NX PX interval` (value: a token of this grant); `sent`
 *   sets its expiry to a full interval from the moment the IDENTIFY was written, if the grant still
 *   holds it (or nobody does). Expiry is the only release: a process that dies holds nothing longer.
 * - `{prefix}:identify:budget` — session starts left today: set from GET /gateway/bot's `remaining`
 *   with expiry `reset_after` (`SET NX PX`, so the first process's count stands), decremented
 *   atomically per grant. Missing (expired at the reset, or Redis restarted) → read again through
 *   `refresh` and set again. At `reserve` or below nothing is granted until it expires.
 *
 * The two keys are never touched by one script (a Redis Cluster would put them in different slots):
 * a bucket is taken first, then a start is taken from the budget; a refused budget gives the bucket
 * back. Within a process each bucket has one FIFO of waiters (order asked) and one loop asking Redis;
 * a loop that finds the bucket held sleeps until it expires (its PTTL, plus a little jitter so
 * processes do not ask at the same instant), so Redis sees about one request per bucket, process and
 * interval.
 */
import type { SessionStartLimit } from "../gateway/identify_queue.ts";
import { IDENTIFY_MARGIN_MS, type IdentifyQueue } from "../gateway/identify_queue.ts";
import { IDENTIFY_INTERVAL_MS } from "../gateway/protocol.ts";
import type { RedisClient } from "../redis/client.ts";
import { defineIdentifyScripts, type IdentifyScripts } from "./identify_scripts.ts";
import { backoffDelay } from "../util/backoff.ts";
import { type Clock, sleep, systemClock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";

/** Redis unreachable: ask again after 200 ms, doubling to 5 s. */
const TROUBLE = { baseMs: 200, maxMs: 5_000 };

export interface RedisIdentifyQueueOptions {
  /** The caller's connection (src/redis/client.ts); the queue defines its scripts on it, never closes it. */
  client: RedisClient;
  /** The cluster's key prefix, the same in every process of the bot (default `gatehouse`). */
  prefix?: string;
  maxConcurrency: number;
  /** From GET /gateway/bot at start; without it and `refresh` the daily budget is not tracked. */
  limit?: SessionStartLimit;
  /** Reads the budget again (GET /gateway/bot) when its key is gone: after the reset, or a Redis restart. */
  refresh?: () => Promise<SessionStartLimit>;
  /** Identifies always kept back from the daily budget. */
  reserve?: number;
  intervalMs?: number;
  logger?: Logger;
  clock?: Clock;
  /** When each shard last identified (from the store), kept by this process on top of Redis's buckets. */
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
  key: string;
  waiters: Waiter[];
  /** This process's own bound: not before (epoch ms), from its grants, sends and the store. */
  notBefore: number;
  running: boolean;
}

export class RedisIdentifyQueue implements IdentifyQueue {
  readonly #client: IdentifyScripts;
  readonly #clock: Clock;
  readonly #log?: Logger;
  readonly #interval: number;
  readonly #reserve: number;
  readonly #maxConcurrency: number;
  readonly #budgetKey: string;
  readonly #prefix: string;
  readonly #refresh?: () => Promise<SessionStartLimit>;
  readonly #tracked: boolean;
  /** Unique per process: grant tokens start with it. */
  readonly #id = crypto.randomUUID().slice(0, 12);
  readonly #buckets = new Map<number, Bucket>();
  /** The bucket and token of each grant until its `sent`. */
  readonly #granted = new Map<number, { bucket: Bucket; token: string; at: number }>();
  readonly #closing = new AbortController();
  /** The start-up limit, used once if its key is missing before its own reset. */
  #initial: { limit: SessionStartLimit; resetAt: number } | null;
  #seq = 0;
  #failures = 0;
  #remaining: number;
  #total: number;
  #resetAt: number;
  /** Set while every bucket of this process waits for the daily budget to refill. */
  #hold: Promise<void> | null = null;
  /** Set while the budget key is being set again (one refresh per process at a time). */
  #seeding: Promise<void> | null = null;

  constructor(options: RedisIdentifyQueueOptions) {
    if (!Number.isInteger(options.maxConcurrency) || options.maxConcurrency < 1) {
      throw new RangeError(`Cannot create identify queue: max_concurrency is ${options.maxConcurrency}`);
    }
    this.#clock = options.clock ?? systemClock;
    this.#log = options.logger;
    this.#interval = options.intervalMs ?? IDENTIFY_INTERVAL_MS + IDENTIFY_MARGIN_MS;
    this.#reserve = options.reserve ?? 0;
    this.#maxConcurrency = options.maxConcurrency;
    this.#prefix = options.prefix ?? "gatehouse";
    this.#budgetKey = `${this.#prefix}:identify:budget`;
    this.#refresh = options.refresh;
    this.#tracked = options.limit !== undefined || options.refresh !== undefined;
    const now = this.#clock.now();
    this.#initial = options.limit ? { limit: options.limit, resetAt: now + options.limit.resetAfter } : null;
    this.#remaining = options.limit?.remaining ?? Infinity;
    this.#total = options.limit?.total ?? Infinity;
    this.#resetAt = now + (options.limit?.resetAfter ?? 0);
    this.#client = defineIdentifyScripts(options.client);
    for (const [shard, at] of options.lastIdentified ?? []) {
      const bucket = this.#bucket(shard % this.#maxConcurrency);
      bucket.notBefore = Math.max(bucket.notBefore, at + this.#interval);
    }
  }

  /** The key of bucket `b` (`{prefix}:identify:bucket:{b}`). */
  bucketKey(b: number): string {
    return `${this.#prefix}:identify:bucket:${b}`;
  }

  /** The key of the daily budget (`{prefix}:identify:budget`). */
  get budgetKey(): string {
    return this.#budgetKey;
  }

  /** Session starts left today as this process last read them from Redis. */
  get remaining(): number {
    return this.#remaining;
  }

  /** The daily budget's size and refill time (epoch ms) as last read, for the control view. */
  get budget(): { total: number; resetAt: number; maxConcurrency: number; holding: boolean } {
    return {
      total: this.#total,
      resetAt: this.#resetAt,
      maxConcurrency: this.#maxConcurrency,
      holding: this.#hold !== null,
    };
  }

  wait(shardId: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (this.#closing.signal.aborted) return Promise.reject(this.#closing.signal.reason);
    const bucket = this.#bucket(shardId % this.#maxConcurrency);
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
      if (!bucket.running) void this.#run(bucket);
    });
  }

  sent(shardId: number): void {
    const grant = this.#granted.get(shardId);
    if (!grant) return;
    this.#granted.delete(shardId);
    const now = this.#clock.now();
    grant.bucket.notBefore = Math.max(grant.bucket.notBefore, now + this.#interval);
    this.#client.gatehouseIdentifySent(grant.bucket.key, grant.token, this.#interval).then((kept) => {
      if (kept !== 0) return;
      // Only a send later than a whole interval after its grant lets another process in first.
      this.#log?.warn(
        "shard {shard}'s IDENTIFY was written {ms} ms after its grant, and another process already took its " +
          "bucket: Discord may answer one of them with op 9",
        { shard: shardId, ms: now - grant.at },
      );
    }, (error) => {
      this.#log?.warn("Cannot restart the identify bucket's interval in Redis after shard {shard}: {error}", {
        shard: shardId,
        error: String(error),
      });
    });
  }

  /** Stops asking Redis; waiters still queued are rejected. The client stays open (it is the caller's). */
  close(): void {
    this.#closing.abort(new Error("the identify queue is closed"));
    for (const bucket of this.#buckets.values()) {
      for (const waiter of bucket.waiters.splice(0)) waiter.reject(this.#closing.signal.reason);
    }
  }

  #bucket(b: number): Bucket {
    let bucket = this.#buckets.get(b);
    if (!bucket) {
      bucket = { key: this.bucketKey(b), waiters: [], notBefore: 0, running: false };
      this.#buckets.set(b, bucket);
    }
    return bucket;
  }

  /** One loop per bucket while it has waiters: take the bucket, then a start, then grant the first. */
  async #run(bucket: Bucket): Promise<void> {
    bucket.running = true;
    try {
      while (bucket.waiters.length > 0 && !this.#closing.signal.aborted) {
        if (this.#hold) {
          await this.#hold;
          continue;
        }
        const early = bucket.notBefore - this.#clock.now();
        if (early > 0) {
          await this.#sleep(early);
          continue;
        }
        try {
          await this.#attempt(bucket);
          this.#failures = 0;
        } catch (error) {
          await this.#trouble(error);
        }
      }
    } finally {
      bucket.running = false;
    }
  }

  async #attempt(bucket: Bucket): Promise<void> {
    const token = `${this.#id}:${++this.#seq}`;
    const held = await this.#client.gatehouseIdentifyTake(bucket.key, token, this.#interval);
    if (held > 0) {
      // Asked again just after it expires; a little jitter keeps processes from asking at once.
      const jitter = Math.floor(Math.random() * Math.min(50, this.#interval / 10));
      await this.#sleep(Math.min(held, this.#interval) + jitter);
      return;
    }
    if (this.#tracked) {
      const [state, left, ttl] = await this.#client.gatehouseIdentifyBudget(this.#budgetKey, this.#reserve);
      if (state !== 1) await this.#client.gatehouseIdentifyRelease(bucket.key, token);
      if (state === -1) return await this.#seed();
      this.#remaining = left;
      this.#resetAt = this.#clock.now() + ttl;
      if (state === 0) return this.#holdFor(ttl);
    }
    const waiter = bucket.waiters.shift();
    if (!waiter) {
      // Every waiter left while Redis answered: give the slot and the start back.
      await this.#client.gatehouseIdentifyRelease(bucket.key, token);
      if (this.#tracked) await this.#client.gatehouseIdentifyRefund(this.#budgetKey);
      return;
    }
    if (waiter.onAbort) waiter.signal!.removeEventListener("abort", waiter.onAbort);
    bucket.notBefore = this.#clock.now() + this.#interval;
    this.#granted.set(waiter.shardId, { bucket, token, at: this.#clock.now() });
    waiter.resolve();
  }

  /** The budget key is gone: set it from the start-up limit while that is current, else ask Discord. */
  #seed(): Promise<void> {
    this.#seeding ??= (async () => {
      let limit: SessionStartLimit;
      const now = this.#clock.now();
      if (this.#initial && this.#initial.resetAt > now) {
        limit = { ...this.#initial.limit, resetAfter: this.#initial.resetAt - now };
      } else if (this.#refresh) {
        try {
          limit = await this.#refresh();
        } catch (error) {
          this.#log?.warn("Cannot refresh the session start limit: {error}; retrying in 60 s", {
            error: String(error),
          });
          await this.#sleep(60_000);
          return;
        }
      } else {
        const total = Number.isFinite(this.#total) ? this.#total : 1000;
        limit = { total, remaining: total, resetAfter: 86_400_000 };
      }
      this.#initial = null;
      // Discord says the window has reset but gives no budget: hold a minute rather than spin.
      const ms = limit.remaining <= this.#reserve && limit.resetAfter <= 0 ? 60_000 : limit.resetAfter;
      await this.#client.set(this.#budgetKey, String(limit.remaining), "PX", Math.max(1, ms), "NX");
      this.#total = limit.total;
    })().finally(() => (this.#seeding = null));
    return this.#seeding;
  }

  #holdFor(ms: number): void {
    if (this.#hold) return;
    this.#log?.warn(
      "Holding every IDENTIFY: {remaining} of {total} session starts left today (reserve {reserve}); " +
        "waiting {minutes} min until Discord resets the limit, so the token is not reset for overuse",
      {
        remaining: this.#remaining,
        total: this.#total,
        reserve: this.#reserve,
        minutes: Math.ceil(ms / 60_000),
      },
    );
    // One past the key's expiry: then it is gone and the next attempt reads the budget again.
    this.#hold = this.#sleep(ms + 1).finally(() => (this.#hold = null));
  }

  async #trouble(error: unknown): Promise<void> {
    this.#failures++;
    const message = (error as Error)?.message ?? String(error);
    if (this.#failures === 1) {
      this.#log?.warn("Cannot reach Redis for the identify queue: {error}; asking again", { error: message });
    } else this.#log?.debug("identify queue: redis: {error}", { error: message });
    await this.#sleep(backoffDelay(TROUBLE, this.#failures));
  }

  /** Sleeps on the queue's clock; ends early (resolved) when the queue closes. */
  async #sleep(ms: number): Promise<void> {
    try {
      await sleep(this.#clock, ms, this.#closing.signal);
    } catch {
      // closed
    }
  }
}
