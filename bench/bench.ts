/**
 * `deno task bench`: throughput, CPU and memory of `gatehouse run` against the fake Discord.
 *
 * The fake runs in this process with precompressed zlib-stream frames (so it costs little CPU); the
 * gateway runs as a child process exactly like `deno task start`, stdout to /dev/null. Progress is read
 * from gatehouse's own heartbeats (every heartbeat carries the last sequence number it has handled),
 * CPU and memory from /proc/<pid>. The same scenarios run against two bare loops for reference: one
 * that only inflates, one that inflates, JSON.parses and writes each event as a line. Then a flood of
 * 4 shards into Redis Streams and into RabbitMQ (local servers; stdout not a sink): events/s into the
 * broker and how far behind the journal the sink is.
 *
 *   deno task bench                      # every scenario
 *   deno task bench --only flood1,idle   # some of them: flood1 flood16 paced500 paced2000 idle redis amqp
 *   deno task bench --json               # one JSON object at the end
 */
import { parseArgs } from "node:util";
import { AMQPClient } from "@cloudamqp/amqp-client";
import { Redis } from "ioredis";
import { FakeDiscord } from "../tests/fake_discord/server.ts";
import { RUN_FLAGS } from "../tests/helpers/gatehouse.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    only: { type: "string" },
    seconds: { type: "string", default: "10" },
    json: { type: "boolean", default: false },
    "idle-shards": { type: "string", default: "1000" },
    baseline: { type: "boolean", default: true },
    "no-baseline": { type: "boolean", default: false },
    /** Replaces the V8 flags of `deno task start` (to measure their effect). */
    "v8-flags": { type: "string" },
  },
});

const ROOT = new URL("../", import.meta.url);
const REDIS_URL = Deno.env.get("GATEHOUSE_BENCH_REDIS") ?? "redis://127.0.0.1:6379";
const AMQP_URL = Deno.env.get("GATEHOUSE_BENCH_AMQP") ?? "amqp://guest:guest@127.0.0.1:5672";
const SECONDS = Number(values.seconds);
const CLK_TCK = 100;
const only = values.only ? new Set(values.only.split(",")) : null;
const wanted = (name: string) => only === null || only.has(name);
const withBaselines = values.baseline && !values["no-baseline"];
const log = (text: string) => Deno.stderr.writeSync(new TextEncoder().encode(`${text}\n`));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** gatehouse with its journal (the default), without it, and the two reference clients. */
type Target = "gatehouse" | "gatehouse-no-journal" | "bare-inflate" | "bare-parse-write";

const STORE_DIR = Deno.makeTempDirSync({ prefix: "gatehouse-bench-" });
let runs = 0;

/** Starts the program under test against the fake; stdout goes to /dev/null. */
function spawn(
  target: Target,
  fake: FakeDiscord,
  shards: number,
  extraEnv: Record<string, string> = {},
): Deno.ChildProcess {
  const env = {
    GATEHOUSE_STORE: `${STORE_DIR}/run-${++runs}.db`,
    GATEHOUSE_JOURNAL: target === "gatehouse-no-journal" ? "false" : "true",
    GATEHOUSE_CONTROL_ADDRESS: "127.0.0.1:0",
    ...extraEnv,
    DISCORD_TOKEN: "fake-token",
    DISCORD_API_SCHEME: "http",
    DISCORD_API_HOST: fake.apiHost,
    GATEHOUSE_LOG_LEVEL: "warning",
    BENCH_SHARDS: String(shards),
    BENCH_GATEWAY: fake.gatewayUrl,
  };
  const flags = values["v8-flags"] === undefined ? RUN_FLAGS : [
    ...RUN_FLAGS.filter((f) => !f.startsWith("--v8-flags")),
    ...(values["v8-flags"] ? [`--v8-flags=${values["v8-flags"]}`] : []),
  ];
  const args = target.startsWith("gatehouse")
    ? [...flags, "main.ts", "run"]
    : [...flags, "bench/bare_client.ts", target === "bare-inflate" ? "inflate" : "parse-write"];
  return new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
}

function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

function memoryKb(pid: number): { rss: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return {
    rss: Number(/VmRSS:\s+(\d+)/.exec(status)![1]),
    peak: Number(/VmHWM:\s+(\d+)/.exec(status)![1]),
  };
}

/** Per connection: the last sequence number the client reported in a heartbeat, and when it arrived. */
function progress(fake: FakeDiscord): Map<number, { seq: number; at: number }> {
  const out = new Map<number, { seq: number; at: number }>();
  for (const c of fake.connections()) {
    if (c.lastHeartbeatSeq !== null && c.lastHeartbeatAt !== null) {
      out.set(c.id, { seq: c.lastHeartbeatSeq, at: c.lastHeartbeatAt });
    }
  }
  return out;
}

/**
 * Events handled per second, summed over connections, from two progress snapshots: each connection's
 * rate is its seq delta over the time between its own heartbeats, so the heartbeat interval adds no
 * error. Connections that reconnected in between (new ids) are not counted, and are reported.
 */
function handledRate(
  before: Map<number, { seq: number; at: number }>,
  after: Map<number, { seq: number; at: number }>,
) {
  let perSecond = 0;
  let lost = 0;
  for (const [id, a] of before) {
    const b = after.get(id);
    if (!b) {
      lost++;
      continue;
    }
    if (b.at > a.at) perSecond += ((b.seq - a.seq) * 1000) / (b.at - a.at);
  }
  return { perSecond, lost };
}

async function waitReady(fake: FakeDiscord, shards: number, timeoutMs: number): Promise<void> {
  await fake.waitFor(
    () => fake.connections().filter((c) => c.sessionId !== null && c.heartbeats > 0).length === shards,
    timeoutMs,
    `${shards} shards ready and beating`,
  );
}

async function stop(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    // gone
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // gone
    }
  }, 15_000);
  await child.status;
  clearTimeout(timer);
}

interface Measure {
  target: Target;
  scenario: string;
  shards: number;
  events: number;
  seconds: number;
  eventsPerSecond: number;
  /** null when no progress was reported (a client that fell behind and stopped heartbeating news). */
  cpuPer100k: number | null;
  peakRssMb: number;
}

/** The fake Discord of the throughput scenarios: cheap precompressed frames, frequent heartbeats. */
function benchFake(shards: number): Promise<FakeDiscord> {
  return FakeDiscord.start({
    shards,
    maxConcurrency: shards,
    guildsPerShard: 1,
    // Short enough for several progress reports per measurement; Discord's is 41.25 s.
    heartbeatIntervalMs: 2000,
    precompressed: true,
    recordEvents: false,
    replayBufferSize: 20_000,
  });
}

/** Flood (as fast as the client reads) or paced traffic for `seconds`, measured from heartbeats. */
async function throughput(
  target: Target,
  scenario: string,
  shards: number,
  rate: number | "flood",
  seconds: number,
): Promise<Measure> {
  const fake = await benchFake(shards);
  const child = spawn(target, fake, shards);
  try {
    await waitReady(fake, shards, 30_000);
    if (rate === "flood") fake.startFlood();
    else fake.startTraffic(rate);
    await sleep(2000); // warm up
    const p0 = progress(fake), c0 = cpuSeconds(child.pid), t0 = performance.now();
    await sleep(seconds * 1000);
    const p1 = progress(fake), c1 = cpuSeconds(child.pid), t1 = performance.now();
    fake.stopFlood();
    fake.stopTraffic();
    const elapsed = (t1 - t0) / 1000;
    const { perSecond, lost } = handledRate(p0, p1);
    if (lost > 0) log(`  (${lost} connection(s) reconnected during the measurement and were not counted)`);
    const events = Math.round(perSecond * elapsed);
    const result: Measure = {
      target,
      scenario,
      shards,
      events,
      seconds: Number(elapsed.toFixed(2)),
      eventsPerSecond: Math.round(perSecond),
      cpuPer100k: events > 0 ? Number((((c1 - c0) / events) * 100_000).toFixed(3)) : null,
      peakRssMb: Math.round(memoryKb(child.pid).peak / 1024),
    };
    const cpu = result.cpuPer100k === null
      ? "no progress reported (no heartbeat carried a newer seq: the client fell behind)"
      : `${result.cpuPer100k.toFixed(2).padStart(5)} CPU-s/100k`;
    log(
      `${target.padEnd(20)} ${scenario.padEnd(18)} ${String(result.eventsPerSecond).padStart(7)} events/s  ` +
        `${cpu}  peak RSS ${result.peakRssMb} MB`,
    );
    return result;
  } finally {
    await stop(child);
    await fake.stop();
  }
}

/**
 * A flood of `shards` shards into a broker (stdout not a sink): events/s Discord got through, events/s
 * that reached the broker, and how far behind the journal the sink is at the end.
 */
async function brokerFlood(kind: "redis" | "amqp", shards: number, rate: number | "flood", seconds: number) {
  const name = `gatehouse-bench-${crypto.randomUUID().slice(0, 8)}`;
  const fake = await benchFake(shards);
  let count: () => Promise<number>;
  let cleanup: () => Promise<void>;
  const env: Record<string, string> = { BROKER_TYPE: kind };
  if (kind === "redis") {
    const client = new Redis(REDIS_URL);
    Object.assign(env, { REDIS_URL, GATEHOUSE_REDIS_STREAMS: "single", GATEHOUSE_REDIS_PREFIX: name });
    count = () => client.xlen(`${name}:events`);
    cleanup = async () => {
      await client.del(`${name}:events`);
      client.disconnect();
    };
  } else {
    const client = new AMQPClient(AMQP_URL);
    await client.connect();
    const channel = await client.channel();
    await channel.exchangeDeclare(name, "topic", { durable: true });
    await channel.queueDeclare(name, { durable: false });
    await channel.queueBind(name, name, "#");
    Object.assign(env, { AMQP_URL, GATEHOUSE_AMQP_EXCHANGE: name });
    count = async () => (await channel.queueDeclare(name, { passive: true })).messageCount;
    cleanup = async () => {
      await channel.queueDelete(name);
      await channel.exchangeDelete(name);
      await client.close();
    };
  }
  const child = spawn("gatehouse", fake, shards, env);
  try {
    await waitReady(fake, shards, 30_000);
    if (rate === "flood") fake.startFlood();
    else fake.startTraffic(rate);
    await sleep(2000);
    const p0 = progress(fake), n0 = await count(), c0 = cpuSeconds(child.pid), t0 = performance.now();
    await sleep(seconds * 1000);
    const p1 = progress(fake), n1 = await count(), c1 = cpuSeconds(child.pid), t1 = performance.now();
    const sent = fake.stats().eventsSent;
    fake.stopFlood();
    fake.stopTraffic();
    const elapsed = (t1 - t0) / 1000;
    const received = Math.round(handledRate(p0, p1).perSecond);
    const delivered = Math.round((n1 - n0) / elapsed);
    const lag = Math.max(0, sent - n1);
    const result = {
      sink: kind,
      shards,
      rate,
      receivedPerSecond: received,
      deliveredPerSecond: delivered,
      lagEvents: lag,
      cpuPer100k: Number((((c1 - c0) / Math.max(1, n1 - n0)) * 100_000).toFixed(3)),
      peakRssMb: Math.round(memoryKb(child.pid).peak / 1024),
    };
    const what = rate === "flood" ? "flood" : `${rate}/s each`;
    const broker = kind === "redis" ? "Redis Streams" : "RabbitMQ";
    log(
      `gatehouse → ${kind.padEnd(5)} ${shards} shards, ${what}: ${received} events/s received, ` +
        `${delivered} events/s into ${broker}, ${lag} events behind the journal at the end, ` +
        `peak RSS ${result.peakRssMb} MB`,
    );
    return result;
  } finally {
    await stop(child);
    await fake.stop();
    await cleanup();
  }
}

/** RSS per idle shard: (RSS with N idle shards − RSS with 1) / (N − 1). */
async function idle(
  target: Target,
  n: number,
): Promise<{ target: Target; shards: number; perShardKb: number; rssMb: number }> {
  const rssWith = async (shards: number) => {
    const fake = await FakeDiscord.start({
      shards,
      maxConcurrency: shards,
      guildsPerShard: 1,
      precompressed: true,
      recordEvents: false,
      // Enough session starts that gatehouse's identify reserve does not hold the last shards back.
      sessionStartLimit: { total: shards * 2 + 100, remaining: shards * 2 + 100 },
    });
    const child = spawn(target, fake, shards);
    try {
      await waitReady(fake, shards, 120_000).catch(async () => {
        // Heartbeats start after a random first delay of up to 41 s: wait for sessions instead.
        await fake.waitFor(
          () => fake.connections().filter((c) => c.sessionId !== null).length === shards,
          120_000,
        );
      });
      await sleep(3000);
      return memoryKb(child.pid).rss;
    } finally {
      await stop(child);
      await fake.stop();
    }
  };
  const one = await rssWith(1);
  const many = await rssWith(n);
  const perShardKb = Number(((many - one) / (n - 1)).toFixed(1));
  log(
    `${target.padEnd(16)} idle ${n} shards: RSS ${Math.round(many / 1024)} MB (1 shard: ${
      Math.round(one / 1024)
    } MB) → ${perShardKb} KB per idle shard`,
  );
  return { target, shards: n, perShardKb, rssMb: Math.round(many / 1024) };
}

const targets: Target[] = withBaselines
  ? ["gatehouse", "gatehouse-no-journal", "bare-inflate", "bare-parse-write"]
  : ["gatehouse", "gatehouse-no-journal"];
const results: {
  throughput: Measure[];
  idle: Array<Awaited<ReturnType<typeof idle>>>;
  brokers: Array<Awaited<ReturnType<typeof brokerFlood>>>;
} = { throughput: [], idle: [], brokers: [] };

log(
  `gatehouse bench: ${Deno.build.os} ${Deno.build.arch}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}`,
);
log(
  `each measurement: ${SECONDS} s after 2 s of warm-up; zlib-stream; every event written as an NDJSON line\n`,
);
for (const target of targets) {
  if (wanted("flood1")) {
    results.throughput.push(await throughput(target, "flood, 1 shard", 1, "flood", SECONDS));
  }
  if (wanted("flood16")) {
    results.throughput.push(await throughput(target, "flood, 16 shards", 16, "flood", SECONDS));
  }
  if (wanted("paced500")) {
    results.throughput.push(await throughput(target, "16 × 500/s", 16, 500, SECONDS * 2));
  }
  if (wanted("paced2000")) {
    results.throughput.push(await throughput(target, "16 × 2000/s", 16, 2000, SECONDS));
  }
}
if (wanted("idle")) {
  for (const target of targets.filter((t) => t === "gatehouse" || t === "bare-inflate")) {
    results.idle.push(await idle(target, Number(values["idle-shards"])));
  }
}
for (const kind of ["redis", "amqp"] as const) {
  if (!wanted(kind)) continue;
  results.brokers.push(await brokerFlood(kind, 4, 2500, SECONDS));
  results.brokers.push(await brokerFlood(kind, 4, "flood", SECONDS));
}
// Journaling's cost: journal-on throughput as a share of journal-off, per scenario.
for (const on of results.throughput.filter((r) => r.target === "gatehouse")) {
  const off = results.throughput.find((r) =>
    r.target === "gatehouse-no-journal" && r.scenario === on.scenario
  );
  if (off && off.eventsPerSecond > 0) {
    log(
      `journal on/off, ${on.scenario}: ${
        Math.round((on.eventsPerSecond / off.eventsPerSecond) * 100)
      } % of the throughput, ` +
        `${on.cpuPer100k} vs ${off.cpuPer100k} CPU-s/100k`,
    );
  }
}
if (values.json) console.log(JSON.stringify(results));
Deno.removeSync(STORE_DIR, { recursive: true });
