/**
 * Retention, off the hot path: every so often, delete events that every sink has delivered and that are
 * older than `max_age`, or — oldest first — while the store uses more than `max_size`. Undelivered
 * events are never pruned, except when the store reaches `hard_max_size` and nothing delivered is left
 * to prune; then the oldest undelivered events go, and that is logged and counted (meta
 * `pruned_undelivered`). Deletes run in small transactions so the journal's commits are not held up.
 */
import { type Clock, sleep, systemClock, type TimerId } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import type { Store } from "./store.ts";

export interface RetentionOptions {
  store: Store;
  logger: Logger;
  maxAgeMs: number;
  maxSizeBytes: number;
  hardMaxSizeBytes: number;
  /** Highest id every sink has acknowledged. */
  delivered: () => number;
  /** Tells the age of events and times the passes. */
  clock?: Clock;
  /** Rows deleted per transaction. */
  chunk?: number;
}

export interface PruneResult {
  pruned: number;
  prunedUndelivered: number;
}

export class Retention {
  readonly #o: RetentionOptions;
  readonly #clock: Clock;
  readonly #chunk: number;
  #timer: TimerId | undefined;
  #stopped = false;
  #running = false;

  constructor(options: RetentionOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#chunk = options.chunk ?? 10_000;
  }

  /** A pass every `intervalMs`, the next one timed from the end of the last. */
  start(intervalMs = 30_000): void {
    this.#stopped = false;
    const next = () => {
      this.#timer = this.#clock.setTimeout(() => {
        this.#timer = undefined;
        this.run().catch((error) => {
          this.#o.logger.error("retention pass failed: {error}", { error: (error as Error).message });
        }).finally(() => {
          if (!this.#stopped) next();
        });
      }, intervalMs);
    };
    next();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** One pass. Yields to the event loop between chunks. */
  async run(): Promise<PruneResult> {
    if (this.#running) return { pruned: 0, prunedUndelivered: 0 };
    this.#running = true;
    try {
      return await this.#run();
    } finally {
      this.#running = false;
    }
  }

  async #run(): Promise<PruneResult> {
    const { store, maxAgeMs, maxSizeBytes, hardMaxSizeBytes } = this.#o;
    let pruned = 0;
    let prunedUndelivered = 0;
    const step = async (through: number): Promise<number> => {
      const n = store.transaction("pruning events", () => store.events.deleteThrough(through, this.#chunk));
      // A turn of the event loop between chunks, so the journal's commits get in.
      await sleep(this.#clock, 0);
      return n;
    };

    // Delivered and too old.
    if (maxAgeMs > 0) {
      const firstYoung = store.events.firstIdAtOrAfter(this.#clock.now() - maxAgeMs);
      const oldThrough = firstYoung === null ? store.events.maxId() : firstYoung - 1;
      for (;;) {
        const n = await step(Math.min(oldThrough, this.#o.delivered()));
        pruned += n;
        if (n === 0) break;
      }
    }
    // Delivered, oldest first, while over max_size (or near the hard cap).
    const hardTarget = hardMaxSizeBytes > 0 ? hardMaxSizeBytes * 0.9 : Infinity;
    const sizeTarget = Math.min(maxSizeBytes > 0 ? maxSizeBytes : Infinity, hardTarget);
    if (Number.isFinite(sizeTarget)) {
      while (store.usedBytes() > sizeTarget) {
        const n = await step(this.#o.delivered());
        pruned += n;
        if (n === 0) break;
      }
    }
    // At the hard cap with nothing delivered left to prune: the oldest undelivered events go.
    if (hardMaxSizeBytes > 0) {
      while (store.usedBytes() > hardTarget) {
        const n = await step(store.events.minId() + Math.max(0, this.#chunk / 10 - 1));
        if (n === 0) break;
        prunedUndelivered += n;
      }
      if (prunedUndelivered > 0) {
        const total = Number(store.meta("pruned_undelivered") ?? 0) + prunedUndelivered;
        store.transaction("counting pruned events", () => store.setMeta("pruned_undelivered", String(total)));
        this.#o.logger.error(
          "store at its hard size limit ({limit} bytes): pruned {n} undelivered event(s) to keep running " +
            "({total} so far); a sink is not keeping up",
          { limit: hardMaxSizeBytes, n: prunedUndelivered, total },
        );
      }
    }
    if (pruned + prunedUndelivered > 0) {
      store.vacuumSome(1000);
      this.#o.logger.info("retention pruned {n} delivered event(s)", { n: pruned });
    }
    return { pruned, prunedUndelivered };
  }
}
