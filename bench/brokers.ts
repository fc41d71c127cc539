/**
 * The broker scenarios of `deno task bench`: a fresh stream or exchange per run (deleted after), the
 * bare pipelined producer that is the broker's floor (bench/bare_producer.ts), and a flood of shards
 * through gatehouse's sink into it (stdout not a sink).
 */
import { AMQPClient } from "@cloudamqp/amqp-client";
import { Redis } from "ioredis";
import {
  AMQP_URL,
  type Bench,
  benchFake,
  cpuSeconds,
  handledRate,
  log,
  memoryKb,
  per100k,
  progress,
  REDIS_URL,
  ROOT,
  sleep,
  stop,
  waitReady,
} from "./common.ts";

/** A destination for the broker scenarios, created fresh and deleted after. */
export interface BrokerTarget {
  name: string;
  count(): Promise<number>;
  /** Redis only: the server's pid when it runs on this host (for its CPU from /proc), else null. */
  serverPid(): Promise<number | null>;
  cleanup(): Promise<void>;
}

export async function brokerTarget(kind: "redis" | "amqp", perEvent = false): Promise<BrokerTarget> {
  const name = `gatehouse-bench-${crypto.randomUUID().slice(0, 8)}`;
  if (kind === "redis") {
    const client = new Redis(REDIS_URL);
    /** Per event name: every stream `{name}:*` (the marks' keys start with `{`, so they are not among them). */
    const streams = async () => {
      const keys: string[] = [];
      for await (const found of client.scanStream({ match: `${name}:*`, count: 1000 })) {
        keys.push(...(found as string[]));
      }
      return keys;
    };
    return {
      name,
      count: async () => {
        if (!perEvent) return await client.xlen(`${name}:events`);
        const pipeline = client.pipeline();
        for (const key of await streams()) pipeline.xlen(key);
        const lengths = await pipeline.exec();
        return (lengths ?? []).reduce((sum, [, n]) => sum + Number(n ?? 0), 0);
      },
      serverPid: async () => {
        const pid = Number(/process_id:(\d+)/.exec(await client.info("server"))?.[1]);
        try {
          return pid > 0 && Deno.statSync(`/proc/${pid}/stat`).isFile ? pid : null;
        } catch {
          return null; // another host's Redis, or no /proc
        }
      },
      cleanup: async () => {
        // Every key under the prefix: the stream, its de-duplication marks (`{<stream>}:seen`, see
        // src/sinks/redis.ts), the command streams the Redis source created.
        for await (const keys of client.scanStream({ match: `*${name}*`, count: 1000 })) {
          if ((keys as string[]).length > 0) await client.del(...(keys as string[]));
        }
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
    serverPid: () => Promise.resolve(null),
    cleanup: async () => {
      await channel.queueDelete(name);
      await channel.exchangeDelete(name);
      await client.close();
    },
  };
}

/** The broker's floor: bench/bare_producer.ts for `seconds` into a fresh stream or exchange. */
export async function bareProducer(kind: "redis" | "amqp", seconds: number) {
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
export async function brokerFlood(
  bench: Bench,
  kind: "redis" | "amqp",
  shards: number,
  rate: number | "flood",
  seconds: number,
  floor: number | null,
  /** Redis: a wire format (`[broker] format`) into one stream per event name instead of one stream. */
  format: "gatehouse" | "spectacles" | "discordjs" | null = null,
) {
  const fake = await benchFake(shards);
  const target = await brokerTarget(kind, format !== null);
  const layout: Record<string, string> = format === null
    ? { GATEHOUSE_REDIS_STREAMS: "single" }
    : { GATEHOUSE_REDIS_STREAMS: "per-event", GATEHOUSE_BROKER_FORMAT: format };
  const env: Record<string, string> = kind === "redis"
    ? { BROKER_TYPE: kind, REDIS_URL, ...layout, GATEHOUSE_REDIS_PREFIX: target.name }
    : { BROKER_TYPE: kind, AMQP_URL, GATEHOUSE_AMQP_EXCHANGE: target.name };
  const child = bench.spawn("gatehouse", fake, shards, env);
  try {
    const serverPid = await target.serverPid();
    const serverCpu = () => serverPid === null ? 0 : cpuSeconds(serverPid);
    await waitReady(fake, shards, 30_000);
    if (rate === "flood") fake.startFlood();
    else fake.startTraffic(rate);
    await sleep(2000);
    const p0 = progress(fake),
      n0 = await target.count(),
      c0 = cpuSeconds(child.pid),
      r0 = serverCpu(),
      t0 = performance.now();
    await sleep(seconds * 1000);
    const p1 = progress(fake),
      n1 = await target.count(),
      c1 = cpuSeconds(child.pid),
      r1 = serverCpu(),
      t1 = performance.now();
    const sent = fake.stats().eventsSent;
    fake.stopFlood();
    fake.stopTraffic();
    const elapsed = (t1 - t0) / 1000;
    const received = Math.round(handledRate(p0, p1).perSecond);
    const delivered = Math.round((n1 - n0) / elapsed);
    const lag = Math.max(0, sent - n1);
    const result = {
      sink: kind,
      format,
      shards,
      rate,
      receivedPerSecond: received,
      deliveredPerSecond: delivered,
      bareProducerPerSecond: floor,
      ratioToBareProducer: floor ? Number((delivered / floor).toFixed(2)) : null,
      lagEvents: lag,
      cpuPer100k: per100k(c1 - c0, Math.max(1, n1 - n0)),
      peakRssMb: Math.round(memoryKb(child.pid).peak / 1024),
      /** Share of one core: gatehouse's process, and the broker's when it runs on this host. */
      gatehouseCpu: Number(((c1 - c0) / elapsed).toFixed(2)),
      serverCpu: serverPid === null ? null : Number(((r1 - r0) / elapsed).toFixed(2)),
    };
    const what = (rate === "flood" ? "flood" : `${rate}/s each`) +
      (format === null ? "" : `, format ${format}, a stream per event name`);
    const broker = kind === "redis" ? "Redis Streams" : "RabbitMQ";
    log(
      `gatehouse → ${kind.padEnd(5)} ${shards} shards, ${what}: ${received} events/s received, ` +
        `${delivered} events/s into ${broker}` +
        (floor && rate === "flood"
          ? ` (${result.ratioToBareProducer} × the bare producer's ${floor}/s)`
          : "") +
        `, ${lag} events behind the journal at the end, peak RSS ${result.peakRssMb} MB, CPU: gatehouse ` +
        `${result.gatehouseCpu}` + (result.serverCpu === null ? "" : `, ${kind}-server ${result.serverCpu}`),
    );
    return result;
  } finally {
    await stop(child);
    await fake.stop();
    await target.cleanup();
  }
}
