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
 * producer into the same broker. Then all cores of the host (bench/cores.ts): a flood of 16 shards through
 * one gatehouse process and through two (8 shards each), into readers and into Redis Streams.
 *
 *   deno task bench                      # every scenario
 *   deno task bench --only flood1,idle   # some of them: flood1 flood16 paced500 paced2000 idle redis
 *                                        # amqp cores
 *   deno task bench --only scale         # not in "every": 2500 idle shards over 5 cluster members
 *                                        # (bench/cluster_scale.ts), a few minutes
 *   deno task bench --only formats       # not in "every": a 4-shard flood into Redis in each wire format
 *   deno task bench --only proxy         # not in "every": the latency proxy mode adds, a bot reading
 *                                        # through the proxy next to the same bot connected to the fake
 *                                        # and gatehouse's stdout (bench/proxy_latency.ts), ~2 minutes
 *   deno task bench --json               # one JSON object at the end
 */
import { parseArgs } from "node:util";
import { trafficEvent } from "../tests/fake_discord/events.ts";
import { FakeDiscord } from "../tests/fake_discord/server.ts";
import { bareProducer, brokerFlood } from "./brokers.ts";
import {
  Bench,
  benchFake,
  cpuSeconds,
  fmt,
  handledRate,
  log,
  memoryKb,
  per100k,
  progress,
  ratio,
  ROOT,
  sleep,
  stop,
  type Target,
  waitReady,
  wallNow,
} from "./common.ts";
import { clusterScale, printScale, type ScaleResult } from "./cluster_scale.ts";
import { cores } from "./cores.ts";
import { printProxyLatency, proxyLatency, type ProxyScenarioResult } from "./proxy_latency.ts";
import type { Reader, ReaderReport } from "./reader_client.ts";

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

const SECONDS = Number(values.seconds);
const only = values.only ? new Set(values.only.split(",")) : null;
const wanted = (name: string) => only === null || only.has(name);
const withBaselines = values.baseline && !values["no-baseline"];
const bench = new Bench(values["v8-flags"]);

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

/** Flood (as fast as the client reads) or paced traffic for `seconds`, stdout into the reader. */
async function throughput(
  target: Target,
  scenario: string,
  shards: number,
  rate: number | "flood",
  seconds: number,
): Promise<Measure> {
  const fake = await benchFake(shards);
  const { child, reader } = bench.spawnWithReader(target, fake, shards);
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
  const file = `${bench.storeDir}/ceiling.ndjson`;
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
    const child = bench.spawn(target, fake, shards);
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
  cores: Awaited<ReturnType<typeof cores>> | null;
  scale: ScaleResult | null;
  proxy: ProxyScenarioResult[] | null;
} = {
  readerCeiling: null,
  throughput: [],
  idle: [],
  bareProducers: {},
  brokers: [],
  cores: null,
  scale: null,
  proxy: null,
};

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
  results.brokers.push(await brokerFlood(bench, kind, 4, 2500, SECONDS, floor?.perSecond ?? null));
  results.brokers.push(await brokerFlood(bench, kind, 4, "flood", SECONDS, floor?.perSecond ?? null));
}
if (only?.has("formats")) {
  // The drop-in wire formats into Redis, a stream per event name each (README, Drop-in wire formats).
  for (const format of ["gatehouse", "spectacles", "discordjs"] as const) {
    results.brokers.push(await brokerFlood(bench, "redis", 4, "flood", SECONDS, null, format));
  }
}
if (wanted("cores")) results.cores = await cores(bench, SECONDS, { baseline: withBaselines });
if (only?.has("scale")) {
  results.scale = await clusterScale();
  printScale(results.scale);
}
if (only?.has("proxy")) results.proxy = await proxyLatency(bench, { seconds: SECONDS });

const ceiling = results.readerCeiling?.linesPerSecond ?? null;
for (const r of results.throughput.filter((r) => ceiling !== null && r.deliveredPerSecond > ceiling / 2)) {
  log(
    `note: ${r.target}, ${r.scenario}: ${r.deliveredPerSecond} lines/s is over half the reader's ceiling ` +
      `(${ceiling}/s): the reader may be what limits it`,
  );
}
// Each gatehouse figure against its floor from this run.
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
if (results.proxy) printProxyLatency(results.proxy);
if (values.json) console.log(JSON.stringify(results));
bench.cleanup();
