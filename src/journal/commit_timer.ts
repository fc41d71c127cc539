/**
 * Group commit without a timer in front of an event. When the journal is idle (no write in flight), an
 * event (or a session change) is committed on the next turn of the event loop, so what arrives in the same
 * turn (the rest of a socket read, the other shards' reads of that tick) joins its batch. While a write is
 * in flight, what arrives gathers and is committed on the turn after that write is stored (natural group
 * commit: a batch grows exactly as long as the store is busy with the one before). At most one transaction
 * is in flight on this path; a full batch or a flush commits at once.
 *
 * A write on this thread (the inline writer) is not in flight once `commit` returns, but it took the
 * thread for a while: the journal then rests `REST_PER_WRITE_MS` times as long (what arrives meanwhile
 * gathers), so small transactions take at most 1/50 of the thread however many turns bring events. A write
 * that takes less than the clock's resolution (a millisecond) usually measures 0 and the next turn goes at
 * once; one in so many measures a whole millisecond, so on average the share holds. The rest never exceeds
 * `intervalMs`: the interval is an upper bound on an event's wait, never a wait of its own.
 *
 * Riders alone (a sink's cursor, an identify) do not ask for a transaction of their own: they ride with the
 * next batch, and when nothing else comes they are committed at the latest `intervalMs` after they began to
 * wait. While events flow the next batch comes within a turn or two, so a cursor costs no transaction and
 * holds no delivery up; the interval bounds its wait only once traffic stops.
 */
import type { Clock, TimerId } from "../util/clock.ts";

/** After a write on this thread, the journal rests this many times as long as it took. */
export const REST_PER_WRITE_MS = 49;

export class CommitTimer {
  readonly #clock: Clock;
  readonly #intervalMs: number;
  /** Commits, when it is time and `ready()` says a commit may go now (no write in flight). */
  readonly #fire: () => void;
  readonly #ready: () => boolean;
  /** Events or session changes wait: the next turn. */
  #due = false;
  /** Riders wait (since `#ridingSince`): with the next batch, or after the interval. */
  #riding = false;
  #ridingSince = 0;
  #timer: TimerId | undefined;
  #timerAt = 0;
  /** Resting after a write on this thread: nothing is committed by the timer before this time. */
  #restUntil = -Infinity;
  /** A sink with more to deliver waits for this commit: the next turn, rest or not. */
  #urgent = false;

  constructor(clock: Clock, intervalMs: number, ready: () => boolean, fire: () => void) {
    this.#clock = clock;
    this.#intervalMs = intervalMs;
    this.#ready = ready;
    this.#fire = fire;
  }

  /**
   * Events or a session change wait to be committed. `writing`: a batch is being written; the commit goes
   * on the turn after it is stored (`written`).
   */
  want(writing: boolean): void {
    this.#due = true;
    if (!writing) this.#arm();
  }

  /** A rider (cursor, identify) waits: it goes with the next commit, or after the interval. */
  ride(writing: boolean): void {
    if (!this.#riding) {
      this.#riding = true;
      this.#ridingSince = this.#clock.now();
    }
    if (!writing) this.#arm();
  }

  /**
   * A rider that a delivery waits for while its sink has more to deliver (a backlog, a hold): it goes on
   * the next turn, rest or not, else catching up would wait the rest (up to the interval) per delivery.
   */
  urgent(writing: boolean): void {
    if (!this.#riding) {
      this.#riding = true;
      this.#ridingSince = this.#clock.now();
    }
    this.#urgent = true;
    if (!writing) this.#arm();
  }

  /** A commit began (from the timer, a full batch or a flush): it takes everything that waited. */
  began(): void {
    this.#due = this.#riding = this.#urgent = false;
  }

  /** A commit's write took `ms` of this thread (0 when it went to another thread): rest after it. */
  spent(ms: number): void {
    if (ms > 0) this.#restUntil = this.#clock.now() + Math.min(this.#intervalMs, ms * REST_PER_WRITE_MS);
  }

  /** The batch being written is stored: what gathered meanwhile goes now (events: the next turn). */
  written(): void {
    if (this.#due || this.#riding) this.#arm();
  }

  stop(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /**
   * One timer at most, due at the earliest time anything waiting must go. (Two used to be armed when a
   * sink's cursor arrived while its batch was acknowledged: the second then committed the cursor alone.)
   */
  #arm(): void {
    const now = this.#clock.now();
    // Bounded by the interval: a clock set back does not hold anything up.
    const rest = Math.min(this.#intervalMs, Math.max(0, this.#restUntil - now));
    const wait = this.#urgent
      ? 0
      : this.#due
      ? rest
      : Math.min(this.#intervalMs, Math.max(rest, this.#ridingSince + this.#intervalMs - now));
    if (this.#timer !== undefined) {
      if (this.#timerAt <= now + wait) return;
      this.#clock.clearTimeout(this.#timer);
    }
    this.#timerAt = now + wait;
    this.#timer = this.#clock.setTimeout(this.#onTimer, wait);
  }

  readonly #onTimer = () => {
    this.#timer = undefined;
    // Not ready: a write is in flight (its end arms the timer again), or the journal stopped.
    if ((!this.#due && !this.#riding) || !this.#ready()) return;
    this.#due = this.#riding = this.#urgent = false;
    this.#fire();
  };
}
