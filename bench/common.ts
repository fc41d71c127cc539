/**
 * What the scenarios of `deno task bench` share: starting the program under test against the fake
 * Discord (stdout to /dev/null, or on a FIFO into a `Reader`), each run with its own store file; CPU and
 * memory of a process from /proc; the rate the fake's connections report in their heartbeats; the fake of
 * the throughput scenarios; number formatting.
 */
import { FakeDiscord } from "../tests/fake_discord/server.ts";
import { RUN_FLAGS } from "../tests/helpers/gatehouse.ts";
import { Reader } from "./reader_client.ts";

export const ROOT = new URL("../", import.meta.url);
export const REDIS_URL = Deno.env.get("GATEHOUSE_BENCH_REDIS") ?? "redis://127.0.0.1:6379";
export const AMQP_URL = Deno.env.get("GATEHOUSE_BENCH_AMQP") ?? "amqp://guest:guest@127.0.0.1:5672";
const CLK_TCK = 100;
export const log = (text: string) => Deno.stderr.writeSync(new TextEncoder().encode(`${text}\n`));
export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
export const wallNow = () => performance.timeOrigin + performance.now();

/** gatehouse with its journal (the default), without it, and the two reference clients. */
export type Target =
  | "gatehouse"
  | "gatehouse-no-journal"
  | "bare-inflate"
  | "bare-inflate-ws"
  | "bare-parse-write";

/**
 * Starts programs under test: each run gets its own store file (and FIFO) in one temporary directory,
 * removed by `cleanup()`. `v8Flags` replaces the V8 flags of `deno task start` (undefined: keep them).
 */
export class Bench {
  readonly storeDir = Deno.makeTempDirSync({ prefix: "gatehouse-bench-" });
  #runs = 0;

  constructor(readonly v8Flags?: string) {}

  programArgs(target: Target): string[] {
    const flags = this.v8Flags === undefined ? RUN_FLAGS : [
      ...RUN_FLAGS.filter((f) => !f.startsWith("--v8-flags")),
      ...(this.v8Flags ? [`--v8-flags=${this.v8Flags}`] : []),
    ];
    return target.startsWith("gatehouse")
      ? [...flags, "main.ts", "run"]
      : [...flags, "bench/bare_client.ts", target.slice("bare-".length)];
  }

  programEnv(target: Target, fake: FakeDiscord, shards: number, extraEnv: Record<string, string>) {
    return {
      GATEHOUSE_STORE: `${this.storeDir}/run-${++this.#runs}.db`,
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
  spawn(
    target: Target,
    fake: FakeDiscord,
    shards: number,
    extraEnv: Record<string, string> = {},
  ): Deno.ChildProcess {
    return new Deno.Command(Deno.execPath(), {
      args: this.programArgs(target),
      cwd: ROOT,
      env: this.programEnv(target, fake, shards, extraEnv),
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
  }

  /** The program under test with its stdout on a FIFO read by a `Reader`. */
  spawnWithReader(
    target: Target,
    fake: FakeDiscord,
    shards: number,
    extraEnv: Record<string, string> = {},
  ): { child: Deno.ChildProcess; reader: Reader } {
    const fifo = `${this.storeDir}/out-${this.#runs + 1}.fifo`;
    const made = new Deno.Command("mkfifo", { args: [fifo] }).outputSync();
    if (!made.success) throw new Error(`mkfifo failed: ${new TextDecoder().decode(made.stderr)}`);
    const reader = new Reader(`< "$BENCH_FIFO"`, { BENCH_FIFO: fifo });
    const child = new Deno.Command("sh", {
      args: ["-c", `exec "$@" > "$BENCH_FIFO"`, "sh", Deno.execPath(), ...this.programArgs(target)],
      cwd: ROOT,
      env: { ...this.programEnv(target, fake, shards, extraEnv), BENCH_FIFO: fifo },
      stdin: "null",
      stdout: "null",
      stderr: "inherit",
    }).spawn();
    return { child, reader };
  }

  cleanup(): void {
    Deno.removeSync(this.storeDir, { recursive: true });
  }
}

export function cpuSeconds(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

export function memoryKb(pid: number): { rss: number; peak: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return {
    rss: Number(/VmRSS:\s+(\d+)/.exec(status)![1]),
    peak: Number(/VmHWM:\s+(\d+)/.exec(status)![1]),
  };
}

/** Per connection: the last sequence number the client reported in a heartbeat, and when it arrived. */
export function progress(fake: FakeDiscord): Map<number, { seq: number; at: number }> {
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
export function handledRate(
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

export async function waitReady(fake: FakeDiscord, shards: number, timeoutMs: number): Promise<void> {
  await fake.waitFor(
    () => fake.connections().filter((c) => c.sessionId !== null && c.heartbeats > 0).length === shards,
    timeoutMs,
    `${shards} shards ready and beating`,
  );
}

export async function stop(child: Deno.ChildProcess): Promise<void> {
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

/** The fake Discord of the throughput scenarios: cheap precompressed frames, frequent heartbeats. */
export function benchFake(shards: number): Promise<FakeDiscord> {
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

export const per100k = (cpu: number, n: number) => n > 0 ? Number(((cpu / n) * 100_000).toFixed(3)) : null;
export const fmt = (x: number | null, digits = 2) => x === null ? "–" : x.toFixed(digits);
export const ratio = (a: number | null | undefined, b: number | null | undefined) =>
  a === null || a === undefined || !b ? null : Number((a / b).toFixed(2));
