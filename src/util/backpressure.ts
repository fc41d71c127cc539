/**
 * One backpressure signal for the whole process. Any part that cannot keep up (the journal waiting for
 * a failing store, a sink without a journal to fall back on, a healthy sink that is behind: pacing, in
 * src/sinks/runner.ts) holds it under its own name; while anyone
 * holds it the signal is "paused", and its listeners (the pool, which stops the shards reading from
 * their sockets, so TCP pushes back on Discord) hear each change once.
 */
export class Backpressure {
  readonly #holders = new Set<string>();
  readonly #listeners = new Set<(paused: boolean) => void>();

  /** Whether some source holds the signal now. */
  get paused(): boolean {
    return this.#holders.size > 0;
  }

  /** The sources holding it (for logs and status). */
  get holders(): string[] {
    return [...this.#holders];
  }

  /** `source` holds the signal (`held` true) or lets it go; listeners hear only a change of `paused`. */
  hold(source: string, held: boolean): void {
    const before = this.paused;
    if (held) this.#holders.add(source);
    else this.#holders.delete(source);
    if (this.paused !== before) {
      for (const listener of [...this.#listeners]) listener(this.paused);
    }
  }

  /** Calls `listener` on every change (and at once when the signal is already paused); returns an unsubscribe. */
  subscribe(listener: (paused: boolean) => void): () => void {
    this.#listeners.add(listener);
    if (this.paused) listener(true);
    return () => void this.#listeners.delete(listener);
  }
}
