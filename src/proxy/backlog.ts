/**
 * What waits to be written to one proxy client, and for how long: the judge of a slow reader.
 *
 * `WebSocket.bufferedAmount` counts the bytes handed to `send()` whose write has not completed. In Deno the
 * writes run on the same thread as gatehouse, so while gatehouse itself is busy (a flood being read,
 * journaled and fanned out) the count also holds bytes nobody has tried to write yet: a bot that reads as
 * fast as it gets them shows megabytes "waiting" now and then. Bytes alone cannot tell that from a bot
 * that stopped reading; their age can. Every send is marked with the running total of bytes handed and
 * the time; the bytes written so far are that total less `bufferedAmount` (writes complete in order), so
 * the oldest unwritten byte belongs to the first mark past them, and its age is how long the reader has
 * left it waiting. A bot that keeps up has its backlog written within the next turns of gatehouse's
 * loop; one that reads too slowly lets it age.
 */

/** Past the bound, the oldest waiting byte must be at least this old before the client is too slow. */
export const SLOW_AFTER_MS = 2_000;

export class SendBacklog {
  /** Running total of bytes handed to the socket, after each send (ascending). */
  #totals: number[] = [];
  /** When each of those sends was made. */
  #times: number[] = [];
  #head = 0;
  #handed = 0;

  /** Bytes handed to the socket so far. */
  get handed(): number {
    return this.#handed;
  }

  /** A send of `bytes` at `now`. */
  sent(bytes: number, now: number): void {
    if (bytes <= 0) return;
    this.#handed += bytes;
    const last = this.#totals.length - 1;
    // Sends within the same millisecond share a mark: the age is in milliseconds anyway.
    if (last >= this.#head && this.#times[last] === now) this.#totals[last] = this.#handed;
    else {
      this.#totals.push(this.#handed);
      this.#times.push(now);
    }
  }

  /**
   * How long the oldest byte not yet written has waited (0 when nothing waits), given the socket's
   * `bufferedAmount` now. Marks of what has been written are dropped.
   */
  ageMs(buffered: number, now: number): number {
    const written = this.#handed - Math.max(0, Math.min(buffered, this.#handed));
    while (this.#head < this.#totals.length && this.#totals[this.#head] <= written) this.#head++;
    if (this.#head >= this.#totals.length) {
      this.#totals = [];
      this.#times = [];
      this.#head = 0;
      return 0;
    }
    // Compact now and then, so the arrays hold only what waits.
    if (this.#head > 1024 && this.#head * 2 > this.#totals.length) {
      this.#totals = this.#totals.slice(this.#head);
      this.#times = this.#times.slice(this.#head);
      this.#head = 0;
    }
    return Math.max(0, now - this.#times[this.#head]);
  }

  /**
   * Whether a reader is too slow: more than `bound` bytes wait and the oldest of them has waited at least
   * `slowAfterMs`.
   */
  tooSlow(buffered: number, bound: number, now: number, slowAfterMs = SLOW_AFTER_MS): boolean {
    const age = this.ageMs(buffered, now);
    return buffered > bound && age >= slowAfterMs;
  }
}
