/**
 * `deno run -A bench/msgpack.ts`: the msgpack library for the drop-in wire formats ([broker] format,
 * src/sinks/wire_format.ts), chosen by measurement. For the test double's traffic events (as the fake
 * Discord sends them, tests/fake_discord/events.ts), per event:
 *
 * - discordjs: `{shardId, payload: d}` from the event's `d` bytes — JSON.parse, then encode — with
 *   msgpackr and with @msgpack/msgpack (what @discordjs/brokers itself uses);
 * - spectacles: the `d` bytes as msgpack binary, by each library and by writing the bin header by hand;
 * - commands: decoding a `gateway_send` entry (`{payload: {op, d}, shardId}`) by each library;
 * - compatibility: what each library writes, decoded by @msgpack/msgpack (the consumer's decoder).
 *
 * Prints ns per event (median of 7 rounds) and the encoded sizes.
 */
import { decode as mpDecode, encode as mpEncode, Encoder } from "@msgpack/msgpack";
import { pack, unpack } from "npm:msgpackr@2.1.4";
import { trafficEvent } from "../tests/fake_discord/events.ts";

const encoder = new TextEncoder();
const events = Array.from(
  { length: 2000 },
  (_, i) => encoder.encode(JSON.stringify(trafficEvent("81384788765712384", i).d)),
);
const decoder = new TextDecoder();
const bytes = events.reduce((a, e) => a + e.length, 0);

function binHeader(d: Uint8Array): Uint8Array {
  const n = d.length;
  const head = n < 256
    ? new Uint8Array([0xc4, n])
    : n < 65536
    ? new Uint8Array([0xc5, n >> 8, n & 255])
    : new Uint8Array([0xc6, n >>> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255]);
  const out = new Uint8Array(head.length + n);
  out.set(head);
  out.set(d, head.length);
  return out;
}

function time(name: string, f: (d: Uint8Array) => unknown): number {
  const rounds: number[] = [];
  let sink = 0;
  for (let r = 0; r < 7; r++) {
    const start = performance.now();
    for (let k = 0; k < 5; k++) for (const e of events) sink += (f(e) as Uint8Array).length ?? 1;
    rounds.push(((performance.now() - start) * 1e6) / (5 * events.length));
  }
  rounds.sort((a, b) => a - b);
  console.log(`${name.padEnd(44)} ${rounds[3].toFixed(0).padStart(6)} ns/event  (${sink > 0 ? "ok" : ""})`);
  return rounds[3];
}

console.log(`${events.length} traffic events, ${(bytes / events.length).toFixed(0)} bytes of d on average\n`);
time("JSON.parse alone (the floor of both)", (d) => JSON.parse(decoder.decode(d)) && d);
const reused = new Encoder();
time(
  "discordjs: JSON.parse + @msgpack/msgpack Encoder",
  (d) => reused.encode({ shardId: 3, payload: JSON.parse(decoder.decode(d)) }),
);
time(
  "discordjs: JSON.parse + msgpackr pack",
  (d) => pack({ shardId: 3, payload: JSON.parse(decoder.decode(d)) }),
);
time(
  "discordjs: JSON.parse + @msgpack/msgpack",
  (d) => mpEncode({ shardId: 3, payload: JSON.parse(decoder.decode(d)) }),
);
time("spectacles: bin by msgpackr", (d) => pack(d));
time("spectacles: bin by @msgpack/msgpack", (d) => mpEncode(d));
time("spectacles: bin header by hand", binHeader);
const commands = events.slice(0, 200).map((_, i) =>
  mpEncode({
    payload: { op: 8, d: { guild_id: "81384788765712384", query: "", limit: 0, nonce: `n${i}` } },
    shardId: 1,
  })
);
let c = 0;
time("command decode: msgpackr unpack", () => unpack(commands[c++ % commands.length]) as Uint8Array);
time("command decode: @msgpack/msgpack", () => mpDecode(commands[c++ % commands.length]) as Uint8Array);

// What each writes must be what the consumer (@msgpack/msgpack in @discordjs/brokers) reads.
const sample = JSON.parse(decoder.decode(events[7]));
const viaPackr = mpDecode(pack({ shardId: 3, payload: sample }));
const viaMp = mpDecode(mpEncode({ shardId: 3, payload: sample }));
console.log(
  `\nmsgpackr's output decoded by @msgpack/msgpack equals the input: ${
    JSON.stringify(viaPackr) === JSON.stringify({ shardId: 3, payload: sample })
  }`,
);
console.log(
  `@msgpack/msgpack round trip equals the input: ${
    JSON.stringify(viaMp) === JSON.stringify({ shardId: 3, payload: sample })
  }`,
);
console.log(
  `sizes of one event: JSON d ${events[7].length} B, discordjs msgpackr ${
    pack({ shardId: 3, payload: sample }).length
  } B, @msgpack/msgpack ${mpEncode({ shardId: 3, payload: sample }).length} B`,
);
