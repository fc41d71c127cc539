/**
 * `deno task bench --only proxy`: the latency proxy mode adds, per event, where the user is — a bot
 * process reading through gatehouse's proxy.
 *
 * The bot is bench/proxy_reader.ts, a separate process speaking the Discord gateway over WebSocket
 * (JSON, no compression) that IDENTIFYs every shard and takes, for each event, read time − the fake's
 * send stamp (`d.sent_at`). Each scenario runs against a fresh fake Discord each time (the bench fake:
 * stamped and precompressed, with TCP_NODELAY as Discord's edge):
 *
 * - direct: the bot connected to the fake itself — the floor, what a bot connected to Discord gets;
 * - through gatehouse: `gatehouse run` (journal on, as `deno task start`) against the fake with
 *   `[proxy] listen` on 127.0.0.1:0, its stdout on a FIFO into bench/reader.ts (the stdout path of the
 *   other scenarios) and the same bot connected to its proxy; both readers measure the same events over
 *   the same window, so stdout and proxy are side by side;
 * - paced scenarios again through gatehouse with `[store] journal = false`: what the journal's commit
 *   costs both paths (the proxy is fed committed batches, as the sinks are), apart from the proxy's own.
 *
 * Measuring starts once every shard has READY and its GUILD_CREATEs and 2 s of traffic have gone by.
 * The added latency is the proxy's p50/p99 minus the direct run's (quantiles of two runs, not a
 * per-event difference), and minus gatehouse's stdout in the same run (the proxy's own share). Paced
 * scenarios also count the events that never reached the bot (after up to 5 s to drain); the flood
 * compares the rate delivered to the bot through the proxy with the rate the same bot reads the fake at
 * directly, and with gatehouse's stdout. A bot closed with 4000 (too slow) resumes and catches up: counted
 * under "reconnects", which should stay 0 for a bot that keeps up.
 */
import type { FakeDiscord } from "../tests/fake_discord/server.ts";
import {
  type Bench,
  benchFake,
  cpuSeconds,
  fmt,
  log,
  memoryKb,
  per100k,
  ratio,
  ROOT,
  sleep,
  stop,
  waitReady,
} from "./common.ts";
import { Reader } from "./reader_client.ts";

const TOKEN = "fake-token";
const WARM_UP_MS = 2000;
const DRAIN_MS = 5000;

export interface ProxyScenario {
  name: string;
  shards: number;
  /** Events per shard per second, or a flood (as fast as the client reads). */
  rate: number | "flood";
  /** Also through gatehouse with `[store] journal = false` (events not stored: no RESUME). */
  journalOff?: boolean;
}

export const PROXY_SCENARIOS: ProxyScenario[] = [
  { name: "4 × 500/s", shards: 4, rate: 500, journalOff: true },
  { name: "4 × 2000/s", shards: 4, rate: 2000, journalOff: true },
  { name: "flood, 1 shard", shards: 1, rate: "flood" },
];

interface Latency {
  p50: number | null;
  p99: number | null;
  max: number | null;
}

/** One reader of one run: the bot direct to the fake, gatehouse's stdout, or the bot on the proxy. */
export interface ProxyPathMeasure {
  path: "direct" | "stdout" | "proxy";
  /** gatehouse's `[store] journal` (null for direct). */
  journal: boolean | null;
  scenario: string;
  shards: number;
  seconds: number;
  /** Stamped events (stdout: lines) that reached the reader per second in the window. */
  deliveredPerSecond: number;
  /** From the fake's send stamp to the reader's read, over the window (ms). */
  latency: Latency;
  /** CPU-s in the window per 100k delivered events: the reader, and gatehouse (null for direct). */
  cpuPer100k: { reader: number | null; gatehouse: number | null };
  /** Paced: events the fake sent that never reached this reader (after up to 5 s to drain). */
  undelivered: number | null;
  /** The bot: connections closed under it (it resumed) and by which codes. */
  reconnects: number | null;
  closes: Record<string, number> | null;
  peakRssMb: { reader: number; gatehouse: number | null };
}

export interface ProxyScenarioResult {
  scenario: string;
  shards: number;
  rate: number | "flood";
  direct: ProxyPathMeasure;
  stdout: ProxyPathMeasure;
  proxy: ProxyPathMeasure;
  /** proxy − direct and proxy − stdout, p50 / p99 / max (ms). */
  added: Latency;
  overStdout: Latency;
  /** The same through gatehouse with its journal off (scenarios with `journalOff`). */
  journalOff:
    | { stdout: ProxyPathMeasure; proxy: ProxyPathMeasure; added: Latency; overStdout: Latency }
    | null;
  /** Flood: delivered to the bot through the proxy / delivered to it directly. */
  throughputRatio: number | null;
}

interface BotReport {
  type: "ready" | "progress" | "mark" | "end";
  at: number;
  shard?: number;
  dispatches?: number;
  stamped?: number;
  reconnects?: number;
  closes?: Record<string, number>;
  cpuS?: number;
  window?: { stamped: number; p50: number | null; p99: number | null; max: number | null };
}

/** The bot process (bench/proxy_reader.ts) and its reports. */
class Bot {
  readonly child: Deno.ChildProcess;
  readonly ready = new Set<number>();
  stamped = 0;
  #marks: BotReport[] = [];
  #waiters: Array<(r: BotReport) => void> = [];
  readonly done: Promise<BotReport | null>;
  #resolveDone!: (r: BotReport | null) => void;

  constructor(url: string, readonly shards: number) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "bench/proxy_reader.ts", url, String(shards), TOKEN],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.done = new Promise((resolve) => this.#resolveDone = resolve);
    void this.#read();
  }

  async #read(): Promise<void> {
    let carry = "";
    let end: BotReport | null = null;
    for await (const text of this.child.stdout.pipeThrough(new TextDecoderStream())) {
      carry += text;
      let nl;
      while ((nl = carry.indexOf("\n")) >= 0) {
        const report = JSON.parse(carry.slice(0, nl)) as BotReport;
        carry = carry.slice(nl + 1);
        if (report.stamped !== undefined) this.stamped = report.stamped;
        if (report.type === "ready") this.ready.add(report.shard!);
        else if (report.type === "mark") {
          const waiter = this.#waiters.shift();
          if (waiter) waiter(report);
          else this.#marks.push(report);
        } else if (report.type === "end") end = report;
      }
    }
    this.#resolveDone(end);
  }

  async waitReady(timeoutMs: number): Promise<void> {
    const until = performance.now() + timeoutMs;
    while (this.ready.size < this.shards) {
      if (performance.now() > until) {
        throw new Error(
          `the bot has ${this.ready.size} of ${this.shards} shards ready after ${timeoutMs} ms`,
        );
      }
      await sleep(50);
    }
  }

  mark(): Promise<BotReport> {
    const report = new Promise<BotReport>((resolve) => {
      const queued = this.#marks.shift();
      if (queued) resolve(queued);
      else this.#waiters.push(resolve);
    });
    Deno.kill(this.child.pid, "SIGUSR2");
    return Promise.race([
      report,
      this.done.then((end) => {
        if (end === null) throw new Error("the bot exited before its mark");
        return end;
      }),
    ]);
  }

  /** SIGTERM (it reports its end and exits), SIGKILL after 5 s. */
  async stop(): Promise<void> {
    try {
      this.child.kill("SIGTERM");
    } catch {
      // gone
    }
    const timer = setTimeout(() => {
      try {
        this.child.kill("SIGKILL");
      } catch {
        // gone
      }
    }, 5000);
    await this.child.status;
    await Promise.race([this.done, sleep(1000)]);
    clearTimeout(timer);
  }
}

let fifos = 0;

/**
 * `gatehouse run` with the proxy on 127.0.0.1:0 and its stdout on a FIFO into a `Reader` (as
 * `Bench.spawnWithReader`, but at log level info, for the proxy's "listening on" line: stderr is read
 * here, and only its warnings and errors go on to ours).
 */
function spawnProxied(bench: Bench, fake: FakeDiscord, shards: number, journal: boolean) {
  const target = journal ? "gatehouse" : "gatehouse-no-journal";
  const fifo = `${bench.storeDir}/proxy-out-${++fifos}.fifo`;
  const made = new Deno.Command("mkfifo", { args: [fifo] }).outputSync();
  if (!made.success) throw new Error(`mkfifo failed: ${new TextDecoder().decode(made.stderr)}`);
  const reader = new Reader(`< "$BENCH_FIFO"`, { BENCH_FIFO: fifo });
  const child = new Deno.Command("sh", {
    args: ["-c", `exec "$@" > "$BENCH_FIFO"`, "sh", Deno.execPath(), ...bench.programArgs(target)],
    cwd: ROOT,
    env: {
      ...bench.programEnv(target, fake, shards, {}),
      GATEHOUSE_PROXY_LISTEN: "127.0.0.1:0",
      GATEHOUSE_LOG_LEVEL: "info",
      BENCH_FIFO: fifo,
    },
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const tail: string[] = [];
  let resolveUrl!: (url: string) => void;
  const url = new Promise<string>((resolve) => resolveUrl = resolve);
  void (async () => {
    let carry = "";
    for await (const text of child.stderr.pipeThrough(new TextDecoderStream())) {
      carry += text;
      let nl;
      while ((nl = carry.indexOf("\n")) >= 0) {
        const line = carry.slice(0, nl);
        carry = carry.slice(nl + 1);
        tail.push(line);
        if (tail.length > 40) tail.shift();
        const listening = /proxy: listening on (ws:\/\/[\d.]+:\d+)/.exec(line);
        if (listening) resolveUrl(listening[1]);
        let level = "WARNING";
        try {
          level = JSON.parse(line).level ?? level;
        } catch {
          // not a log line: pass it on
        }
        if (!["TRACE", "DEBUG", "INFO"].includes(level)) log(`  gatehouse: ${line}`);
      }
    }
  })();
  const proxyUrl = async (timeoutMs: number) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((resolve) => timer = setTimeout(() => resolve(null), timeoutMs));
    const found = await Promise.race([url, timeout]);
    clearTimeout(timer);
    if (found === null) {
      throw new Error(`gatehouse did not log its proxy address; its last log lines:\n${tail.join("\n")}`);
    }
    return found;
  };
  return { child, reader, proxyUrl };
}

const round2 = (x: number | null) => x === null ? null : Number(x.toFixed(2));
const minus = (a: number | null, b: number | null) => a === null || b === null ? null : round2(a - b);

function printPath(m: ProxyPathMeasure): void {
  const names = m.journal === false
    ? { direct: "", stdout: "stdout, journal off", proxy: "bot → proxy, journal off" }
    : { direct: "bot → fake (direct)", stdout: "gatehouse stdout", proxy: "bot → gatehouse proxy" };
  const l = m.latency;
  log(
    `${names[m.path].padEnd(24)} ${m.scenario.padEnd(15)} delivered ${
      String(m.deliveredPerSecond).padStart(6)
    }/s` +
      `  latency p50/p99/max ${fmt(l.p50)}/${fmt(l.p99)}/${fmt(l.max)} ms  CPU-s/100k reader ` +
      `${fmt(m.cpuPer100k.reader)}` +
      (m.cpuPer100k.gatehouse === null ? "" : `, gatehouse ${fmt(m.cpuPer100k.gatehouse)}`) +
      `  peak RSS reader ${m.peakRssMb.reader} MB` +
      (m.peakRssMb.gatehouse === null ? "" : `, gatehouse ${m.peakRssMb.gatehouse} MB`) +
      (m.undelivered === null ? "" : `  undelivered ${m.undelivered}`) +
      (m.reconnects ? `  reconnects ${m.reconnects} (close codes ${JSON.stringify(m.closes)})` : ""),
  );
}

function botMeasure(
  path: "direct" | "proxy",
  journal: boolean | null,
  scenario: ProxyScenario,
  m0: BotReport,
  m1: BotReport,
  extra: {
    gatehouseCpu: number | null;
    undelivered: number | null;
    bot: Bot;
    gatehousePeakKb: number | null;
  },
): ProxyPathMeasure {
  const elapsed = (m1.at - m0.at) / 1000;
  const delivered = m1.stamped! - m0.stamped!;
  const w = m1.window!;
  return {
    path,
    journal,
    scenario: scenario.name,
    shards: scenario.shards,
    seconds: Number(elapsed.toFixed(2)),
    deliveredPerSecond: Math.round(delivered / elapsed),
    latency: { p50: w.p50, p99: w.p99, max: w.max },
    cpuPer100k: {
      reader: per100k(m1.cpuS! - m0.cpuS!, delivered),
      gatehouse: extra.gatehouseCpu === null ? null : per100k(extra.gatehouseCpu, delivered),
    },
    undelivered: extra.undelivered,
    reconnects: m1.reconnects! - m0.reconnects!,
    closes: Object.fromEntries(
      Object.entries(m1.closes ?? {}).map(([code, n]) => [code, n - (m0.closes?.[code] ?? 0)]).filter((
        [, n],
      ) => (n as number) > 0),
    ),
    peakRssMb: {
      reader: Math.round(memoryKb(extra.bot.child.pid).peak / 1024),
      gatehouse: extra.gatehousePeakKb === null ? null : Math.round(extra.gatehousePeakKb / 1024),
    },
  };
}

/** Starts the scenario's traffic; returns the fake's dispatch count at the start (what came before). */
function startTraffic(fake: FakeDiscord, scenario: ProxyScenario): number {
  const before = fake.stats().eventsSent;
  if (scenario.rate === "flood") fake.startFlood();
  else fake.startTraffic(scenario.rate);
  return before;
}

/** Paced: waits up to 5 s for `lines()` to reach `target()`, then what is still missing. */
async function drain(lines: () => number, target: () => number): Promise<number> {
  const until = performance.now() + DRAIN_MS;
  while (lines() < target() && performance.now() < until) await sleep(50);
  return Math.max(0, target() - lines());
}

/** The bot connected to the fake itself. */
async function direct(scenario: ProxyScenario, seconds: number): Promise<ProxyPathMeasure> {
  const fake = await benchFake(scenario.shards);
  let bot: Bot | null = null;
  try {
    bot = new Bot(fake.gatewayUrl, scenario.shards);
    await bot.waitReady(30_000);
    const before = startTraffic(fake, scenario);
    await sleep(WARM_UP_MS);
    const m0 = await bot.mark();
    await sleep(seconds * 1000);
    const m1 = await bot.mark();
    fake.stopFlood();
    fake.stopTraffic();
    const b = bot;
    const undelivered = scenario.rate === "flood"
      ? null
      : await drain(() => b.stamped, () => fake.stats().eventsSent - before);
    const result = botMeasure("direct", null, scenario, m0, m1, {
      gatehouseCpu: null,
      undelivered,
      bot,
      gatehousePeakKb: null,
    });
    printPath(result);
    return result;
  } finally {
    await bot?.stop();
    await fake.stop();
  }
}

/** gatehouse with the proxy: its stdout into the reader, the bot on its proxy, one window for both. */
async function throughGatehouse(
  bench: Bench,
  scenario: ProxyScenario,
  seconds: number,
  journal: boolean,
): Promise<{ stdout: ProxyPathMeasure; proxy: ProxyPathMeasure }> {
  const fake = await benchFake(scenario.shards);
  const { child, reader, proxyUrl } = spawnProxied(bench, fake, scenario.shards, journal);
  let bot: Bot | null = null;
  try {
    await waitReady(fake, scenario.shards, 30_000);
    const url = await proxyUrl(10_000);
    bot = new Bot(url, scenario.shards);
    await bot.waitReady(30_000);
    const before = startTraffic(fake, scenario);
    await sleep(WARM_UP_MS);
    const c0 = cpuSeconds(child.pid);
    const [b0, r0] = await Promise.all([bot.mark(), reader.mark()]);
    await sleep(seconds * 1000);
    const c1 = cpuSeconds(child.pid);
    const [b1, r1] = await Promise.all([bot.mark(), reader.mark()]);
    fake.stopFlood();
    fake.stopTraffic();
    const gatehousePeakKb = memoryKb(child.pid).peak;
    let botUndelivered: number | null = null, stdoutUndelivered: number | null = null;
    if (scenario.rate !== "flood") {
      const b = bot;
      botUndelivered = await drain(() => b.stamped, () => fake.stats().eventsSent - before);
      // As the other scenarios count it: every line against every dispatch the fake sent.
      stdoutUndelivered = await drain(() => reader.lines, () => fake.stats().eventsSent);
    }
    const proxy = botMeasure("proxy", journal, scenario, b0, b1, {
      gatehouseCpu: c1 - c0,
      undelivered: botUndelivered,
      bot,
      gatehousePeakKb,
    });
    const elapsed = (r1.at - r0.at) / 1000;
    const lines = r1.lines - r0.lines;
    const stdout: ProxyPathMeasure = {
      path: "stdout",
      journal,
      scenario: scenario.name,
      shards: scenario.shards,
      seconds: Number(elapsed.toFixed(2)),
      deliveredPerSecond: Math.round(lines / elapsed),
      latency: { p50: r1.window!.p50, p99: r1.window!.p99, max: r1.window!.max },
      cpuPer100k: { reader: per100k(r1.cpuS! - r0.cpuS!, lines), gatehouse: per100k(c1 - c0, lines) },
      undelivered: stdoutUndelivered,
      reconnects: null,
      closes: null,
      peakRssMb: {
        reader: Math.round(memoryKb(reader.child.pid).peak / 1024),
        gatehouse: Math.round(gatehousePeakKb / 1024),
      },
    };
    printPath(stdout);
    printPath(proxy);
    return { stdout, proxy };
  } finally {
    // The bot first: stopping gatehouse closes its proxy connections, which the bot would resume.
    await bot?.stop();
    await stop(child);
    await Promise.race([reader.done, sleep(5000)]);
    await stop(reader.child);
    await fake.stop();
  }
}

/** a − b, per quantile. */
function difference(a: ProxyPathMeasure, b: ProxyPathMeasure): Latency {
  return {
    p50: minus(a.latency.p50, b.latency.p50),
    p99: minus(a.latency.p99, b.latency.p99),
    max: minus(a.latency.max, b.latency.max),
  };
}

/** Every scenario (or those named), each direct then through gatehouse; prints as it goes. */
export async function proxyLatency(
  bench: Bench,
  options: { seconds: number; scenarios?: ProxyScenario[] },
): Promise<ProxyScenarioResult[]> {
  const results: ProxyScenarioResult[] = [];
  log(
    `proxy: the same bot (bench/proxy_reader.ts: WebSocket, JSON, no compression) direct to the fake, ` +
      `then on gatehouse's proxy with gatehouse's stdout into the reader; ${options.seconds} s after ` +
      `${WARM_UP_MS / 1000} s of warm-up`,
  );
  for (const scenario of options.scenarios ?? PROXY_SCENARIOS) {
    const d = await direct(scenario, options.seconds);
    const on = await throughGatehouse(bench, scenario, options.seconds, true);
    const off = scenario.journalOff ? await throughGatehouse(bench, scenario, options.seconds, false) : null;
    const throughputRatio = scenario.rate === "flood"
      ? ratio(on.proxy.deliveredPerSecond, d.deliveredPerSecond)
      : null;
    results.push({
      scenario: scenario.name,
      shards: scenario.shards,
      rate: scenario.rate,
      direct: d,
      stdout: on.stdout,
      proxy: on.proxy,
      added: difference(on.proxy, d),
      overStdout: difference(on.proxy, on.stdout),
      journalOff: off &&
        { ...off, added: difference(off.proxy, d), overStdout: difference(off.proxy, off.stdout) },
      throughputRatio,
    });
  }
  return results;
}

/** The summary: what the proxy adds over a direct connection (and over gatehouse's stdout). */
export function printProxyLatency(results: ProxyScenarioResult[]): void {
  if (results.length === 0) return;
  log(`\nproxy added latency (p50/p99 of the proxy run − the direct run; quantiles, not per event):`);
  const signed = (x: number | null) => x === null ? "–" : `${x >= 0 ? "+" : ""}${x.toFixed(2)}`;
  const line = (name: string, r: ProxyScenarioResult, added: Latency, overStdout: Latency) =>
    `${name.padEnd(24)} ${r.scenario.padEnd(15)} p50 ${signed(added.p50)} ms, p99 ${signed(added.p99)} ms, ` +
    `max ${signed(added.max)} ms (proxy − direct); over gatehouse's stdout p50 ${signed(overStdout.p50)}, ` +
    `p99 ${signed(overStdout.p99)} ms`;
  for (const r of results) {
    log(
      line("proxy added", r, r.added, r.overStdout) +
        (r.throughputRatio === null
          ? ""
          : `; delivered ${r.proxy.deliveredPerSecond}/s = ${fmt(r.throughputRatio)} × direct ` +
            `(${r.direct.deliveredPerSecond}/s), ${
              fmt(ratio(r.proxy.deliveredPerSecond, r.stdout.deliveredPerSecond))
            } × gatehouse's stdout (${r.stdout.deliveredPerSecond}/s)`),
    );
    if (r.journalOff) log(line("proxy added, journal off", r, r.journalOff.added, r.journalOff.overStdout));
  }
}
