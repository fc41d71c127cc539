/**
 * Proxy mode's listener (`[proxy] listen`): the WebSocket gateway for bots, and the two REST routes a
 * library asks before it connects (`GET /api/v{9,10}/gateway[/bot]`), answering with this listener's URL
 * and the bot's shard count. Anything else is a 404 that says what is served.
 */
import type { Compression } from "../gateway/protocol.ts";
import type { Logger } from "../util/log.ts";
import { ProxyClient } from "./client.ts";
import type { ProxyHub } from "./hub.ts";

export interface ProxyServerOptions {
  hub: ProxyHub;
  hostname: string;
  port: number;
  /** The shard count to announce. */
  count: () => number;
  logger: Logger;
}

export interface ProxyServer {
  /** `ws://host:port` as bound (clients get the one they used, from their Host header). */
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

export function startProxyServer(options: ProxyServerOptions): ProxyServer {
  const { hub, logger: log } = options;
  const abort = new AbortController();
  /** host:port as bound (known once listening). */
  let bound = "";
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    signal: abort.signal,
    onListen: () => {},
  }, (request): Response => {
    const url = new URL(request.url);
    const host: string = request.headers.get("host") ?? bound;
    const wsUrl = `ws://${host}`;
    if (request.headers.get("upgrade")?.toLowerCase() === "websocket") {
      const encoding = url.searchParams.get("encoding");
      if (encoding !== null && encoding !== "json") {
        log.warn("proxy: refusing a client that asked for encoding={encoding}: only json is served", {
          encoding,
        });
        return Response.json(
          { message: `the gatehouse proxy serves only encoding=json, not encoding=${encoding}`, code: 0 },
          { status: 400 },
        );
      }
      const compress = url.searchParams.get("compress");
      if (compress !== null && compress !== "zlib-stream" && compress !== "zstd-stream") {
        return Response.json(
          { message: `unknown compress=${compress}: zlib-stream or zstd-stream`, code: 0 },
          { status: 400 },
        );
      }
      const { socket, response } = Deno.upgradeWebSocket(request);
      new ProxyClient({
        socket,
        hub,
        compression: (compress ?? "none") as Compression,
        url: wsUrl,
        logger: log,
      });
      return response;
    }
    const path = url.pathname;
    const gatewayBot = /^\/api\/v(9|10)\/gateway\/bot\/?$/.test(path);
    if (gatewayBot || /^\/api\/v(9|10)\/gateway\/?$/.test(path)) {
      if (gatewayBot) {
        const auth = request.headers.get("authorization") ?? "";
        if (!hub.tokenMatches(auth)) {
          return Response.json({ message: "401: Unauthorized", code: 0 }, { status: 401 });
        }
        const count = options.count();
        return Response.json({
          url: wsUrl,
          shards: count,
          // Identifying with the proxy costs no session start: every shard in its own bucket, no waits.
          session_start_limit: {
            total: 1_000_000,
            remaining: 1_000_000,
            reset_after: 0,
            max_concurrency: Math.max(16, count),
          },
        });
      }
      return Response.json({ url: wsUrl });
    }
    return Response.json(
      {
        message: "404: Not Found (the gatehouse proxy serves the gateway and GET /api/v10/gateway/bot)",
        code: 0,
      },
      { status: 404 },
    );
  });
  const port: number = server.addr.port;
  bound = `${options.hostname.includes(":") ? `[${options.hostname}]` : options.hostname}:${port}`;
  return {
    url: `ws://${bound}`,
    port,
    stop: async () => {
      hub.stop();
      abort.abort();
      await server.finished.catch(() => {});
    },
  };
}
