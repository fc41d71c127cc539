/**
 * The control listener: one small HTTP server (loopback by default).
 *
 *   GET  /healthz                 200 while the process runs
 *   GET  /readyz                  200 when every shard of this process is live now, else 503 (JSON says which)
 *   GET  /shards                  JSON status of every shard, the sinks, the journal, the identify budget
 *   GET  /metrics                 Prometheus text ([prometheus] endpoint changes the path)
 *   POST /shards/{id}/reconnect   close with 4000 and resume                     (bearer token)
 *   POST /commands                one command, as on stdin (NDJSON object)        (bearer token)
 *   POST /reshard                 reshard now; body {"count": N} or empty (Discord's count)  (bearer token)
 *
 * Actions need `[control] token`, compared in constant time; without one they are refused (403).
 *
 * It runs on our own small HTTP/1.1 server (`http_server.ts`), not `Deno.serve`: that one cannot bound
 * how long a client takes nor how many connections it holds, and stops accepting for good after one
 * accept error (EMFILE), which is when an operator needs /healthz most.
 *
 * The metrics (`metrics.ts`, with prom-client, ~6 MB of RSS) are loaded by the first scrape: a gatehouse
 * nobody scrapes does not carry them. prom-client's process metrics are absolute (CPU time, start time);
 * its event-loop lag and GC series count from that first scrape.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { ListenAddress } from "../config/schema.ts";
import type { Logger } from "../util/log.ts";
import type { Secret } from "../util/secret.ts";
import { VERSION } from "../version.ts";
import { HttpServer } from "./http_server.ts";
import type { Metrics } from "./metrics.ts";
import { type GatewayView, RateSampler, statusReport } from "./status.ts";

export interface ControlOptions {
  address: NonNullable<ListenAddress>;
  token: Secret | null;
  metricsPath: string;
  view: GatewayView;
  logger: Logger;
  /** How often events/s are sampled. */
  sampleEveryMs?: number;
  /** The whole request (headers and body) must arrive within this, else the connection is closed (5000). */
  headerTimeoutMs?: number;
  /** A client must take the response within this, else the connection is closed (10000). */
  writeTimeoutMs?: number;
  /** Open connections at most; past it the oldest idle one is closed, or the newcomer gets 503 (64). */
  maxConnections?: number;
}

const MAX_BODY_BYTES = 8192;

export class ControlServer {
  readonly #o: ControlOptions;
  /** Built by the first scrape. */
  #metrics: Promise<Metrics> | null = null;
  readonly #rates = new RateSampler();
  #server: HttpServer | null = null;
  #sampler: ReturnType<typeof setInterval> | undefined;
  #tokenDigest: Uint8Array | null;

  constructor(options: ControlOptions) {
    this.#o = options;
    this.#tokenDigest = options.token ? digest(options.token.reveal()) : null;
  }

  /** Binds; returns the address it listens on (the real port when 0 was asked). */
  start(): { hostname: string; port: number } {
    const { hostname, port } = this.#o.address;
    const server = new HttpServer({
      hostname,
      port,
      handler: (request) => this.#handle(request),
      logger: this.#o.logger,
      headerTimeoutMs: this.#o.headerTimeoutMs,
      writeTimeoutMs: this.#o.writeTimeoutMs,
      maxConnections: this.#o.maxConnections,
      maxBodyBytes: MAX_BODY_BYTES,
    });
    const bound = server.start();
    this.#server = server;
    const view = this.#o.view;
    this.#rates.sample(view.shards(), view.now());
    this.#sampler = setInterval(
      () => this.#rates.sample(view.shards(), view.now()),
      this.#o.sampleEveryMs ?? 5_000,
    );
    Deno.unrefTimer(this.#sampler);
    return bound;
  }

  /** Open connections now (for tests and diagnostics). */
  get connections(): number {
    return this.#server?.connections ?? 0;
  }

  /** Closes the listener and every open connection; resolves once they are all gone. */
  async stop(): Promise<void> {
    clearInterval(this.#sampler);
    await this.#server?.stop();
    this.#server = null;
  }

  #loadMetrics(): Promise<Metrics> {
    const view = this.#o.view;
    this.#metrics ??= import("./metrics.ts").then(({ Metrics }) => new Metrics(view));
    return this.#metrics;
  }

  async #handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname;
    const view = this.#o.view;
    if (request.method === "GET" || request.method === "HEAD") {
      if (path === "/healthz") {
        return json(200, { status: "ok", uptime_s: Math.round((view.now() - view.startedAt) / 1000) });
      }
      if (path === "/readyz") {
        const report = statusReport(view, this.#rates, VERSION);
        // Only this process's shards: in cluster mode the others' are judged by their own processes.
        return json(report.ready ? 200 : 503, {
          ...(report.node === undefined ? {} : { node: report.node }),
          ready: report.ready,
          shards_ready: report.shards_ready,
          shards_total: report.shards.filter((s) => s.delivering).length,
          not_ready: report.shards.filter((s) => s.delivering && !s.ready).map((s) => ({
            id: s.id,
            state: s.state,
            why: s.why,
          })),
        });
      }
      if (path === "/shards") return json(200, statusReport(view, this.#rates, VERSION));
      if (path === this.#o.metricsPath) {
        const metrics = await this.#loadMetrics();
        return new Response(await metrics.text(), { headers: { "content-type": metrics.contentType } });
      }
    }
    const reconnect = /^\/shards\/(\d+)\/reconnect$/.exec(path);
    if (path === "/reshard") {
      if (request.method !== "POST") return json(405, { error: `${path} takes POST` }, { allow: "POST" });
      const denied = this.#authorize(request);
      if (denied) return denied;
      if (!view.reshard) {
        return json(409, { error: "resharding does not run in this process (see its start-up log for why)" });
      }
      const body = await readBody(request);
      if (body === null) return json(413, { error: `a request is at most ${MAX_BODY_BYTES} bytes` });
      let count: number | undefined;
      if (body.trim() !== "") {
        let parsed: unknown;
        try {
          parsed = JSON.parse(body);
        } catch {
          return json(400, { error: 'the body must be JSON: {"count": N} or nothing' });
        }
        const value = (parsed as { count?: unknown } | null)?.count;
        if (
          typeof parsed !== "object" || parsed === null ||
          (value !== undefined && (typeof value !== "number" || !Number.isSafeInteger(value) || value < 1))
        ) {
          return json(400, {
            error: '"count" must be a positive integer (or left out for Discord\'s count)',
          });
        }
        count = value as number | undefined;
      }
      this.#o.logger.info("control: reshard requested{to}", {
        to: count === undefined ? "" : ` to ${count}`,
      });
      const decision = await view.reshard(count);
      if (!decision.reshard) return json(409, { started: false, reason: decision.reason, why: decision.why });
      return json(202, { started: true, count: decision.count, why: decision.why });
    }
    if (reconnect || path === "/commands") {
      if (request.method !== "POST") return json(405, { error: `${path} takes POST` }, { allow: "POST" });
      const denied = this.#authorize(request);
      if (denied) return denied;
      if (reconnect) {
        const id = Number(reconnect[1]);
        if (!view.shards().some((s) => s.id === id)) {
          return json(404, { error: `shard ${id} does not run here` });
        }
        if (!view.reconnect(id)) {
          const state = view.shards().find((s) => s.id === id)?.state;
          return json(409, { error: `shard ${id} has nothing to reconnect now (state ${state})` });
        }
        this.#o.logger.info("control: shard {shard} reconnects (requested through the control API)", {
          shard: id,
        });
        return json(202, { shard: id, reconnecting: true });
      }
      const body = await readBody(request);
      if (body === null) return json(413, { error: `a command is at most ${MAX_BODY_BYTES} bytes` });
      const refused = view.command(body.trim());
      if (refused !== null) return json(400, { error: refused });
      return json(202, { queued: true });
    }
    if (["/healthz", "/readyz", "/shards", this.#o.metricsPath].includes(path)) {
      return json(405, { error: `${path} takes GET` }, { allow: "GET" });
    }
    return json(404, { error: `no such endpoint: ${path}` });
  }

  /** null when the request carries the token; else the response refusing it. */
  #authorize(request: Request): Response | null {
    if (this.#tokenDigest === null) {
      return json(403, {
        error: "actions are disabled: set [control] token (GATEHOUSE_CONTROL_TOKEN) to enable them",
      });
    }
    const header = request.headers.get("authorization") ?? "";
    const match = /^Bearer\s+(.+)$/i.exec(header);
    if (!match || !timingSafeEqual(digest(match[1].trim()), this.#tokenDigest)) {
      return json(401, { error: "missing or wrong bearer token" }, {
        "www-authenticate": 'Bearer realm="gatehouse"',
      });
    }
    return null;
  }
}

/** The http:// URL of a listener (IPv6 hosts in brackets). */
export function listenerUrl(hostname: string, port: number): string {
  return `http://${hostname.includes(":") ? `[${hostname}]` : hostname}:${port}`;
}

/** Fixed-length digests, so the comparison takes the same time whatever the lengths. */
function digest(text: string): Uint8Array {
  return createHash("sha256").update(text).digest();
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(`${JSON.stringify(body)}\n`, {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

async function readBody(request: Request): Promise<string | null> {
  if (!request.body) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request.body) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return null;
    chunks.push(chunk);
  }
  const all = new Uint8Array(size);
  let at = 0;
  for (const chunk of chunks) {
    all.set(chunk, at);
    at += chunk.length;
  }
  return new TextDecoder().decode(all);
}
