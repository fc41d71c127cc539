/**
 * The Redis Streams sink. Each event is one stream entry whose id is derived from its journal id
 * (`<id>-0`), so a batch delivered again after a crash is refused by Redis as already present: the
 * streams hold every event exactly once. Layout: one stream per event name (`{prefix}:{EVENT}`, as
 * Spectacles does) or one stream for all (`{prefix}:events`). A batch goes out as one pipeline; the
 * acknowledgement is Redis's answer to every entry of it.
 *
 * The entry has one field, `data`: the NDJSON line of the event (without its newline).
 */
import { Buffer } from "node:buffer";
import { Cluster } from "ioredis";
import type { EventBatch } from "../journal/journal.ts";
import type { Logger } from "../util/log.ts";
import { LineBuffer } from "./ndjson.ts";
import type { Sink } from "./sink.ts";
import { connectRedis, type RedisClient } from "./redis_client.ts";

export type StreamLayout = "per-event" | "single";

export interface RedisSinkOptions {
  /** `redis://`, `rediss://`, `redis+sentinel://`, `redis+cluster://` (see redis_client.ts). */
  url: string;
  /** Stream names start with this (default `gatehouse`). */
  prefix?: string;
  layout?: StreamLayout;
  /** Approximate MAXLEN per stream (0 = no trimming: trimming drops entries nobody may have read). */
  maxLen?: number;
  /** Consumer group created on each stream (from its first entry) when missing. */
  group?: string | null;
  logger?: Logger;
  /** PEM CA certificates for TLS URLs (default: the system's roots). */
  tlsCa?: string | null;
  /** The cursor's name in the store (default `redis`). */
  name?: string;
}

/** Redis's answer to an XADD whose id is not above the stream's last one: the entry is already there. */
const ALREADY_THERE = /equal or smaller than the target stream top item/;

export class RedisSink implements Sink {
  readonly name: string;
  readonly #client: RedisClient;
  /** A cluster runs a pipeline on one node: one pipeline per stream (a stream is one key, one slot). */
  readonly #perStream: boolean;
  readonly #prefix: string;
  readonly #layout: StreamLayout;
  readonly #maxLen: number;
  readonly #group: string | null;
  readonly #log?: Logger;
  readonly #line = new LineBuffer(4096);
  /** Streams whose consumer group is known to exist. */
  readonly #grouped = new Set<string>();
  /** Redis refuses entries it already holds: repeats after a crash cost nothing. */
  readonly runsAheadOfStoredCursor = true;
  /** Why the connection last failed (a refused certificate, a refused password…), until it is ready. */
  #lastError: string | null = null;
  /** Entries Redis refused as already present (re-deliveries after a crash). */
  duplicates = 0;

  constructor(options: RedisSinkOptions) {
    this.name = options.name ?? "redis";
    this.#prefix = options.prefix ?? "gatehouse";
    this.#layout = options.layout ?? "per-event";
    this.#maxLen = options.maxLen ?? 0;
    this.#group = options.group ?? null;
    this.#log = options.logger;
    this.#client = connectRedis(options.url, {
      // Reconnect with backoff for ever; a command waiting for the connection fails after a few tries,
      // so a delivery is reported as failed (and retried from the journal) instead of hanging.
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 5_000),
      maxRetriesPerRequest: 2,
      enableOfflineQueue: true,
    }, options.tlsCa ?? null);
    this.#perStream = this.#client instanceof Cluster;
    this.#client.on("error", (error: Error) => {
      this.#lastError = error.message;
      this.#log?.debug("redis: {error}", { error: error.message });
    });
    this.#client.on("ready", () => (this.#lastError = null));
  }

  /** The stream an event goes to. */
  stream(t: string): string {
    return this.#layout === "single" ? `${this.#prefix}:events` : `${this.#prefix}:${t}`;
  }

  async deliver(batch: EventBatch): Promise<void> {
    const shared = this.#perStream ? null : this.#client.pipeline();
    const pipelines = new Map<string, ReturnType<RedisClient["pipeline"]>>();
    const groupsAsked: string[] = [];
    for (let i = 0; i < batch.count; i++) {
      const stream = this.stream(batch.t(i));
      let pipeline = shared ?? pipelines.get(stream);
      if (pipeline === undefined) pipelines.set(stream, pipeline = this.#client.pipeline());
      if (this.#group !== null && !this.#grouped.has(stream) && !groupsAsked.includes(stream)) {
        pipeline.xgroup("CREATE", stream, this.#group, "0", "MKSTREAM");
        groupsAsked.push(stream);
      }
      this.#line.append(batch.id(i), batch.shard(i), batch.payload(i), 0);
      const line = this.#line.take();
      const data = Buffer.from(line.subarray(0, line.length - 1));
      const id = `${batch.id(i)}-0`;
      if (this.#maxLen > 0) pipeline.xadd(stream, "MAXLEN", "~", this.#maxLen, id, "data", data);
      else pipeline.xadd(stream, id, "data", data);
    }
    let all;
    try {
      all = await Promise.all((shared ? [shared] : [...pipelines.values()]).map((p) => p.exec()));
    } catch (error) {
      throw this.#failure((error as Error).message);
    }
    if (all.some((results) => results === null)) throw new Error("redis: the pipeline was not run");
    for (const [error] of all.flatMap((results) => results!)) {
      if (error === null) continue;
      if (ALREADY_THERE.test(error.message)) {
        this.duplicates++;
        continue;
      }
      if (/BUSYGROUP/.test(error.message)) continue;
      throw this.#failure(error.message);
    }
    for (const stream of groupsAsked) this.#grouped.add(stream);
  }

  /** "Connection is closed" or "max retries" say little: add what the connection attempts ran into. */
  #failure(message: string): Error {
    return new Error(`redis: ${message}${this.#lastError ? ` (connecting: ${this.#lastError})` : ""}`);
  }

  async close(): Promise<void> {
    try {
      await this.#client.quit();
    } catch {
      this.#client.disconnect();
    }
  }
}
