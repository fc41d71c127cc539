/**
 * Whether this thread has time to spare: the share of one core it used over the last window. Deno has
 * no event-loop utilisation (node:perf_hooks' is a stub), so CPU time stands in: under paced traffic,
 * however heavy, the main thread idles between reads; in a flood it never does.
 *
 * The thread's own time where the system tells it (Linux: /proc/thread-self/stat, in 10 ms ticks, read
 * once per window), else the process's. The process's time misleads: the writer thread, V8's
 * collector threads and the runtime's I/O threads add to it, so a main thread half idle read as
 * saturated under 16 shards × 2000 events/s, sent large batches to the writer thread and paced
 * delivery for nothing (measured: p99 latency 1.24 s with the process's time, 0.28 s with none of it).
 */
import process from "node:process";

const TICK_MICROS = 10_000;

/** CPU time of the calling thread in µs, or null where it cannot be read. */
export function threadCpuMicros(): number | null {
  try {
    const stat = Deno.readTextFileSync("/proc/thread-self/stat");
    // The command name (field 2) may hold spaces and parentheses: fields count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime: fields 14 and 15
    return Number.isFinite(ticks) ? ticks * TICK_MICROS : null;
  } catch {
    return null;
  }
}

function processCpuMicros(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

/** This thread's CPU time where it can be read, else the process's (decided once). */
function defaultCpuMicros(): () => number {
  return threadCpuMicros() === null ? processCpuMicros : () => threadCpuMicros() ?? processCpuMicros();
}

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
    cpuMicros: () => number = defaultCpuMicros(),
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
