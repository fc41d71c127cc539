/**
 * The shards of this process. The pool starts the shards it is given and stops the ones it loses, while
 * running: a plan at start, an ownership that changes (cluster mode), a second shard count beside the
 * first (resharding). Shards are keyed by shard count and id. It stops them with close code 4000 so their
 * sessions stay resumable, pauses them all while backpressure is raised, and reports the first fatal close
 * (the CLI turns it into the process's exit code).
 */
import { type ResumableSession, Shard, type ShardOptions, type ShardStatus } from "../gateway/shard.ts";
import { type Clock, systemClock, type TimerId } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { type ShardKey, shardKeyName, type ShardOwnership } from "./ownership.ts";

/** What the pool needs of a shard (a `Shard`, or a fake in tests). */
export interface PoolShard {
  readonly id: number;
  start(): void;
  stop(code?: number): Promise<"clean" | "dropped" | "none">;
  setPaused(paused: boolean): void;
  status(): ShardStatus;
  reconnect(): boolean;
  send(op: number, d: unknown, onSent?: () => void): string | null;
}

/** What every shard shares; the pool sets `id`, `count`, `session`, `onSession` and `onFatal` per shard. */
export type ShardTemplate = Omit<ShardOptions, "id" | "count" | "session" | "onSession" | "onFatal">;

export interface PoolOptions {
  shard: ShardTemplate;
  logger: Logger;
  /** The stored session a shard resumes when it is added (null: it identifies). */
  sessionFor?: (key: ShardKey) => ResumableSession | null;
  /** A shard's session started (or changed), or ended (null): keyed by count and id, to be stored. */
  onSession?: (key: ShardKey, session: ResumableSession | null) => void;
  /** The sink of the shards of a count (default: the template's); a reshard holds the new set's events. */
  sinkFor?: (key: ShardKey) => ShardOptions["sink"];
  /**
   * A shard closed for good. Returning true takes it over (a reshard answers a 4011, or gives itself up
   * on a new shard's failure); otherwise, or without it, the pool fails with it.
   */
  onFatal?: (failure: PoolFailure) => boolean;
  /** Builds a shard; tests pass fakes. */
  createShard?: (options: ShardOptions) => PoolShard;
  clock?: Clock;
}

/** Why the pool stopped on its own. */
export interface PoolFailure {
  shard: number;
  count: number;
  code: number;
  reason: string;
}

/** Something that raises and lowers one "stop reading" signal (the journal and sinks falling behind). */
export interface PauseSignal {
  subscribe(listener: (paused: boolean) => void): () => void;
}

export interface PoolStopResult {
  /** Shards whose close Discord acknowledged. */
  clean: number;
  /** Shards that had a connection (a close still under way at the bound had one). */
  connected: number;
  total: number;
}

export class Pool {
  readonly #o: PoolOptions;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #shards = new Map<string, { key: ShardKey; shard: PoolShard }>();
  #paused = false;
  #running = false;
  #failure: PoolFailure | null = null;
  #onFailure: ((failure: PoolFailure) => void) | null = null;
  readonly #unsubscribe: Array<() => void> = [];
  /** Stops of removed shards still under way (a pool stop waits for them too). */
  readonly #removing = new Set<Promise<unknown>>();
  /** Resolves with the first fatal close; never resolves in a healthy run. */
  readonly failed: Promise<PoolFailure>;

  constructor(options: PoolOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger;
    this.failed = new Promise((resolve) => (this.#onFailure = resolve));
  }

  /** Starts the shards of `keys` (those not running yet); later `add`s start at once. */
  start(keys: ShardKey[] = []): void {
    this.#running = true;
    const counts = [...new Set(keys.map((k) => k.count))];
    for (const count of counts) {
      const ids = keys.filter((k) => k.count === count).map((k) => k.id);
      this.#logger.info("starting {count} of {total} shard(s): {ids}", {
        count: ids.length,
        total: count,
        ids: summariseIds(ids),
      });
    }
    for (const key of keys) this.add(key);
  }

  /** Runs what `ownership` owns, now and whenever it changes. */
  follow(ownership: ShardOwnership): void {
    const apply = (owned: ShardKey[]) => {
      const wanted = new Set(owned.map(shardKeyName));
      for (const { key } of [...this.#shards.values()]) {
        if (!wanted.has(shardKeyName(key))) void this.remove(key);
      }
      for (const key of owned) this.add(key);
    };
    this.#unsubscribe.push(ownership.subscribe(apply));
    apply(ownership.owned());
  }

  /** Pauses every shard while `signal` is raised (shards added later too). */
  pauseOn(signal: PauseSignal): void {
    this.#unsubscribe.push(signal.subscribe((paused) => this.setPaused(paused)));
  }

  /** Starts a shard; false when it already runs or the pool is not running. */
  add(key: ShardKey): boolean {
    const name = shardKeyName(key);
    if (!this.#running || this.#shards.has(name)) return false;
    const create = this.#o.createShard ?? ((options: ShardOptions) => new Shard(options));
    const shard = create({
      ...this.#o.shard,
      id: key.id,
      count: key.count,
      sink: this.#o.sinkFor?.(key) ?? this.#o.shard.sink,
      // Two sets run side by side during a reshard: every line of a shard says its count.
      logger: this.#o.shard.logger?.with({ count: key.count }),
      session: this.#o.sessionFor?.(key) ?? null,
      onSession: this.#o.onSession && ((_id, session) => this.#o.onSession!(key, session)),
      onFatal: (id, code, reason) => {
        const failure = { shard: id, count: key.count, code, reason };
        if (!this.#o.onFatal?.(failure)) this.fail(failure);
      },
    });
    this.#shards.set(name, { key, shard });
    if (this.#paused) shard.setPaused(true);
    shard.start();
    return true;
  }

  /**
   * Stops a shard with 4000 (its session stays resumable, for whoever runs it next) and forgets it.
   * Resolves with how it closed; "none" when it did not run here.
   */
  remove(key: ShardKey, code = 4000): Promise<"clean" | "dropped" | "none"> {
    const name = shardKeyName(key);
    const entry = this.#shards.get(name);
    if (!entry) return Promise.resolve("none");
    this.#shards.delete(name);
    const stopping = entry.shard.stop(code);
    this.#removing.add(stopping);
    void stopping.finally(() => this.#removing.delete(stopping));
    return stopping;
  }

  /** The shard with `id` of `count` (of any count when `count` is left out, the lowest count first). */
  get(id: number, count?: number): PoolShard | undefined {
    if (count !== undefined) return this.#shards.get(shardKeyName({ id, count }))?.shard;
    let found: { key: ShardKey; shard: PoolShard } | undefined;
    for (const entry of this.#shards.values()) {
      if (entry.key.id === id && (!found || entry.key.count < found.key.count)) found = entry;
    }
    return found?.shard;
  }

  /** The ids of the running shards, ascending (each id once, whatever the counts). */
  ids(): number[] {
    return [...new Set([...this.#shards.values()].map((e) => e.key.id))].sort((a, b) => a - b);
  }

  /** The running shards' keys, by count then id. */
  keys(): ShardKey[] {
    return [...this.#shards.values()].map((e) => e.key).sort((a, b) => a.count - b.count || a.id - b.id);
  }

  /** The shard counts running side by side, ascending. */
  counts(): number[] {
    return [...new Set(this.keys().map((k) => k.count))];
  }

  get shards(): PoolShard[] {
    return this.keys().map((key) => this.#shards.get(shardKeyName(key))!.shard);
  }

  /** Stops or resumes reading on every shard (backpressure from the store and the sinks). */
  setPaused(paused: boolean): void {
    if (paused === this.#paused) return;
    this.#paused = paused;
    for (const { shard } of this.#shards.values()) shard.setPaused(paused);
  }

  get paused(): boolean {
    return this.#paused;
  }

  status(): ShardStatus[] {
    return this.shards.map((s) => s.status());
  }

  /**
   * Closes every shard with `code` and waits at most `timeoutMs` (on the pool's clock). Removes added
   * later are refused.
   */
  async stop(code = 4000, timeoutMs = 10_000): Promise<PoolStopResult> {
    this.#running = false;
    for (const unsubscribe of this.#unsubscribe.splice(0)) unsubscribe();
    const entries = [...this.#shards.values()];
    this.#shards.clear();
    // "none" is known at once; a close still under way at the bound had a connection.
    let clean = 0, none = 0;
    const all = Promise.all([
      ...entries.map(({ shard }) =>
        shard.stop(code).then((how) => {
          if (how === "none") none++;
          if (how === "clean") clean++;
        })
      ),
      ...this.#removing,
    ]);
    let timer: TimerId | undefined;
    const bound = new Promise<void>((resolve) => (timer = this.#clock.setTimeout(resolve, timeoutMs)));
    await Promise.race([all, bound]);
    if (timer !== undefined) this.#clock.clearTimeout(timer);
    return { clean, connected: entries.length - none, total: entries.length };
  }

  /** Fails the pool with `failure` (the first one counts): `failed` resolves with it. */
  fail(failure: PoolFailure): void {
    if (this.#failure) return;
    this.#failure = failure;
    this.#onFailure?.(failure);
  }
}

/** "0-15, 32, 40-41" */
export function summariseIds(ids: number[]): string {
  const sorted = [...ids].sort((a, b) => a - b);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; i++) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j] + 1) j++;
    parts.push(j === i ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j;
  }
  return parts.join(", ");
}
