/**
 * What rides with the journal's next batch besides events: the sinks' cursors (and the callbacks
 * waiting for a cursor to be stored), the identifies counted against the daily budget, and proxy mode's
 * client sessions.
 */
import type { StoredProxySession } from "./proxy_sessions.ts";

export class Riders {
  #cursors = new Map<string, number>();
  /** Waiting for the cursors of the batch being gathered. */
  #waiters: Array<() => void> = [];
  /** Per batch handed to the writer: callbacks to run once it is stored. */
  readonly #byBatch = new Map<number, Array<() => void>>();
  #identifies: Array<[number, number]> = [];
  /** Client sessions to store (or, null, to forget), by session id. */
  #proxySessions = new Map<string, StoredProxySession | null>();

  /** The sink's cursor goes with the next batch; `onStored` runs once that batch is stored. */
  cursor(sink: string, lastId: number, onStored?: () => void): void {
    this.#cursors.set(sink, lastId);
    if (onStored) this.#waiters.push(onStored);
  }

  identify(shard: number, at: number): void {
    this.#identifies.push([shard, at]);
  }

  proxySession(sessionId: string, session: StoredProxySession | null): void {
    this.#proxySessions.set(sessionId, session);
  }

  get empty(): boolean {
    return this.#cursors.size === 0 && this.#identifies.length === 0 && this.#proxySessions.size === 0;
  }

  get identifies(): number {
    return this.#identifies.length;
  }

  /** Everything gathered goes with batch `no`. */
  take(no: number): {
    cursorWrites: Array<[string, number]>;
    identifyWrites: Array<[number, number]>;
    proxySessionWrites: Array<[string, StoredProxySession | null]>;
  } {
    const taken = {
      cursorWrites: [...this.#cursors],
      identifyWrites: this.#identifies,
      proxySessionWrites: [...this.#proxySessions],
    };
    this.#cursors.clear();
    this.#proxySessions.clear();
    this.#identifies = [];
    if (this.#waiters.length > 0) {
      this.#byBatch.set(no, this.#waiters);
      this.#waiters = [];
    }
    return taken;
  }

  /** Batch `no` is stored: its cursors' waiters go on. */
  stored(no: number): void {
    const waiters = this.#byBatch.get(no);
    if (!waiters) return;
    this.#byBatch.delete(no);
    for (const waiter of waiters) waiter();
  }
}
