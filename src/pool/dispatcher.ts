/**
 * Where every shard's dispatches meet: the `events` allow-list is applied, and each event goes to the
 * journal (which gives it its id). Events left out by the allow-list still advance the stored seq.
 */
import type { DispatchSink } from "../gateway/shard.ts";
import type { Journal } from "../journal/journal.ts";
import type { GatewayStats } from "../control/stats.ts";

export class Dispatcher implements DispatchSink {
  readonly #allowed: ReadonlySet<string> | null;
  readonly #journal: Journal;
  /** Events left out by the allow-list. */
  filtered = 0;

  readonly #stats: GatewayStats | null;

  constructor(options: { events: readonly string[] | null; journal: Journal; stats?: GatewayStats }) {
    this.#allowed = options.events && options.events.length > 0 ? new Set(options.events) : null;
    this.#journal = options.journal;
    this.#stats = options.stats ?? null;
  }

  dispatch(shard: number, t: string, s: number, payload: Uint8Array, start: number): void {
    this.#stats?.event(shard, t, payload, start);
    const keep = this.#allowed === null || this.#allowed.has(t);
    if (!keep) {
      this.filtered++;
      if (this.#stats) this.#stats.filtered++;
    }
    this.#journal.event(shard, t, s, payload, start, keep);
  }

  internal(shard: number, t: string, d: Record<string, unknown>): void {
    if (this.#allowed !== null && !this.#allowed.has(t)) {
      this.filtered++;
      if (this.#stats) this.#stats.filtered++;
      return;
    }
    this.#journal.internal(shard, t, d);
  }
}
