/**
 * `deno run --allow-all bench/json_check_bench.ts`: the cost of checking a payload with `isValidJson`
 * (src/gateway/json_check.ts), in ns per byte and µs per event, against what the check stands in for:
 * `JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes))` on the same
 * bytes (and, for scale, the fatal decode alone). Payloads are built with the fake Discord's
 * generators and wrapped like a dispatch (`{"t":…,"s":1,"op":0,"d":…}`): the live-traffic mix, messages
 * with long content, a small and a large GUILD_CREATE, and the same with non-ASCII text (emoji, CJK,
 * accented Latin) in contents and names, because that is where the UTF-8 path is taken. Each payload
 * has its own buffer, as TextEncoder makes them (the worst case for the validator's word view).
 *
 * Figures are CPU time, not wall time, and the best of many ~20 ms rounds (the median is shown too),
 * because the machines this runs on are shared and other work inflates any single measurement.
 *
 *   deno run --allow-all bench/json_check_bench.ts              # every set, ~1 s per measurement
 *   deno run --allow-all bench/json_check_bench.ts --ms 3000    # longer measurements
 *   deno run --allow-all bench/json_check_bench.ts --json       # one JSON object at the end
 */
import process from "node:process";
import { parseArgs } from "node:util";
import { isValidJson } from "../src/gateway/json_check.ts";
import { jsonProblem } from "../src/gateway/json_problem.ts";
import { guildCreatePayload, guildIdFor, trafficEvent } from "../tests/fake_discord/events.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: { ms: { type: "string", default: "1000" }, json: { type: "boolean", default: false } },
});
const MEASURE_MS = Number(values.ms);

const encoder = new TextEncoder();
const GUILD = guildIdFor(0, 1, 0);

function dispatch(t: string, d: unknown): Uint8Array {
  return encoder.encode(`{"t":${JSON.stringify(t)},"s":1,"op":0,"d":${JSON.stringify(d)}}`);
}

const NON_ASCII_TEXTS = [
  "今日はいい天気ですね、ゲートウェイの再接続も問題なし 🎉🎉",
  "그 빠른 갈색 여우가 게으른 개를 뛰어넘었다 😀👍🏽",
  "Ça marche très bien — déjà vu, naïve café, Größe, Ærøskøbing",
  "消息已送达，会话已恢复；序列号没有丢失 🚀✨ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
  "Привет, как дела? Всё работает отлично 👨‍👩‍👧‍👦",
];

/** Rewrites string values in `value` to non-ASCII text where a user would type or pick them. */
function localize(value: unknown, seed: number): unknown {
  if (Array.isArray(value)) return value.map((v, i) => localize(v, seed + i));
  if (value === null || typeof value !== "object") return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    if (typeof v === "string" && (k === "content" || k === "global_name" || k === "nick" || k === "topic")) {
      out[k] = `${NON_ASCII_TEXTS[seed % NON_ASCII_TEXTS.length]} ${v}`;
    } else if (typeof v === "string" && k === "name" && seed % 2 === 0) {
      out[k] = `${v} ✦ 名前`;
    } else out[k] = localize(v, seed + k.length);
  }
  return out;
}

function traffic(count: number, nonAscii: boolean): Uint8Array[] {
  return Array.from({ length: count }, (_, seed) => {
    const { t, d } = trafficEvent(GUILD, seed);
    return dispatch(t, nonAscii ? localize(d, seed) : d);
  });
}

function guilds(count: number, members: number, nonAscii: boolean): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => {
    const d = guildCreatePayload(guildIdFor(0, 1, i), i, members);
    return dispatch("GUILD_CREATE", nonAscii ? localize(d, i) : d);
  });
}

const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** Each checker returns a number so that its work cannot be optimized away. */
const checkers: Record<string, (b: Uint8Array) => number> = {
  "isValidJson": (b) => isValidJson(b) ? 1 : 0,
  "decode+JSON.parse": (b) => {
    try {
      JSON.parse(fatal.decode(b));
      return 1;
    } catch {
      return 0;
    }
  },
  "decode only": (b) => fatal.decode(b).length > 0 ? 1 : 0,
};

interface Result {
  set: string;
  events: number;
  bytes: number;
  nonAsciiBytes: number;
  checker: string;
  /** Best round: the figure least disturbed by other work on the machine. */
  nsPerByte: number;
  usPerEvent: number;
  /** Median round. */
  medianNsPerByte: number;
}

function cpuNs(usage: { user: number; system: number }): number {
  return (usage.user + usage.system) * 1000;
}

/** ns per byte of each ~20 ms round over the whole set, in CPU time, after a warm-up for the JIT. */
function measure(payloads: Uint8Array[], bytes: number, check: (b: Uint8Array) => number): number[] {
  let sink = 0;
  const warm = performance.now();
  while (performance.now() - warm < Math.min(300, MEASURE_MS / 2)) for (const p of payloads) sink += check(p);
  const probe = process.cpuUsage();
  for (const p of payloads) sink += check(p);
  const repeat = Math.max(1, Math.round(20e6 / Math.max(1000, cpuNs(process.cpuUsage(probe)))));
  const rounds: number[] = [];
  const t0 = performance.now();
  while (performance.now() - t0 < MEASURE_MS || rounds.length < 5) {
    const c0 = process.cpuUsage();
    for (let r = 0; r < repeat; r++) for (const p of payloads) sink += check(p);
    rounds.push(cpuNs(process.cpuUsage(c0)) / (repeat * bytes));
  }
  if (sink < payloads.length) throw new Error("a benchmark payload was rejected");
  return rounds;
}

/** MESSAGE_CREATEs whose content is 2000 characters (Discord's limit without Nitro). */
function longMessages(count: number, nonAscii: boolean): Uint8Array[] {
  return Array.from({ length: count }, (_, seed) => {
    const { t, d } = trafficEvent(GUILD, seed * 20); // kind 0: MESSAGE_CREATE
    const words = nonAscii
      ? NON_ASCII_TEXTS[seed % NON_ASCII_TEXTS.length]
      : "the quick brown fox jumps over it";
    return dispatch(t, { ...d, content: [...`${words} `.repeat(100)].slice(0, 2000).join("") });
  });
}

const sets: [string, Uint8Array[]][] = [
  ["traffic mix (ASCII, a few 👍)", traffic(400, false)],
  ["traffic mix, non-ASCII text", traffic(400, true)],
  ["MESSAGE_CREATE, 2000-char ASCII content", longMessages(40, false)],
  ["MESSAGE_CREATE, 2000-char non-ASCII content", longMessages(40, true)],
  ["GUILD_CREATE 100 members", guilds(20, 100, false)],
  ["GUILD_CREATE 100 members, non-ASCII", guilds(20, 100, true)],
  ["GUILD_CREATE 2000 members", guilds(2, 2000, false)],
  ["GUILD_CREATE 2000 members, non-ASCII", guilds(2, 2000, true)],
];

const results: Result[] = [];
for (const [set, payloads] of sets) {
  for (const p of payloads) {
    if (!isValidJson(p)) throw new Error(`benchmark payload rejected in set ${set}: ${jsonProblem(p)}`);
  }
  const bytes = payloads.reduce((n, p) => n + p.length, 0);
  const nonAsciiBytes = payloads.reduce((n, p) => n + p.reduce((m, c) => m + (c >= 0x80 ? 1 : 0), 0), 0);
  for (const [checker, check] of Object.entries(checkers)) {
    const rounds = measure(payloads, bytes, check).sort((x, y) => x - y);
    results.push({
      set,
      events: payloads.length,
      bytes,
      nonAsciiBytes,
      checker,
      nsPerByte: rounds[0],
      usPerEvent: rounds[0] * bytes / payloads.length / 1000,
      medianNsPerByte: rounds[rounds.length >> 1],
    });
  }
}

if (values.json) console.log(JSON.stringify({ measureMs: MEASURE_MS, results }));
else {
  console.log(
    `json_check bench: CPU time, best of ~20 ms rounds over ${MEASURE_MS} ms per measurement, ` +
      `Deno ${Deno.version.deno}, V8 ${Deno.version.v8}`,
  );
  let last = "";
  for (const r of results) {
    if (r.set !== last) {
      const average = Math.round(r.bytes / r.events);
      const share = (100 * r.nonAsciiBytes / r.bytes).toFixed(1);
      console.log(
        `\n${r.set}: ${r.events} events, ${average} B/event on average, ${share}% of bytes >= 0x80`,
      );
      last = r.set;
    }
    console.log(
      `  ${r.checker.padEnd(18)} ${r.nsPerByte.toFixed(3).padStart(7)} ns/byte ${
        r.usPerEvent.toFixed(2).padStart(9)
      } µs/event   (median round ${r.medianNsPerByte.toFixed(3)} ns/byte)`,
    );
  }
}
