/**
 * The broker's floor for `deno task bench`: the least a Deno producer can do to put event lines into
 * the broker, to compare gatehouse's sinks with on the same machine in the same run.
 *
 *   redis  XADD <stream> * data <line>, pipelined in batches of BATCH, one batch in flight (ioredis)
 *   amqp   basic.publish of <line> to a topic exchange with publisher confirms, BATCH publishes then
 *          wait for all their confirms, one batch in flight (persistent messages, as the sink sends)
 *
 * The lines are gatehouse's NDJSON lines for the fake Discord's traffic bodies (same sizes). Runs for
 * `seconds` after one second of warm-up and prints one JSON object: messages, seconds, per second, CPU-s.
 *
 *   deno run --allow-all bench/bare_producer.ts redis|amqp <url> <stream or exchange> <seconds>
 */
import { AMQPClient } from "@cloudamqp/amqp-client";
import { Redis } from "ioredis";
import { Buffer } from "node:buffer";
import { trafficEvent } from "../tests/fake_discord/events.ts";

const [kind, url, name, secondsArg] = Deno.args;
const seconds = Number(secondsArg ?? "10");
const BATCH = 1000;
const encoder = new TextEncoder();

const lines: Uint8Array[] = [];
for (let i = 0; i < 64; i++) {
  const { t, d } = trafficEvent("1300000000000000000", i);
  const payload = JSON.stringify({ t, s: 1000 + i, op: 0, d });
  lines.push(encoder.encode(`{"id":${1000 + i},"uid":"0123456789abcdefghij","shard":0,${payload.slice(1)}`));
}

function cpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

let sendBatch: (from: number) => Promise<void>;
let close: () => Promise<void>;
if (kind === "redis") {
  const client = new Redis(url);
  const buffers = lines.map((l) => Buffer.from(l));
  sendBatch = async (from) => {
    const pipeline = client.pipeline();
    for (let i = 0; i < BATCH; i++) pipeline.xadd(name, "*", "data", buffers[(from + i) % buffers.length]);
    const results = await pipeline.exec();
    if (results === null || results.some(([error]) => error)) throw new Error("redis: XADD failed");
  };
  close = async () => {
    await client.quit();
  };
} else {
  const client = new AMQPClient(url);
  await client.connect();
  const channel = await client.channel();
  await channel.confirmSelect();
  sendBatch = async (from) => {
    const confirms: Promise<number>[] = [];
    for (let i = 0; i < BATCH; i++) {
      confirms.push(channel.basicPublish(name, "MESSAGE_CREATE", lines[(from + i) % lines.length], {
        deliveryMode: 2,
        contentType: "application/json",
      }));
    }
    await Promise.all(confirms);
  };
  close = () => client.close();
}

let sent = 0;
const warmUntil = performance.now() + 1000;
while (performance.now() < warmUntil) {
  await sendBatch(sent);
  sent += BATCH;
}
const t0 = performance.now(), c0 = cpuSeconds(), n0 = sent;
const end = t0 + seconds * 1000;
while (performance.now() < end) {
  await sendBatch(sent);
  sent += BATCH;
}
const elapsed = (performance.now() - t0) / 1000;
const messages = sent - n0;
console.log(JSON.stringify({
  kind,
  messages,
  seconds: Number(elapsed.toFixed(2)),
  perSecond: Math.round(messages / elapsed),
  cpuS: Number((cpuSeconds() - c0).toFixed(2)),
}));
await close();
