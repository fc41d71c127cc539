/**
 * The log lines for rejected commands, rate-limited: a bot (or an attacker on stdin) sending 100 000 bad
 * lines must not write 100 000 log lines. At most `max` lines per window, then one line saying how many
 * more were rejected; the metric and the GATEHOUSE_COMMAND_REJECTED events still count every one.
 */
import { type Clock, systemClock, type TimerId } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";

export interface RejectionLogOptions {
  logger: Logger;
  /** Lines per window; default 10. */
  max?: number;
  /** Default 10 s. */
  windowMs?: number;
  clock?: Clock;
}

export class RejectionLog {
  readonly #log: Logger;
  readonly #max: number;
  readonly #windowMs: number;
  readonly #clock: Clock;
  #logged = 0;
  #suppressed = 0;
  #timer: TimerId | null = null;

  constructor(options: RejectionLogOptions) {
    this.#log = options.logger;
    this.#max = options.max ?? 10;
    this.#windowMs = options.windowMs ?? 10_000;
    this.#clock = options.clock ?? systemClock;
  }

  /** One rejected command (from `source`: stdin, redis, amqp, control). */
  rejected(reason: string, source: string): void {
    // A window opens with the first rejection after a quiet one.
    this.#timer ??= this.#clock.setTimeout(() => this.#endWindow(), this.#windowMs);
    if (this.#logged < this.#max) {
      this.#logged++;
      this.#log.warn("command rejected: {reason} (from {source})", { reason, source });
    } else {
      this.#suppressed++;
    }
  }

  /** Ends the current window now (at shutdown), writing its summary line if one is due. */
  close(): void {
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#endWindow();
  }

  #endWindow(): void {
    this.#timer = null;
    if (this.#suppressed > 0) {
      this.#log.warn("{count} more command(s) rejected in the last {seconds} s", {
        count: this.#suppressed,
        seconds: Math.round(this.#windowMs / 1000),
      });
    }
    this.#logged = 0;
    this.#suppressed = 0;
  }
}
