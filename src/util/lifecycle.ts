/**
 * The parts of a running process, started in order and stopped in reverse, each stop within a bound.
 * A part that does not stop in time is reported and left behind: the parts before it (which it may use)
 * still stop, so a broker that does not answer cannot keep the journal open.
 */
import { type Clock, systemClock } from "./clock.ts";

export interface Stoppable {
  stop(): Promise<void> | void;
}

export interface PartStop {
  name: string;
  /** How long its stop took (the bound when it timed out). */
  ms: number;
  outcome: "stopped" | "timed out" | "failed";
  error?: string;
}

interface Entry {
  name: string;
  part: Stoppable;
  boundMs: number;
}

export class Lifecycle {
  readonly #clock: Clock;
  readonly #defaultBoundMs: number;
  readonly #parts: Entry[] = [];
  #stopping: Promise<PartStop[]> | null = null;

  constructor(options: { clock?: Clock; defaultBoundMs?: number } = {}) {
    this.#clock = options.clock ?? systemClock;
    this.#defaultBoundMs = options.defaultBoundMs ?? 10_000;
  }

  /**
   * Starts a part and records it for the stop. When `start` throws, the parts started before it are
   * stopped (in reverse) and the error is thrown on.
   */
  async start<T extends Stoppable>(
    name: string,
    start: () => T | Promise<T>,
    options: { boundMs?: number } = {},
  ): Promise<T> {
    if (this.#stopping) throw new Error(`cannot start ${name}: stopping`);
    let part: T;
    try {
      part = await start();
    } catch (error) {
      await this.stop();
      throw error;
    }
    this.#parts.push({ name, part, boundMs: options.boundMs ?? this.#defaultBoundMs });
    return part;
  }

  /** Records a part started elsewhere. */
  add(name: string, part: Stoppable, options: { boundMs?: number } = {}): void {
    if (this.#stopping) throw new Error(`cannot add ${name}: stopping`);
    this.#parts.push({ name, part, boundMs: options.boundMs ?? this.#defaultBoundMs });
  }

  get names(): string[] {
    return this.#parts.map((p) => p.name);
  }

  /** Stops every part, last started first; the same promise for every call. */
  stop(): Promise<PartStop[]> {
    this.#stopping ??= this.#stopAll();
    return this.#stopping;
  }

  async #stopAll(): Promise<PartStop[]> {
    const results: PartStop[] = [];
    for (const entry of [...this.#parts].reverse()) results.push(await this.#stopOne(entry));
    return results;
  }

  async #stopOne(entry: Entry): Promise<PartStop> {
    const started = this.#clock.now();
    let timer: ReturnType<Clock["setTimeout"]> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = this.#clock.setTimeout(() => resolve("timeout"), entry.boundMs);
    });
    try {
      const done = Promise.resolve().then(() => entry.part.stop()).then(() => "stopped" as const);
      const result = await Promise.race([done, timeout]);
      if (result === "timeout") return { name: entry.name, ms: entry.boundMs, outcome: "timed out" };
      return { name: entry.name, ms: this.#clock.now() - started, outcome: "stopped" };
    } catch (error) {
      return {
        name: entry.name,
        ms: this.#clock.now() - started,
        outcome: "failed",
        error: error instanceof Error ? error.message : String(error),
      };
    } finally {
      if (timer !== undefined) this.#clock.clearTimeout(timer);
    }
  }
}
