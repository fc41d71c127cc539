/**
 * `gatehouse run`: connect every configured shard and print each dispatch as one NDJSON line on
 * stdout until SIGINT/SIGTERM, or until Discord closes with a code that forbids reconnecting.
 */
import { ConfigError, type GatehouseConfig, loadConfig, registerSecrets } from "../config/load.ts";
import { fetchGatewayBot, GatewayInfoError, TokenRejectedError } from "../gateway/gateway_info.ts";
import { IdentifyGuard, LocalIdentifyQueue, type SessionStartLimit } from "../gateway/identify_queue.ts";
import { type GatewayBotInfo, intentNames, PRIVILEGED_INTENTS } from "../gateway/protocol.ts";
import { isGatewayUrl, type ResumableSession } from "../gateway/shard.ts";
import { Journal } from "../journal/journal.ts";
import { HybridWriter, InlineWriter, WorkerWriter } from "../journal/write.ts";
import { Retention } from "../journal/retention.ts";
import { hardCapPages, Store, StoreError } from "../journal/store.ts";
import { Dispatcher } from "../pool/dispatcher.ts";
import { Pool, type PoolFailure } from "../pool/pool.ts";
import { AmqpCommandSource } from "../commands/amqp_source.ts";
import { RedisCommandSource } from "../commands/redis_source.ts";
import { RejectionLog } from "../commands/rejections.ts";
import { CommandRouter, readLines, type Refusal } from "../commands/router.ts";
import { AmqpSink } from "../sinks/amqp.ts";
import { HttpSink } from "../sinks/http.ts";
import { RedisSink } from "../sinks/redis.ts";
import { finishDelivery, SinkRunner } from "../sinks/runner.ts";
import type { Sink } from "../sinks/sink.ts";
import { StdoutSink } from "../sinks/stdout.ts";
import { systemClock } from "../util/clock.ts";
import { captureConsole, logger, setupLogging } from "../util/log.ts";
import { ExitError } from "./errors.ts";
import { closeExitCode } from "./exit_codes.ts";
import { ControlServer, listenerUrl } from "../control/server.ts";
import { GatewayStats } from "../control/stats.ts";
import type { GatewayView } from "../control/status.ts";
import { StartupProgress } from "../control/progress.ts";

/** Raw option values from commander; see `registerRun` in main.ts. */
export interface RunFlags {
  config?: string;
  events?: string;
  intents?: string;
  shardCount?: string;
  shardIds?: string;
  apiVersion?: string;
  apiScheme?: string;
  apiHost?: string;
  compression?: string;
  largeThreshold?: string;
  store?: string;
  journal?: string;
  controlAddress?: string;
  logLevel?: string;
}

/** How long shutdown may take before the process exits anyway. */
const SHUTDOWN_TIMEOUT_MS = 10_000;
/** How long a stop waits for the sinks to take what is committed (the rest stays in the journal). */
const SINK_SETTLE_MS = 5_000;
/** How long closing one sink's connection may take. */
const SINK_CLOSE_MS = 2_000;
/** A stop never takes longer than this, whatever hangs. */
const STOP_LIMIT_MS = 40_000;

export function loadRunConfig(
  flags: RunFlags,
  options: { requireToken?: boolean } = {},
): { config: GatehouseConfig; warnings: string[] } {
  const { config: configPath, ...rest } = flags;
  try {
    return loadConfig({
      configPath,
      env: (name) => Deno.env.get(name),
      flags: rest,
      requireToken: options.requireToken,
    });
  } catch (error) {
    if (error instanceof ConfigError) throw new ExitError(2, `configuration error:\n${error.message}`);
    throw error;
  }
}

export async function run(flags: RunFlags): Promise<number> {
  const { config, warnings } = loadRunConfig(flags);
  registerSecrets(config);
  setupLogging({ level: config.log.level });
  captureConsole();
  const log = logger("run");
  for (const warning of warnings) log.warn(warning);

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
  const store = openStore(config);
  try {
    return await runWithStore(config, store, fetchInfo, stopped);
  } finally {
    store.release();
    store.close();
  }
}

function openStore(config: GatehouseConfig): Store {
  try {
    const store = Store.open(config.store.path);
    try {
      const pages = hardCapPages(config.store.hardMaxSizeBytes, store.pageSize());
      if (pages !== undefined) store.setMaxPageCount(pages);
      store.claim();
    } catch (error) {
      store.close();
      throw error;
    }
    return store;
  } catch (error) {
    if (error instanceof StoreError) throw new ExitError(6, error.message);
    throw error;
  }
}

async function runWithStore(
  config: GatehouseConfig,
  store: Store,
  fetchInfo: () => Promise<GatewayBotInfo>,
  stopped: Promise<string>,
): Promise<number> {
  const log = logger("run");
  const info = await Promise.race([fetchInfo(), stopped.then(() => null)]).catch((error) => {
    if (error instanceof TokenRejectedError) throw new ExitError(3, error.message);
    if (error instanceof GatewayInfoError) throw new ExitError(1, error.message);
    throw error;
  });
  if (info === null) return 0;

  const limit = info.session_start_limit;
  const shardCount = config.shards.count ?? info.shards;
  const shardIds = config.shards.ids ?? Array.from({ length: shardCount }, (_, i) => i);
  const outside = shardIds.filter((id) => id >= shardCount);
  if (outside.length > 0) {
    throw new ExitError(
      2,
      `configuration error:\nshards.ids contains ${
        outside.join(", ")
      }, but the shard count is ${shardCount} ` +
        `(ids must be below it${
          config.shards.count === null ? "; the count is Discord's recommendation" : ""
        })`,
    );
  }
  log.info(
    "Discord recommends {recommended} shard(s); running {count} of {total}; max_concurrency {mc}; " +
      "{remaining} of {limit} session starts left",
    {
      recommended: info.shards,
      count: shardIds.length,
      total: shardCount,
      mc: limit.max_concurrency,
      remaining: limit.remaining,
      limit: limit.total,
    },
  );

  // Sessions stored by the previous run are resumed (no IDENTIFY, no session start used).
  const sessions = new Map<number, ResumableSession>();
  for (const stored of store.loadSessions()) {
    if (!shardIds.includes(stored.shard)) continue;
    if (stored.shardCount !== shardCount) {
      log.warn("shard {shard}: stored session was for {old} shards, now {count}: starting a new session", {
        shard: stored.shard,
        old: stored.shardCount,
        count: shardCount,
      });
      continue;
    }
    // A resume URL the store holds is not trusted either (an older version stored whatever READY said).
    const resumeUrl = isGatewayUrl(stored.resumeUrl) ? stored.resumeUrl : info.url;
    sessions.set(stored.shard, { id: stored.sessionId, resumeUrl, seq: stored.seq });
  }
  if (sessions.size > 0) {
    log.info("resuming {n} stored session(s) from {path}", { n: sessions.size, path: store.path });
  }
  const identifying = shardIds.length - sessions.size;
  if (limit.remaining - config.gateway.identifyReserve < identifying) {
    log.warn(
      "Only {remaining} session starts left (reserve {reserve}) for {count} shard(s) that must IDENTIFY: " +
        "some will wait for the limit to reset",
      { remaining: limit.remaining, reserve: config.gateway.identifyReserve, count: identifying },
    );
  }

  let pool: Pool | null = null;
  const startedAt = Date.now();
  const stats = new GatewayStats();
  const runners: SinkRunner[] = [];
  let retention: Retention | null = null;
  let storeFailure: (reason: string) => void = () => {};
  const storeBroken = new Promise<string>((resolve) => (storeFailure = resolve));
  // Shards stop reading while the store or a sink (without a journal to fall back on) cannot keep up.
  const holding = new Set<string>();
  const hold = (who: string, paused: boolean) => {
    if (paused) holding.add(who);
    else holding.delete(who);
    pool?.setPaused(holding.size > 0);
  };
  const maxPageCount = hardCapPages(config.store.hardMaxSizeBytes, store.pageSize());
  const journal = new Journal({
    store,
    keepEvents: config.store.journal,
    commitIntervalMs: config.store.commitIntervalMs,
    // SQLite works on its own thread while this one reads from Discord.
    // Small commits on this thread; a flood's large batches on a writer thread, beside the shards.
    writer: (events) =>
      new HybridWriter(
        new InlineWriter(store, events),
        new WorkerWriter(store.path, { maxPageCount }, events),
      ),
    logger: logger("journal"),
    onCommit: (batch) => {
      for (const runner of runners) runner.offer(batch);
    },
    onBackpressure: (paused) => hold("journal", paused),
    onFatal: (error) => storeFailure(error.message),
    // Retention prunes what it may; a write waiting out its backoff then goes at once.
    onFull: () =>
      void retention?.run().then((pruned) =>
        pruned.pruned + pruned.prunedUndelivered > 0 && journal.retryNow()
      ),
  });
  for (const [shard, session] of sessions) {
    journal.restoreSession(shard, { ...session, shardCount });
  }

  let outputClosed: (reason: string) => void = () => {};
  const outputGone = new Promise<string>((resolve) => (outputClosed = resolve));
  const stdout = new StdoutSink({ onClosed: (error) => outputClosed(error.message) });
  const redisCa = config.redis.tlsCaPem;
  const sinks: Sink[] = config.broker.types.map((type) => {
    if (type === "stdout") return stdout;
    if (type === "redis") {
      return new RedisSink({
        url: config.redis.url.reveal(),
        prefix: config.redis.prefix,
        layout: config.redis.streams,
        maxLen: config.redis.maxLen,
        group: config.broker.group,
        logger: logger("redis"),
        tlsCa: redisCa,
      });
    }
    if (type === "http") {
      return new HttpSink({
        url: config.http.url!.reveal(),
        authorization: config.http.authorization,
        producer: store.producer,
      });
    }
    return new AmqpSink({
      url: config.amqp.url.reveal(),
      exchange: config.amqp.exchange,
      logger: logger("amqp"),
    });
  });
  for (const sink of sinks) {
    const runner = new SinkRunner({
      sink,
      journal,
      store: config.store.journal ? store : null,
      logger: logger("sink"),
      onBackpressure: (paused) => hold(`sink ${sink.name}`, paused),
      onDelivered: (batch) => stats.deliveredTo(sink.name, batch),
    });
    runners.push(runner);
    runner.start();
  }
  log.info("delivering events to {sinks}", { sinks: sinks.map((s) => s.name).join(", ") });
  retention = config.store.journal
    ? new Retention({
      store,
      logger: logger("retention"),
      maxAgeMs: config.store.maxAgeMs,
      maxSizeBytes: config.store.maxSizeBytes,
      hardMaxSizeBytes: config.store.hardMaxSizeBytes,
      // Only what every sink has taken counts as delivered.
      delivered: () => Math.min(...runners.map((r) => r.cursor)),
    })
    : null;
  retention?.start();

  const toLimit = (l: typeof limit): SessionStartLimit => ({
    total: l.total,
    remaining: l.remaining,
    resetAfter: l.reset_after,
  });
  const localQueue = new LocalIdentifyQueue({
    maxConcurrency: limit.max_concurrency,
    clock: systemClock,
    limit: toLimit(limit),
    reserve: config.gateway.identifyReserve,
    lastIdentified: store.lastIdentifies(),
    refresh: async () => toLimit((await fetchInfo()).session_start_limit),
    logger: logger("identify"),
  });
  const identifyQueue = new IdentifyGuard({
    inner: localQueue,
    history: {
      since: (shard, time) => store.identifiesSince(time, shard),
      record: (shard) => journal.recordIdentify(shard),
    },
    clock: systemClock,
    logger: logger("identify"),
  });

  const dispatcher = new Dispatcher({ events: config.events, journal, stats });
  pool = new Pool({
    shardIds,
    shardCount,
    token: config.token,
    intents: config.intents,
    presence: config.presence,
    largeThreshold: config.gateway.largeThreshold,
    compression: config.gateway.compression,
    apiVersion: config.api.version,
    gatewayUrl: info.url,
    identifyQueue,
    sink: dispatcher,
    logger: logger("shard"),
    sessions,
    observer: stats,
    onSession: (shard, session) => {
      if (session) journal.sessionStarted(shard, { ...session, shardCount });
      else journal.sessionLost(shard);
    },
  });
  pool.start();

  // Commands from the bot on stdin, when it is a pipe: one NDJSON command per line.
  const router = new CommandRouter(pool.shards, shardCount);
  const commandLog = logger("commands");
  const rejections = new RejectionLog({ logger: commandLog });
  /** Counts a command; a refused one is logged (rate-limited) and reported as an event. */
  const reportCommand = (source: string) => (line: string, refusal: Refusal | null): void => {
    stats.command(source, refusal === null);
    if (refusal === null) return;
    rejections.rejected(refusal.reason, source);
    const shard = refusal.shard !== null && router.runs(refusal.shard)
      ? refusal.shard
      : Math.min(...shardIds);
    dispatcher.internal(shard, "GATEHOUSE_COMMAND_REJECTED", {
      reason: refusal.reason,
      command: line.length > 200 ? `${line.slice(0, 200)}…` : line,
    });
  };
  /** Routes one command to this process's shards; the reason when it is refused. */
  const takeCommand = (line: string, source: string): string | null => {
    const result = router.handle(line);
    reportCommand(source)(line, result.ok ? null : result);
    return result.ok ? null : result.reason;
  };
  if (!Deno.stdin.isTerminal()) {
    readLines(Deno.stdin.readable, {
      onLine: (line) => void takeCommand(line, "stdin"),
      onTooLong: (bytes, head) =>
        reportCommand("stdin")(head, { reason: `line of ${bytes} bytes is longer than 64 KB`, shard: null }),
    }).catch((error) => {
      commandLog.warn("stopped reading commands from stdin: {error}", { error: (error as Error).message });
    });
  }
  // With Redis as a sink, commands also come from the {prefix}:commands stream (consumer group), passed
  // on to the shards' streams, which the processes running them read.
  const redisCommands = config.broker.types.includes("redis")
    ? new RedisCommandSource({
      url: config.redis.url.reveal(),
      stream: `${config.redis.prefix}:commands`,
      group: config.broker.group,
      router,
      report: reportCommand("redis"),
      logger: commandLog,
      tlsCa: redisCa,
      claimIdleMs: config.redis.commandClaimIdleMs,
    })
    : null;
  redisCommands?.start();
  // With RabbitMQ as a sink, commands also come from the durable queue {exchange}.commands, passed on
  // to the shards' queues {exchange}.commands.{shard}.
  const amqpCommands = config.broker.types.includes("amqp")
    ? new AmqpCommandSource({
      url: config.amqp.url.reveal(),
      queue: `${config.amqp.exchange}.commands`,
      router,
      report: reportCommand("amqp"),
      logger: commandLog,
    })
    : null;
  amqpCommands?.start();

  // The control listener: metrics, health, status, actions.
  const livePool = pool;
  const view: GatewayView = {
    stats,
    startedAt,
    shardCount,
    now: () => Date.now(),
    shards: () => livePool.status(),
    sinks: () =>
      runners.map((r) => ({
        name: r.sink.name,
        cursor: r.cursor,
        errors: r.errors,
        duplicates: (r.sink as { duplicates?: number }).duplicates,
      })),
    journal: () => ({
      enabled: config.store.journal,
      lastId: journal.lastAssignedId,
      sizeBytes: safeSize(store),
      pendingEvents: journal.pendingEvents,
      commits: journal.commits,
      failedCommits: journal.failedCommits,
    }),
    identify: () => ({ remaining: localQueue.remaining, ...localQueue.budget }),
    reconnect: (id) => livePool.shards.find((s) => s.id === id)?.reconnect() ?? false,
    command: (line) => takeCommand(line, "control"),
  };
  const control = await startControl(config, store, view);
  const progress = new StartupProgress({
    view,
    maxConcurrency: limit.max_concurrency,
    logger: logger("startup"),
    terminal: Deno.stderr.isTerminal(),
  });
  progress.start();

  const outcome = await Promise.race([
    stopped.then((signal) => ({ kind: "signal" as const, detail: signal })),
    outputGone.then((reason) => ({ kind: "output" as const, detail: reason })),
    storeBroken.then((reason) => ({ kind: "store" as const, detail: reason })),
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
  // Every step below is bounded; this is the bound of them all (a second signal ends it at once).
  const forced = setTimeout(() => {
    log.error("stopping took longer than {s} s: exiting now (sessions stay resumable for a few minutes)", {
      s: STOP_LIMIT_MS / 1000,
    });
    Deno.exit(1);
  }, STOP_LIMIT_MS);
  retention?.stop();
  progress.stop();
  await control?.stop();
  await redisCommands?.stop();
  await amqpCommands?.stop();
  rejections.close();
  const closing = await pool.stop(4000, SHUTDOWN_TIMEOUT_MS);
  // Everything received is committed and delivered before the store closes: a clean stop repeats nothing.
  // Sinks get a moment to take what is committed (a reader that does not read, a broker that does not
  // answer, keeps it in the journal for the next start).
  const { target } = await finishDelivery(journal, runners, config.store.journal, SINK_SETTLE_MS);
  await journal.close();
  // Held in memory because the store refused them (disk full): never stored, never acknowledged.
  const unstored = journal.pendingEvents;
  const failure = journal.lastFailure;
  for (const runner of runners) {
    runner.close();
    const waiting = (config.store.journal ? journal.lastCommittedId : target) - runner.cursor;
    if (waiting <= 0) continue;
    if (config.store.journal) {
      log.info(
        "sink {sink}: {events} event(s) not delivered yet; they wait in the journal for the next start",
        { sink: runner.sink.name, events: waiting },
      );
    } else {
      log.warn(
        "sink {sink} did not take {events} event(s) before the stop, and without the journal they are kept " +
          "nowhere: the sessions' sequence numbers stay at the last checkpoint, so the next start resumes " +
          "there and Discord sends what followed it again (events the sink had not taken before that " +
          "checkpoint are lost)",
        { sink: runner.sink.name, events: waiting },
      );
    }
  }
  await Promise.all(sinks.map((sink) => bounded(sink.close?.(), SINK_CLOSE_MS)));
  const delivered = runners.map((r) => `${r.sink.name} ${r.delivered}`).join(", ");
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
  if (unstored > 0) {
    // A fatal close, if any, was logged; its exit code stays the one that says why.
    log.error(
      "{events} event(s) received from Discord were never stored ({failure}); they were not acknowledged: " +
        "the sessions' stored sequence numbers are before them, so a start within a few minutes resumes and " +
        "Discord sends them again",
      { events: unstored, failure: failure ?? "the store did not answer in time" },
    );
    if (outcome.kind !== "fatal") throw new ExitError(6, "", { logged: true });
  }
  if (outcome.kind === "fatal") {
    throw new ExitError(closeExitCode(outcome.failure.code), "", { logged: true });
  }
  if (outcome.kind === "store") throw new ExitError(6, "", { logged: true });
  return 0;
}

/** Waits for `promise` (its failure ignored) at most `ms`. */
async function bounded(promise: unknown, ms: number): Promise<void> {
  if (!(promise instanceof Promise)) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    promise.catch(() => {}),
    new Promise<void>((resolve) => (timer = setTimeout(resolve, ms))),
  ]);
  clearTimeout(timer);
}

/** The operator-facing explanation of a fatal close code. */
export function fatalMessage(failure: PoolFailure, config: GatehouseConfig, shardCount: number): string {
  const { code, shard } = failure;
  switch (code) {
    case 4004:
      return "Discord rejected the token (close 4004 on shard " + shard + "): check DISCORD_TOKEN";
    case 4013:
      return `Discord rejected the intents ${config.intents} (${intentNames(config.intents).join(", ")}) ` +
        "as an invalid bitfield (close 4013)";
    case 4014: {
      const privileged = intentNames(config.intents & PRIVILEGED_INTENTS);
      return `Discord refused the intents: ${privileged.join(", ") || "a privileged intent"} ` +
        "(close 4014, disallowed intents). Privileged intents must be enabled for the application in the " +
        "Discord developer portal (Bot → Privileged Gateway Intents), or removed from `intents`";
    }
    case 4010:
      return `Discord rejected the shard layout: shard [${shard}, ${shardCount}] is invalid (close 4010)`;
    case 4011:
      return `Discord requires more shards: shard ${shard} of ${shardCount} holds too many guilds ` +
        "(close 4011); raise [shards] count or leave it unset to use Discord's recommendation";
    case 4012:
      return `Discord rejected API version ${config.api.version} (close 4012)`;
    default:
      return `shard ${shard}: Discord closed with ${code} (${failure.reason}); not reconnecting`;
  }
}

/**
 * Resolves with the signal's name on SIGINT, SIGTERM or SIGHUP (SIGINT only on Windows). A second signal
 * while stopping ends the process at once, for an operator who will not wait.
 *
 * SIGHUP stops cleanly even under `nohup`: Deno installs its own SIGHUP handler at start, so the
 * ignored disposition nohup sets does not survive, and without a listener a hang-up would end the
 * process without closing the shards (reading /proc/self/status to tell would need --allow-all).
 */
function stopSignal(): { signal: Promise<string>; dispose: () => void } {
  const names: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM", "SIGHUP"];
  let resolve: (name: string) => void = () => {};
  let received: { name: string; at: number } | null = null;
  const signal = new Promise<string>((r) => (resolve = r));
  const handlers = names.map((name) => {
    const handler = () => {
      if (received !== null) {
        // A hang-up often comes twice (the shell passes it on, then the kernel sends it): only another
        // signal, or the same one a second later, is an operator who will not wait.
        if (name === received.name && Date.now() - received.at < 1000) return;
        logger("run").warn("{signal} while stopping on {first}: exiting now", {
          signal: name,
          first: received.name,
        });
        Deno.exit(1);
      }
      received = { name, at: Date.now() };
      resolve(name);
    };
    Deno.addSignalListener(name, handler);
    return [name, handler] as const;
  });
  return {
    signal,
    dispose: () => {
      for (const [name, handler] of handlers) Deno.removeSignalListener(name, handler);
    },
  };
}

/** Live bytes of the store, or 0 when it cannot be read just now. */
function safeSize(store: Store): number {
  try {
    return store.usedBytes();
  } catch {
    return 0;
  }
}

/**
 * Writes the control file without following links: a new file (O_EXCL, 0600) renamed over the old
 * name, so a link planted there is replaced, not written through.
 */
async function writeControlFile(path: string, text: string): Promise<void> {
  const temporary = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await Deno.writeTextFile(temporary, text, { createNew: true, mode: 0o600 });
  try {
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}

/** Where `gatehouse run` tells `gatehouse shards` its control address: next to the store. */
export function controlFilePath(storePath: string): string {
  return `${storePath}.control`;
}

/**
 * Starts the control listener (unless `[control] address = "off"`) and records its address next to the
 * store. A listener that cannot bind is logged and left out: the gateway itself keeps running.
 */
async function startControl(
  config: GatehouseConfig,
  store: Store,
  view: GatewayView,
): Promise<{ stop(): Promise<void> } | null> {
  const log = logger("control");
  const address = config.control.address;
  if (address === null) {
    log.info("control listener off (control.address = off)");
    return null;
  }
  const server = new ControlServer({
    address,
    token: config.control.token,
    metricsPath: config.control.metricsPath,
    view,
    logger: log,
  });
  let bound: { hostname: string; port: number };
  try {
    bound = server.start();
  } catch (error) {
    log.error(
      "control listener: cannot listen on {address}: {error}; running without /metrics, /healthz, /readyz and " +
        "/shards (set [control] address or GATEHOUSE_CONTROL_ADDRESS)",
      { address: `${address.hostname}:${address.port}`, error: (error as Error).message },
    );
    return null;
  }
  const url = listenerUrl(bound.hostname, bound.port);
  log.info("control listener on {url} ({metrics}, /healthz, /readyz, /shards; actions {actions})", {
    url,
    metrics: config.control.metricsPath,
    actions: config.control.token === null ? "disabled (no control.token)" : "enabled",
  });
  try {
    await writeControlFile(
      controlFilePath(store.path),
      `${JSON.stringify({ pid: Deno.pid, url, started_at: new Date(view.startedAt).toISOString() })}\n`,
    );
  } catch (error) {
    log.warn("cannot record the control address next to the store: {error}", {
      error: (error as Error).message,
    });
  }
  return {
    stop: async () => {
      await server.stop();
      await Deno.remove(controlFilePath(store.path)).catch(() => {});
    },
  };
}
