/**
 * A minimal HTTP/1.1 server on `Deno.listen`, for the control listener.
 *
 * `Deno.serve` cannot bound the time a client takes to send its request, nor the number of connections,
 * and its accept loop ends for good on the first accept error (EMFILE once, and /healthz is gone until
 * restart). The control listener has to survive exactly the moments an operator needs it, so it runs on
 * this instead:
 *
 * - one request per connection: every response says `Connection: close`, and the connection is closed
 *   after it (after a short, bounded drain, so the client reads the answer instead of a reset);
 * - request line and headers at most `maxHeaderBytes` (431), a body only with `Content-Length` and at
 *   most `maxBodyBytes` (413); `Transfer-Encoding` (chunked) is refused with 411;
 * - the whole request (headers and body) must arrive within `headerTimeoutMs`, and the response must be
 *   taken within `writeTimeoutMs`, else the connection is closed;
 * - at most `maxConnections` connections: at the cap the oldest one that has not sent a complete request
 *   is closed to make room; when all are busy answering, the newcomer gets 503;
 * - accept errors (EMFILE, ENFILE, …) are logged (one line per 10 s, with a count) and retried after
 *   100 ms growing to 1 s; a listener that is gone is bound again on the same address.
 *
 * Every read and write is asynchronous and each connection has its own task, so a slow client costs
 * only its own connection, never the gateway's event loop.
 */
import { backoffDelay } from "../util/backoff.ts";
import type { Logger } from "../util/log.ts";
import { closeQuietly, Connection, Gone, isConnectionError, linger } from "./http_conn.ts";
import { errorResponse, readRequest, type RequestLimits, writeResponse } from "./http_wire.ts";

export interface HttpServerOptions {
  hostname: string;
  /** 0 = any free port; a listener bound again later keeps the port it got. */
  port: number;
  /** Answers one request; a throw becomes a 500 (logged). */
  handler: (request: Request) => Promise<Response>;
  logger: Logger;
  /** The whole request must arrive within this, from the connection's accept (default 5000). */
  headerTimeoutMs?: number;
  /** The response must be taken by the client within this (default 10000). */
  writeTimeoutMs?: number;
  /** Open connections at most (default 64). */
  maxConnections?: number;
  /** Request line and headers at most (default 16384). */
  maxHeaderBytes?: number;
  /** Request body at most (default 8192). */
  maxBodyBytes?: number;
  /**
   * Binds the listening socket; `Deno.listen` unless given. Lets a test close the real listener under
   * the server to show that it is bound again.
   */
  listen?: (address: { hostname: string; port: number }) => Deno.TcpListener;
}

const DEFAULT_HEADER_TIMEOUT_MS = 5_000;
const DEFAULT_WRITE_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_CONNECTIONS = 64;
const DEFAULT_MAX_HEADER_BYTES = 16_384;
const DEFAULT_MAX_BODY_BYTES = 8_192;
/** Retry delays after an accept or listen failure: 100 ms doubling to 1 s. */
const RETRY = { baseMs: 100, maxMs: 1_000 };
/** At most one warning line per this long, per kind. */
const WARN_EVERY_MS = 10_000;
/** Consecutive accept failures, other than running out of descriptors or memory, before re-binding. */
const RELISTEN_AFTER_FAILURES = 20;
/** Errors that mean "the process is short of something", not "the listener is broken". */
const EXHAUSTION_CODES = new Set(["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]);

/** Counts occurrences and says when a line may be written: at most one per `everyMs`. */
class Throttle {
  #count = 0;
  #lastAt = -Infinity;
  constructor(readonly everyMs: number) {}

  /** The number of occurrences since the last line (this one included) if a line is due now, else null. */
  note(now: number): number | null {
    this.#count++;
    if (now - this.#lastAt < this.everyMs) return null;
    this.#lastAt = now;
    const count = this.#count;
    this.#count = 0;
    return count;
  }
}

export class HttpServer {
  readonly #o: HttpServerOptions;
  readonly #headerTimeoutMs: number;
  readonly #writeTimeoutMs: number;
  readonly #maxConnections: number;
  readonly #maxHeaderBytes: number;
  readonly #maxBodyBytes: number;
  readonly #listen: (address: { hostname: string; port: number }) => Deno.TcpListener;
  #listener: Deno.TcpListener | null = null;
  /** Where it listens: the port the first bind got, kept for binding again. */
  #address: { hostname: string; port: number } | null = null;
  /** Open connections, oldest first (a Set keeps insertion order). */
  readonly #connections = new Set<Connection>();
  /** Connections being told 503 (at most `maxConnections` of them too). */
  readonly #refused = new Set<Connection>();
  readonly #tasks = new Set<Promise<void>>();
  #loop: Promise<void> | null = null;
  #stopping = false;
  #wake: (() => void) | null = null;
  readonly #failureWarnings = new Throttle(WARN_EVERY_MS);
  readonly #busyWarnings = new Throttle(WARN_EVERY_MS);
  /** Failures in the current accept/listen trouble, and whether a warning was written for it. */
  #trouble = { failures: 0, since: 0, warned: false };

  constructor(options: HttpServerOptions) {
    this.#o = options;
    this.#headerTimeoutMs = positive(options.headerTimeoutMs, DEFAULT_HEADER_TIMEOUT_MS, "headerTimeoutMs");
    this.#writeTimeoutMs = positive(options.writeTimeoutMs, DEFAULT_WRITE_TIMEOUT_MS, "writeTimeoutMs");
    this.#maxConnections = positive(options.maxConnections, DEFAULT_MAX_CONNECTIONS, "maxConnections");
    this.#maxHeaderBytes = positive(options.maxHeaderBytes, DEFAULT_MAX_HEADER_BYTES, "maxHeaderBytes");
    this.#maxBodyBytes = positive(options.maxBodyBytes, DEFAULT_MAX_BODY_BYTES, "maxBodyBytes");
    this.#listen = options.listen ??
      ((address) => Deno.listen({ hostname: address.hostname, port: address.port, transport: "tcp" }));
  }

  /** Binds (throws when it cannot, e.g. the port is taken) and returns the address, the real port for 0. */
  start(): { hostname: string; port: number } {
    if (this.#listener !== null || this.#loop !== null) throw new Error("the HTTP server is already started");
    const listener = this.#listen({ hostname: this.#o.hostname, port: this.#o.port });
    this.#listener = listener;
    this.#address = { hostname: listener.addr.hostname, port: listener.addr.port };
    this.#loop = this.#acceptLoop();
    return { ...this.#address };
  }

  /** Open connections now (answering, waiting for their request, or being refused). */
  get connections(): number {
    return this.#connections.size + this.#refused.size;
  }

  /** Closes the listener and every connection; resolves once all of them are gone. */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#wake?.();
    this.#closeListener();
    for (const c of [...this.#connections, ...this.#refused]) c.close();
    await this.#loop;
    // Anything admitted while the loop was ending.
    for (const c of [...this.#connections, ...this.#refused]) c.close();
    while (this.#tasks.size > 0) await Promise.all([...this.#tasks]);
  }

  #closeListener(): void {
    try {
      this.#listener?.close();
    } catch {
      // Already closed.
    }
    this.#listener = null;
  }

  async #acceptLoop(): Promise<void> {
    // Accept failures in a row, for the retry delay; `consecutive` leaves out those of a process short of
    // descriptors or memory, and past RELISTEN_AFTER_FAILURES binds the address again.
    let failures = 0;
    let consecutive = 0;
    while (!this.#stopping) {
      const listener = this.#listener;
      if (listener === null) {
        await this.#bindAgain();
        continue;
      }
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (this.#stopping) break;
        const code = errorCode(error);
        const exhausted = code !== undefined && EXHAUSTION_CODES.has(code);
        if (!exhausted) consecutive++;
        if (error instanceof Deno.errors.BadResource || consecutive >= RELISTEN_AFTER_FAILURES) {
          this.#failed("accept", error, "the listening socket is lost: binding the address again");
          this.#closeListener();
          consecutive = 0;
          failures = 0;
          continue;
        }
        const delay = backoffDelay(RETRY, ++failures);
        this.#failed("accept", error, `retrying in ${delay} ms`);
        await this.#sleep(delay);
        continue;
      }
      if (this.#stopping) {
        closeQuietly(conn);
        break;
      }
      failures = 0;
      consecutive = 0;
      this.#recovered("accepting connections again");
      this.#admit(conn);
    }
  }

  /** Binds the same address again, retrying with backoff until it works or the server stops. */
  async #bindAgain(): Promise<void> {
    let failures = 0;
    while (!this.#stopping && this.#listener === null) {
      try {
        this.#listener = this.#listen(this.#address!);
        this.#recovered(`listening on ${this.#addressText()} again`);
        return;
      } catch (error) {
        const delay = backoffDelay(RETRY, ++failures);
        this.#failed("listen", error, `retrying in ${delay} ms`);
        await this.#sleep(delay);
      }
    }
  }

  #failed(what: "accept" | "listen", error: unknown, next: string): void {
    const now = Date.now();
    if (this.#trouble.failures === 0) this.#trouble.since = now;
    this.#trouble.failures++;
    const count = this.#failureWarnings.note(now);
    if (count === null) return;
    this.#trouble.warned = true;
    this.#o.logger.warn(
      "control listener: {what} failed on {address} ({error}); {next} ({count} failure(s) since the last " +
        "such line)",
      { what, address: this.#addressText(), error: describe(error), next, count },
    );
  }

  #recovered(what: string): void {
    if (this.#trouble.failures === 0) return;
    if (this.#trouble.warned) {
      this.#o.logger.info("control listener: {what} after {failures} failure(s) in {seconds} s", {
        what,
        failures: this.#trouble.failures,
        seconds: Math.round((Date.now() - this.#trouble.since) / 100) / 10,
      });
    }
    this.#trouble = { failures: 0, since: 0, warned: false };
  }

  #limits(): RequestLimits {
    return {
      maxHeaderBytes: this.#maxHeaderBytes,
      maxBodyBytes: this.#maxBodyBytes,
      authority: this.#addressText(),
    };
  }

  /** A delay that `stop()` cuts short. */
  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#wake = done;
    });
  }

  #addressText(): string {
    const a = this.#address ?? { hostname: this.#o.hostname, port: this.#o.port };
    return a.hostname.includes(":") ? `[${a.hostname}]:${a.port}` : `${a.hostname}:${a.port}`;
  }

  #admit(conn: Deno.TcpConn): void {
    if (this.#connections.size >= this.#maxConnections) {
      const victim = this.#evictable();
      if (victim === undefined) {
        this.#refuse(conn);
        return;
      }
      victim.close();
      this.#connections.delete(victim);
    }
    const c = new Connection(conn);
    this.#connections.add(c);
    this.#track(this.#serve(c), () => this.#connections.delete(c));
  }

  /** The oldest connection that is done (lingering), else the oldest still sending its request. */
  #evictable(): Connection | undefined {
    let reading: Connection | undefined;
    for (const c of this.#connections) {
      if (c.phase === "lingering") return c;
      if (c.phase === "reading" && reading === undefined) reading = c;
    }
    return reading;
  }

  #refuse(conn: Deno.TcpConn): void {
    const count = this.#busyWarnings.note(Date.now());
    if (count !== null) {
      this.#o.logger.warn(
        "control listener: all {max} connections are busy answering; {count} connection(s) refused with 503 " +
          "since the last such line",
        { max: this.#maxConnections, count },
      );
    }
    if (this.#refused.size >= this.#maxConnections) {
      closeQuietly(conn);
      return;
    }
    const c = new Connection(conn);
    c.phase = "answering";
    this.#refused.add(c);
    this.#track(
      (async () => {
        try {
          await writeResponse(
            c,
            errorResponse(503, "the control listener is busy; try again"),
            false,
            this.#writeTimeoutMs,
          );
          c.phase = "lingering";
          await linger(c, new Uint8Array(4096));
        } catch {
          // Gone: nothing to tell.
        } finally {
          c.close();
        }
      })(),
      () => this.#refused.delete(c),
    );
  }

  #track(task: Promise<void>, cleanup: () => void): void {
    const tracked: Promise<void> = task.finally(() => {
      cleanup();
      this.#tasks.delete(tracked);
    });
    this.#tasks.add(tracked);
  }

  async #serve(c: Connection): Promise<void> {
    const timer = setTimeout(() => c.close(), this.#headerTimeoutMs);
    const buffer = new Uint8Array(this.#maxHeaderBytes);
    try {
      const parsed = await readRequest(c, buffer, this.#limits());
      clearTimeout(timer);
      if (c.closed) return;
      c.phase = "answering";
      const answered = "response" in parsed ? parsed.response : this.#answer(parsed.request);
      // A handler that never settles must not hold a connection that was closed (stop, eviction).
      const response = await Promise.race([answered, c.gone.then(() => null)]);
      if (response === null || c.closed) return;
      await writeResponse(
        c,
        response,
        "request" in parsed && parsed.request.method === "HEAD",
        this.#writeTimeoutMs,
      );
      c.phase = "lingering";
      await linger(c, buffer);
    } catch (error) {
      if (!(error instanceof Gone) && !c.closed && !isConnectionError(error)) {
        this.#o.logger.warn("control listener: a connection failed: {error}", { error: describe(error) });
      }
    } finally {
      clearTimeout(timer);
      c.close();
    }
  }

  async #answer(request: Request): Promise<Response> {
    try {
      return await this.#o.handler(request);
    } catch (err) {
      this.#o.logger.warn("control: error while answering a request: {error}", { error: describe(err) });
      return errorResponse(500, "internal error");
    }
  }
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function positive(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) {
    throw new RangeError(`HTTP server option ${name} = ${value}: a positive whole number is allowed`);
  }
  return value;
}
