/**
 * Start-up visibility: a large bot needs minutes to bring every shard up (one IDENTIFY per bucket per
 * 5 s). On a terminal, one line on stderr is redrawn in place; otherwise a log line every few seconds.
 * Both say shards ready / total, the identify rate and the time left, and stop once all are ready.
 */
import type { Logger } from "../util/log.ts";
import { type GatewayView, readiness } from "./status.ts";

export interface ProgressOptions {
  view: GatewayView;
  /** Discord's max_concurrency: identifies per 5 s. */
  maxConcurrency: number;
  logger: Logger;
  terminal: boolean;
  /** Between log lines when not on a terminal. */
  everyMs?: number;
  /** Where the terminal line is drawn (default: stderr). */
  write?: (text: string) => void;
}

export interface Progress {
  ready: number;
  total: number;
  /** Shards that became ready per second since start. */
  rate: number;
  /** Seconds left (null until it can be told, or while it cannot be told). */
  etaS: number | null;
  /** Shards not ready that keep failing to connect, and the last reason one gave. */
  failing?: { count: number; reason: string | null };
  /** Seconds until Discord's daily session-start budget refills, while identifies wait for it. */
  budgetResetS?: number | null;
}

/** A shard that failed this many connects in a row counts as one that cannot connect. */
export const FAILING_ATTEMPTS = 2;

/** Progress at `now`: the ETA is the slower of the measured rate and the identify buckets' pace. */
export function progressAt(
  ready: number,
  total: number,
  elapsedMs: number,
  maxConcurrency: number,
): Progress {
  const rate = elapsedMs > 0 ? ready / (elapsedMs / 1000) : 0;
  const left = total - ready;
  let etaS: number | null = null;
  if (left === 0) etaS = 0;
  else {
    const bucketPace = Math.ceil(left / Math.max(1, maxConcurrency)) * 5;
    etaS = rate > 0 ? Math.max(bucketPace, left / rate) : bucketPace;
  }
  return { ready, total, rate, etaS };
}

/**
 * One line. No time left is promised while it cannot be known: when the shards that are not ready all
 * fail to connect, or identifies wait for Discord's daily reset, the line says that instead.
 */
export function describe(p: Progress): string {
  const head = `start-up: ${p.ready}/${p.total} shards ready, ${p.rate.toFixed(1)} shards/s`;
  const left = p.total - p.ready;
  if (p.budgetResetS != null && left > 0) {
    return `${head}; identifies wait for Discord's daily session-start limit to reset in ` +
      formatDuration(Math.max(0, p.budgetResetS));
  }
  if (p.failing && p.failing.count > 0 && p.failing.count >= left) {
    return `${head}; ${
      p.failing.count === left ? "none" : p.failing.count
    } of the ${left} not ready can connect` +
      (p.failing.reason ? ` (${p.failing.reason})` : "");
  }
  const eta = p.etaS === null ? "" : p.etaS === 0 ? "" : `, about ${formatDuration(p.etaS)} left`;
  const failing = p.failing && p.failing.count > 0 ? `; ${p.failing.count} cannot connect` : "";
  return `${head}${eta}${failing}`;
}

export function formatDuration(seconds: number): string {
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${s % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

export class StartupProgress {
  readonly #o: ProgressOptions;
  #timer: ReturnType<typeof setInterval> | undefined;
  #startedAt = 0;
  #drawn = false;
  #loggedAt = 0;

  constructor(options: ProgressOptions) {
    this.#o = options;
  }

  start(): void {
    this.#startedAt = this.#loggedAt = this.#o.view.now();
    this.#timer = setInterval(() => this.tick(), 500);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#drawn) this.#write("\r\x1b[K");
    this.#drawn = false;
  }

  /** One look at the shards (every 500 ms once started). */
  tick(): void {
    const view = this.#o.view;
    const now = view.now();
    const shards = view.shards();
    const ready = shards.filter((s) => readiness(s, now).ready).length;
    const elapsed = now - this.#startedAt;
    const p = progressAt(ready, shards.length, elapsed, this.#o.maxConcurrency);
    const failing = shards.filter((s) => !readiness(s, now).ready && s.attempt >= FAILING_ATTEMPTS);
    p.failing = {
      count: failing.length,
      reason: failing.find((s) => s.waitingReason !== null)?.waitingReason ?? null,
    };
    const identify = view.identify();
    p.budgetResetS = identify.holding ? (identify.resetAt - now) / 1000 : null;
    if (ready === shards.length) {
      this.stop();
      this.#o.logger.info("all {n} shard(s) ready in {time}", {
        n: shards.length,
        time: formatDuration(elapsed / 1000),
      });
      return;
    }
    if (this.#o.terminal) {
      this.#write(`\r\x1b[K${describe(p)}`);
      this.#drawn = true;
    } else if (now - this.#loggedAt >= (this.#o.everyMs ?? 5_000)) {
      this.#loggedAt = now;
      this.#o.logger.info("{progress}", { progress: describe(p) });
    }
  }

  #write(text: string): void {
    if (this.#o.write) return this.#o.write(text);
    try {
      Deno.stderr.writeSync(new TextEncoder().encode(text));
    } catch {
      // stderr gone: nothing to show progress on
    }
  }
}
