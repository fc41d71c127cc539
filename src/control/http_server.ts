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
import type { Logger } from "../util/log.ts";

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
/** After the response: how long, and how much, the rest of the client's bytes are read and dropped. */
const LINGER_MS = 1_000;
const LINGER_BYTES = 65_536;
/** Retry delays after an accept or listen failure. */
const RETRY_FIRST_MS = 100;
const RETRY_MAX_MS = 1_000;
/** At most one warning line per this long, per kind. */
const WARN_EVERY_MS = 10_000;
/** Consecutive accept failures, other than running out of descriptors or memory, before re-binding. */
const RELISTEN_AFTER_FAILURES = 20;
/** Errors that mean "the process is short of something", not "the listener is broken". */
const EXHAUSTION_CODES = new Set(["EMFILE", "ENFILE", "ENOBUFS", "ENOMEM"]);

const CR = 13;
const LF = 10;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP\/(\d)\.(\d)$/;
const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  202: "Accepted",
  204: "No Content",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  411: "Length Required",
  413: "Content Too Large",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

/** Where a connection is: the cap closes `reading` and `lingering` ones, never `answering` ones. */
type Phase = "reading" | "answering" | "lingering";

class Connection {
  phase: Phase = "reading";
  closed = false;
  /** Resolves when the connection is closed, so that nothing waits on a connection that is gone. */
  readonly gone: Promise<void>;
  #resolveGone: () => void = () => {};

  constructor(readonly conn: Deno.TcpConn) {
    this.gone = new Promise((resolve) => (this.#resolveGone = resolve));
  }

  /** Closes the socket; a pending read or write on it rejects, which ends the connection's task. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#resolveGone();
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** The client went away, or the connection was closed under a read (timeout, eviction, stop). */
class Gone extends Error {}

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
    let delay = 0;
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
          delay = 0;
          continue;
        }
        delay = delay === 0 ? RETRY_FIRST_MS : Math.min(delay * 2, RETRY_MAX_MS);
        this.#failed("accept", error, `retrying in ${delay} ms`);
        await this.#sleep(delay);
        continue;
      }
      if (this.#stopping) {
        closeQuietly(conn);
        break;
      }
      delay = 0;
      consecutive = 0;
      this.#recovered("accepting connections again");
      this.#admit(conn);
    }
  }

  /** Binds the same address again, retrying with backoff until it works or the server stops. */
  async #bindAgain(): Promise<void> {
    let delay = RETRY_FIRST_MS;
    while (!this.#stopping && this.#listener === null) {
      try {
        this.#listener = this.#listen(this.#address!);
        this.#recovered(`listening on ${this.#addressText()} again`);
        return;
      } catch (error) {
        this.#failed("listen", error, `retrying in ${delay} ms`);
        await this.#sleep(delay);
        delay = Math.min(delay * 2, RETRY_MAX_MS);
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
          await this.#write(c, errorResponse(503, "the control listener is busy; try again"), false);
          c.phase = "lingering";
          await this.#linger(c, new Uint8Array(4096));
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
      const parsed = await this.#readRequest(c, buffer);
      clearTimeout(timer);
      if (c.closed) return;
      c.phase = "answering";
      const answered = "response" in parsed ? parsed.response : this.#answer(parsed.request);
      // A handler that never settles must not hold a connection that was closed (stop, eviction).
      const response = await Promise.race([answered, c.gone.then(() => null)]);
      if (response === null || c.closed) return;
      await this.#write(c, response, "request" in parsed && parsed.request.method === "HEAD");
      c.phase = "lingering";
      await this.#linger(c, buffer);
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

  /** Reads one request, or says which error response it gets instead. */
  async #readRequest(
    c: Connection,
    buffer: Uint8Array,
  ): Promise<{ request: Request } | { response: Response }> {
    let filled = 0;
    let end = -1;
    while (end < 0) {
      if (filled === buffer.length) {
        return {
          response: errorResponse(
            431,
            `the request line and headers are more than ${this.#maxHeaderBytes} bytes`,
          ),
        };
      }
      const n = await read(c, buffer.subarray(filled));
      end = headEnd(buffer, filled, filled + n);
      filled += n;
    }
    const head = parseHead(buffer.subarray(0, end));
    if ("status" in head) return { response: errorResponse(head.status, head.message) };
    if (head.transferEncoding) {
      return {
        response: errorResponse(
          411,
          "send the body with Content-Length; Transfer-Encoding (chunked) is not accepted",
        ),
      };
    }
    const length = head.contentLength;
    if (length > this.#maxBodyBytes) {
      return {
        response: errorResponse(
          413,
          `the body is ${length} bytes; at most ${this.#maxBodyBytes} are accepted`,
        ),
      };
    }
    const body = new Uint8Array(length);
    let got = Math.min(length, filled - end);
    body.set(buffer.subarray(end, end + got));
    if (got < length && head.minor >= 1 && head.headers.get("expect")?.toLowerCase() === "100-continue") {
      await writeAll(c.conn, latin1("HTTP/1.1 100 Continue\r\n\r\n"));
    }
    while (got < length) got += await read(c, body.subarray(got));

    const base = `http://${this.#addressText()}`;
    let url: URL;
    try {
      url = head.target.startsWith("/") ? new URL(base + head.target) : absolute(head.target, base);
    } catch {
      return { response: errorResponse(400, "the request target is not a path (/…) or an http:// URL") };
    }
    try {
      const hasBody = head.method !== "GET" && head.method !== "HEAD" && length > 0;
      return {
        request: new Request(url, {
          method: head.method,
          headers: head.headers,
          body: hasBody ? body : null,
        }),
      };
    } catch {
      return {
        response: errorResponse(405, `method ${head.method} is not served here (GET, HEAD, POST)`, {
          allow: "GET, HEAD, POST",
        }),
      };
    }
  }

  /** Writes the whole response, or closes the connection when the client does not take it in time. */
  async #write(c: Connection, response: Response, headOnly: boolean): Promise<void> {
    const body = await Promise.race([response.arrayBuffer(), c.gone.then(() => null)]);
    if (body === null) return;
    const content = new Uint8Array(body);
    const status = response.status;
    const bodyless = status < 200 || status === 204 || status === 304;
    let head = `HTTP/1.1 ${status} ${response.statusText || REASONS[status] || ""}\r\n`;
    for (const [name, value] of response.headers) {
      if (!["content-length", "transfer-encoding", "connection", "keep-alive", "date"].includes(name)) {
        head += `${name}: ${value}\r\n`;
      }
    }
    head += `date: ${new Date().toUTCString()}\r\n`;
    if (!bodyless) head += `content-length: ${content.length}\r\n`;
    head += "connection: close\r\n\r\n";
    const headBytes = latin1(head);
    const sent = headOnly || bodyless ? new Uint8Array(0) : content;
    // One buffer, one write: no Nagle delay between the head and the body.
    const bytes = new Uint8Array(headBytes.length + sent.length);
    bytes.set(headBytes);
    bytes.set(sent, headBytes.length);
    if (c.closed) return;
    const timer = setTimeout(() => c.close(), this.#writeTimeoutMs);
    try {
      await writeAll(c.conn, bytes);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Ends our side, then reads and drops what the client still sends (a body we refused, say) until it
   * closes, for at most LINGER_MS and LINGER_BYTES: closing with unread bytes would reset the
   * connection, and the client could lose the response.
   */
  async #linger(c: Connection, buffer: Uint8Array): Promise<void> {
    if (c.closed) return;
    try {
      await c.conn.closeWrite();
    } catch {
      return;
    }
    const timer = setTimeout(() => c.close(), LINGER_MS);
    try {
      let drained = 0;
      while (drained < LINGER_BYTES) {
        const n = await c.conn.read(buffer);
        if (n === null) break;
        drained += n;
      }
    } catch {
      // Closed by the timer or the client: done either way.
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Reads at least one byte; throws Gone at end of stream or when the connection was closed. */
async function read(c: Connection, into: Uint8Array): Promise<number> {
  let n: number | null;
  try {
    n = await c.conn.read(into);
  } catch (error) {
    if (c.closed || isConnectionError(error)) throw new Gone();
    throw error;
  }
  if (n === null) throw new Gone();
  return n;
}

async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

/**
 * The offset just past the empty line ending the head, looking at the bytes in [from, to) (earlier
 * bytes were looked at before), or -1. A bare LF ends a line too.
 */
function headEnd(buffer: Uint8Array, from: number, to: number): number {
  for (let i = Math.max(from, 1); i < to; i++) {
    if (buffer[i] !== LF) continue;
    if (buffer[i - 1] === LF) return i + 1;
    if (buffer[i - 1] === CR && i >= 2 && buffer[i - 2] === LF) return i + 1;
  }
  return -1;
}

interface Head {
  method: string;
  target: string;
  minor: number;
  headers: Headers;
  contentLength: number;
  transferEncoding: boolean;
}

/** The request line and headers, or the error status and why. */
function parseHead(bytes: Uint8Array): Head | { status: number; message: string } {
  let text = "";
  for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines[0] === "") lines.shift();
  const match = REQUEST_LINE.exec(lines[0] ?? "");
  if (!match) return { status: 400, message: "the request line is not METHOD /path HTTP/1.1" };
  const [, method, target, major, minor] = match;
  if (major !== "1") return { status: 505, message: `HTTP/${major}.${minor} is not served; use HTTP/1.1` };
  const headers = new Headers();
  const lengths: string[] = [];
  for (const line of lines.slice(1)) {
    if (line === "") break;
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name)) {
      return {
        status: 400,
        message: `a header line is not "name: value": ${JSON.stringify(line.slice(0, 80))}`,
      };
    }
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    try {
      headers.append(name, value);
    } catch {
      return { status: 400, message: `header ${name} has a character not allowed in a header value` };
    }
    if (name.toLowerCase() === "content-length") lengths.push(...value.split(",").map((v) => v.trim()));
  }
  let contentLength = 0;
  if (lengths.length > 0) {
    if (!lengths.every((v) => /^\d{1,15}$/.test(v) && v === lengths[0])) {
      return {
        status: 400,
        message: `Content-Length ${JSON.stringify(lengths.join(", "))} is not one number`,
      };
    }
    contentLength = Number(lengths[0]);
  }
  return {
    method,
    target,
    minor: Number(minor),
    headers,
    contentLength,
    transferEncoding: headers.has("transfer-encoding"),
  };
}

/** An absolute-form target (`GET http://host/path`): its path and query on our own base. */
function absolute(target: string, base: string): URL {
  const parsed = new URL(target);
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error("not http");
  return new URL(base + parsed.pathname + parsed.search);
}

function errorResponse(status: number, message: string, headers: Record<string, string> = {}): Response {
  return new Response(`${JSON.stringify({ error: message })}\n`, {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

function latin1(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff;
  return bytes;
}

function closeQuietly(conn: Deno.TcpConn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === "string" ? code : undefined;
}

/** Errors a socket gives when the peer or a close of ours ended it: not worth a log line. */
function isConnectionError(error: unknown): boolean {
  return error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.UnexpectedEof;
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
