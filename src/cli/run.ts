/**
 * `gatehouse run`: connect every planned shard and deliver each dispatch (NDJSON on stdout, brokers) until
 * SIGINT/SIGTERM/SIGHUP, or until Discord closes with a code that forbids reconnecting.
 *
 * This file is wiring: it builds the parts (docs/architecture.md) in order — journal, delivery, retention,
 * pool, commands, control — and the lifecycle stops them in reverse, each within a bound.
 */
import { type GatehouseConfig, registerSecrets } from "../config/load.ts";
import { transformWarnings } from "../config/keys_transforms.ts";
import { fetchGatewayBot, GatewayInfoError, TokenRejectedError } from "../gateway/gateway_info.ts";
import type { GatewayBotInfo } from "../gateway/protocol.ts";
import { openJournal, openStore } from "../journal/from_config.ts";
import { Retention } from "../journal/retention.ts";
import { type Store, StoreError } from "../journal/store.ts";
import { Dispatcher } from "../pool/dispatcher.ts";
import { createIdentifyQueue } from "../pool/identify.ts";
import { PlanError, planShards, type ShardPlan } from "../pool/plan.ts";
import { Pool, type PoolStopResult } from "../pool/pool.ts";
import { Resharder } from "../pool/resharder.ts";
import { CommandRouter } from "../commands/router.ts";
import { startCommandSources } from "../commands/sources.ts";
import { startControl } from "../control/start.ts";
import { GatewayStats } from "../control/stats.ts";
import { gatewayView } from "../control/view.ts";
import { startDelivery } from "../sinks/delivery.ts";
import { createSinks } from "../sinks/from_config.ts";
import { Backpressure } from "../util/backpressure.ts";
import { Lifecycle } from "../util/lifecycle.ts";
import { captureConsole, logger, setupLogging } from "../util/log.ts";
import { loadRunConfig, type RunFlags } from "./config.ts";
import type { ClusterRun } from "./cluster.ts";
import { ExitError } from "./errors.ts";
import { closeExitCode } from "./exit_codes.ts";
import { fatalMessage } from "./fatal.ts";
import { stopSignal } from "./stop_signal.ts";

/** How long closing the shards may take. */
const SHUTDOWN_TIMEOUT_MS = 10_000;
/** How long a stop waits for the sinks to take what is committed (the rest stays in the journal). */
const SINK_SETTLE_MS = 5_000;
/** How long closing one sink's connection may take. */
const SINK_CLOSE_MS = 2_000;
/** A stop never takes longer than this, whatever hangs. */
const STOP_LIMIT_MS = 40_000;

export async function run(flags: RunFlags): Promise<number> {
  const { config, warnings } = loadRunConfig(flags);
  registerSecrets(config);
  setupLogging({ level: config.log.level });
  captureConsole();
  const log = logger("run");
  for (const warning of [...warnings, ...transformWarnings(config)]) log.warn(warning);

  // A promise some library rejects without a handler (seen with ioredis' cluster pipelines) must not end
  // the process: log it; the component concerned retries on its own.
  globalThis.addEventListener("unhandledrejection", (event) => {
    event.preventDefault();
    const reason = event.reason as Error | undefined;
    log.error("unhandled failure (the gateway keeps running): {error}", {
      error: reason?.stack ?? String(reason),
    });
  });

  // Listen for signals from the start, so a stop during start-up is clean too.
  const stop = stopSignal();
  try {
    return await runGateway(config, stop.signal);
  } finally {
    stop.dispose();
  }
}

async function runGateway(config: GatehouseConfig, stopped: Promise<string>): Promise<number> {
  const log = logger("run");
  const api = { scheme: config.api.scheme, host: config.api.host, version: config.api.version };
  const fetchInfo = () => fetchGatewayBot({ ...api, token: config.token, logger: log });

  // The store first: a store that cannot be used stops us before we touch Discord.
  let store: Store;
  try {
    store = openStore(config);
  } catch (error) {
    if (error instanceof StoreError) throw new ExitError(6, error.message);
    throw error;
  }
  try {
    const info = await Promise.race([fetchInfo(), stopped.then(() => null)]).catch((error) => {
      if (error instanceof TokenRejectedError) throw new ExitError(3, error.message);
      if (error instanceof GatewayInfoError) throw new ExitError(1, error.message);
      throw error;
    });
    if (info === null) return 0;
    return await runParts(config, store, info, fetchInfo, stopped);
  } finally {
    store.release();
    store.close();
  }
}

/** Which shards run here and which stored sessions they resume; a plan that cannot be is exit 2. */
function plan(config: GatehouseConfig, store: Store, info: GatewayBotInfo): ShardPlan {
  const log = logger("run");
  const limit = info.session_start_limit;
  let plan: ShardPlan;
  try {
    plan = planShards({
      configuredCount: config.shards.count,
      configuredIds: config.shards.ids,
      recommendedCount: info.shards,
      gatewayUrl: info.url,
      sessionStartsRemaining: limit.remaining,
      identifyReserve: config.gateway.identifyReserve,
      stored: store.sessions.load(),
    });
  } catch (error) {
    if (error instanceof PlanError) throw new ExitError(2, `configuration error:\n${error.message}`);
    throw error;
  }
  log.info(
    "Discord recommends {recommended} shard(s); running {count} of {total}; max_concurrency {mc}; " +
      "{remaining} of {limit} session starts left",
    {
      recommended: info.shards,
      count: plan.ids.length,
      total: plan.count,
      mc: limit.max_concurrency,
      remaining: limit.remaining,
      limit: limit.total,
    },
  );
  for (const warning of plan.warnings) log.warn(warning);
  if (plan.resume.size > 0) {
    log.info("resuming {n} stored session(s) from {path}", { n: plan.resume.size, path: store.path });
  }
  return plan;
}

async function runParts(
  config: GatehouseConfig,
  store: Store,
  info: GatewayBotInfo,
  fetchInfo: () => Promise<GatewayBotInfo>,
  stopped: Promise<string>,
): Promise<number> {
  const log = logger("run");
  // Cluster mode: the members share the shards through Redis; nothing is planned here.
  // Loaded only then: its Redis client library alone is ~10 MB of RSS.
  const cluster: ClusterRun | null = config.cluster.mode === "redis"
    ? await (await import("./cluster.ts")).ClusterRun.join(config, info, fetchInfo)
    : null;
  const { count: startCount, ids: shardIds, resume: sessions, stale } = cluster
    ? { count: cluster.shardCount, ids: [], resume: new Map(), stale: [] }
    : plan(config, store, info);
  // The count that delivers: a reshard's switch changes it.
  let shardCount = startCount;
  const startedAt = Date.now();
  const stats = new GatewayStats();
  const life = new Lifecycle();
  // Stopped last: leases are released once the shards are closed and their events delivered.
  if (cluster) life.add("cluster", { stop: () => cluster.stop() });
  const ended = endings();
  // Shards stop reading while the store or a sink (without a journal to fall back on) cannot keep up.
  const backpressure = new Backpressure();

  let retention: Retention | null = null;
  const journal = openJournal(config, store, {
    backpressure,
    onFatal: (error) => ended.store(error.message),
    // Retention prunes what it may; a write waiting out its backoff then goes at once.
    onFull: () =>
      void retention?.run().then((pruned) =>
        pruned.pruned + pruned.prunedUndelivered > 0 && journal.retryNow()
      ),
  });
  for (const [shard, session] of sessions) journal.restoreSession(shardCount, shard, session);
  // A shard that starts a new session here replaces the one it had under another count.
  for (const { shard, storedCount } of stale) journal.sessionLost(storedCount, shard);
  // Held in memory because the store refused them (disk full): never stored, never acknowledged.
  let unstored = { events: 0, failure: null as string | null };
  life.add("journal", {
    stop: async () => {
      await journal.close();
      unstored = { events: journal.pendingEvents, failure: journal.lastFailure ?? null };
    },
  });

  const sinks = await createSinks(config, {
    producer: store.producer,
    onOutputClosed: (e) => ended.output(e.message),
    cluster: cluster?.fencing,
  });
  const delivery = startDelivery({
    journal,
    sinks,
    keepEvents: config.store.journal,
    store,
    backpressure,
    logger: logger("sink"),
    onDelivered: (sink, batch) => stats.deliveredTo(sink, batch),
    transforms: config.transforms,
  });
  // Everything received is committed and delivered before the store closes: a clean stop repeats nothing.
  // Sinks get a moment to take what is committed (a reader that does not read, a broker that does not
  // answer, keeps it in the journal for the next start).
  life.add("delivery", {
    stop: async () => {
      const { target } = await delivery.finish(SINK_SETTLE_MS);
      await delivery.stop(target, SINK_CLOSE_MS);
    },
  }, { boundMs: SINK_SETTLE_MS + SINK_CLOSE_MS + 1_000 });

  if (config.store.journal) {
    retention = new Retention({
      store,
      logger: logger("retention"),
      maxAgeMs: config.store.maxAgeMs,
      maxSizeBytes: config.store.maxSizeBytes,
      hardMaxSizeBytes: config.store.hardMaxSizeBytes,
      // Only what every sink has taken counts as delivered.
      delivered: () => delivery.delivered(),
    });
    retention.start();
    life.add("retention", retention);
  }

  const identify = createIdentifyQueue({
    config,
    info,
    fetchInfo,
    lastIdentified: store.lastIdentifies(),
    history: {
      since: (shard, time) => store.identifiesSince(time, shard),
      record: (shard) => journal.recordIdentify(shard),
    },
    shared: cluster?.identify,
  });
  const dispatcher = new Dispatcher({ events: config.events, journal, observer: stats });
  // Resharding: the new set's events are held by it until the switch. The pool is given to it below.
  let router: CommandRouter | null = null;
  const resharder: Resharder = new Resharder({
    count: shardCount,
    pool: {
      add: (key): boolean => pool.add(key),
      remove: (key, code): Promise<unknown> => pool.remove(key, code),
    },
    sink: dispatcher,
    // The new set's sessions reach the journal at the switch; in cluster mode the shared ones too.
    journal: {
      sessionStarted: (count, id, session) => {
        journal.sessionStarted(count, id, session);
        cluster?.onSession({ id, count }, session);
      },
      sessionLost: (count, id) => {
        journal.sessionLost(count, id);
        if (pool.get(id, count)) cluster?.onSession({ id, count }, null);
      },
    },
    fetchInfo,
    reserve: config.gateway.identifyReserve,
    threshold: config.resharding.threshold,
    intervalMs: config.resharding.intervalMs,
    timeoutMs: config.resharding.timeoutMs,
    maxHeldBytes: config.resharding.maxHeldBytes,
    unavailable: reshardUnavailable(cluster ? startCount : shardIds.length, startCount),
    coordinator: cluster?.coordinator(),
    logger: logger("reshard"),
    onSwitched: (count) => {
      shardCount = count;
      if (router) router.shardCount = count;
      cluster?.switched(count);
      if (config.shards.count !== null && config.shards.count !== count) {
        log.warn(
          "now running {count} shards, but [shards] count says {configured}: set it to {count} (or leave it " +
            "out), or the next start runs {configured} again and reshards",
          { count, configured: config.shards.count },
        );
      }
    },
    onUnanswered4011: (failure) => pool.fail(failure),
  });
  const pool: Pool = new Pool({
    shard: {
      token: config.token,
      intents: config.intents,
      presence: config.presence,
      largeThreshold: config.gateway.largeThreshold,
      compression: config.gateway.compression,
      apiVersion: config.api.version,
      gatewayUrl: info.url,
      identifyQueue: identify.queue,
      sink: dispatcher,
      logger: logger("shard"),
      observer: stats,
    },
    logger: logger("shard"),
    sinkFor: (key) => resharder.sinkFor(key.count),
    onFatal: (failure) => resharder.onFatal(failure),
    onSession: (key, session) => {
      if (!resharder.onSession(key, session)) return;
      if (session) journal.sessionStarted(key.count, key.id, session);
      else journal.sessionLost(key.count, key.id);
      cluster?.onSession(key, session);
    },
    sessionFor: (key) =>
      cluster ? cluster.sessionFor(key) : (key.count === shardCount ? sessions.get(key.id) ?? null : null),
  });
  pool.pauseOn(backpressure);
  pool.start(shardIds.map((id) => ({ id, count: shardCount })));
  // The member's share, taken as its leases are (and followed while members come and go).
  if (cluster) await cluster.start({ pool, journal, sinks, delivered: () => delivery.delivered() });
  let closing: PoolStopResult = { clean: 0, connected: 0, total: 0 };
  life.add("pool", { stop: async () => void (closing = await pool.stop(4000, SHUTDOWN_TIMEOUT_MS)) }, {
    boundMs: SHUTDOWN_TIMEOUT_MS + 1_000,
  });
  // Before the pool: a stop during a reshard keeps the running set's sessions (the new set's are not stored).
  resharder.start();
  cluster?.followReshards(resharder);
  life.add("resharding", { stop: () => resharder.stop() });

  // Commands from the bot: stdin when it is a pipe, and the Redis and RabbitMQ inboxes when those are sinks.
  router = new CommandRouter(pool, shardCount);
  const commands = await startCommandSources(config, router, {
    counter: stats,
    events: dispatcher,
  });
  life.add("commands", commands);

  // Proxy mode: bots connect to gatehouse as if it were Discord. Loaded only when configured.
  const proxy = config.proxy.listen
    ? await (await import("../proxy/start.ts")).startProxy(config, {
      journal,
      store,
      pool,
      count: () => shardCount,
      logger: logger("proxy"),
    })
    : null;
  if (proxy) life.add("proxy", proxy);
  // In cluster mode the member's shards change while it runs: the command sources follow at once.
  cluster?.onShardsChanged(() => void commands.shardsChanged());

  // The control listener (metrics, health, status, actions), the control file and the start-up progress.
  const view = gatewayView({
    stats,
    startedAt,
    shardCount,
    currentCount: () => shardCount,
    resharding: {
      status: () => resharder.status(),
      request: (count) => resharder.request({ kind: "requested", count }),
    },
    pool,
    runners: delivery.runners,
    journalEnabled: config.store.journal,
    journal,
    storeSize: () => store.usedBytes(),
    identify: identify.local,
    command: (line) => commands.take(line, "control"),
    node: cluster?.node,
    proxy: proxy?.status,
  });
  cluster?.publish(view);
  life.add(
    "control",
    await startControl(config, store.path, view, {
      maxConcurrency: info.session_start_limit.max_concurrency,
    }),
  );

  const outcome = await Promise.race([
    stopped.then((signal) => ({ kind: "signal" as const, detail: signal })),
    ended.outputGone.then((reason) => ({ kind: "output" as const, detail: reason })),
    ended.storeBroken.then((reason) => ({ kind: "store" as const, detail: reason })),
    pool.failed.then((failure) => ({ kind: "fatal" as const, failure })),
  ]);

  if (outcome.kind === "fatal") {
    log.error("{message}", { message: fatalMessage(outcome.failure, config, shardCount) });
  } else if (outcome.kind === "output") {
    log.warn("stopping: {reason}", { reason: outcome.detail });
  } else if (outcome.kind === "store") {
    log.error("stopping: the store cannot be written: {reason}", { reason: outcome.detail });
  } else {
    log.info("stopping on {signal}: closing shards with 4000 so their sessions stay resumable", {
      signal: outcome.detail,
    });
  }
  // Every part's stop is bounded; this is the bound of them all (a second signal ends it at once).
  const forced = setTimeout(() => {
    log.error("stopping took longer than {s} s: exiting now (sessions stay resumable for a few minutes)", {
      s: STOP_LIMIT_MS / 1000,
    });
    Deno.exit(1);
  }, STOP_LIMIT_MS);
  for (const part of await life.stop()) {
    if (part.outcome === "stopped") continue;
    log.warn("stopping {part}: {outcome} after {ms} ms{error}", {
      part: part.name,
      outcome: part.outcome,
      ms: part.ms,
      error: part.error ? ` (${part.error})` : "",
    });
  }
  const delivered = delivery.runners.map((r) => `${r.sink.name} ${r.delivered}`).join(", ");
  const notConnected = closing.total - closing.connected;
  log.info(
    "stopped: {clean} of {connected} connected shard(s) closed cleanly{others}; delivered this run: {delivered}",
    {
      clean: closing.clean,
      connected: closing.connected,
      others: notConnected > 0 ? ` (${notConnected} had no connection)` : "",
      delivered,
    },
  );
  clearTimeout(forced);
  if (unstored.events > 0) {
    // A fatal close, if any, was logged; its exit code stays the one that says why.
    log.error(
      "{events} event(s) received from Discord were never stored ({failure}); they were not acknowledged: " +
        "the sessions' stored sequence numbers are before them, so a start within a few minutes resumes and " +
        "Discord sends them again",
      { events: unstored.events, failure: unstored.failure ?? "the store did not answer in time" },
    );
    if (outcome.kind !== "fatal") throw new ExitError(6, "", { logged: true });
  }
  if (outcome.kind === "fatal") {
    throw new ExitError(closeExitCode(outcome.failure.code), "", { logged: true });
  }
  if (outcome.kind === "store") throw new ExitError(6, "", { logged: true });
  return 0;
}

/** Why this process cannot reshard on its own, or null when it can. */
function reshardUnavailable(ids: number, count: number): string | null {
  if (ids < count) {
    return `this process runs ${ids} of the ${count} shards ([shards] ids): a reshard needs every shard in one process`;
  }
  return null;
}

/** The ways a run ends besides a signal or a fatal close: stdout gone, the store broken. */
function endings() {
  let output: (reason: string) => void = () => {};
  let store: (reason: string) => void = () => {};
  const outputGone = new Promise<string>((resolve) => (output = resolve));
  const storeBroken = new Promise<string>((resolve) => (store = resolve));
  return { outputGone, storeBroken, output: (r: string) => output(r), store: (r: string) => store(r) };
}
