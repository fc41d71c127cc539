/**
 * `gatehouse replay --serve ADDR`: recorded traffic served as a Discord-compatible gateway, so a bot
 * connects with its usual library (pointed at http://ADDR as its API), identifies, gets READY and then
 * the selected events in order — at the recorded pace, N times faster, or as fast as it reads — to
 * reproduce a bug against yesterday's traffic.
 *
 * Served: GET /api/v{9,10}/gateway[/bot], the WebSocket gateway with HELLO, heartbeats, IDENTIFY, RESUME,
 * zlib-stream / zstd-stream / none. Each connection gets its own session; sequence numbers are its own
 * (READY is 1), `d` is sent exactly as recorded. A bot that asks for shard [id, count] with the recorded
 * shard count gets that shard's events; a bot with one shard gets them all.
 */
import { createCompressor } from "../gateway/compress.ts";
import { dataOf } from "../gateway/frame.ts";
import type { Compression } from "../gateway/protocol.ts";
import type { Store, StoredEvent } from "../journal/store.ts";
import type { Logger } from "../util/log.ts";
import { pacing, readSelection, type Selection } from "./select.ts";

export interface ServeOptions {
  store: Store;
  selection: Selection;
  hostname: string;
  port: number;
  /** 1 = recorded pace, N = N times faster, 0 = as fast as the bot reads. */
  speed: number;
  follow: boolean;
  logger: Logger;
  heartbeatIntervalMs?: number;
  signal?: AbortSignal;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

interface ReplaySession {
  id: string;
  shard: number;
  count: number;
  seq: number;
  /** Recent events sent, for RESUME: seq → event id. */
  sent: Array<{ seq: number; id: number }>;
  /** Id of the last event sent. */
  position: number;
  user: unknown;
}

/** The recorded shard count and bot user, from the stored sessions and READY events. */
function recordedFacts(store: Store, selection: Selection): { count: number; user: unknown } {
  const sessions = store.loadSessions();
  let count = sessions[0]?.shardCount ?? 1;
  let user: unknown = { id: "0", username: "replay", discriminator: "0", bot: true, avatar: null };
  for (const page of [store.readEvents(Math.max(0, selection.fromId - 1), 2000)]) {
    for (const event of page) {
      if (event.t !== "READY") continue;
      try {
        const d = JSON.parse(decoder.decode(event.payload)).d;
        if (d?.user) user = d.user;
        if (Array.isArray(d?.shard)) count = d.shard[1];
      } catch {
        // keep the defaults
      }
      break;
    }
  }
  return { count, user };
}

export function serveReplay(options: ServeOptions): { url: string; finished: Promise<void>; port: number } {
  const { store, selection, logger: log } = options;
  const facts = recordedFacts(store, selection);
  const sessions = new Map<string, ReplaySession>();
  const interval = options.heartbeatIntervalMs ?? 41_250;
  let url = "";

  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    signal: options.signal,
    onListen: () => {},
  }, (request) => {
    const path = new URL(request.url).pathname;
    if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
      const query = new URL(request.url).searchParams;
      const compress = query.get("compress");
      const compression: Compression = compress === "zlib-stream" || compress === "zstd-stream"
        ? compress
        : "none";
      const { socket, response } = Deno.upgradeWebSocket(request);
      handleSocket(socket, compression);
      return response;
    }
    if (/^\/api\/v(9|10)\/gateway\/bot\/?$/.test(path)) {
      return Response.json({
        url,
        shards: facts.count,
        session_start_limit: { total: 1000, remaining: 1000, reset_after: 0, max_concurrency: 16 },
      });
    }
    if (/^\/api\/v(9|10)\/gateway\/?$/.test(path)) return Response.json({ url });
    return Response.json({ message: "404: Not Found (gatehouse replay serves only the gateway)", code: 0 }, {
      status: 404,
    });
  });
  const port = server.addr.port;
  url = `ws://${options.hostname.includes(":") ? `[${options.hostname}]` : options.hostname}:${port}`;

  function handleSocket(socket: WebSocket, compression: Compression) {
    const compressor = createCompressor(compression);
    let session: ReplaySession | null = null;
    let closed = false;
    const abort = new AbortController();

    const send = (payload: string | Uint8Array) => {
      if (closed || socket.readyState !== WebSocket.OPEN) return;
      const bytes = typeof payload === "string" ? encoder.encode(payload) : payload;
      if (compressor) socket.send(compressor.compress(bytes));
      else socket.send(decoder.decode(bytes));
    };

    const dispatch = (s: ReplaySession, t: string, d: Uint8Array | string) => {
      s.seq++;
      const prefix = encoder.encode(`{"t":${JSON.stringify(t)},"s":${s.seq},"op":0,"d":`);
      const body = typeof d === "string" ? encoder.encode(d) : d;
      const out = new Uint8Array(prefix.length + body.length + 1);
      out.set(prefix);
      out.set(body, prefix.length);
      out[out.length - 1] = 0x7d;
      send(out);
    };

    const stream = async (s: ReplaySession) => {
      const mine = (event: StoredEvent) =>
        !event.t.startsWith("GATEHOUSE_") && event.t !== "READY" && event.t !== "RESUMED" &&
        (s.count === 1 || event.shard === s.shard);
      let previousAt: number | null = null;
      const from = { ...selection, fromId: Math.max(selection.fromId, s.position + 1) };
      for await (const page of readSelection(store, from, { follow: options.follow, signal: abort.signal })) {
        for (const event of page) {
          if (closed) return;
          if (!mine(event)) continue;
          const wait = previousAt === null ? 0 : pacing(event.receivedAt - previousAt, options.speed);
          previousAt = event.receivedAt;
          if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
          if (closed) return;
          const d = dataOf(event.payload);
          if (d === null) continue;
          dispatch(s, event.t, d);
          s.position = event.id;
          s.sent.push({ seq: s.seq, id: event.id });
          if (s.sent.length > 20_000) s.sent.splice(0, 10_000);
        }
        // Let the socket flush between pages.
        await new Promise((resolve) => setTimeout(resolve, 0));
      }
      log.info("replay: session {session} sent everything selected (through id {id})", {
        session: s.id.slice(0, 8),
        id: s.position,
      });
    };

    socket.onopen = () => {
      send(JSON.stringify({ t: null, s: null, op: 10, d: { heartbeat_interval: interval } }));
    };
    socket.onclose = () => {
      closed = true;
      abort.abort();
      compressor?.close();
    };
    socket.onmessage = (event) => {
      let message: { op?: number; d?: Record<string, unknown> | number | null };
      try {
        message = JSON.parse(typeof event.data === "string" ? event.data : decoder.decode(event.data));
      } catch {
        socket.close(4002, "Error while decoding payload.");
        return;
      }
      switch (message.op) {
        case 1:
          send('{"t":null,"s":null,"op":11,"d":null}');
          return;
        case 2: {
          if (session) {
            socket.close(4005, "Already authenticated.");
            return;
          }
          const d = (message.d ?? {}) as { shard?: [number, number] };
          const [shard, count] = Array.isArray(d.shard) ? d.shard : [0, 1];
          session = {
            id: crypto.randomUUID().replaceAll("-", ""),
            shard,
            count,
            seq: 0,
            sent: [],
            position: selection.fromId - 1,
            user: facts.user,
          };
          sessions.set(session.id, session);
          log.info("replay: a bot identified as shard [{shard}, {count}]; sending events from id {from}", {
            shard,
            count,
            from: selection.fromId,
          });
          dispatch(
            session,
            "READY",
            JSON.stringify({
              v: 10,
              user: facts.user,
              guilds: [],
              session_id: session.id,
              resume_gateway_url: url,
              shard: [shard, count],
              application: { id: (facts.user as { id?: string }).id ?? "0", flags: 0 },
            }),
          );
          void stream(session);
          return;
        }
        case 6: {
          const d = (message.d ?? {}) as { session_id?: string; seq?: number };
          const known = sessions.get(String(d.session_id));
          if (!known || typeof d.seq !== "number" || d.seq > known.seq) {
            send('{"t":null,"s":null,"op":9,"d":false}');
            return;
          }
          // Continue after the last event the bot confirmed.
          const confirmed = known.sent.findLast((x) => x.seq <= d.seq!);
          known.position = confirmed ? confirmed.id : selection.fromId - 1;
          known.seq = d.seq;
          session = known;
          dispatch(known, "RESUMED", "{}");
          void stream(known);
          return;
        }
        case 3:
        case 4:
        case 8:
        case 31:
        case 43:
          log.debug("replay: ignoring op {op} from the bot", { op: message.op });
          return;
        default:
          socket.close(4001, "Unknown opcode.");
      }
    };
  }

  return { url, finished: server.finished, port };
}
