/**
 * Whether this process has time to spare: the share of one core its threads used over the last window.
 * Deno has no event-loop utilisation (node:perf_hooks' is a stub), so CPU time stands in: under paced
 * traffic, however heavy, the main thread idles between reads; in a flood it never does.
 */
import process from "node:process";

/** A window shorter than this keeps the previous reading. */
const WINDOW_MS = 200;
/** CPU time at or above this share of the wall time counts as saturated. */
const SATURATED_SHARE = 0.8;

export class SaturationMeter {
  readonly #cpuMicros: () => number;
  readonly #now: () => number;
  #at: number;
  #used: number;
  #saturated = false;

  constructor(
    cpuMicros: () => number = () => {
      const u = process.cpuUsage();
      return u.user + u.system;
    },
    now: () => number = () => performance.now(),
  ) {
    this.#cpuMicros = cpuMicros;
    this.#now = now;
    this.#at = now();
    this.#used = cpuMicros();
  }

  /** The reading of the last complete window (a new window starts when this one is over). */
  saturated(): boolean {
    const now = this.#now();
    const elapsed = now - this.#at;
    if (elapsed >= WINDOW_MS) {
      const used = this.#cpuMicros();
      this.#saturated = (used - this.#used) / 1000 >= SATURATED_SHARE * elapsed;
      this.#at = now;
      this.#used = used;
    }
    return this.#saturated;
  }
}
