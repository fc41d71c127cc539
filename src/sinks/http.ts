/**
 * The HTTP sink: each batch is one POST of NDJSON lines (`application/x-ndjson`) to a URL, with an
 * `Authorization` header when configured. Any 2xx answer acknowledges the batch; anything else (or no
 * answer within the timeout) fails it, and the runner tries again from the journal with backoff — a slow
 * or failing endpoint never slows the shards. Every line carries the event's identity (`uid`, the same
 * from every process), so the endpoint can drop repeats; `X-Gatehouse-First-Id` / `X-Gatehouse-Last-Id`
 * name the batch's range of store ids, which are unique only together with `X-Gatehouse-Producer` (the
 * store's name).
 */
import type { EventBatch } from "../journal/journal.ts";
import type { Secret } from "../util/secret.ts";
import { LineBuffer } from "./ndjson.ts";
import type { Sink } from "./sink.ts";

export interface HttpSinkOptions {
  url: string;
  /** The whole `Authorization` header value, e.g. `Bearer …`. */
  authorization?: Secret | null;
  /** A POST not answered within this time fails (default 30 s). */
  timeoutMs?: number;
  name?: string;
  /** The store's name (`Store.producer`): store ids are unique only together with it. */
  producer?: string;
}

export class HttpSink implements Sink {
  readonly name: string;
  /** Repeats carry their ids: the endpoint can drop them. */
  readonly runsAheadOfStoredCursor = true;
  readonly #url: string;
  readonly #authorization: Secret | null;
  readonly #timeoutMs: number;
  readonly #buffer = new LineBuffer();
  readonly #producer: string;

  constructor(options: HttpSinkOptions) {
    this.name = options.name ?? "http";
    this.#url = options.url;
    this.#authorization = options.authorization ?? null;
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#producer = options.producer ?? "unknown";
  }

  async deliver(batch: EventBatch): Promise<void> {
    for (let i = 0; i < batch.count; i++) {
      this.#buffer.appendEvent(batch, i);
    }
    const body = this.#buffer.take().slice();
    this.#buffer.shrink(2 * 1024 * 1024);
    const headers: Record<string, string> = {
      "content-type": "application/x-ndjson",
      "x-gatehouse-first-id": String(batch.firstId),
      "x-gatehouse-last-id": String(batch.lastId),
      "x-gatehouse-producer": this.#producer,
    };
    if (this.#authorization) headers.authorization = this.#authorization.reveal();
    let response: Response;
    try {
      response = await fetch(this.#url, {
        method: "POST",
        headers,
        body,
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
    } catch (error) {
      // The URL may carry a token: name only its origin.
      const message = (error as Error).message.replaceAll(this.#url, new URL(this.#url).origin);
      throw new Error(`http: POST to ${new URL(this.#url).origin} failed: ${message}`);
    }
    await response.body?.cancel();
    if (response.status < 200 || response.status > 299) {
      throw new Error(`http: the endpoint answered ${response.status} ${response.statusText}`);
    }
  }
}
