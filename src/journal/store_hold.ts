/**
 * What the journal holds for a store that is slow or failing: the bytes handed to the writer and not
 * stored yet, and the failed attempts. Past `maxPendingBytes` the journal holds the backpressure signal
 * (the shards stop reading, TCP pushes back on Discord) until half of it is stored. Nothing is dropped.
 */
import type { Backpressure } from "../util/backpressure.ts";
import type { Logger } from "../util/log.ts";

export class StoreHold {
  readonly #log: Logger;
  readonly #maxBytes: number;
  readonly #backpressure: Backpressure | undefined;
  #bytes = 0;
  #paused = false;
  #failures = 0;
  #lastFailure: string | null = null;

  constructor(log: Logger, maxPendingBytes: number, backpressure?: Backpressure) {
    this.#log = log;
    this.#maxBytes = maxPendingBytes;
    this.#backpressure = backpressure;
  }

  /** Whether the store is refusing writes. */
  get failing(): boolean {
    return this.#failures > 0;
  }

  /** Why the last write failed, while writes fail (null once one succeeds). */
  get lastFailure(): string | null {
    return this.#lastFailure;
  }

  /** A batch of `bytes` went to the writer. */
  handed(bytes: number): void {
    this.#bytes += bytes;
    if (!this.#paused && this.#bytes > this.#maxBytes) {
      this.#log.debug("journal: {bytes} bytes wait for the store; shards stop reading until it catches up", {
        bytes: this.#bytes,
      });
      this.#pause(true);
    }
  }

  /** A batch of `bytes` is stored. */
  stored(bytes: number): void {
    this.#bytes -= bytes;
    if (this.#failures > 0) {
      this.#log.warn("store writable again after {failures} failed attempt(s); held events committed", {
        failures: this.#failures,
      });
      this.#failures = 0;
      this.#lastFailure = null;
    }
    if (this.#paused && this.#bytes <= this.#maxBytes / 2) this.#pause(false);
  }

  /** A write failed (it is retried); `events` are held in memory meanwhile. */
  failed(message: string, events: number): void {
    this.#failures++;
    this.#lastFailure = message;
    if (this.#failures === 1 || this.#failures % 20 === 0) {
      this.#log.error(
        "cannot write to the store: {message}; holding {events} event(s) in memory, sessions do not advance; " +
          "retrying",
        { message, events },
      );
    }
    if (!this.#paused && this.#bytes > this.#maxBytes) {
      this.#log.warn("store still failing with {bytes} bytes held: shards stop reading until it recovers", {
        bytes: this.#bytes,
      });
      this.#pause(true);
    }
  }

  #pause(paused: boolean): void {
    this.#paused = paused;
    this.#backpressure?.hold("journal", paused);
  }
}
