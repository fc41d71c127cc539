/**
 * `gatehouse replay --serve ADDR`: recorded traffic served as a Discord-compatible gateway, so a bot
 * connects with its usual library (pointed at http://ADDR as its API), identifies, gets READY and then
 * the selected events in order — at the recorded pace, N times faster, or as fast as it reads — to
 * reproduce a bug against yesterday's traffic.
 *
 * Served: GET /api/v{9,10}/gateway[/bot], the WebSocket gateway with HELLO, heartbeats, IDENTIFY, RESUME,
 * zlib-stream / zstd-stream / none, encoding=json only. Each connection gets its own session; sequence
 * numbers are its own (READY is 1), `d` is sent exactly as recorded. A bot that asks for shard [id, count]
 * with the recorded shard count gets that shard's events; a bot with one shard gets them all; any other
 * layout is closed with 4010 (Invalid shard), as Discord would. READY lists, as unavailable, the guilds of
 * the recorded READY where the selection starts, so a library takes the replayed GUILD_CREATEs for guilds
 * becoming available, not for guilds joined. A RESUME continues after the last event the bot confirmed,
 * or gets INVALID_SESSION when that is older than what the session keeps.
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
  /** Stops the connection streaming this session, if one is (a RESUME elsewhere moves the session). */
  detach: (() => void) | null;
}

/** What the recording says about the bot: its shard count (null when nothing says) and its user. */
interface RecordedFacts {
  count: number | null;
  user: unknown;
  /** Whether a recorded READY was found (if not, a store being written may have one later). */
  fromReady: boolean;
}

function readyData(event: StoredEvent): { user?: unknown; guilds?: unknown; shard?: unknown } | null {
  try {
    const d = JSON.parse(decoder.decode(event.payload)).d;
    return d !== null && typeof d === "object" ? d : null;
  } catch {
    return null;
  }
}

/**
 * The recorded READY of each shard in `shards` where the selection starts: the newest at or before its
 * first id, or else the first inside it. Reads READY events only, walking away from the start, and stops
 * as soon as every shard has one, so a recording of millions of events costs a few queries.
 */
export function recordedReadies(
  store: Store,
  selection: Selection,
  shards: ReadonlySet<number>,
): Map<number, StoredEvent> {
  const found = new Map<number, StoredEvent>();
  const take = (page: StoredEvent[]) => {
    for (const event of page) {
      if (shards.has(event.shard) && !found.has(event.shard)) found.set(event.shard, event);
    }
  };
  let from = selection.fromId;
  // Each query asks for as many READYs as shards are missing: never more than finding them all needs.
  while (found.size < shards.size && from >= 1) {
    const limit = shards.size - found.size;
    const page = store.events.ofType("READY", from, "down", limit);
    take(page);
    if (page.length < limit) break;
    from = page[page.length - 1].id - 1;
  }
  const to = Number.isFinite(selection.toId) ? selection.toId : Number.MAX_SAFE_INTEGER;
  from = Math.max(1, selection.fromId + 1);
  while (found.size < shards.size && from <= to) {
    const limit = shards.size - found.size;
    const page = store.events.ofType("READY", from, "up", limit, to);
    take(page);
    if (page.length < limit) break;
    from = page[page.length - 1].id + 1;
  }
  return found;
}

/**
 * The guilds a bot identifying as shard [shard, count] owns, as READY lists them (each unavailable until
 * its GUILD_CREATE): those of its shard's recorded READY, or of every recorded shard's for a bot with one
 * shard (only the --shard one, when the selection has one: the others' events are not sent).
 */
export function readyGuilds(
  store: Store,
  selection: Selection,
  shard: number,
  count: number,
  recordedCount: number,
  readies = new Map<number, StoredEvent>(),
): Array<{ id: string; unavailable: true }> {
  let shards = count === 1 ? Array.from({ length: recordedCount }, (_, i) => i) : [shard];
  if (selection.shard !== null) shards = shards.filter((s) => s === selection.shard);
  // `readies` keeps what earlier calls found (a READY found stays the one): only missing shards are read.
  const missing = new Set(shards.filter((s) => !readies.has(s)));
  if (missing.size > 0) {
    for (const [s, event] of recordedReadies(store, selection, missing)) readies.set(s, event);
  }
  const ids = new Set<string>();
  for (const s of shards) {
    const event = readies.get(s);
    const guilds = event ? readyData(event)?.guilds : undefined;
    if (!Array.isArray(guilds)) continue;
    for (const guild of guilds) {
      const id = (guild as { id?: unknown } | null)?.id;
      if (typeof id === "string") ids.add(id);
    }
  }
  return [...ids].map((id) => ({ id, unavailable: true }));
}

/** The recorded shard count and bot user, from the READY where the selection starts (or the sessions). */
function recordedFacts(store: Store, selection: Selection): RecordedFacts {
  const user: unknown = { id: "0", username: "replay", discriminator: "0", bot: true, avatar: null };
  const facts: RecordedFacts = {
    count: store.sessions.load()[0]?.shardCount ?? null,
    user,
    fromReady: false,
  };
  const to = Number.isFinite(selection.toId) ? selection.toId : Number.MAX_SAFE_INTEGER;
  const ready = store.events.ofType("READY", selection.fromId, "down", 1)[0] ??
    store.events.ofType("READY", selection.fromId + 1, "up", 1, to)[0];
  const d = ready ? readyData(ready) : null;
  if (!d) return facts;
  facts.fromReady = true;
  if (d.user) facts.user = d.user;
  // A READY without `shard` answered an IDENTIFY without one: one shard.
  if (Array.isArray(d.shard) && Number.isInteger(d.shard[1])) facts.count = d.shard[1];
  else if (d.shard === undefined) facts.count = 1;
  return facts;
}

export function serveReplay(options: ServeOptions): { url: string; finished: Promise<void>; port: number } {
  const { store, selection, logger: log } = options;
  let facts = recordedFacts(store, selection);
  // A store that had no READY yet (replay --follow of a run that is starting) may have one now.
  const currentFacts = () => facts.fromReady ? facts : (facts = recordedFacts(store, selection));
  const sessions = new Map<string, ReplaySession>();
  const readies = new Map<number, StoredEvent>();
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
      const encoding = query.get("encoding");
      if (encoding !== null && encoding !== "json") {
        // Recorded payloads are JSON text; an ETF client could not read a single one.
        const why =
          "replay: refusing a bot that asked for encoding={encoding}: replay serves only encoding=json";
        log.warn(why, { encoding });
        return Response.json(
          { message: `gatehouse replay serves only encoding=json, not encoding=${encoding}`, code: 0 },
          { status: 400 },
        );
      }
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
        shards: currentFacts().count ?? 1,
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
    // A bot resuming this connection's session elsewhere has given up on it (a zombie): stop sending here,
    // or two streams would share the session's sequence numbers.
    const detach = () => {
      closed = true;
      abort.abort();
      socket.close(1000, "Session resumed on another connection.");
    };

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
      if (session?.detach === detach) session.detach = null;
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
          const d = (message.d ?? {}) as { shard?: unknown };
          const [shard, count] = Array.isArray(d.shard) ? d.shard : [0, 1];
          const recorded = currentFacts().count;
          if (
            !Number.isInteger(shard) || !Number.isInteger(count) || shard < 0 || count < 1 ||
            shard >= count ||
            (count !== 1 && recorded !== null && count !== recorded)
          ) {
            // As Discord does for a shard it cannot serve; libraries then stop instead of retrying.
            log.warn(
              "replay: closing a bot that identified as shard {shard}: the recording has {recorded} shard(s); " +
                "identify with that many shards, or with one to get every shard's events",
              { shard: JSON.stringify(d.shard), recorded: recorded ?? 1 },
            );
            socket.close(
              4010,
              `Invalid shard. Recorded with ${recorded ?? 1} shard(s): use that count or 1.`,
            );
            return;
          }
          session = {
            id: crypto.randomUUID().replaceAll("-", ""),
            shard,
            count,
            seq: 0,
            sent: [],
            position: selection.fromId - 1,
            user: facts.user,
            detach,
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
              guilds: readyGuilds(store, selection, shard, count, recorded ?? 1, readies),
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
          if (session) {
            socket.close(4005, "Already authenticated.");
            return;
          }
          const d = (message.d ?? {}) as { session_id?: string; seq?: number };
          const known = sessions.get(String(d.session_id));
          const seq = d.seq;
          if (!known || typeof seq !== "number" || !Number.isInteger(seq) || seq > known.seq) {
            send('{"t":null,"s":null,"op":9,"d":false}');
            return;
          }
          if (seq < known.seq && known.sent.length > 0) {
            // Continue after the last event the bot confirmed (RESUMED takes a seq but is not in `sent`).
            const kept = known.sent;
            const last = kept.findLastIndex((x) => x.seq <= seq);
            if (last >= 0) known.position = kept[last].id;
            else if (seq >= kept[0].seq - 1) known.position = kept[0].id - 1;
            else {
              // The events after `seq` are no longer kept: not resumable, as Discord answers then.
              log.info(
                "replay: refusing to resume session {session} at seq {seq}: only seq {oldest} and later are kept",
                { session: known.id.slice(0, 8), seq, oldest: kept[0].seq },
              );
              send('{"t":null,"s":null,"op":9,"d":false}');
              return;
            }
            kept.splice(last + 1);
          }
          known.seq = seq;
          known.detach?.();
          known.detach = detach;
          session = known;
          log.info("replay: a bot resumed session {session} at seq {seq}", {
            session: known.id.slice(0, 8),
            seq,
          });
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
