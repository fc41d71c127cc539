/**
 * `deno task bench --only cores`: all cores of one host, by processes. The same flood of 16 shards runs
 * once through one gatehouse process (shards 0–15) and once through two (`DISCORD_SHARD_COUNT=16`,
 * `DISCORD_SHARD_IDS=0-7` and `8-15`), each process with its own store file:
 *
 * - into the reader: each process's stdout on its own FIFO read by its own reader; lines/s summed over
 *   the readers, CPU of every gatehouse process and reader (and of this process, which runs the fake),
 *   peak RSS of each;
 * - into Redis Streams: every process into the same fresh stream (`BROKER_TYPE=redis`, one stream, a
 *   random prefix, stdout not a sink); entries appended per second from XLEN, next to the bare
 *   pipelined producer's rate into the same Redis; then two cluster members (`GATEHOUSE_CLUSTER=redis`,
 *   no ids: they share the 16 shards through leases), the way the README says to use both cores.
 *
 * The figure that decides is the ratio of two processes to one: it says whether a second process turns
 * the second core into throughput, or whether the machine (the fake, the readers, Redis) was already
 * full. "cores busy" is the CPU-s of the whole tree per second of the window (2 = both cores busy).
 */
import { bareProducer, brokerTarget } from "./brokers.ts";
import {
  type Bench,
  benchFake,
  cpuSeconds,
  handledRate,
  log,
  memoryKb,
  per100k,
  progress,
  ratio,
  REDIS_URL,
  sleep,
  stop,
  waitReady,
} from "./common.ts";
import type { Reader, ReaderReport } from "./reader_client.ts";

const SHARDS = 16;
const mb = (kb: number) => Math.round(kb / 1024);

/** The shard ids of process `index` of `processes`, in the syntax of `DISCORD_SHARD_IDS`: `0-7`. */
export function shardRange(shards: number, processes: number, index: number): string {
  const from = Math.floor((shards * index) / processes);
  const to = Math.floor((shards * (index + 1)) / processes) - 1;
  return from === to ? String(from) : `${from}-${to}`;
}

function shardEnv(processes: number, index: number): Record<string, string> {
  return {
    DISCORD_SHARD_COUNT: String(SHARDS),
    DISCORD_SHARD_IDS: shardRange(SHARDS, processes, index),
  };
}

/** One run into the readers. */
export interface CoresReaderRun {
  processes: number;
  shards: number;
  seconds: number;
  /** Lines/s that reached the readers, summed over processes. */
  deliveredPerSecond: number;
  /** Events/s gatehouse read (its heartbeats' seqs), all shards. */
  readPerSecond: number;
  /** Per process: the lines/s its reader got, and their latency p99 (ms). */
  perProcess: Array<{ shardIds: string; deliveredPerSecond: number; p99: number | null }>;
  /** CPU-s in the window: gatehouse (all processes), readers, this process (the fake). */
  cpuS: { gatehouse: number; readers: number; fake: number };
  /** CPU-s per 100k delivered lines: gatehouse alone, and gatehouse + readers. */
  cpuPer100k: { gatehouse: number | null; tree: number | null };
  /** CPU-s of gatehouse, readers and fake per second of the window. */
  cores: number;
  peakRssMb: number[];
  readerPeakRssMb: number[];
}

async function intoReaders(bench: Bench, processes: number, seconds: number): Promise<CoresReaderRun> {
  const fake = await benchFake(SHARDS);
  const runs: Array<{ child: Deno.ChildProcess; reader: Reader }> = [];
  try {
    for (let i = 0; i < processes; i++) {
      runs.push(bench.spawnWithReader("gatehouse", fake, SHARDS, shardEnv(processes, i)));
    }
    await waitReady(fake, SHARDS, 30_000);
    fake.startFlood();
    await sleep(2000); // warm up
    const snapshot = async () => ({
      progress: progress(fake),
      gatehouse: runs.map((r) => cpuSeconds(r.child.pid)),
      fake: cpuSeconds(Deno.pid),
      at: performance.now(),
      marks: await Promise.all(runs.map((r) => r.reader.mark())),
    });
    const s0 = await snapshot();
    await sleep(seconds * 1000);
    const s1 = await snapshot();
    fake.stopFlood();
    const { perSecond, lost } = handledRate(s0.progress, s1.progress);
    if (lost > 0) log(`  (${lost} connection(s) reconnected during the measurement and were not counted)`);
    const elapsed = (s1.at - s0.at) / 1000;
    const lines = (i: number) => s1.marks[i].lines - s0.marks[i].lines;
    const rateOf = (m0: ReaderReport, m1: ReaderReport) => (m1.lines - m0.lines) / ((m1.at - m0.at) / 1000);
    const perProcess = runs.map((_, i) => ({
      shardIds: shardRange(SHARDS, processes, i),
      deliveredPerSecond: Math.round(rateOf(s0.marks[i], s1.marks[i])),
      p99: s1.marks[i].window!.p99,
    }));
    const delivered = runs.reduce((sum, _, i) => sum + lines(i), 0);
    const gatehouse = runs.reduce((sum, _, i) => sum + s1.gatehouse[i] - s0.gatehouse[i], 0);
    const readers = runs.reduce((sum, _, i) => sum + s1.marks[i].cpuS! - s0.marks[i].cpuS!, 0);
    const fakeCpu = s1.fake - s0.fake;
    const result: CoresReaderRun = {
      processes,
      shards: SHARDS,
      seconds: Number(elapsed.toFixed(2)),
      deliveredPerSecond: perProcess.reduce((sum, p) => sum + p.deliveredPerSecond, 0),
      readPerSecond: Math.round(perSecond),
      perProcess,
      cpuS: {
        gatehouse: Number(gatehouse.toFixed(2)),
        readers: Number(readers.toFixed(2)),
        fake: Number(fakeCpu.toFixed(2)),
      },
      cpuPer100k: { gatehouse: per100k(gatehouse, delivered), tree: per100k(gatehouse + readers, delivered) },
      cores: Number(((gatehouse + readers + fakeCpu) / elapsed).toFixed(2)),
      peakRssMb: runs.map((r) => mb(memoryKb(r.child.pid).peak)),
      readerPeakRssMb: runs.map((r) => mb(memoryKb(r.reader.child.pid).peak)),
    };
    log(
      `cores: ${processes} process(es) × ${SHARDS / processes} shards → reader: delivered ` +
        `${result.deliveredPerSecond}/s (${perProcess.map((p) => p.deliveredPerSecond).join(" + ")}; read ` +
        `${result.readPerSecond}/s)  p99 ${perProcess.map((p) => p.p99?.toFixed(0) ?? "–").join("/")} ms  ` +
        `CPU-s/100k ${result.cpuPer100k.tree ?? "–"} (gatehouse ${result.cpuPer100k.gatehouse ?? "–"})  ` +
        `cores busy ${result.cores} (fake ${result.cpuS.fake} CPU-s)  peak RSS ${
          result.peakRssMb.join(" + ")
        } MB (readers ${result.readerPeakRssMb.join(" + ")})`,
    );
    return result;
  } finally {
    await Promise.all(runs.map((r) => stop(r.child)));
    await Promise.all(runs.map((r) => Promise.race([r.reader.done, sleep(5000)])));
    await Promise.all(runs.map((r) => stop(r.reader.child)));
    await fake.stop();
  }
}

/** One run into Redis Streams. */
export interface CoresRedisRun {
  processes: number;
  /** Cluster mode (the members share the shards through leases) instead of a static split of ids. */
  cluster: boolean;
  shards: number;
  seconds: number;
  /** Events/s the shards read (their heartbeats' seqs). */
  receivedPerSecond: number;
  /** Stream entries appended per second (XLEN), all processes. */
  appendedPerSecond: number;
  /** Events the fake sent that were not in the stream at the end of the window. */
  lagEvents: number;
  /** CPU-s in the window: gatehouse (all processes), this process (the fake), redis-server (null when
   * it runs on another host). */
  cpuS: { gatehouse: number; fake: number; redis: number | null };
  cpuPer100k: number | null;
  /** CPU-s of gatehouse, the fake and redis-server per second of the window. */
  cores: number;
  peakRssMb: number[];
}

async function intoRedis(
  bench: Bench,
  processes: number,
  seconds: number,
  cluster = false,
): Promise<CoresRedisRun> {
  const fake = await benchFake(SHARDS);
  const target = await brokerTarget("redis");
  const env = {
    BROKER_TYPE: "redis",
    REDIS_URL,
    GATEHOUSE_REDIS_STREAMS: "single",
    GATEHOUSE_REDIS_PREFIX: target.name,
  };
  const children: Deno.ChildProcess[] = [];
  try {
    const redisPid = await target.serverPid();
    for (let i = 0; i < processes; i++) {
      // Cluster mode: nobody lists ids; the members share the 16 shards through leases.
      const shards = cluster
        ? {
          DISCORD_SHARD_COUNT: String(SHARDS),
          GATEHOUSE_CLUSTER: "redis",
          GATEHOUSE_CLUSTER_NODE: `bench-${i}`,
        }
        : shardEnv(processes, i);
      children.push(bench.spawn("gatehouse", fake, SHARDS, { ...env, ...shards }));
    }
    await waitReady(fake, SHARDS, 30_000);
    fake.startFlood();
    await sleep(2000);
    const snapshot = async () => ({
      progress: progress(fake),
      gatehouse: children.map((c) => cpuSeconds(c.pid)),
      fake: cpuSeconds(Deno.pid),
      redis: redisPid === null ? 0 : cpuSeconds(redisPid),
      at: performance.now(),
      entries: await target.count(),
    });
    const s0 = await snapshot();
    await sleep(seconds * 1000);
    const s1 = await snapshot();
    const sent = fake.stats().eventsSent;
    fake.stopFlood();
    const elapsed = (s1.at - s0.at) / 1000;
    const appended = s1.entries - s0.entries;
    const gatehouse = children.reduce((sum, _, i) => sum + s1.gatehouse[i] - s0.gatehouse[i], 0);
    const fakeCpu = s1.fake - s0.fake;
    const redisCpu = redisPid === null ? null : s1.redis - s0.redis;
    const result: CoresRedisRun = {
      processes,
      cluster,
      shards: SHARDS,
      seconds: Number(elapsed.toFixed(2)),
      receivedPerSecond: Math.round(handledRate(s0.progress, s1.progress).perSecond),
      appendedPerSecond: Math.round(appended / elapsed),
      lagEvents: Math.max(0, sent - s1.entries),
      cpuS: {
        gatehouse: Number(gatehouse.toFixed(2)),
        fake: Number(fakeCpu.toFixed(2)),
        redis: redisCpu === null ? null : Number(redisCpu.toFixed(2)),
      },
      cpuPer100k: per100k(gatehouse, appended),
      cores: Number(((gatehouse + fakeCpu + (redisCpu ?? 0)) / elapsed).toFixed(2)),
      peakRssMb: children.map((c) => mb(memoryKb(c.pid).peak)),
    };
    log(
      `cores: ${processes} process(es) × ${SHARDS / processes} shards${
        cluster ? " (cluster mode)" : ""
      } → Redis Streams: ` +
        `${result.appendedPerSecond} entries/s appended (${result.receivedPerSecond}/s received, ` +
        `${result.lagEvents} behind at the end)  gatehouse CPU-s/100k ${result.cpuPer100k ?? "–"}  ` +
        `cores busy ${result.cores} (redis-server ${
          result.cpuS.redis ?? "elsewhere, not counted"
        } CPU-s)  peak RSS ${result.peakRssMb.join(" + ")} MB`,
    );
    return result;
  } finally {
    await Promise.all(children.map((c) => stop(c)));
    await fake.stop();
    await target.cleanup();
  }
}

export interface CoresResult {
  reader: CoresReaderRun[];
  redis: CoresRedisRun[];
  /** The bare pipelined producer into the same Redis (null with `--no-baseline`). */
  bareProducerPerSecond: number | null;
  /** Two processes / one: lines/s into the readers, entries/s into Redis. */
  ratios: { reader: number | null; redis: number | null; redisCluster: number | null };
}

/** The `cores` scenario: 1 then 2 processes into the readers, then into Redis Streams. */
export async function cores(
  bench: Bench,
  seconds: number,
  options: { baseline: boolean },
): Promise<CoresResult> {
  const reader: CoresReaderRun[] = [];
  for (const processes of [1, 2]) reader.push(await intoReaders(bench, processes, seconds));
  const floor = options.baseline ? await bareProducer("redis", seconds) : null;
  const redis: CoresRedisRun[] = [];
  for (const processes of [1, 2]) redis.push(await intoRedis(bench, processes, seconds));
  redis.push(await intoRedis(bench, 2, seconds, true));
  const ratios = {
    reader: ratio(reader[1].deliveredPerSecond, reader[0].deliveredPerSecond),
    redis: ratio(redis[1].appendedPerSecond, redis[0].appendedPerSecond),
    redisCluster: ratio(redis[2].appendedPerSecond, redis[0].appendedPerSecond),
  };
  log(
    `cores: 2 processes / 1, flood of ${SHARDS} shards: ${ratios.reader ?? "–"} × into the reader ` +
      `(${reader[1].deliveredPerSecond} vs ${reader[0].deliveredPerSecond} lines/s), ${
        ratios.redis ?? "–"
      } × into Redis Streams (${redis[1].appendedPerSecond} vs ${redis[0].appendedPerSecond} entries/s; ` +
      `two cluster members ${redis[2].appendedPerSecond}/s = ${ratios.redisCluster ?? "–"} ×` +
      (floor ? `; the bare producer ${floor.perSecond}/s)` : ")"),
  );
  return { reader, redis, bareProducerPerSecond: floor?.perSecond ?? null, ratios };
}
