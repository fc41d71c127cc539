/**
 * The stdout sink: NDJSON lines, one write per batch, never one per event. The write is synchronous:
 * when the reader is slower than Discord, the write blocks and the acknowledgement waits with it —
 * the journal keeps what arrives meanwhile.
 */
import type { EventBatch } from "../journal/journal.ts";
import { LineBuffer } from "./ndjson.ts";
import type { Sink } from "./sink.ts";

/** Raised when the reader of stdout went away (`gatehouse run | head`). */
export class OutputClosedError extends Error {
  override name = "OutputClosedError";
  /** Retrying cannot help: the sink runner stops instead (and `run` shuts down). */
  readonly permanent = true;
}

export interface StdoutSinkOptions {
  /** Writes some bytes, returning how many were written. Defaults to `Deno.stdout.writeSync`. */
  writeSync?: (bytes: Uint8Array) => number;
  /** Called once when stdout is closed by its reader. */
  onClosed?: (error: Error) => void;
}

export class StdoutSink implements Sink {
  readonly name = "stdout";
  readonly #buffer = new LineBuffer();
  readonly #writeSync: (bytes: Uint8Array) => number;
  readonly #onClosed?: (error: Error) => void;
  #closed = false;
  /** Lines written so far. */
  written = 0;
  /** Writes (batches) so far. */
  batches = 0;

  constructor(options: StdoutSinkOptions = {}) {
    this.#writeSync = options.writeSync ?? ((bytes) => Deno.stdout.writeSync(bytes));
    this.#onClosed = options.onClosed;
  }

  deliver(batch: EventBatch): void {
    if (this.#closed) throw new OutputClosedError("stdout is closed");
    for (let i = 0; i < batch.count; i++) {
      this.#buffer.appendEvent(batch, i);
    }
    const bytes = this.#buffer.take();
    try {
      let offset = 0;
      while (offset < bytes.length) offset += this.#writeSync(bytes.subarray(offset));
    } catch (error) {
      this.#closed = true;
      const closed = new OutputClosedError(`cannot write to stdout: ${(error as Error).message}`);
      this.#onClosed?.(closed);
      throw closed;
    }
    this.written += batch.count;
    this.batches++;
    // A delivery carries at most 1 MB of payloads: keep a buffer that size, give back larger ones.
    this.#buffer.shrink(2 * 1024 * 1024);
  }
}
