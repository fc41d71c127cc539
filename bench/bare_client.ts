/**
 * Reference clients for `deno task bench`: the least a Deno gateway client can do, to put gatehouse's
 * figures in context on the same machine and the same fake Discord.
 *
 *   inflate      connect, identify, heartbeat, inflate every message (gatehouse's decompressor), nothing more
 *   inflate-ws   the same over gatehouse's own WebSocket client (src/gateway/ws_client.ts) instead of
 *                Deno's built-in one: the difference is what that socket costs
 *   parse-write  the same, plus JSON.parse of every event and one JSON.stringify'd NDJSON line per event
 *                written to stdout (batched per event-loop turn, as gatehouse does)
 *
 * Env: BENCH_GATEWAY (ws URL), BENCH_SHARDS, DISCORD_TOKEN.
 */
import { ZlibStreamDecompressor } from "../src/gateway/decompress.ts";
import { WsClient } from "../src/gateway/ws_client.ts";

const mode = Deno.args[0] === "parse-write" ? "parse-write" : "inflate";
const ownSocket = Deno.args[0] === "inflate-ws";
const gateway = Deno.env.get("BENCH_GATEWAY")!;
const shards = Number(Deno.env.get("BENCH_SHARDS") ?? "1");
const token = Deno.env.get("DISCORD_TOKEN") ?? "fake-token";
const decoder = new TextDecoder();
const encoder = new TextEncoder();
let out: string[] = [];
let id = 0;
let scheduled = false;

function flush() {
  scheduled = false;
  const bytes = encoder.encode(out.join(""));
  out = [];
  let offset = 0;
  try {
    while (offset < bytes.length) offset += Deno.stdout.writeSync(bytes.subarray(offset));
  } catch {
    Deno.exit(0); // stdout closed: the benchmark is over
  }
}

/** `{"t":"` at the start means a dispatch (control payloads have "t":null). */
function isDispatch(b: Uint8Array): boolean {
  return b[0] === 0x7b && b[1] === 0x22 && b[2] === 0x74 && b[3] === 0x22 && b[4] === 0x3a && b[5] === 0x22;
}

/** The two sockets behind one shape: `send` and a handler per message. */
function open(url: string, onMessage: (data: Uint8Array) => void): { send(text: string): void } {
  if (ownSocket) {
    return WsClient.connect(url, { onOpen() {}, onMessage, onClose() {} });
  }
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  ws.onmessage = (event) => onMessage(new Uint8Array(event.data));
  return ws;
}

for (let shard = 0; shard < shards; shard++) {
  const inflater = new ZlibStreamDecompressor();
  let seq = 0;
  let timer: ReturnType<typeof setInterval> | undefined;
  const ws = open(`${gateway}/?v=10&encoding=json&compress=zlib-stream`, (data) => {
    const payload = inflater.push(data);
    if (payload === null) return;
    if (mode === "inflate") {
      if (isDispatch(payload)) seq++;
      else if (seq === 0 && timer === undefined) start(decoder.decode(payload));
      return;
    }
    const message = JSON.parse(decoder.decode(payload));
    if (message.op === 0) {
      seq = message.s;
      out.push(JSON.stringify({ id: ++id, shard, ...message }) + "\n");
      if (!scheduled) {
        scheduled = true;
        setTimeout(flush, 0);
      }
    } else if (message.op === 10) {
      start(JSON.stringify(message));
    }
  });
  const start = (hello: string) => {
    const interval = JSON.parse(hello).d.heartbeat_interval;
    ws.send(JSON.stringify({
      op: 2,
      d: {
        token,
        intents: 513,
        shard: [shard, shards],
        properties: { os: "linux", browser: "bare", device: "bare" },
      },
    }));
    timer = setInterval(() => ws.send(JSON.stringify({ op: 1, d: seq })), interval);
  };
}

Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
