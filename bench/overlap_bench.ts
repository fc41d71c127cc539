/**
 * `deno run --allow-all bench/overlap_bench.ts`: what the reshard overlap filter (src/pool/overlap.ts)
 * costs per dispatch: `fingerprint64` alone in ns per byte, and a whole `offer` from each generation (the
 * fingerprint, the key string, the map) in µs per event, on the fake Discord's live-traffic mix and on a
 * large GUILD_CREATE. CPU time, best of many ~20 ms rounds (the median beside it), because the machines this
 * runs on are shared.
 *
 *   deno run --allow-all bench/overlap_bench.ts            # ~1 s per measurement
 *   deno run --allow-all bench/overlap_bench.ts --ms 3000  # longer measurements
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { fingerprint64, OverlapFilter } from "../src/pool/overlap.ts";
import { ManualClock } from "../src/util/clock.ts";
import { guildCreatePayload, guildIdFor, trafficEvent } from "../tests/fake_discord/events.ts";

const { values } = parseArgs({ args: Deno.args, options: { ms: { type: "string", default: "1000" } } });
const MEASURE_MS = Number(values.ms);
const encoder = new TextEncoder();

const traffic = Array.from({ length: 2000 }, (_, i) => {
  const e = trafficEvent(guildIdFor(0, 1, i % 50), i);
  return { t: e.t, d: encoder.encode(JSON.stringify(e.d)) };
});
const large = [{
  t: "GUILD_CREATE",
  d: encoder.encode(JSON.stringify(guildCreatePayload(guildIdFor(0, 1, 0), 0, 5000))),
}];

const cpuNs = (u: { user: number; system: number }) => (u.user + u.system) * 1000;

function measure(run: () => void): number[] {
  const probe = process.cpuUsage();
  run();
  const repeat = Math.max(1, Math.round(20e6 / Math.max(1000, cpuNs(process.cpuUsage(probe)))));
  const rounds: number[] = [];
  const until = performance.now() + MEASURE_MS;
  while (performance.now() < until) {
    const c0 = process.cpuUsage();
    for (let r = 0; r < repeat; r++) run();
    rounds.push(cpuNs(process.cpuUsage(c0)) / repeat);
  }
  rounds.sort((a, b) => a - b);
  return [rounds[0], rounds[Math.floor(rounds.length / 2)]];
}

const seeds: [number, number] = [1, 2];
for (const [name, set] of [["traffic", traffic], ["GUILD_CREATE 5000 members", large]] as const) {
  const bytes = set.reduce((n, e) => n + e.d.length, 0);
  const [hashBest, hashMedian] = measure(() => {
    for (const e of set) fingerprint64(e.d, seeds);
  });
  const [offerBest, offerMedian] = measure(() => {
    const f = new OverlapFilter({ clock: new ManualClock(), seeds });
    for (const e of set) f.offer("old", e.t, e.d);
    for (const e of set) f.offer("new", e.t, e.d);
  });
  console.log(
    `${name}: ${set.length} events, ${bytes} bytes; fingerprint64 ${(hashBest / bytes).toFixed(3)} ns/byte ` +
      `(median ${(hashMedian / bytes).toFixed(3)}); offer old+new ${
        (offerBest / (2 * set.length) / 1000).toFixed(2)
      } ` +
      `µs/event (median ${(offerMedian / (2 * set.length) / 1000).toFixed(2)})`,
  );
}
