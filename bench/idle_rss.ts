/**
 * Idle footprint of `gatehouse run`: VmRSS and VmHWM of the process once every shard is READY and has
 * sent a few heartbeats, against the fake Discord, stdout on a pipe this script reads.
 *
 *   deno run -A bench/idle_rss.ts            # 1 shard
 *   deno run -A bench/idle_rss.ts 1 1000     # 1 shard, then 1000, and the KB per extra idle shard
 *
 * Env: GATEHOUSE_* variables are passed through (e.g. GATEHOUSE_CONTROL_ADDRESS=off); IDLE_ENTRY runs
 * another entry point than main.ts (one that wraps `main`, to look inside the process).
 */
import { FakeDiscord } from "../tests/fake_discord/server.ts";
import { RUN_FLAGS } from "../tests/helpers/gatehouse.ts";

const ROOT = new URL("../", import.meta.url);
const counts = Deno.args.length > 0 ? Deno.args.map(Number) : [1];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function memoryKb(pid: number): { rss: number; peak: number; threads: number } {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return {
    rss: Number(/VmRSS:\s+(\d+)/.exec(status)![1]),
    peak: Number(/VmHWM:\s+(\d+)/.exec(status)![1]),
    threads: Number(/Threads:\s+(\d+)/.exec(status)![1]),
  };
}

async function measure(shards: number): Promise<{ rss: number; peak: number; threads: number }> {
  const fake = await FakeDiscord.start({
    shards,
    maxConcurrency: shards,
    guildsPerShard: 1,
    precompressed: true,
    recordEvents: false,
    heartbeatIntervalMs: 1000,
    sessionStartLimit: { total: shards * 2 + 100, remaining: shards * 2 + 100 },
  });
  const dir = Deno.makeTempDirSync({ prefix: "gatehouse-idle-" });
  const passed = Object.fromEntries(
    Object.entries(Deno.env.toObject()).filter(([key]) => key.startsWith("GATEHOUSE_")),
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: [...RUN_FLAGS, Deno.env.get("IDLE_ENTRY") ?? "main.ts", "run"],
    cwd: ROOT,
    env: {
      GATEHOUSE_STORE: `${dir}/store.db`,
      GATEHOUSE_CONTROL_ADDRESS: "127.0.0.1:0",
      ...passed,
      DISCORD_TOKEN: "fake-token",
      DISCORD_API_SCHEME: "http",
      DISCORD_API_HOST: fake.apiHost,
      GATEHOUSE_LOG_LEVEL: "warning",
    },
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let lines = 0;
  const reading = (async () => {
    for await (const chunk of child.stdout) {
      for (const byte of chunk) if (byte === 10) lines++;
    }
  })();
  try {
    await fake.waitFor(
      () => fake.connections().filter((c) => c.sessionId !== null && c.heartbeats >= 3).length === shards,
      180_000,
      `${shards} shards ready and beating`,
    );
    await sleep(2000);
    const memory = memoryKb(child.pid);
    if (Deno.env.get("IDLE_THREADS")) {
      const names = [...Deno.readDirSync(`/proc/${child.pid}/task`)].map((task) =>
        Deno.readTextFileSync(`/proc/${child.pid}/task/${task.name}/comm`).trim()
      );
      console.log(`threads: ${names.sort().join(", ")}`);
    }
    console.log(
      `${shards} shard(s): VmRSS ${(memory.rss / 1024).toFixed(1)} MB, VmHWM ${
        (memory.peak / 1024).toFixed(1)
      } MB, ${memory.threads} threads, ${lines} lines read`,
    );
    return memory;
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await reading;
    await fake.stop();
    Deno.removeSync(dir, { recursive: true });
  }
}

const results = [];
for (const shards of counts) results.push({ shards, ...(await measure(shards)) });
if (results.length >= 2) {
  const [a, b] = [results[0], results[results.length - 1]];
  console.log(`per extra idle shard: ${((b.rss - a.rss) / (b.shards - a.shards)).toFixed(1)} KB`);
}
