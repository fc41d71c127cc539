/**
 * The bot of `deno task bench --only proxy` (bench/proxy_latency.ts): a separate process that connects
 * as a Discord client over WebSocket (Deno's built-in one; JSON, no compression, as on localhost) to a
 * gateway — the fake Discord itself (the floor: a bot connected to Discord) or gatehouse's proxy — and
 * IDENTIFYs every shard. The same code either way, so the difference between the two is the proxy.
 *
 * For each message it takes the read time first (when the socket's message handler runs), then finds
 * the fake's send stamp (`"sent_at":<ms since the epoch>` at the start of `d`, see `stampSendTime` in
 * tests/fake_discord/server.ts) and JSON.parses the payload, as a bot's library would (for `op`, `s`,
 * `t`). latency = read time − stamp; both clocks are `performance.timeOrigin + performance.now()`, which
 * processes on one machine share. A client closed with a resumable code (the proxy closes one that reads
 * too slowly with 4000) RESUMEs at `resume_gateway_url`, as a library would; the events it catches up
 * on count, with their latencies.
 *
 *   deno run -A bench/proxy_reader.ts <gateway ws URL> <shard count> <token>
 *
 * Reports on stdout, one JSON object per line:
 *   {"type":"ready","shard":…,"at":…}                    a shard has READY and every GUILD_CREATE READY named
 *   {"type":"progress","at":…,"dispatches":…,"stamped":…}  every 100 ms
 *   {"type":"mark",…} on SIGUSR2 / {"type":"end",…} on SIGTERM, with `window`: the stamped events since the
 *   previous mark, latency p50/p99/max (ms); `cpuS`: this process's CPU seconds; `reconnects`, `closes`.
 */
import { LatencyHistogram } from "./histogram.ts";
const [gateway, shardsArg, token] = Deno.args;
const SHARDS = Number(shardsArg);
const INTENTS = 1 | 512; // GUILDS, GUILD_MESSAGES: within gatehouse's (all non-privileged)
/** Close codes after which Discord does not let a client go on (no resume, no reconnect). */
const FATAL = new Set([4004, 4010, 4011, 4012, 4013, 4014]);
/** Latency histogram: 0.05 ms bins up to 2 s, then 10 ms bins up to 2000 s (as bench/reader.ts). */
const STAMP = `"sent_at":`;
/** The stamp opens `d`, after `{"t":"…","s":…,"op":0,"d":{`: well within this. */
const STAMP_LIMIT = 200;

const now = () => performance.timeOrigin + performance.now();
const encoder = new TextEncoder();

let window = new LatencyHistogram();
let dispatches = 0;
let stamped = 0;
let reconnects = 0;
const closes: Record<string, number> = {};

function emit(report: Record<string, unknown>): void {
  const bytes = encoder.encode(JSON.stringify(report) + "\n");
  let offset = 0;
  while (offset < bytes.length) offset += Deno.stdout.writeSync(bytes.subarray(offset));
}

function cpuSeconds(): number {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** The send stamp of a dispatch's text, or -1. */
function stampOf(text: string): number {
  const i = text.indexOf(STAMP);
  if (i < 0 || i > STAMP_LIMIT) return -1;
  let at = i + STAMP.length, whole = 0;
  let c = text.charCodeAt(at);
  while (c >= 48 && c <= 57) {
    whole = whole * 10 + c - 48;
    c = text.charCodeAt(++at);
  }
  if (c !== 0x2e) return whole;
  let fraction = 0, scale = 1;
  for (c = text.charCodeAt(++at); c >= 48 && c <= 57; c = text.charCodeAt(++at)) {
    fraction = fraction * 10 + c - 48;
    scale *= 10;
  }
  return whole + fraction / scale;
}

/** One shard's connection, and its session across reconnects. */
class Shard {
  #ws: WebSocket | null = null;
  #seq: number | null = null;
  #sessionId: string | null = null;
  #resumeUrl: string | null = null;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #guildsLeft: Set<string> | null = null;
  #ready = false;
  #stopped = false;

  constructor(readonly id: number) {}

  connect(): void {
    const base = this.#sessionId !== null && this.#resumeUrl !== null ? this.#resumeUrl : gateway;
    const ws = new WebSocket(`${base.replace(/\/$/, "")}/?v=10&encoding=json`);
    this.#ws = ws;
    ws.onmessage = (event) => {
      const at = now();
      if (typeof event.data === "string") this.#message(ws, event.data, at);
    };
    ws.onerror = () => {};
    ws.onclose = (event) => this.#closed(ws, event.code);
  }

  #message(ws: WebSocket, text: string, at: number): void {
    const sentAt = stampOf(text);
    const message = JSON.parse(text);
    if (message.op === 0) {
      dispatches++;
      this.#seq = message.s;
      if (sentAt > 0) {
        stamped++;
        window.add(at - sentAt);
      }
      if (message.t === "READY") {
        this.#sessionId = message.d.session_id;
        this.#resumeUrl = message.d.resume_gateway_url ?? null;
        this.#guildsLeft = new Set((message.d.guilds as Array<{ id: string }>).map((g) => g.id));
        this.#checkReady();
      } else if (message.t === "GUILD_CREATE" && this.#guildsLeft !== null) {
        this.#guildsLeft.delete(message.d.id);
        this.#checkReady();
      }
    } else if (message.op === 10) {
      clearInterval(this.#heartbeat);
      this.#heartbeat = setInterval(
        () => ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify({ op: 1, d: this.#seq })),
        message.d.heartbeat_interval,
      );
      if (this.#sessionId !== null) {
        ws.send(JSON.stringify({ op: 6, d: { token, session_id: this.#sessionId, seq: this.#seq } }));
      } else this.#identify(ws);
    } else if (message.op === 1) {
      ws.send(JSON.stringify({ op: 1, d: this.#seq }));
    } else if (message.op === 7) {
      ws.close(4000, "reconnect asked");
    } else if (message.op === 9) {
      // Not resumable: start afresh on this connection.
      this.#sessionId = null;
      this.#seq = null;
      setTimeout(() => ws.readyState === WebSocket.OPEN && this.#identify(ws), 1000);
    }
  }

  #identify(ws: WebSocket): void {
    ws.send(JSON.stringify({
      op: 2,
      d: {
        token,
        intents: INTENTS,
        shard: [this.id, SHARDS],
        properties: { os: "linux", browser: "gatehouse-bench", device: "gatehouse-bench" },
      },
    }));
  }

  #checkReady(): void {
    if (this.#ready || this.#guildsLeft === null || this.#guildsLeft.size > 0) return;
    this.#ready = true;
    emit({ type: "ready", shard: this.id, at: now() });
  }

  #closed(ws: WebSocket, code: number): void {
    if (ws !== this.#ws) return;
    clearInterval(this.#heartbeat);
    this.#ws = null;
    if (this.#stopped) return;
    closes[code] = (closes[code] ?? 0) + 1;
    console.error(`proxy_reader: shard ${this.id} closed with ${code}`);
    if (FATAL.has(code)) return;
    reconnects++;
    setTimeout(() => this.connect(), 250);
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#heartbeat);
    try {
      this.#ws?.close(1000);
    } catch {
      // closing already
    }
  }
}

function mark(type: "mark" | "end"): void {
  const round = (x: number | null) => x === null ? null : Number(x.toFixed(2));
  emit({
    type,
    at: now(),
    dispatches,
    stamped,
    reconnects,
    closes,
    cpuS: cpuSeconds(),
    window: {
      stamped: window.count,
      p50: round(window.quantile(0.5)),
      p99: round(window.quantile(0.99)),
      max: window.count > 0 ? round(window.max) : null,
    },
  });
  window = new LatencyHistogram();
}

const shards = Array.from({ length: SHARDS }, (_, id) => new Shard(id));
for (const shard of shards) shard.connect();
const progress = setInterval(() => emit({ type: "progress", at: now(), dispatches, stamped }), 100);
Deno.addSignalListener("SIGUSR2", () => mark("mark"));
Deno.addSignalListener("SIGTERM", () => {
  clearInterval(progress);
  for (const shard of shards) shard.stop();
  mark("end");
  Deno.exit(0);
});
