/**
 * Gateway send budget for one connection (docs/protocol.md §5): at most `limit` payloads in any window of
 * `windowMs` (a sliding-window log, so bursts at a window boundary cannot double the rate). Slots are
 * reserved for heartbeats, IDENTIFY and RESUME ("priority" sends): other sends — the bot's commands —
 * may use only `limit - reserve`, and wait when that is spent instead of being dropped.
 */
import type { Clock } from "../util/clock.ts";
import { SEND_LIMIT, SEND_WINDOW_MS } from "./protocol.ts";

/** Added to Discord's send window (see the constructor). */
export const SEND_WINDOW_MARGIN_MS = 1_000;

export class SendLimiter {
  readonly #clock: Clock;
  readonly #limit: number;
  readonly #windowMs: number;
  /** Send times in the current window, oldest first (at most `limit`; small for an idle shard). */
  #log: number[] = [];
  #reserve: number;

  constructor(options: { clock: Clock; limit?: number; windowMs?: number; reserve?: number }) {
    this.#clock = options.clock;
    this.#limit = options.limit ?? SEND_LIMIT;
    // A second more than Discord's window: sends leave in bursts at the window's edge, and network
    // jitter must not make Discord count 121 of them in its own 60 s.
    this.#windowMs = options.windowMs ?? SEND_WINDOW_MS + SEND_WINDOW_MARGIN_MS;
    this.#reserve = options.reserve ?? 10;
  }

  /**
   * Reserves enough slots for the heartbeats of one window at `interval` ms, plus one for a
   * heartbeat requested by Discord and one for IDENTIFY/RESUME.
   */
  reserveForHeartbeat(interval: number): void {
    this.#reserve = Math.min(this.#limit - 1, Math.ceil(this.#windowMs / interval) + 2);
  }

  get reserve(): number {
    return this.#reserve;
  }

  /** Sends in the current window. */
  get used(): number {
    this.#expire();
    return this.#log.length;
  }

  /** Milliseconds until a send of this kind is allowed; 0 means now. */
  delay(priority: boolean): number {
    this.#expire();
    const cap = priority ? this.#limit : this.#limit - this.#reserve;
    const count = this.#log.length;
    if (count < cap) return 0;
    // The send that must leave the window before we may send again.
    return Math.max(1, this.#log[count - cap] + this.#windowMs - this.#clock.now());
  }

  /** Records one send. Callers check `delay` first; a full log drops the oldest entry. */
  record(): void {
    this.#expire();
    if (this.#log.length === this.#limit) this.#log.shift();
    this.#log.push(this.#clock.now());
  }

  /** A new connection starts with a fresh budget. */
  reset(): void {
    this.#log = [];
  }

  #expire(): void {
    const cutoff = this.#clock.now() - this.#windowMs;
    let expired = 0;
    while (expired < this.#log.length && this.#log[expired] <= cutoff) expired++;
    if (expired > 0) this.#log.splice(0, expired);
  }
}
