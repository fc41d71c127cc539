/**
 * What rides with the journal's next batch besides events: the sinks' cursors (and the callbacks
 * waiting for a cursor to be stored), and the identifies counted against the daily budget.
 */
export class Riders {
  #cursors = new Map<string, number>();
  /** Waiting for the cursors of the batch being gathered. */
  #waiters: Array<() => void> = [];
  /** Per batch handed to the writer: callbacks to run once it is stored. */
  readonly #byBatch = new Map<number, Array<() => void>>();
  #identifies: Array<[number, number]> = [];

  /** The sink's cursor goes with the next batch; `onStored` runs once that batch is stored. */
  cursor(sink: string, lastId: number, onStored?: () => void): void {
    this.#cursors.set(sink, lastId);
    if (onStored) this.#waiters.push(onStored);
  }

  identify(shard: number, at: number): void {
    this.#identifies.push([shard, at]);
  }

  get empty(): boolean {
    return this.#cursors.size === 0 && this.#identifies.length === 0;
  }

  get identifies(): number {
    return this.#identifies.length;
  }

  /** Everything gathered goes with batch `no`. */
  take(no: number): { cursorWrites: Array<[string, number]>; identifyWrites: Array<[number, number]> } {
    const taken = { cursorWrites: [...this.#cursors], identifyWrites: this.#identifies };
    this.#cursors.clear();
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
