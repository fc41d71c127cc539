/**
 * Where every shard's dispatches meet: the `events` allow-list is applied, and each event goes to the
 * journal (which gives it its id). Events left out by the allow-list still advance the stored seq.
 */
import type { DispatchSink } from "../gateway/shard.ts";
import type { Journal } from "../journal/journal.ts";

export class Dispatcher implements DispatchSink {
  readonly #allowed: ReadonlySet<string> | null;
  readonly #journal: Journal;
  /** Events left out by the allow-list. */
  filtered = 0;

  constructor(options: { events: readonly string[] | null; journal: Journal }) {
    this.#allowed = options.events && options.events.length > 0 ? new Set(options.events) : null;
    this.#journal = options.journal;
  }

  dispatch(shard: number, t: string, s: number, payload: Uint8Array, start: number): void {
    const keep = this.#allowed === null || this.#allowed.has(t);
    if (!keep) this.filtered++;
    this.#journal.event(shard, t, s, payload, start, keep);
  }

  internal(shard: number, t: string, d: Record<string, unknown>): void {
    if (this.#allowed !== null && !this.#allowed.has(t)) {
      this.filtered++;
      return;
    }
    this.#journal.internal(shard, t, d);
  }
}
