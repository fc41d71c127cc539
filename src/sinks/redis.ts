/**
 * The Redis Streams sink, exactly once with any number of producers per stream. Each event is one
 * stream entry (Redis assigns its id) with one field, `data`: the event's NDJSON line (without its
 * newline), or in a drop-in format what its consumers read (wire_format.ts). Layout: one stream per
 * event name (`{prefix}:{EVENT}`, or the bare name in a drop-in format) or one stream for all
 * (`{prefix}:events`).
 *
 * Why not explicit entry ids: ids from one store's counter collide the day two processes (or one fresh
 * container) write the same stream, and Redis refusing a "smaller" id then silently drops real events.
 * Instead every stream has a hash of high-water marks (`{<stream>}:seen`): per event scope (a Discord
 * session, or the store for gatehouse's own events) the highest position (seq, or id) appended. One Lua
 * script per stream and batch appends only the events above their scope's mark and moves the marks in
 * the same step, atomically: a batch delivered again after a crash, or an event a second process also
 * holds, is skipped (counted), never appended twice, and nothing is skipped that was not appended.
 * Within a scope positions only grow in delivery order, so one mark per scope is enough. Scopes unused
 * for 7 days are forgotten (`{<stream>}:seen_at`). The marks' keys share the stream's Cluster slot.
 *
 * Cluster mode (`cluster`, redis_fence.ts): many processes of one bot, each shard owned by the holder of
 * its lease key. The events of a shard this node does not hold are not appended (fenced, acknowledged),
 * and the shared session's seq follows what reached the streams.
 */
import { Buffer } from "node:buffer";
import { Cluster } from "ioredis";
import type { EventBatch } from "../journal/journal.ts";
import type { Logger } from "../util/log.ts";
import { LineBuffer } from "./ndjson.ts";
import type { Sink } from "./sink.ts";
import { connectRedis, type RedisClient } from "../redis/client.ts";
import { backoffDelay } from "../util/backoff.ts";
import { type ClusterFencing, Fence } from "./redis_fence.ts";
import { APPEND_SCRIPT, PackedEvents } from "./redis_append.ts";
import { type EventWire, eventWire } from "./wire_format.ts";
import type { WireFormat } from "../config/wire_formats.ts";

/** Reconnects: 200 ms doubling to 5 s. */
const RECONNECT = { baseMs: 200, maxMs: 5_000 };

type AppendClient = RedisClient & {
  gatehouseAppend(...args: Array<string | number | Buffer>): Promise<[number, number]>;
  gatehouseFencedAppend(
    ...args: Array<string | number | Buffer>
  ): Promise<[number, number, number, number[]]>;
};

/** One stream's script arguments, and in cluster mode its lease keys (KEYS[4…]) and their shards. */
interface StreamArgs {
  args: Array<string | number | Buffer>;
  /** Outside cluster mode: the events, packed (redis_append.ts). */
  packed: PackedEvents | null;
  leases: Map<string, number>;
  shards: number[];
}

export type StreamLayout = "per-event" | "single";

export interface RedisSinkOptions {
  /** `redis://`, `rediss://`, `redis+sentinel://`, `redis+cluster://` (see src/redis/url.ts). */
  url: string;
  /** Stream names start with this (default `gatehouse`). */
  prefix?: string;
  /** What event stream names start with (default `{prefix}:`; "" for the bare names of a drop-in format). */
  streamPrefix?: string;
  /** The entries' `data` (wire_format.ts); default `gatehouse`, the NDJSON line. */
  format?: WireFormat;
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
  /** Cluster mode: fence by lease, advance the shared sessions (redis_fence.ts). Default: off. */
  cluster?: ClusterFencing;
}

export class RedisSink implements Sink {
  readonly name: string;
  readonly #client: RedisClient;
  /** A cluster runs a pipeline on one node: one pipeline per stream (a stream is one key, one slot). */
  readonly #perStream: boolean;
  readonly #streamPrefix: string;
  readonly #layout: StreamLayout;
  readonly #wire: EventWire;
  /** The stream of the single layout. */
  readonly #single: string;
  readonly #maxLen: number;
  readonly #group: string | null;
  readonly #log?: Logger;
  readonly #line = new LineBuffer(4096);
  /** Streams whose consumer group is known to exist. */
  readonly #grouped = new Set<string>();
  /** Events already appended are skipped by the script: repeats after a crash cost nothing. */
  readonly runsAheadOfStoredCursor = true;
  /** Why the connection last failed (a refused certificate, a refused password…), until it is ready. */
  #lastError: string | null = null;
  /** Events skipped as already in their stream (re-deliveries after a crash, or another producer's). */
  duplicates = 0;
  /** Skipped since the last log line about them. */
  #unreported = 0;
  #lastReport = 0;
  readonly #fence: Fence | null;
  /** Deliveries under way, by the number they started with (cluster mode: `fence` waits for some). */
  readonly #delivering = new Map<Promise<void>, number>();
  /** Deliveries started so far. */
  #started = 0;
  /** Per `<count>:<shard>`: how many deliveries had started when its fence last rose. */
  readonly #fencedAfter = new Map<string, number>();

  constructor(options: RedisSinkOptions) {
    this.name = options.name ?? "redis";
    const prefix = options.prefix ?? "gatehouse";
    this.#streamPrefix = options.streamPrefix ?? `${prefix}:`;
    this.#layout = options.layout ?? "per-event";
    this.#single = `${prefix}:events`;
    this.#wire = eventWire(options.format ?? "gatehouse");
    this.#maxLen = options.maxLen ?? 0;
    this.#group = options.group ?? null;
    this.#log = options.logger;
    this.#client = connectRedis(options.url, {
      // Reconnect with backoff for ever; a command waiting for the connection fails after a few tries,
      // so a delivery is reported as failed (and retried from the journal) instead of hanging.
      retryStrategy: (times) => backoffDelay(RECONNECT, times),
      maxRetriesPerRequest: 2,
      enableOfflineQueue: true,
    }, options.tlsCa ?? null);
    this.#perStream = this.#client instanceof Cluster;
    this.#client.defineCommand("gatehouseAppend", { numberOfKeys: 3, lua: APPEND_SCRIPT });
    this.#fence = options.cluster ? new Fence(options.cluster, this.#client, options.logger) : null;
    this.#client.on("error", (error: Error) => {
      this.#lastError = error.message;
      this.#log?.debug("redis: {error}", { error: error.message });
    });
    this.#client.on("ready", () => (this.#lastError = null));
  }

  /**
   * The stream an event goes to. An event name Discord made up is used as it is when it looks like one;
   * anything else (braces would move the key to another Cluster slot) has its odd characters replaced.
   */
  stream(t: string): string {
    if (this.#layout === "single") return this.#single;
    const name = /^[A-Za-z0-9_.-]{1,100}$/.test(t)
      ? t
      : t.slice(0, 100).replace(/[^A-Za-z0-9_.-]/g, "_") || "_";
    return `${this.#streamPrefix}${name}`;
  }

  /** The keys a stream's script touches: the stream and its marks, in the stream's Cluster slot. */
  static markKeys(stream: string): [string, string] {
    return [`{${stream}}:seen`, `{${stream}}:seen_at`];
  }

  deliver(batch: EventBatch): Promise<void> {
    if (this.#fence === null) return this.#deliver(batch);
    const delivery = this.#deliver(batch);
    this.#delivering.set(delivery, ++this.#started);
    const done = () => void this.#delivering.delete(delivery);
    delivery.then(done, done);
    return delivery;
  }

  async #deliver(batch: EventBatch): Promise<void> {
    const fence = this.#fence;
    const client = this.#client as AppendClient;
    // On Redis Cluster the leases are read before the appends (their slot is not the streams').
    let notHeld: Set<string> | null = null;
    try {
      if (fence !== null && this.#perStream) notHeld = await fence.notHeld(batch);
    } catch (error) {
      throw this.#failure((error as Error).message);
    }
    const inScript = fence !== null && notHeld === null;
    const fencedShards = new Set<number>();
    let fenced = 0;
    // Per stream, in order: scope, position, data (and in cluster mode the lease's KEYS index) of each event.
    const byStream = new Map<string, StreamArgs>();
    const wire = this.#wire;
    for (let i = 0; i < batch.count; i++) {
      // A drop-in format carries Discord's events only (acknowledged with the batch).
      if (!wire.publishes(batch.t(i))) continue;
      const lease = fence?.leaseOf(batch, i) ?? null;
      if (lease !== null && fence!.fencedThrough(batch, i)) {
        fenced++;
        continue;
      }
      if (lease !== null && notHeld?.has(lease)) {
        fencedShards.add(batch.shard(i));
        fenced++;
        continue;
      }
      const from = this.#line.length;
      const unwritable = wire.append(this.#line, batch, i);
      if (unwritable !== null) {
        this.#log?.warn("redis: event {id} ({t}) left out of the {format} streams: {reason}", {
          id: batch.id(i),
          t: batch.t(i),
          format: wire.format,
          reason: unwritable,
        });
        continue;
      }
      const stream = this.#layout === "single" ? this.#single : this.stream(batch.t(i));
      let entry = byStream.get(stream);
      if (entry === undefined) {
        const packed = inScript ? null : new PackedEvents();
        byStream.set(stream, entry = { args: [], packed, leases: new Map(), shards: [] });
      }
      if (entry.packed !== null) {
        entry.packed.add(batch.scope(i), batch.position(i), from, this.#line.length);
        continue;
      }
      const line = this.#line.take();
      entry.args.push(batch.scope(i), batch.position(i), Buffer.from(line.subarray(0, line.length - 1)));
      let index = 0;
      if (lease !== null) {
        index = entry.leases.get(lease) ?? 0;
        if (index === 0) {
          entry.leases.set(lease, index = 4 + entry.shards.length);
          entry.shards.push(batch.shard(i));
        }
      }
      entry.args.push(index);
    }
    const lines = this.#line.take();
    const shared = this.#perStream ? null : client.pipeline() as unknown as AppendClient;
    const pipelines: AppendClient[] = [];
    const asked: string[] = [];
    const scripts: StreamArgs[] = [];
    for (const [stream, entry] of byStream) {
      const pipeline = shared ?? client.pipeline() as unknown as AppendClient;
      if (pipeline !== shared) pipelines.push(pipeline);
      const group = this.#group !== null && !this.#grouped.has(stream) ? this.#group : "";
      if (group) asked.push(stream);
      const marks = RedisSink.markKeys(stream);
      if (inScript) {
        const leases = [...entry.leases.keys()];
        void pipeline.gatehouseFencedAppend(
          3 + leases.length,
          stream,
          ...marks,
          ...leases,
          this.#maxLen,
          group,
          fence!.node,
          ...entry.args,
        );
      } else {void pipeline.gatehouseAppend(
          stream,
          ...marks,
          this.#maxLen,
          group,
          ...entry.packed!.args(lines),
        );}
      scripts.push(entry);
    }
    if (shared) pipelines.push(shared);
    let all;
    try {
      all = await Promise.all(
        pipelines.map((p) => (p as unknown as ReturnType<RedisClient["pipeline"]>).exec()),
      );
    } catch (error) {
      throw this.#failure((error as Error).message);
    }
    if (all.some((results) => results === null)) throw new Error("redis: the pipeline was not run");
    let skipped = 0;
    // Pipelines run in the order of `scripts` (one shared one, or one per stream in that order).
    all.flatMap((results) => results!).forEach(([error, result], n) => {
      if (error !== null) throw this.#failure(error.message);
      const r = result as [number, number, number?, number[]?];
      skipped += Number(r[1]);
      fenced += Number(r[2] ?? 0);
      for (const index of r[3] ?? []) fencedShards.add(scripts[n].shards[index - 4]);
    });
    for (const stream of asked) this.#grouped.add(stream);
    if (skipped > 0) this.#skipped(skipped);
    try {
      if (fence !== null) await fence.finish(batch, fencedShards, fenced);
    } catch (error) {
      throw this.#failure((error as Error).message);
    }
  }

  /** Cluster mode: events not appended because another node holds their shard's lease. */
  get fenced(): number {
    return this.#fence?.fenced ?? 0;
  }

  /** Cluster mode: see `Fence.fenceThrough` (redis_fence.ts). */
  fenceThrough(shard: number, id: number, count?: number): void {
    this.#raise(shard, id, count);
  }

  /** `Fence.fenceThrough`, noting how many deliveries had started when the fence rose. */
  #raise(shard: number, id: number, count: number | undefined): string {
    if (this.#fence === null) throw new Error("redis: fenceThrough needs the sink's cluster mode");
    const key = `${count ?? this.#fence.shardCount}:${shard}`;
    if (this.#fence.fenceThrough(shard, id, count) || !this.#fencedAfter.has(key)) {
      this.#fencedAfter.set(key, this.#started);
    }
    return key;
  }

  /**
   * Cluster mode, before this node takes a shard's lease: `fenceThrough(shard, id, count)`, then waits
   * (at most `waitMs`) for the deliveries begun before it. One of those passed the fence check before it
   * was set and may not have reached Redis yet; run after the lease is taken, its script would find the
   * lease held and append events of an older ownership (after a gap, moving the stream's marks past
   * events nobody appended). Resolves false when they did not finish in time: the caller must not take
   * the lease yet (it tries again at its next round). Only the deliveries begun before the fence first
   * rose to `id` are waited for, also in later rounds: those begun after it see it, so under a steady
   * flow of slow deliveries the wait still ends.
   */
  async fence(shard: number, id: number, count: number | undefined, waitMs: number): Promise<boolean> {
    const before = this.#fencedAfter.get(this.#raise(shard, id, count))!;
    const waiting = [...this.#delivering].filter(([, started]) => started <= before).map(([delivery]) =>
      delivery
    );
    if (waiting.length === 0) return true;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), waitMs)));
    const settled = Promise.allSettled(waiting).then(() => true as const);
    try {
      return await Promise.race([settled, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Counted always; logged at most every 10 s, with how many since the last line. */
  #skipped(n: number): void {
    this.duplicates += n;
    this.#unreported += n;
    const now = Date.now();
    if (now - this.#lastReport < 10_000) return;
    this.#lastReport = now;
    this.#log?.info(
      "redis: skipped {n} event(s) already in their stream (delivered again after a restart, or by another " +
        "gatehouse holding the same session); {total} so far",
      { n: this.#unreported, total: this.duplicates },
    );
    this.#unreported = 0;
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
