/**
 * The stdout sink: NDJSON lines, one write per batch, never one per event. The write is asynchronous:
 * a reader that stops reading (`gatehouse run | less`, a paused consumer) only makes stdout lag. The
 * delivery stays open until the pipe takes the batch; meanwhile the journal keeps what arrives, and the
 * shards, heartbeats, the control listener and a stop go on (a blocking write on the one thread used
 * to freeze them all until Discord dropped the sessions).
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
  /** Writes some bytes, resolving with how many were written. Defaults to `Deno.stdout.write`. */
  write?: (bytes: Uint8Array) => Promise<number>;
  /** Called once when stdout is closed by its reader. */
  onClosed?: (error: Error) => void;
}

export class StdoutSink implements Sink {
  readonly name = "stdout";
  /** A pipe on this machine, not a broker's reply: the read loops need not go idle while it waits. */
  readonly local = true;
  #buffer = new LineBuffer();
  readonly #write: (bytes: Uint8Array) => Promise<number>;
  readonly #onClosed?: (error: Error) => void;
  #closed = false;
  /** Lines written so far. */
  written = 0;
  /** Writes (batches) so far. */
  batches = 0;

  constructor(options: StdoutSinkOptions = {}) {
    this.#write = options.write ?? ((bytes) => Deno.stdout.write(bytes));
    this.#onClosed = options.onClosed;
  }

  async deliver(batch: EventBatch): Promise<void> {
    if (this.#closed) throw new OutputClosedError("stdout is closed");
    this.#buffer.appendBatch(batch);
    const bytes = this.#buffer.take();
    try {
      let offset = 0;
      while (offset < bytes.length) offset += await this.#write(bytes.subarray(offset));
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
