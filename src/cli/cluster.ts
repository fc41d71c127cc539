/**
 * `run` in cluster mode (`[cluster] mode = "redis"`): this process is one member of the bot's cluster.
 * Every member points at the same `[redis] url` and `prefix`; nobody lists shard ids.
 *
 * - The shard count is the cluster's: the first member stores it (`{prefix}:shard_count`, SET NX), the
 *   others take it from there; a member configured with another count stops with exit 2.
 * - Ownership (src/cluster/cluster_ownership.ts) gives this member its share of the shards through
 *   leases; the pool runs what it owns. A shard it takes is first fenced in the Redis sink (what the
 *   local journal holds of it from an earlier ownership is never appended: the resumed session replays
 *   it), then started with the shared session from Redis, so it RESUMEs where the streams end.
 * - A shard beyond its share is handed off: stopped with 4000, its events delivered into Redis (the
 *   sink moves the shared seq with them), then the lease is released and the next owner RESUMEs. A
 *   shard whose lease is lost (Redis unreachable past the local deadline) is stopped at once.
 * - Sessions are shared (src/cluster/redis_sessions.ts): a new session is stored at READY with seq 0;
 *   its seq moves only with the batches that reach the streams (the sink's fenced advance), so a new
 *   owner never resumes past what the streams hold.
 * - One identify queue for the bot (src/cluster/redis_identify.ts).
 * - Its status report is published for `gatehouse shards` (src/cluster/status_board.ts).
 */
import { ClusterOwnership } from "../cluster/cluster_ownership.ts";
import { clusterKeys } from "../cluster/keys.ts";
import { RedisMembers } from "../cluster/members.ts";
import { RedisIdentifyQueue } from "../cluster/redis_identify.ts";
import { connectLeaseRedis, RedisLeaseStore } from "../cluster/redis_leases.ts";
import { RedisSessionStore } from "../cluster/redis_sessions.ts";
import { StatusPublisher } from "../cluster/status_board.ts";
import { RedisReshardPlans, type ReshardPlan } from "../cluster/reshard_coordinator.ts";
import type { ReshardCoordinator, Resharder } from "../pool/resharder.ts";
import type { GatewayView } from "../control/status.ts";
import type { GatehouseConfig } from "../config/load.ts";
import type { GatewayBotInfo } from "../gateway/protocol.ts";
import type { ResumableSession } from "../gateway/shard_types.ts";
import type { Journal } from "../journal/journal.ts";
import { sessionStartLimit } from "../pool/identify.ts";
import type { ShardKey } from "../pool/ownership.ts";
import type { Pool } from "../pool/pool.ts";
import { connectRedis, type RedisClient } from "../redis/client.ts";
import type { ClusterFencing } from "../sinks/redis_fence.ts";
import type { Sink } from "../sinks/sink.ts";
import { backoffDelay } from "../util/backoff.ts";
import { logger } from "../util/log.ts";
import { ExitError } from "./errors.ts";

/** A change is published this long after it (changes close together go out in one report). */
const REPUBLISH_MS = 200;

/** How long a hand-off waits for the shard's events to reach Redis before releasing anyway. */
const HAND_OFF_FLUSH_MS = 10_000;

export interface ClusterStartParts {
  pool: Pool;
  journal: Journal;
  sinks: Sink[];
  /** The highest journal id every sink has taken. */
  delivered: () => number;
}

interface FencingSink {
  fenceThrough(shard: number, id: number, count?: number): void;
  fence(shard: number, id: number, count: number | undefined, waitMs: number): Promise<boolean>;
}

/** How often a member reads the bot's reshard plan. */
const RESHARD_POLL_MS = 500;
/** After a switch the new shards stay where they overlap the old ones this long (repeats are matched there). */
const RESHARD_SETTLE_MS = 30_000;

export class ClusterRun {
  readonly node: string;
  /** The bot's shard count (a reshard's switch changes it). */
  shardCount: number;
  readonly identify: RedisIdentifyQueue;
  readonly fencing: ClusterFencing;
  readonly sessions: RedisSessionStore;
  readonly #config: GatehouseConfig;
  readonly #redis: RedisClient;
  readonly #leases: RedisClient;
  readonly #log = logger("cluster");
  #ownership: ClusterOwnership | null = null;
  #publisher: StatusPublisher | null = null;
  /** Told when this member's shards changed (the command sources follow at once). */
  #shardsChanged: () => void = () => {};
  #republishing = false;
  #parts: ClusterStartParts | null = null;
  #fence: FencingSink | null = null;
  /** Shards being prepared (fenced, their session loaded) before the pool runs them. */
  readonly #preparing = new Set<string>();
  /** Sessions to start each shard with, loaded from Redis when it was taken. */
  readonly #resume = new Map<string, ResumableSession>();
  /** The session id each running shard is in (a new one is stored at READY). */
  readonly #current = new Map<string, string>();
  /** The shard count of every session seen here (the fence keys events by it). */
  readonly #countOfSession = new Map<string, number>();
  readonly #plans: RedisReshardPlans;
  readonly #maxConcurrency: number;
  #resharder: Resharder | null = null;
  #reshardTimer: ReturnType<typeof setTimeout> | undefined;
  #settleTimer: ReturnType<typeof setTimeout> | undefined;
  /** The last plan read and acted on, and the one followed (its new shards run here). */
  #seenEpoch: string | null = null;
  #following: { epoch: string; to: number } | null = null;

  private constructor(
    config: GatehouseConfig,
    node: string,
    shardCount: number,
    redis: RedisClient,
    leases: RedisClient,
    identify: RedisIdentifyQueue,
    maxConcurrency: number,
  ) {
    this.#config = config;
    this.#maxConcurrency = maxConcurrency;
    this.node = node;
    this.shardCount = shardCount;
    this.#redis = redis;
    this.#leases = leases;
    this.identify = identify;
    const prefix = config.redis.prefix;
    this.fencing = { node, prefix, shardCount, countOf: (id) => this.#countOfSession.get(id) };
    this.sessions = new RedisSessionStore({ client: redis, prefix, node });
    this.#plans = new RedisReshardPlans(redis, prefix, node);
  }

  /** Connects to the cluster's Redis and agrees on the shard count; exit 2 when this member disagrees. */
  static async join(
    config: GatehouseConfig,
    info: GatewayBotInfo,
    fetchInfo: () => Promise<GatewayBotInfo>,
  ): Promise<ClusterRun> {
    const log = logger("cluster");
    if (!config.broker.types.includes("redis")) {
      throw new ExitError(
        2,
        'configuration error:\ncluster mode delivers into Redis Streams: [broker] type must include "redis"',
      );
    }
    if (config.shards.ids !== null) {
      throw new ExitError(
        2,
        "configuration error:\nin cluster mode the members share the shards among themselves: " +
          "leave [shards] ids (DISCORD_SHARD_IDS) unset",
      );
    }
    const node = config.cluster.node ?? `${Deno.hostname()}:${Deno.pid}`;
    const url = config.redis.url.reveal();
    const redis = connectRedis(url, {
      retryStrategy: (times) => backoffDelay({ baseMs: 100, maxMs: 2_000 }, times),
      maxRetriesPerRequest: 2,
      enableOfflineQueue: true,
    }, config.redis.tlsCaPem);
    const leases = connectLeaseRedis(url, config.cluster.leaseMs, config.redis.tlsCaPem);
    let lastError = "";
    for (const [name, client] of [["redis", redis], ["leases", leases]] as const) {
      let last = "";
      client.on("error", (error: Error) => {
        lastError = error.message;
        if (error.message === last) return;
        last = error.message;
        log.warn("cluster {name} connection: {error}", { name, error: error.message });
      });
    }
    const countKey = clusterKeys(config.redis.prefix).shardCount;
    let shardCount: number;
    try {
      const wanted = config.shards.count ?? info.shards;
      await redis.set(countKey, String(wanted), "NX");
      shardCount = Number(await redis.get(countKey));
    } catch (error) {
      redis.disconnect();
      leases.disconnect();
      throw new ExitError(
        1,
        `cluster mode: cannot reach Redis ([redis] url): ${lastError || (error as Error).message}`,
      );
    }
    if (config.shards.count !== null && config.shards.count !== shardCount) {
      redis.disconnect();
      leases.disconnect();
      throw new ExitError(
        2,
        `configuration error:\nthe cluster runs ${shardCount} shards (${countKey} in Redis); this member is ` +
          `configured for ${config.shards.count}: give every member the same [shards] count, or none`,
      );
    }
    const limit = info.session_start_limit;
    const toLimit = sessionStartLimit;
    const identify = new RedisIdentifyQueue({
      client: redis,
      prefix: config.redis.prefix,
      maxConcurrency: limit.max_concurrency,
      limit: toLimit(limit),
      refresh: async () => toLimit((await fetchInfo()).session_start_limit),
      reserve: config.gateway.identifyReserve,
      logger: logger("identify"),
    });
    log.info("cluster member {node}: {count} shard(s) shared through Redis, leases of {lease} ms", {
      node,
      count: shardCount,
      lease: config.cluster.leaseMs,
    });
    return new ClusterRun(config, node, shardCount, redis, leases, identify, limit.max_concurrency);
  }

  /** The session a shard starts with: the shared one, loaded when the shard was taken. */
  sessionFor(key: ShardKey): ResumableSession | null {
    return this.#resume.get(name(key)) ?? null;
  }

  /** A shard established a session: a new one is stored in Redis (seq 0: the streams move it). */
  onSession(key: ShardKey, session: ResumableSession | null): void {
    this.#republish();
    const n = name(key);
    const store = (write: () => Promise<void>, what: string) =>
      void write().catch((error) =>
        this.#log.warn("shard {shard}: could not {what} the shared session: {error}", {
          shard: key.id,
          what,
          error: (error as Error).message,
        })
      );
    if (session !== null) this.#countOfSession.set(session.id, key.count);
    if (session === null) {
      this.#current.delete(n);
      this.#resume.delete(n);
      store(() => Promise.resolve(this.sessions.delete(key.count, key.id)), "delete");
      return;
    }
    if (this.#current.get(n) === session.id) return; // resumed: the sink moves its seq
    this.#current.set(n, session.id);
    store(() =>
      Promise.resolve(this.sessions.save({
        shardCount: key.count,
        shard: key.id,
        sessionId: session.id,
        seq: 0,
        resumeUrl: session.resumeUrl,
        updatedAt: Date.now(),
      })), "store");
  }

  /** Takes this member's share and follows it into the pool until `stop`. */
  async start(parts: ClusterStartParts): Promise<void> {
    this.#parts = parts;
    const fence = parts.sinks.find((s) => "fenceThrough" in s) as unknown as FencingSink | undefined;
    if (!fence) throw new Error("cluster mode needs the Redis sink");
    this.#fence = fence;
    // What the local journal holds from an earlier run is never appended: the resumed sessions replay it.
    const lastId = parts.journal.lastAssignedId;
    for (let id = 0; id < this.shardCount; id++) fence.fenceThrough(id, lastId);
    const prefix = this.#config.redis.prefix;
    const leaseMs = this.#config.cluster.leaseMs;
    const ownership = new ClusterOwnership({
      store: new RedisLeaseStore(this.#leases),
      members: new RedisMembers(this.#leases, clusterKeys(prefix).nodes),
      node: this.node,
      keys: Array.from({ length: this.shardCount }, (_, id) => ({ id, count: this.shardCount })),
      leaseMs,
      prefix,
      // Members started together see each other before taking leases.
      settleMs: Math.min(leaseMs, 3_000),
      handOff: (key) => this.#handOff(key),
      // What the journal holds of the shard is older than the lease about to be taken: fenced, and the
      // deliveries under way end first (one could otherwise append it after a gap).
      beforeAcquire: (key) =>
        fence.fence(key.id, parts.journal.lastAssignedId, key.count, Math.min(2_000, leaseMs / 5)),
      onError: (error) => this.#log.warn("cluster: {error}", { error: error.message }),
    });
    this.#ownership = ownership;
    ownership.subscribe((owned) => this.#follow(owned));
    await ownership.start();
    this.#follow(ownership.owned());
  }

  /** Whether this member may still act for `key`. */
  holds(key: ShardKey): boolean {
    return this.#ownership?.holds(key) ?? false;
  }

  owned(): ShardKey[] {
    return this.#ownership?.owned() ?? [];
  }

  #follow(owned: ShardKey[]): void {
    const parts = this.#parts;
    if (!parts) return;
    const wanted = new Set(owned.map(name));
    for (const key of parts.pool.keys()) {
      if (wanted.has(name(key))) continue;
      // Lost (not handed off: a hand-off removes the shard before the set changes): stop at once.
      this.#log.warn("shard {shard}: lease lost; stopping it (its next owner resumes it)", { shard: key.id });
      void parts.pool.remove(key).then(() =>
        this.#fence?.fenceThrough(key.id, parts.journal.lastAssignedId, key.count)
      );
      this.#shardsChanged();
      this.#current.delete(name(key));
      this.#republish();
    }
    const running = new Set(parts.pool.keys().map(name));
    for (const key of owned) {
      const n = name(key);
      if (running.has(n) || this.#preparing.has(n)) continue;
      this.#preparing.add(n);
      void this.#take(key).finally(() => this.#preparing.delete(n));
    }
  }

  /** Fences what the journal holds of `key`, loads its shared session, then runs it (if still ours). */
  async #take(key: ShardKey): Promise<void> {
    const parts = this.#parts!;
    this.#fence?.fenceThrough(key.id, parts.journal.lastAssignedId, key.count);
    let session: ResumableSession | null = null;
    // A reshard's new shard identifies (what Redis holds of its key is from a reshard given up).
    const fresh = this.#following !== null && key.count === this.#following.to;
    if (!fresh) {
      try {
        const stored = await this.sessions.get(key.count, key.id);
        if (stored) session = { id: stored.sessionId, resumeUrl: stored.resumeUrl, seq: stored.seq };
      } catch (error) {
        // Without the shared session the shard identifies: nothing is lost that Discord would replay,
        // but the session's missed events are. Try again at the next round instead.
        this.#log.warn("shard {shard}: cannot read its shared session ({error}); taking it later", {
          shard: key.id,
          error: (error as Error).message,
        });
        return;
      }
    }
    if (!this.#ownership?.owned().some((k) => name(k) === name(key))) return;
    const n = name(key);
    if (session) {
      this.#resume.set(n, session);
      this.#current.set(n, session.id);
      this.#countOfSession.set(session.id, key.count);
      parts.journal.restoreSession(key.count, key.id, session);
    } else {
      this.#resume.delete(n);
      this.#current.delete(n);
    }
    this.#log.info("shard {shard}: taken{how}", {
      shard: key.id,
      how: session ? `, resuming at seq ${session.seq}` : " (no shared session: identifying)",
    });
    parts.pool.add(key);
    this.#shardsChanged();
    this.#republish();
  }

  /** Stops the shard, lets its events reach Redis, then (the caller) releases the lease. */
  async #handOff(key: ShardKey): Promise<void> {
    const parts = this.#parts;
    if (!parts) return;
    this.#log.info("shard {shard}: handing off (stop with 4000, deliver, release)", { shard: key.id });
    const stopping = parts.pool.remove(key);
    // Its unsent commands go back at once, for the next owner.
    this.#shardsChanged();
    await stopping;
    const last = parts.journal.lastAssignedId;
    const until = Date.now() + HAND_OFF_FLUSH_MS;
    while (parts.delivered() < last && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
    if (parts.delivered() < last) {
      this.#log.warn("shard {shard}: handed off before its last events reached Redis", { shard: key.id });
    }
    // Anything left of it in the journal is the next owner's to get from Discord.
    this.#fence?.fenceThrough(key.id, parts.journal.lastAssignedId, key.count);
    this.#current.delete(name(key));
    this.#resume.delete(name(key));
    this.#republish();
  }

  // ---- resharding: one plan for the bot, in Redis (src/cluster/reshard_coordinator.ts) ----

  /** What the resharder asks of the cluster: start the bot's reshard, report loaded shards, give it up. */
  coordinator(): ReshardCoordinator {
    return {
      start: (plan) =>
        this.#plans.start({
          from: plan.from,
          to: plan.count,
          trigger: plan.trigger,
          why: plan.why,
          at: Date.now(),
        }),
      loaded: (ids) => {
        const following = this.#following;
        if (!following) return;
        void this.#plans.loaded(following.epoch, ids).then((switched) => {
          if (switched) void this.#readPlan();
        }).catch((error) =>
          this.#log.warn("reshard: cannot report loaded shards: {error}", { error: error.message })
        );
      },
      giveUp: (why) => {
        const following = this.#following;
        if (!following) return;
        this.#endFollowing();
        void this.#plans.abort(following.epoch, why).catch((error) =>
          this.#log.warn("reshard: cannot give the plan up in Redis: {error}", { error: error.message })
        );
      },
    };
  }

  /** Follows the bot's reshard plans with `resharder` until `stop`. */
  followReshards(resharder: Resharder): void {
    this.#resharder = resharder;
    const poll = () => {
      if (this.#resharder === null) return;
      this.#reshardTimer = setTimeout(() => void this.#readPlan().finally(poll), RESHARD_POLL_MS);
    };
    poll();
  }

  /** The resharder switched to `count`: ownership, fencing and routing follow. */
  switched(count: number): void {
    this.shardCount = count;
    this.fencing.shardCount = count;
    // The old shards' leases are handed off (their events reach Redis first); the new ones stay pinned
    // where they overlap the old ones until the overlap is over, then the shares even out.
    this.#ownership?.setKeys(Array.from({ length: count }, (_, id) => ({ id, count })));
    clearTimeout(this.#settleTimer);
    this.#settleTimer = setTimeout(() => {
      if (this.#following === null) this.#ownership?.pin([]);
    }, RESHARD_SETTLE_MS);
    this.#following = null;
    this.#shardsChanged();
    this.#republish();
  }

  async #readPlan(): Promise<void> {
    const resharder = this.#resharder;
    if (!resharder || !this.#ownership) return;
    let plan: ReshardPlan | null;
    try {
      plan = await this.#plans.read();
    } catch {
      return; // Redis unreachable: the next read
    }
    if (plan === null) return;
    const following = this.#following;
    if (plan.state === "preparing" && plan.epoch !== this.#seenEpoch) {
      this.#seenEpoch = plan.epoch;
      if (plan.from !== this.shardCount) return;
      // New shard j takes its guilds from old shard j % from: it runs where that one runs.
      const old = new Set(this.owned().filter((k) => k.count === plan.from).map((k) => k.id));
      const ids = Array.from({ length: plan.to }, (_, j) => j).filter((j) => old.has(j % plan.from));
      this.#following = { epoch: plan.epoch, to: plan.to };
      this.#log.info("reshard {from} → {to} of the bot (by {node}): running new shard(s) {ids} here", {
        from: plan.from,
        to: plan.to,
        node: plan.node,
        ids: ids.join(", ") || "none",
      });
      resharder.follow({
        count: plan.to,
        ids,
        trigger: plan.trigger,
        why: plan.why,
        startedAt: plan.startedAt,
        maxConcurrency: this.#maxConcurrency,
      });
      clearTimeout(this.#settleTimer);
      this.#ownership.pin(ids.map((id) => ({ id, count: plan.to })));
      return;
    }
    if (plan.state === "switched" && following?.epoch === plan.epoch) {
      this.#seenEpoch = plan.epoch;
      resharder.switchNow(plan.to, plan.switchedBy === this.node);
      return;
    }
    if (plan.state === "switched" && plan.to !== this.shardCount && plan.from === this.shardCount) {
      // Joined while the bot resharded (nothing of it ran here): take the new count as it is.
      this.#seenEpoch = plan.epoch;
      resharder.adopt(plan.to);
      return;
    }
    if (plan.state === "aborted" && following?.epoch === plan.epoch) {
      this.#seenEpoch = plan.epoch;
      resharder.abortNow(plan.to, plan.why);
      this.#endFollowing();
    }
  }

  /** The reshard followed here is over without a switch: its new shards are let go. */
  #endFollowing(): void {
    this.#following = null;
    this.#ownership?.pin([]);
  }

  /** Publishes this member's status report for `gatehouse shards` until `stop`. */
  publish(view: GatewayView): void {
    this.#publisher = new StatusPublisher({
      client: this.#leases,
      prefix: this.#config.redis.prefix,
      node: this.node,
      view,
      logger: this.#log,
    });
    this.#publisher.start();
  }

  /** Called whenever a shard is added to or removed from the pool here. */
  onShardsChanged(listener: () => void): void {
    this.#shardsChanged = listener;
  }

  /** A shard came, went or changed its session: the report goes out soon, not at the next period. */
  #republish(): void {
    if (this.#publisher === null || this.#republishing) return;
    this.#republishing = true;
    setTimeout(() => {
      this.#republishing = false;
      void this.#publisher?.publish();
    }, REPUBLISH_MS);
  }

  /** Releases every lease and leaves (after the pool stopped and delivery finished). */
  async stop(): Promise<void> {
    clearTimeout(this.#reshardTimer);
    clearTimeout(this.#settleTimer);
    this.#resharder = null;
    await this.#publisher?.stop();
    await this.#ownership?.stop();
    this.identify.close();
    await Promise.allSettled([this.#redis.quit(), this.#leases.quit()]);
  }
}

function name(key: ShardKey): string {
  return `${key.count}:${key.id}`;
}
