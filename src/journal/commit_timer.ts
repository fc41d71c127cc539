/**
 * Group commit: at most one journal transaction per interval, and none while the previous one is still
 * being written (events arriving meanwhile join the next batch). This is the one timer that decides
 * when the journal commits; a full batch or a flush commits at once, and the interval then runs from it.
 */
import type { Clock, TimerId } from "../util/clock.ts";

export class CommitTimer {
  readonly #clock: Clock;
  readonly #intervalMs: number;
  /** Commits, when it is time and `ready()` says a commit may go now. */
  readonly #fire: () => void;
  readonly #ready: () => boolean;
  #wanted = false;
  #timer: TimerId | undefined;
  #lastCommitAt = -Infinity;

  constructor(clock: Clock, intervalMs: number, ready: () => boolean, fire: () => void) {
    this.#clock = clock;
    this.#intervalMs = intervalMs;
    this.#ready = ready;
    this.#fire = fire;
  }

  /**
   * Something waits to be committed. `writing`: a batch is being written; the timer is armed when it
   * is stored (`written`).
   */
  want(writing: boolean): void {
    if (this.#wanted) return;
    this.#wanted = true;
    if (!writing) this.#arm();
  }

  /** A commit began (from the timer, a full batch or a flush). */
  began(): void {
    this.#lastCommitAt = this.#clock.now();
  }

  /** The batch being written is stored: what was gathered meanwhile goes after the interval. */
  written(): void {
    if (this.#wanted) this.#arm();
  }

  stop(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * One timer at most, due `intervalMs` after the last commit began. (Two used to be armed when a
   * sink's cursor arrived while its batch was acknowledged: the second then committed the cursor alone
   * right after the first, doubling the transactions under steady traffic.)
   */
  #arm(): void {
    if (this.#timer !== undefined) return;
    const wait = this.#lastCommitAt + this.#intervalMs - this.#clock.now();
    // Bounded by the interval: a clock set back does not hold commits up.
    this.#timer = this.#clock.setTimeout(this.#due, Math.min(this.#intervalMs, Math.max(0, wait)));
  }

  readonly #due = () => {
    this.#timer = undefined;
    if (!this.#wanted || !this.#ready()) return;
    const since = this.#clock.now() - this.#lastCommitAt;
    if (since >= 0 && since < this.#intervalMs - 1) {
      // A commit came in between (a full batch, a flush): keep the interval from that one.
      this.#arm();
      return;
    }
    this.#wanted = false;
    this.#fire();
  };
}
