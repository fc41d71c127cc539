/**
 * `deno run --allow-all bench/stdout_bench.ts`: how fast `StdoutSink` gets NDJSON lines into a reader
 * process. A child Deno process delivers committed batches of realistic events (the fake Discord's
 * live-traffic mix, one session per shard) through `StdoutSink` with its default `Deno.stdout.write`;
 * its stdout is a pipe into `wc -l`, so the lines really cross to another process. Printed per batch
 * size: lines/s reaching the reader (the child's wall time, which includes waiting for the pipe), the
 * child's CPU seconds per 100k lines, MB/s, and the reader's line count as a check.
 *
 *   deno run --allow-all bench/stdout_bench.ts                    # 200k events, batches of 1000 and 20
 *   deno run --allow-all bench/stdout_bench.ts --events 500000 --batch 1000
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { Pending } from "../src/journal/batch.ts";
import { StdoutSink } from "../src/sinks/stdout.ts";
import { guildIdFor, trafficEvent } from "../tests/fake_discord/events.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    events: { type: "string", default: "200000" },
    batch: { type: "string", multiple: true },
    child: { type: "boolean", default: false },
  },
});
const EVENTS = Number(values.events);
const encoder = new TextEncoder();

/** `count` batches' worth of events, built once (the cost measured is the sink's, not this). */
function makeBatches(events: number, perBatch: number): Pending[] {
  const payloads: Uint8Array[] = [];
  for (let i = 0; i < 512; i++) {
    const { t, d } = trafficEvent(guildIdFor(i % 16, 16, i % 7), i);
    payloads.push(encoder.encode(`{"t":${JSON.stringify(t)},"s":${i + 1},"op":0,"d":${JSON.stringify(d)}}`));
  }
  const batches: Pending[] = [];
  let id = 1;
  for (let made = 0; made < events;) {
    const p = new Pending("bench-producer");
    for (let i = 0; i < perBatch && made < events; i++, made++) {
      const payload = payloads[made % payloads.length];
      const shard = made % 16;
      p.add(payload, 0, payload.length);
      p.ids.push(id++);
      p.shards.push(shard);
      p.sessions.push(`session-of-shard-${shard}-0123456789abcdef`);
      p.seqs.push(1 + Math.floor(made / 16));
      p.names.push("MESSAGE_CREATE");
      p.receivedAt.push(0);
    }
    batches.push(p);
  }
  return batches;
}

async function child(perBatch: number): Promise<void> {
  const batches = makeBatches(EVENTS, perBatch);
  const bytes = batches.reduce((n, b) => n + b.length, 0);
  const sink = new StdoutSink();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  for (const batch of batches) await sink.deliver(batch);
  const wall = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  console.error(JSON.stringify({ lines: sink.written, wall, cpuS, bytes }));
}

async function parent(): Promise<void> {
  const sizes = (values.batch ?? ["1000", "20"]).map(Number);
  for (const perBatch of sizes) {
    const script = new URL(import.meta.url).pathname;
    const cmd =
      `"${Deno.execPath()}" run --allow-all "${script}" --child --events ${EVENTS} --batch ${perBatch} | wc -l`;
    const out = await new Deno.Command("sh", { args: ["-c", cmd], stdout: "piped", stderr: "piped" })
      .output();
    const err = new TextDecoder().decode(out.stderr).trim().split("\n").at(-1) ?? "";
    const counted = Number(new TextDecoder().decode(out.stdout).trim());
    const r = JSON.parse(err) as { lines: number; wall: number; cpuS: number; bytes: number };
    console.log(
      `batch ${String(perBatch).padStart(5)}: ${
        Math.round(r.lines / r.wall).toString().padStart(8)
      } lines/s  ` +
        `${(r.cpuS / r.lines * 1e5).toFixed(3)} CPU-s/100k  ${(r.bytes / r.wall / 1e6).toFixed(0)} MB/s  ` +
        `reader counted ${counted}${counted === r.lines ? "" : " (MISMATCH)"}`,
    );
  }
}

if (values.child) await child(Number(values.batch?.[0] ?? 1000));
else await parent();
