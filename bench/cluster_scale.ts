/**
 * The cluster at scale: many idle shards over several `gatehouse run` processes in cluster mode, against
 * the fake Discord and a Redis of its own, on this machine. Reports when every shard was READY, the
 * identify timeline (IDENTIFYs per 10 s, the fake's bucket violations: one per bucket per 5 s across
 * all processes), the shards each process owns and its RSS.
 *
 *   deno run -A bench/cluster_scale.ts                 # 2500 shards, 5 processes, max_concurrency 100
 *   deno run -A bench/cluster_scale.ts 500 2 50        # shards, processes, max_concurrency
 *   deno task bench --only scale                       # the same, as part of the bench
 *
 * Discord's 5 s per bucket is kept; a large max_concurrency (Discord gives 16 and more to large bots)
 * stands in for a short identify interval, so 2500 shards identify in ~25 rounds.
 */
import { Redis } from "ioredis";
import { FakeDiscord } from "../tests/fake_discord/server.ts";
import { RUN_FLAGS } from "../tests/helpers/gatehouse.ts";
import { RedisServer } from "../tests/helpers/redis_server.ts";

const ROOT = new URL("../", import.meta.url);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const log = (text: string) => Deno.stderr.writeSync(new TextEncoder().encode(`${text}\n`));

function rssKb(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1]);
}

export interface ScaleResult {
  shards: number;
  processes: number;
  maxConcurrency: number;
  allReadyS: number;
  identifies: number;
  violations: number;
  /** The first few violations the fake recorded (kind, shard, detail). */
  violationSamples: string[];
  timeline: Array<{ s: number; identified: number }>;
  perProcess: Array<{ node: string; shards: number; rssMb: number }>;
  stopS: number;
}

export async function clusterScale(shards = 2500, processes = 5, maxConcurrency = 100): Promise<ScaleResult> {
  const redis = await RedisServer.start({ durable: false });
  const fake = await FakeDiscord.start({
    shards,
    maxConcurrency,
    guildsPerShard: 1,
    precompressed: true,
    recordEvents: false,
    sessionStartLimit: { total: shards * 2 + 100, remaining: shards * 2 + 100 },
  });
  const client = new Redis(redis.url);
  const dir = Deno.makeTempDirSync({ prefix: "gatehouse-scale-" });
  const children: Array<{ node: string; child: Deno.ChildProcess }> = [];
  const started = performance.now();
  const wallStart = Date.now();
  // How late this process's timers run: the fake stamps each IDENTIFY when it gets to it, so a fake
  // that falls behind stamps some late, and the next IDENTIFY of the bucket looks early.
  const lag: Array<{ s: number; ms: number }> = [];
  let tickAt = performance.now();
  const ticker = setInterval(() => {
    const now = performance.now();
    lag.push({ s: Math.round((now - started) / 100) / 10, ms: Math.round(now - tickAt - 50) });
    tickAt = now;
  }, 50);
  try {
    for (let i = 0; i < processes; i++) {
      const node = `node-${i}`;
      // Niced: the fake stamps each IDENTIFY when it reads it, and a fake starved of CPU by the processes
      // it measures stamps a round late, making the next round of a bucket look early (measured: all
      // "violations" 4.6 s after a first round that gatehouse wrote 5.25 s apart).
      const child = new Deno.Command("nice", {
        args: ["-n", "10", Deno.execPath(), ...RUN_FLAGS, "main.ts", "run"],
        cwd: ROOT,
        env: {
          GATEHOUSE_STORE: `${dir}/${node}.db`,
          GATEHOUSE_CONTROL_ADDRESS: "off",
          GATEHOUSE_CLUSTER: "redis",
          GATEHOUSE_CLUSTER_NODE: node,
          BROKER_TYPE: "redis",
          REDIS_URL: redis.url,
          GATEHOUSE_REDIS_PREFIX: "scale",
          DISCORD_TOKEN: "fake-token",
          DISCORD_API_SCHEME: "http",
          DISCORD_API_HOST: fake.apiHost,
          GATEHOUSE_LOG_LEVEL: "warning",
        },
        stdin: "null",
        stdout: "null",
        stderr: "inherit",
      }).spawn();
      children.push({ node, child });
    }
    const timeline: ScaleResult["timeline"] = [];
    let lastMark = 0;
    const deadline = started + 20 * 60_000;
    while (fake.identifies.length < shards) {
      if (performance.now() > deadline) {
        throw new Error(`only ${fake.identifies.length} of ${shards} identified`);
      }
      await sleep(500);
      const s = (performance.now() - started) / 1000;
      if (s - lastMark >= 10) {
        lastMark = s;
        timeline.push({ s: Math.round(s), identified: fake.identifies.length });
        log(`  ${Math.round(s)} s: ${fake.identifies.length} of ${shards} identified`);
      }
    }
    const allReadyS = (performance.now() - started) / 1000;
    timeline.push({ s: Math.round(allReadyS), identified: fake.identifies.length });
    await sleep(5000);
    const owners = await Promise.all(
      Array.from({ length: shards }, (_, id) => client.get(`{scale}:lease:${shards}:${id}`)),
    );
    const perProcess = children.map(({ node, child }) => ({
      node,
      shards: owners.filter((o) => o === node).length,
      rssMb: Math.round(rssKb(child.pid) / 1024),
    }));
    clearInterval(ticker);
    const worst = [...lag].sort((x, y) => y.ms - x.ms).slice(0, 5);
    log(`  the fake's worst timer delays: ${worst.map((w) => `${w.ms} ms at ${w.s} s`).join(", ")}`);
    const stopping = performance.now();
    for (const { child } of children) child.kill("SIGTERM");
    await Promise.all(children.map(({ child }) => child.status));
    return {
      shards,
      processes,
      maxConcurrency,
      allReadyS: Math.round(allReadyS * 10) / 10,
      identifies: fake.identifies.length,
      violations: fake.violations.length,
      violationSamples: [
        ...fake.violations.slice(0, 5).map((v) => `${v.kind} shard ${v.shard}: ${v.detail}`),
        ...(fake.violations.length > 0
          ? [
            `at ${
              [...new Set(fake.violations.map((v) => ((v.at - wallStart) / 1000).toFixed(0)))].join(", ")
            } s`,
          ]
          : []),
      ],
      timeline,
      perProcess,
      stopS: Math.round((performance.now() - stopping) / 100) / 10,
    };
  } finally {
    clearInterval(ticker);
    for (const { child } of children) {
      try {
        child.kill("SIGKILL");
      } catch {
        // already gone
      }
    }
    await Promise.all(children.map(({ child }) => child.status));
    client.disconnect();
    await fake.stop();
    await redis.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

export function printScale(r: ScaleResult): void {
  log(
    `cluster scale: ${r.shards} shards over ${r.processes} processes (max_concurrency ${r.maxConcurrency}): ` +
      `all identified in ${r.allReadyS} s, ${r.identifies} IDENTIFYs, ${r.violations} bucket violations`,
  );
  for (const v of r.violationSamples) log(`  violation: ${v}`);
  for (const p of r.perProcess) {
    log(`  ${p.node}: ${p.shards} shards, RSS ${p.rssMb} MB`);
  }
  log(`  stopped (SIGTERM, every shard closed with 4000, leases released) in ${r.stopS} s`);
}

if (import.meta.main) {
  const [shards, processes, mc] = Deno.args.map(Number);
  const result = await clusterScale(shards || undefined, processes || undefined, mc || undefined);
  printScale(result);
  console.log(JSON.stringify(result));
}
