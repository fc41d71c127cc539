/**
 * `deno task bench`: what a reader of `gatehouse run` sees, against the fake Discord.
 *
 * The fake runs in this process with precompressed zlib-stream frames (so it costs little CPU) and
 * stamps each event's send time into its payload (`d.sent_at`). The gateway runs as a child process
 * exactly like `deno task start`; its stdout is a pipe (a FIFO) read by a separate reader process
 * (bench/reader.ts) that counts lines and takes each line's latency (read time − send stamp). For each
 * run: delivered lines/s (lines reaching the reader in the measured window), latency p50/p99/max, CPU-s
 * per 100k delivered lines of gatehouse and of the reader (from /proc), peak RSS, the rate gatehouse
 * reads at (from its heartbeats, which carry the last sequence number it has handled) and how far
 * ingest ran ahead of delivery. The same scenarios run against two bare loops, the floors, in the same
 * run: one that only inflates, one that inflates, JSON.parses and writes each event as a line (into the
 * same reader). Each gatehouse figure is printed with its ratio to its floor. Then a flood of 4 shards
 * into Redis Streams and into RabbitMQ (local servers; stdout not a sink), each next to a bare pipelined
 * producer into the same broker.
 *
 *   deno task bench                      # every scenario
 *   deno task bench --only flood1,idle   # some of them: flood1 flood16 paced500 paced2000 idle redis amqp
 *   deno task bench --json               # one JSON object at the end
 */
import { parseArgs } from "node:util";
import { AMQPClient } from "@cloudamqp/amqp-client";
import { Redis } from "ioredis";
import { trafficEvent } from "../tests/fake_discord/events.ts";
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
    /** Which programs to measure, comma-separated (default: gatehouse with and without its journal and the
     * two floors); `bare-inflate-ws` is the inflate floor over gatehouse's own WebSocket client. */
    targets: { type: "string" },
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
const wallNow = () => performance.timeOrigin + performance.now();

/** gatehouse with its journal (the default), without it, and the two reference clients. */
type Target = "gatehouse" | "gatehouse-no-journal" | "bare-inflate" | "bare-inflate-ws" | "bare-parse-write";

const STORE_DIR = Deno.makeTempDirSync({ prefix: "gatehouse-bench-" });
let runs = 0;

function programArgs(target: Target): string[] {
  const flags = values["v8-flags"] === undefined ? RUN_FLAGS : [
    ...RUN_FLAGS.filter((f) => !f.startsWith("--v8-flags")),
    ...(values["v8-flags"] ? [`--v8-flags=${values["v8-flags"]}`] : []),
  ];
  return target.startsWith("gatehouse")
    ? [...flags, "main.ts", "run"]
    : [...flags, "bench/bare_client.ts", target.slice("bare-".length)];
}

function programEnv(target: Target, fake: FakeDiscord, shards: number, extraEnv: Record<string, string>) {
  return {
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
}

/** Starts the program under test against the fake with stdout to /dev/null (the broker scenarios). */
function spawn(
  target: Target,
  fake: FakeDiscord,
  shards: number,
  extraEnv: Record<string, string> = {},
): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: programArgs(target),
    cwd: ROOT,
    env: programEnv(target, fake, shards, extraEnv),
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
}

interface ReaderReport {
  type: "progress" | "mark" | "end";
  at: number;
  lines: number;
  shards?: number[];
  stamped?: number;
  firstReadAt?: number | null;
  lastReadAt?: number | null;
  cpuS?: number;
  window?: { lines: number; stamped: number; p50: number | null; p99: number | null; max: number | null };
}

/** The reader process (bench/reader.ts) on the read end of a FIFO, and its reports. */
class Reader {
  readonly child: Deno.ChildProcess;
  /** (at, lines, lines per shard) every 100 ms, in order. */
  readonly progress: Array<{ at: number; lines: number; shards: number[] }> = [];
  #marks: ReaderReport[] = [];
  #waiters: Array<(r: ReaderReport) => void> = [];
  readonly done: Promise<ReaderReport>;
  #resolveDone!: (r: ReaderReport) => void;

  /** `input`: a shell redirection for the reader's stdin, e.g. `< "$BENCH_FIFO"`. */
  constructor(input: string, env: Record<string, string>) {
    this.child = new Deno.Command("sh", {
      args: ["-c", `exec "$0" run --allow-all bench/reader.ts ${input}`, Deno.execPath()],
      cwd: ROOT,
      env,
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.done = new Promise((resolve) => this.#resolveDone = resolve);
    void this.#read();
  }

  get lines(): number {
    return this.progress.at(-1)?.lines ?? 0;
  }

  /** Lines of `shard` read by `at` (the last progress report at or before it). */
  shardLinesAt(at: number, shard: number): number {
    let lo = 0, hi = this.progress.length - 1, found = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.progress[mid].at <= at) {
        found = this.progress[mid].shards[shard] ?? 0;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    return found;
  }

  async #read(): Promise<void> {
    let carry = "";
    for await (const text of this.child.stdout.pipeThrough(new TextDecoderStream())) {
      carry += text;
      let nl;
      while ((nl = carry.indexOf("\n")) >= 0) {
        const report = JSON.parse(carry.slice(0, nl)) as ReaderReport;
        carry = carry.slice(nl + 1);
        this.progress.push({
          at: report.at,
          lines: report.lines,
          shards: report.shards ?? this.progress.at(-1)?.shards ?? [],
        });
        if (report.type === "mark") {
          const waiter = this.#waiters.shift();
          if (waiter) waiter(report);
          else this.#marks.push(report);
        } else if (report.type === "end") this.#resolveDone(report);
      }
    }
  }

  /**
   * Asks for a mark (the edge of a measured window) and waits for it; once the reader has ended (the
   * program under test closed its stdout), its last report stands for the mark.
   */
  mark(): Promise<ReaderReport> {
    const report = new Promise<ReaderReport>((resolve) => {
      const queued = this.#marks.shift();
      if (queued) resolve(queued);
      else this.#waiters.push(resolve);
    });
    try {
      Deno.kill(this.child.pid, "SIGUSR2");
    } catch {
      // the reader is gone: its end report answers
    }
    return Promise.race([report, this.done]);
  }
}

/** The program under test with its stdout on a FIFO read by a `Reader`. */
function spawnWithReader(
  target: Target,
  fake: FakeDiscord,
  shards: number,
  extraEnv: Record<string, string> = {},
): { child: Deno.ChildProcess; reader: Reader } {
  const fifo = `${STORE_DIR}/out-${runs + 1}.fifo`;
  const made = new Deno.Command("mkfifo", { args: [fifo] }).outputSync();
  if (!made.success) throw new Error(`mkfifo failed: ${new TextDecoder().decode(made.stderr)}`);
  const reader = new Reader(`< "$BENCH_FIFO"`, { BENCH_FIFO: fifo });
  const child = new Deno.Command("sh", {
    args: ["-c", `exec "$@" > "$BENCH_FIFO"`, "sh", Deno.execPath(), ...programArgs(target)],
    cwd: ROOT,
    env: { ...programEnv(target, fake, shards, extraEnv), BENCH_FIFO: fifo },
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  return { child, reader };
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

/**
 * Ingest ahead of delivery: at each heartbeat of a shard, the seq it carries (what the program has
 * read of that shard) minus the shard's lines the reader had when the heartbeat arrived (to within the
 * reader's 100 ms progress reports); summed over shards (each at its own last heartbeat), max over the
 * run. One session per shard is assumed (a reconnect starting a new session would skew it).
 */
class AheadWatch {
  max = 0;
  #seen = new Map<number, number>();
  #ahead = new Map<number, number>();
  #timer: ReturnType<typeof setInterval>;

  constructor(fake: FakeDiscord, reader: Reader) {
    this.#timer = setInterval(() => {
      let fresh = false;
      for (const c of fake.connections()) {
        if (c.lastHeartbeatSeq === null || c.lastHeartbeatAt === null || c.shard === null) continue;
        if (this.#seen.get(c.id) === c.lastHeartbeatAt) continue;
        this.#seen.set(c.id, c.lastHeartbeatAt);
        this.#ahead.set(c.shard, c.lastHeartbeatSeq - reader.shardLinesAt(c.lastHeartbeatAt, c.shard));
        fresh = true;
      }
      if (!fresh) return;
      let sum = 0;
      for (const a of this.#ahead.values()) sum += a;
      this.max = Math.max(this.max, sum);
    }, 50);
  }

  stop(): void {
    clearInterval(this.#timer);
  }
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

interface Latency {
  p50: number | null;
  p99: number | null;
  max: number | null;
}

interface Measure {
  target: Target;
  scenario: string;
  shards: number;
  seconds: number;
  /** Events the program read per second (its heartbeats' seqs). */
  readPerSecond: number;
  /** Lines that reached the reader per second in the window (0 for bare-inflate, which writes none). */
  deliveredPerSecond: number;
  /** Per event, from the fake's send stamp to the reader's read, over the window (ms). */
  latency: Latency;
  /** CPU-s in the window per 100k delivered lines (per 100k read events for bare-inflate). */
  cpuPer100k: { program: number | null; reader: number | null; tree: number | null };
  peakRssMb: number;
  readerPeakRssMb: number;
  /** Max over the run of (events read − lines delivered), see `AheadWatch`. */
  aheadMax: number | null;
  /** Paced scenarios: events the fake sent that never reached the reader (after up to 5 s to drain). */
  undelivered: number | null;
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
    stampSendTime: true,
    recordEvents: false,
    replayBufferSize: 20_000,
  });
}

const per100k = (cpu: number, n: number) => n > 0 ? Number(((cpu / n) * 100_000).toFixed(3)) : null;
const fmt = (x: number | null, digits = 2) => x === null ? "–" : x.toFixed(digits);

/** Flood (as fast as the client reads) or paced traffic for `seconds`, stdout into the reader. */
async function throughput(
  target: Target,
  scenario: string,
  shards: number,
  rate: number | "flood",
  seconds: number,
): Promise<Measure> {
  const fake = await benchFake(shards);
  const { child, reader } = spawnWithReader(target, fake, shards);
  let ahead: AheadWatch | null = null;
  try {
    await waitReady(fake, shards, 30_000);
    ahead = new AheadWatch(fake, reader);
    if (rate === "flood") fake.startFlood();
    else fake.startTraffic(rate);
    await sleep(2000); // warm up
    const p0 = progress(fake), c0 = cpuSeconds(child.pid), m0 = await reader.mark();
    await sleep(seconds * 1000);
    const p1 = progress(fake), c1 = cpuSeconds(child.pid), m1 = await reader.mark();
    fake.stopFlood();
    fake.stopTraffic();
    ahead.stop();
    let undelivered: number | null = null;
    if (rate !== "flood" && !target.startsWith("bare-inflate")) {
      const drainUntil = performance.now() + 5000;
      while (reader.lines < fake.stats().eventsSent && performance.now() < drainUntil) await sleep(50);
      undelivered = Math.max(0, fake.stats().eventsSent - reader.lines);
    }
    const elapsed = (m1.at - m0.at) / 1000;
    const { perSecond, lost } = handledRate(p0, p1);
    if (lost > 0) log(`  (${lost} connection(s) reconnected during the measurement and were not counted)`);
    const delivered = m1.lines - m0.lines;
    // bare-inflate writes no lines: its CPU is per event read.
    const basis = target.startsWith("bare-inflate") ? Math.round(perSecond * elapsed) : delivered;
    const programCpu = c1 - c0, readerCpu = m1.cpuS! - m0.cpuS!;
    const result: Measure = {
      target,
      scenario,
      shards,
      seconds: Number(elapsed.toFixed(2)),
      readPerSecond: Math.round(perSecond),
      deliveredPerSecond: Math.round(delivered / elapsed),
      latency: { p50: m1.window!.p50, p99: m1.window!.p99, max: m1.window!.max },
      cpuPer100k: {
        program: per100k(programCpu, basis),
        reader: per100k(readerCpu, basis),
        tree: per100k(programCpu + readerCpu, basis),
      },
      peakRssMb: Math.round(memoryKb(child.pid).peak / 1024),
      readerPeakRssMb: Math.round(memoryKb(reader.child.pid).peak / 1024),
      aheadMax: target.startsWith("bare-inflate") ? null : ahead.max,
      undelivered,
    };
    const l = result.latency, c = result.cpuPer100k;
    log(
      `${target.padEnd(20)} ${scenario.padEnd(16)} delivered ${
        target.startsWith("bare-inflate") ? "     –" : String(result.deliveredPerSecond).padStart(6)
      }/s` +
        ` (read ${String(result.readPerSecond).padStart(6)}/s)  latency p50/p99/max ${fmt(l.p50, 1)}/` +
        `${fmt(l.p99, 1)}/${fmt(l.max, 1)} ms  CPU-s/100k ${fmt(c.tree)} (${fmt(c.program)} + reader ` +
        `${fmt(c.reader)})  peak RSS ${result.peakRssMb} MB (reader ${result.readerPeakRssMb})` +
        (result.aheadMax === null ? "" : `  ahead ≤ ${result.aheadMax}`) +
        (undelivered === null ? "" : `  undelivered ${undelivered}`),
    );
    return result;
  } finally {
    ahead?.stop();
    await stop(child);
    await Promise.race([reader.done, sleep(5000)]);
    await stop(reader.child);
    await fake.stop();
  }
}

/** The reader's own ceiling: lines/s on a `cat` of a file of gatehouse-like stamped lines. */
async function readerCeiling(): Promise<{ linesPerSecond: number; lines: number; cpuS: number }> {
  const file = `${STORE_DIR}/ceiling.ndjson`;
  const stamp = wallNow().toFixed(3);
  const lines: string[] = [];
  for (let i = 0; i < 64; i++) {
    const { t, d } = trafficEvent("1300000000000000000", i);
    const payload = JSON.stringify({ t, s: i + 1, op: 0, d: { sent_at: 0, ...d } }).replace(
      `"sent_at":0`,
      `"sent_at":${stamp}`,
    );
    lines.push(`{"id":${i + 1},"uid":"0123456789abcdefghij","shard":0,${payload.slice(1)}\n`);
  }
  const block = lines.join("");
  const count = 300_000;
  const out = await Deno.open(file, { write: true, create: true, truncate: true });
  const bytes = new TextEncoder().encode(block.repeat(100));
  for (let n = 0; n < count; n += 6400) await out.write(bytes);
  out.close();
  // `cat` into the reader through a pipe, as a program's stdout would be.
  const piped = new Deno.Command("sh", {
    args: ["-c", `cat "$1" | exec "$0" run --allow-all bench/reader.ts`, Deno.execPath(), file],
    cwd: ROOT,
    stdout: "piped",
    stderr: "inherit",
  }).outputSync();
  Deno.removeSync(file);
  const text = new TextDecoder().decode(piped.stdout).trim().split("\n");
  const end = JSON.parse(text.at(-1)!) as ReaderReport;
  const span = (end.lastReadAt! - end.firstReadAt!) / 1000;
  const result = { linesPerSecond: Math.round(end.lines / span), lines: end.lines, cpuS: end.cpuS! };
  log(
    `reader ceiling: ${result.linesPerSecond} lines/s on a cat of ${end.lines} lines (${
      Math.round(bytes.length / 6400)
    } bytes each), ${result.cpuS} CPU-s`,
  );
  return result;
}

/** A destination for the broker scenarios, created fresh and deleted after. */
interface BrokerTarget {
  name: string;
  count(): Promise<number>;
  cleanup(): Promise<void>;
}

async function brokerTarget(kind: "redis" | "amqp"): Promise<BrokerTarget> {
  const name = `gatehouse-bench-${crypto.randomUUID().slice(0, 8)}`;
  if (kind === "redis") {
    const client = new Redis(REDIS_URL);
    return {
      name,
      count: () => client.xlen(`${name}:events`),
      cleanup: async () => {
        await client.del(`${name}:events`, name);
        client.disconnect();
      },
    };
  }
  const client = new AMQPClient(AMQP_URL);
  await client.connect();
  const channel = await client.channel();
  await channel.exchangeDeclare(name, "topic", { durable: true });
  await channel.queueDeclare(name, { durable: false });
  await channel.queueBind(name, name, "#");
  return {
    name,
    count: async () => (await channel.queueDeclare(name, { passive: true })).messageCount,
    cleanup: async () => {
      await channel.queueDelete(name);
      await channel.exchangeDelete(name);
      await client.close();
    },
  };
}

/** The broker's floor: bench/bare_producer.ts for `seconds` into a fresh stream or exchange. */
async function bareProducer(kind: "redis" | "amqp", seconds: number) {
  const target = await brokerTarget(kind);
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "bench/bare_producer.ts",
        kind,
        kind === "redis" ? REDIS_URL : AMQP_URL,
        target.name,
        String(seconds),
      ],
      cwd: ROOT,
      stdout: "piped",
      stderr: "inherit",
    }).output();
    const result = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      messages: number;
      perSecond: number;
      cpuS: number;
    };
    log(
      `bare producer → ${kind.padEnd(5)} ${result.perSecond} messages/s (${
        per100k(result.cpuS, result.messages)
      } CPU-s/100k)`,
    );
    return result;
  } finally {
    await target.cleanup();
  }
}

/**
 * A flood of `shards` shards into a broker (stdout not a sink): events/s Discord got through, events/s
 * that reached the broker (with its ratio to the bare producer's), and how far behind the journal the
 * sink is at the end.
 */
async function brokerFlood(
  kind: "redis" | "amqp",
  shards: number,
  rate: number | "flood",
  seconds: number,
  floor: number | null,
) {
  const fake = await benchFake(shards);
  const target = await brokerTarget(kind);
  const env: Record<string, string> = kind === "redis"
    ? { BROKER_TYPE: kind, REDIS_URL, GATEHOUSE_REDIS_STREAMS: "single", GATEHOUSE_REDIS_PREFIX: target.name }
    : { BROKER_TYPE: kind, AMQP_URL, GATEHOUSE_AMQP_EXCHANGE: target.name };
  const child = spawn("gatehouse", fake, shards, env);
  try {
    await waitReady(fake, shards, 30_000);
    if (rate === "flood") fake.startFlood();
    else fake.startTraffic(rate);
    await sleep(2000);
    const p0 = progress(fake), n0 = await target.count(), c0 = cpuSeconds(child.pid), t0 = performance.now();
    await sleep(seconds * 1000);
    const p1 = progress(fake), n1 = await target.count(), c1 = cpuSeconds(child.pid), t1 = performance.now();
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
      bareProducerPerSecond: floor,
      ratioToBareProducer: floor ? Number((delivered / floor).toFixed(2)) : null,
      lagEvents: lag,
      cpuPer100k: per100k(c1 - c0, Math.max(1, n1 - n0)),
      peakRssMb: Math.round(memoryKb(child.pid).peak / 1024),
    };
    const what = rate === "flood" ? "flood" : `${rate}/s each`;
    const broker = kind === "redis" ? "Redis Streams" : "RabbitMQ";
    log(
      `gatehouse → ${kind.padEnd(5)} ${shards} shards, ${what}: ${received} events/s received, ` +
        `${delivered} events/s into ${broker}` +
        (floor && rate === "flood"
          ? ` (${result.ratioToBareProducer} × the bare producer's ${floor}/s)`
          : "") +
        `, ${lag} events behind the journal at the end, peak RSS ${result.peakRssMb} MB`,
    );
    return result;
  } finally {
    await stop(child);
    await fake.stop();
    await target.cleanup();
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

const targets: Target[] = values.targets
  ? values.targets.split(",") as Target[]
  : withBaselines
  ? ["gatehouse", "gatehouse-no-journal", "bare-inflate", "bare-parse-write"]
  : ["gatehouse", "gatehouse-no-journal"];
const results: {
  readerCeiling: Awaited<ReturnType<typeof readerCeiling>> | null;
  throughput: Measure[];
  idle: Array<Awaited<ReturnType<typeof idle>>>;
  bareProducers: Record<string, Awaited<ReturnType<typeof bareProducer>>>;
  brokers: Array<Awaited<ReturnType<typeof brokerFlood>>>;
} = { readerCeiling: null, throughput: [], idle: [], bareProducers: {}, brokers: [] };

log(
  `gatehouse bench: ${Deno.build.os} ${Deno.build.arch}, ${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}`,
);
log(
  `each measurement: ${SECONDS} s after 2 s of warm-up; zlib-stream; every event written as an NDJSON line ` +
    `into a reader process on a pipe; CPU from /proc (other load on the machine shows up as noise)\n`,
);
const throughputScenarios = ["flood1", "flood16", "paced500", "paced2000"].filter(wanted);
if (throughputScenarios.length > 0) results.readerCeiling = await readerCeiling();
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
  const floor = withBaselines ? await bareProducer(kind, SECONDS) : null;
  if (floor) results.bareProducers[kind] = floor;
  results.brokers.push(await brokerFlood(kind, 4, 2500, SECONDS, floor?.perSecond ?? null));
  results.brokers.push(await brokerFlood(kind, 4, "flood", SECONDS, floor?.perSecond ?? null));
}

const ceiling = results.readerCeiling?.linesPerSecond ?? null;
for (const r of results.throughput.filter((r) => ceiling !== null && r.deliveredPerSecond > ceiling / 2)) {
  log(
    `note: ${r.target}, ${r.scenario}: ${r.deliveredPerSecond} lines/s is over half the reader's ceiling ` +
      `(${ceiling}/s): the reader may be what limits it`,
  );
}
// Each gatehouse figure against its floor from this run.
const ratio = (a: number | null | undefined, b: number | null | undefined) =>
  a === null || a === undefined || !b ? null : Number((a / b).toFixed(2));
const verdict = (ok: boolean | null) => ok === null ? "" : ok ? "  [target met]" : "  [target missed]";
if (results.throughput.some((r) => r.target.startsWith("gatehouse"))) {
  log(
    `\nagainst the floors of this run (bare-inflate: inflate only; bare-parse-write: + JSON.parse + write):`,
  );
}
for (const r of results.throughput.filter((r) => r.target.startsWith("gatehouse"))) {
  const floorOf = (t: Target) => results.throughput.find((x) => x.target === t && x.scenario === r.scenario);
  const inflate = floorOf("bare-inflate"), parseWrite = floorOf("bare-parse-write");
  const name = `${r.target.padEnd(20)} ${r.scenario.padEnd(16)}`;
  if (r.scenario.startsWith("flood")) {
    const x = ratio(r.deliveredPerSecond, parseWrite?.deliveredPerSecond);
    log(
      `${name} delivered ${r.deliveredPerSecond}/s = ${fmt(x)} × bare-parse-write (target ≥ 0.8), ` +
        `peak RSS ${r.peakRssMb} MB (< 400), ahead ≤ ${r.aheadMax} events` +
        verdict(x === null ? null : x >= 0.8 && r.peakRssMb < 400),
    );
  } else if (r.scenario.includes("500/s")) {
    const x = ratio(r.cpuPer100k.program, inflate?.cpuPer100k.program);
    log(
      `${name} ${fmt(r.cpuPer100k.program)} CPU-s/100k = ${fmt(x)} × bare-inflate (target ≤ 1.25); ` +
        `with the reader ${fmt(r.cpuPer100k.tree)} = ${
          fmt(ratio(r.cpuPer100k.tree, parseWrite?.cpuPer100k.tree))
        } × bare-parse-write's tree` + verdict(x === null ? null : x <= 1.25),
    );
  } else {
    log(
      `${name} undelivered ${r.undelivered}, p99 ${
        fmt(r.latency.p99, 1)
      } ms (target ≤ 100; bare-parse-write ` +
        `${fmt(parseWrite?.latency.p99 ?? null, 1)} ms = ${
          fmt(ratio(r.latency.p99, parseWrite?.latency.p99))
        } ×), delivered ${r.deliveredPerSecond}/s = ${
          fmt(ratio(r.deliveredPerSecond, parseWrite?.deliveredPerSecond))
        } × bare-parse-write` +
        verdict(r.latency.p99 === null ? null : r.undelivered === 0 && r.latency.p99 <= 100),
    );
  }
}
for (const b of results.brokers.filter((b) => b.rate === "flood" && b.ratioToBareProducer !== null)) {
  log(
    `gatehouse → ${
      b.sink.padEnd(5)
    } flood, 4 shards: ${b.deliveredPerSecond}/s = ${b.ratioToBareProducer} × ` +
      `the bare producer (target ≥ 0.8)` + verdict(b.ratioToBareProducer! >= 0.8),
  );
}
// Journaling's cost: journal-on delivery as a share of journal-off, per scenario.
for (const on of results.throughput.filter((r) => r.target === "gatehouse")) {
  const off = results.throughput.find((r) =>
    r.target === "gatehouse-no-journal" && r.scenario === on.scenario
  );
  if (off && off.deliveredPerSecond > 0) {
    log(
      `journal on/off, ${on.scenario}: ${
        Math.round((on.deliveredPerSecond / off.deliveredPerSecond) * 100)
      } % of the delivered rate, ${fmt(on.cpuPer100k.program)} vs ${fmt(off.cpuPer100k.program)} CPU-s/100k`,
    );
  }
}
if (values.json) console.log(JSON.stringify(results));
Deno.removeSync(STORE_DIR, { recursive: true });
