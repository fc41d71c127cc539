/**
 * All shards of this process. Starts them (IDENTIFYs go through the shared identify queue), stops
 * them with close code 4000 so their sessions stay resumable, and turns the first fatal close code
 * into the process's exit.
 */
import { type ResumableSession, Shard, type ShardOptions, type ShardStatus } from "../gateway/shard.ts";
import type { Logger } from "../util/log.ts";

/** What every shard shares; the pool sets `id`, `count`, `session` and `onFatal` per shard. */
export type PoolOptions = Omit<ShardOptions, "id" | "count" | "session" | "onFatal"> & {
  shardIds: number[];
  shardCount: number;
  sessions?: Map<number, ResumableSession>;
};

/** Why the pool stopped on its own. */
export interface PoolFailure {
  shard: number;
  code: number;
  reason: string;
}

export class Pool {
  readonly shards: Shard[];
  readonly #logger: Logger;
  readonly #shardCount: number;
  #failure: PoolFailure | null = null;
  #onFailure: ((failure: PoolFailure) => void) | null = null;
  /** Resolves with the first fatal close; never resolves in a healthy run. */
  readonly failed: Promise<PoolFailure>;

  constructor(options: PoolOptions) {
    this.#logger = options.logger;
    this.#shardCount = options.shardCount;
    this.failed = new Promise((resolve) => (this.#onFailure = resolve));
    this.shards = options.shardIds.map((id) =>
      new Shard({
        id,
        count: options.shardCount,
        token: options.token,
        intents: options.intents,
        presence: options.presence,
        largeThreshold: options.largeThreshold,
        compression: options.compression,
        apiVersion: options.apiVersion,
        gatewayUrl: options.gatewayUrl,
        identifyQueue: options.identifyQueue,
        sink: options.sink,
        logger: options.logger,
        session: options.sessions?.get(id) ?? null,
        onSession: options.onSession,
        onFatal: (shard, code, reason) => this.#fail({ shard, code, reason }),
        clock: options.clock,
        random: options.random,
        connectTimeoutMs: options.connectTimeoutMs,
        observer: options.observer,
      })
    );
  }

  start(): void {
    this.#logger.info("starting {count} of {total} shard(s): {ids}", {
      count: this.shards.length,
      total: this.#shardCount,
      ids: summariseIds(this.shards.map((s) => s.id)),
    });
    for (const shard of this.shards) shard.start();
  }

  /** Stops or resumes reading on every shard (backpressure from the store). */
  setPaused(paused: boolean): void {
    for (const shard of this.shards) shard.setPaused(paused);
  }

  status(): ShardStatus[] {
    return this.shards.map((s) => s.status());
  }

  /**
   * Closes every shard with `code` and waits at most `timeoutMs`. Returns how many had a connection,
   * and how many of those Discord acknowledged (a clean close).
   */
  async stop(
    code = 4000,
    timeoutMs = 10_000,
  ): Promise<{ clean: number; connected: number; total: number }> {
    // "none" is known at once; a close still under way at the timeout had a connection.
    let clean = 0, none = 0;
    const all = Promise.all(this.shards.map((shard) =>
      shard.stop(code).then((how) => {
        if (how === "none") none++;
        if (how === "clean") clean++;
      })
    ));
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)));
    await Promise.race([all, timeout]);
    clearTimeout(timer);
    return { clean, connected: this.shards.length - none, total: this.shards.length };
  }

  #fail(failure: PoolFailure): void {
    if (this.#failure) return;
    this.#failure = failure;
    this.#onFailure?.(failure);
  }
}

/** "0-15, 32, 40-41" */
export function summariseIds(ids: number[]): string {
  const sorted = [...ids].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; i++) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(j === i ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j;
  }
  return parts.join(", ");
}
