/**
 * Where every shard's dispatches meet: the `events` allow-list is applied, and each event goes to the
 * journal (which gives it its id). Events left out by the allow-list still advance the stored seq.
 */
import type { DispatchSink } from "../gateway/shard.ts";
import type { Journal } from "../journal/journal.ts";

/** What the dispatcher tells whoever counts events (the control side's stats). */
export interface DispatchObserver {
  /** One dispatch (called for every event, kept or filtered). */
  event(shard: number, t: string, payload: Uint8Array, start: number): void;
  /** An event (a dispatch or gatehouse's own) left out by the allow-list. */
  filteredOut(shard: number, t: string): void;
}

export class Dispatcher implements DispatchSink {
  readonly #allowed: ReadonlySet<string> | null;
  readonly #journal: Journal;
  /** Events left out by the allow-list. */
  filtered = 0;

  readonly #observer: DispatchObserver | null;

  constructor(options: { events: readonly string[] | null; journal: Journal; observer?: DispatchObserver }) {
    this.#allowed = options.events && options.events.length > 0 ? new Set(options.events) : null;
    this.#journal = options.journal;
    this.#observer = options.observer ?? null;
  }

  dispatch(shard: number, t: string, s: number, payload: Uint8Array, start: number): void {
    this.#observer?.event(shard, t, payload, start);
    const keep = this.#allowed === null || this.#allowed.has(t);
    if (!keep) {
      this.filtered++;
      this.#observer?.filteredOut(shard, t);
    }
    this.#journal.event(shard, t, s, payload, start, keep);
  }

  /** A dispatch not to deliver (a reshard's repeat): only its seq is recorded. */
  skip(shard: number, t: string, s: number, payload: Uint8Array, start: number): void {
    this.#journal.event(shard, t, s, payload, start, false);
  }

  internal(shard: number, t: string, d: Record<string, unknown>): void {
    if (this.#allowed !== null && !this.#allowed.has(t)) {
      this.filtered++;
      this.#observer?.filteredOut(shard, t);
      return;
    }
    this.#journal.internal(shard, t, d);
  }
}
