/**
 * The bot author's side of `deno task bench`: a separate process whose stdin is the stdout of the
 * program under test (a pipe). It reads in large chunks, counts lines and, for each line that carries
 * the fake Discord's send stamp (`"sent_at":<ms since the epoch>`, see `stampSendTime` in
 * tests/fake_discord/server.ts), records the latency: the time the chunk was read minus the stamp. Both
 * clocks are `performance.timeOrigin + performance.now()`, which processes on one machine share.
 *
 * Kept cheap: no JSON.parse, no string per line; the stamp is found by scanning bytes (native indexOf
 * for `_`, then a match of `sent_at":`), within the first 4 KB of a line.
 *
 * Reports on stdout, one JSON object per line:
 *   {"type":"progress","at":…,"lines":…,"shards":[…]}           every 100 ms (lines per shard)
 *   {"type":"mark","at":…,"lines":…,"window":{…},"cpuS":…}       on SIGUSR2 (the bench's window edges)
 *   {"type":"end",…}                                              when stdin ends (same fields as a mark)
 * `window` covers the lines since the previous mark: count, stamped, latency p50/p99/max in ms. `at` is
 * ms since the epoch; `firstReadAt`/`lastReadAt` bound the reads that returned data.
 */
import { LatencyHistogram } from "./histogram.ts";

const BUFFER = 1 << 20;
/** Latency histogram: 0.05 ms bins up to 2 s, then 10 ms bins up to 2000 s (beyond: the last bin). */
const STAMP = new TextEncoder().encode(`_at":`); // after `"sent`
const SENT = new TextEncoder().encode(`"sent`);
const SCAN_LIMIT = 4096;
const SHARD = new TextEncoder().encode(`"shard"`);
/** `"shard":` is within the first fields (`{"id":…,"uid":"…","shard":`). */
const SHARD_LIMIT = 160;

const now = () => performance.timeOrigin + performance.now();
const encoder = new TextEncoder();

let buf = new Uint8Array(BUFFER);
let filled = 0;
let lines = 0;
/** Lines per shard (the line's `"shard":N` near its start; lines without one are not counted here). */
const shardLines: number[] = [];
let stamped = 0;
let firstReadAt: number | null = null;
let lastReadAt: number | null = null;

/** A window's latencies and the lines read in it. */
class Histogram extends LatencyHistogram {
  lines = 0;
}

let window = new Histogram();

/** The stamp of the line in buf[start, end), or -1. */
function stampOf(view: Uint8Array, start: number, end: number): number {
  const limit = Math.min(end, start + SCAN_LIMIT);
  let i = start;
  for (;;) {
    i = view.indexOf(0x5f, i); // `_`
    if (i < 0 || i >= limit) return -1;
    let match = i >= start + SENT.length;
    for (let k = 0; match && k < SENT.length; k++) match = buf[i - SENT.length + k] === SENT[k];
    for (let k = 0; match && k < STAMP.length; k++) match = buf[i + k] === STAMP[k];
    if (match) break;
    i++;
  }
  let at = i + STAMP.length;
  let whole = 0;
  while (at < limit && buf[at] >= 48 && buf[at] <= 57) whole = whole * 10 + buf[at++] - 48;
  if (buf[at] !== 0x2e) return whole;
  let fraction = 0, scale = 1;
  for (at++; at < limit && buf[at] >= 48 && buf[at] <= 57; at++) {
    fraction = fraction * 10 + buf[at] - 48;
    scale *= 10;
  }
  return whole + fraction / scale;
}

/** The shard of the line in view[start, end), or -1: the `:` after `"shard"` among the first few. */
function shardOf(view: Uint8Array, start: number, end: number): number {
  const limit = Math.min(end, start + SHARD_LIMIT);
  let i = start;
  for (;;) {
    i = view.indexOf(0x3a, i); // `:`
    if (i < 0 || i >= limit) return -1;
    let match = i >= start + SHARD.length;
    for (let k = 0; match && k < SHARD.length; k++) match = view[i - SHARD.length + k] === SHARD[k];
    if (match) break;
    i++;
  }
  let at = i + 1, shard = 0;
  if (at >= limit || view[at] < 48 || view[at] > 57) return -1;
  while (at < limit && view[at] >= 48 && view[at] <= 57) shard = shard * 10 + view[at++] - 48;
  return shard;
}

/** Counts the complete lines in buf[0, filled) read at `readAt`; keeps the rest at the start. */
function consume(readAt: number): void {
  const view = buf.subarray(0, filled);
  let start = 0;
  for (;;) {
    const end = view.indexOf(0x0a, start);
    if (end < 0) break;
    lines++;
    window.lines++;
    const shard = shardOf(view, start, end);
    if (shard >= 0) {
      while (shardLines.length <= shard) shardLines.push(0);
      shardLines[shard]++;
    }
    const sentAt = stampOf(view, start, end);
    if (sentAt > 0) {
      stamped++;
      window.add(readAt - sentAt);
    }
    start = end + 1;
  }
  if (start > 0) {
    buf.copyWithin(0, start, filled);
    filled -= start;
  }
  if (filled === buf.length) {
    const bigger = new Uint8Array(buf.length * 2); // a line longer than the buffer
    bigger.set(buf);
    buf = bigger;
  }
}

function cpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

function emit(report: Record<string, unknown>): void {
  const bytes = encoder.encode(JSON.stringify(report) + "\n");
  let offset = 0;
  while (offset < bytes.length) offset += Deno.stdout.writeSync(bytes.subarray(offset));
}

function mark(type: "mark" | "end"): void {
  const round = (x: number | null) => x === null ? null : Number(x.toFixed(2));
  emit({
    type,
    at: now(),
    lines,
    shards: shardLines,
    stamped,
    firstReadAt,
    lastReadAt,
    cpuS: cpuSeconds(),
    window: {
      lines: window.lines,
      stamped: window.count,
      p50: round(window.quantile(0.5)),
      p99: round(window.quantile(0.99)),
      max: window.count > 0 ? round(window.max) : null,
    },
  });
  window = new Histogram();
}

const onMark = () => mark("mark");
Deno.addSignalListener("SIGUSR2", onMark);
const progress = setInterval(() => emit({ type: "progress", at: now(), lines, shards: shardLines }), 100);

for (;;) {
  const n = await Deno.stdin.read(buf.subarray(filled));
  if (n === null) break;
  const readAt = now();
  firstReadAt ??= readAt;
  lastReadAt = readAt;
  filled += n;
  consume(readAt);
}
clearInterval(progress);
Deno.removeSignalListener("SIGUSR2", onMark);
mark("end");
