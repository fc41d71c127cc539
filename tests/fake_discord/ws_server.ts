/**
 * A minimal RFC 6455 WebSocket server over raw TCP, for the fake Discord. Written here rather than
 * using `Deno.upgradeWebSocket` because tests need what that API cannot do: drop the TCP connection
 * without a close frame, send one gateway payload as several WebSocket messages, stop writing to a
 * connection, and batch many frames into one TCP write so a flood costs the fake little CPU.
 *
 * No extension is ever negotiated (a `permessage-deflate` offer is ignored), so frames are plain.
 */
import { createHash } from "node:crypto";
import { yieldIfBusy } from "../../src/util/cooperate.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const encoder = new TextEncoder();
const decoder = new TextDecoder();
/** Largest client message accepted (Discord's own limit is 4096 bytes; the fake checks that itself). */
const MAX_CLIENT_MESSAGE = 1 << 20;
/** Largest single TCP write: big enough to batch hundreds of frames, small enough to take turns. */
const MAX_WRITE_BYTES = 512 * 1024;

/** `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2). */
export function acceptKey(key: string): string {
  return createHash("sha1").update(key + GUID).digest("base64");
}

export interface WsConnectionHandlers {
  onMessage(data: string | Uint8Array): void;
  /**
   * The connection ended. `code` is null when TCP ended without a close frame. `byPeer` is true when
   * the peer started the close handshake (its close frame was not an answer to ours).
   */
  onClose(code: number | null, reason: string, byPeer: boolean): void;
}

export class WsConnection {
  readonly id: number;
  /** Request target: path and query, e.g. `/?v=10&encoding=json&compress=zlib-stream`. */
  readonly target: string;
  /** Request headers, names in lower case. */
  readonly headers: ReadonlyMap<string, string>;
  readonly #conn: Deno.Conn;
  readonly #closeTimeoutMs: number;
  #handlers: WsConnectionHandlers = { onMessage: () => {}, onClose: () => {} };
  /** Chunks waiting to be written, from `#head` on; several chunks may form one frame. */
  #queue: Uint8Array[] = [];
  #head = 0;
  #queuedBytes = 0;
  #writing: Promise<void> | null = null;
  #drainWaiters: Array<() => void> = [];
  #closed = false;
  #closeSent = false;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  /** Bytes written to the socket so far. */
  bytesWritten = 0;

  constructor(
    id: number,
    target: string,
    headers: ReadonlyMap<string, string>,
    conn: Deno.Conn,
    closeTimeoutMs = 1000,
  ) {
    this.id = id;
    this.target = target;
    this.headers = headers;
    this.#conn = conn;
    this.#closeTimeoutMs = closeTimeoutMs;
  }

  /** True once TCP is closed. */
  get closed(): boolean {
    return this.#closed;
  }

  /** True once a close frame was sent (or TCP is closed): nothing more may be sent. */
  get closing(): boolean {
    return this.#closeSent || this.#closed;
  }

  /** Bytes queued but not yet written to the socket. */
  get queuedBytes(): number {
    return this.#queuedBytes;
  }

  setHandlers(handlers: WsConnectionHandlers): void {
    this.#handlers = handlers;
  }

  /**
   * Queues one message: text for a string, binary for bytes. Every message queued in the same
   * event-loop turn goes out in the same TCP write.
   */
  send(data: string | Uint8Array): void {
    if (typeof data === "string") this.sendChunks([encoder.encode(data)], false);
    else this.sendChunks([data], true);
  }

  /**
   * Queues one message made of `chunks` laid end to end, without copying them first (the caller must
   * not change them afterwards; precompressed bodies are shared between messages this way).
   */
  sendChunks(chunks: Uint8Array[], binary: boolean): void {
    if (this.closing) return;
    let length = 0;
    for (const chunk of chunks) length += chunk.length;
    this.#enqueue(frameHeader(binary ? 0x2 : 0x1, length));
    for (const chunk of chunks) this.#enqueue(chunk);
  }

  /**
   * Queues bytes that already are whole frames (see `writeFrameHeader`), laid end to end; chunks are
   * not copied until the write, so the caller must not change them afterwards.
   */
  sendFrames(chunks: Uint8Array[]): void {
    if (this.closing) return;
    for (const chunk of chunks) this.#enqueue(chunk);
  }

  /** Queues one binary message per part (a gateway payload split over several WebSocket messages). */
  sendParts(parts: Uint8Array[]): void {
    for (const part of parts) this.send(part);
  }

  /** Resolves when everything queued has been written (or the connection ended). */
  drain(): Promise<void> {
    if (this.#writing === null || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /** Settles when no write is in progress: `WsServer.close()` waits for it so no operation leaks. */
  settled(): Promise<void> {
    return this.#writing ?? Promise.resolve();
  }

  /** Sends a close frame, then ends TCP when the peer answers or after the close timeout. */
  close(code: number, reason = ""): void {
    if (this.closing) return;
    let reasonBytes = encoder.encode(reason);
    // A control frame carries at most 125 bytes: 2 for the code, the rest for the reason.
    if (reasonBytes.length > 123) reasonBytes = reasonBytes.subarray(0, 123);
    const payload = new Uint8Array(2 + reasonBytes.length);
    payload[0] = code >> 8;
    payload[1] = code & 0xff;
    payload.set(reasonBytes, 2);
    this.#enqueueFrame(0x8, payload);
    this.#closeSent = true;
    this.#closeTimer = setTimeout(() => this.drop(), this.#closeTimeoutMs);
  }

  /** Ends the TCP connection at once, without a close frame (what a crashed host or a cut cable does). */
  drop(): void {
    this.#finish(null, "", false);
  }

  #finish(code: number | null, reason: string, byPeer: boolean): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#closeTimer);
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
    this.#queue = [];
    this.#head = 0;
    this.#queuedBytes = 0;
    for (const resolve of this.#drainWaiters.splice(0)) resolve();
    this.#handlers.onClose(code, reason, byPeer);
  }

  #enqueueFrame(opcode: number, payload: Uint8Array): void {
    this.#enqueue(frameHeader(opcode, payload.length));
    this.#enqueue(payload);
  }

  #enqueue(bytes: Uint8Array): void {
    if (this.#closed) return;
    this.#queue.push(bytes);
    this.#queuedBytes += bytes.length;
    // Start writing in a microtask, so every frame queued by the current task shares one write.
    this.#writing ??= Promise.resolve().then(() => this.#writeLoop());
  }

  async #writeLoop(): Promise<void> {
    try {
      while (this.#head < this.#queue.length && !this.#closed) {
        // Take chunks up to MAX_WRITE_BYTES (at least one) and write them as one buffer.
        let end = this.#head, total = 0;
        while (
          end < this.#queue.length && (total === 0 || total + this.#queue[end].length <= MAX_WRITE_BYTES)
        ) {
          total += this.#queue[end++].length;
        }
        let chunk: Uint8Array;
        if (end - this.#head === 1) chunk = this.#queue[this.#head];
        else {
          chunk = new Uint8Array(total);
          let at = 0;
          for (let i = this.#head; i < end; i++) {
            chunk.set(this.#queue[i], at);
            at += this.#queue[i].length;
          }
        }
        this.#head = end;
        if (this.#head === this.#queue.length) {
          this.#queue = [];
          this.#head = 0;
        } else if (this.#head > 4096) {
          this.#queue = this.#queue.slice(this.#head);
          this.#head = 0;
        }
        let offset = 0;
        while (offset < chunk.length) offset += await this.#conn.write(chunk.subarray(offset));
        this.bytesWritten += total;
        this.#queuedBytes -= total;
        // Everything queued is written: tell `drain()` now, before taking a turn below, so a close
        // handshake finishes before the peer (maybe in this process) sees the echo.
        if (this.#head === this.#queue.length) {
          for (const resolve of this.#drainWaiters.splice(0)) resolve();
        }
        // Writes to a socket with room complete without an event-loop turn: take turns with the
        // other connections (and with reading heartbeats), as gatehouse's reader does.
        const turn = yieldIfBusy();
        if (turn) await turn;
      }
    } catch {
      this.#finish(null, "", false);
    } finally {
      this.#writing = null;
      for (const resolve of this.#drainWaiters.splice(0)) resolve();
    }
  }

  /** Reads frames until the connection ends. `initial` = bytes that came in with the handshake. */
  async run(initial: Uint8Array): Promise<void> {
    let buffer = initial;
    let fragments: Uint8Array[] = [];
    let fragmentBytes = 0;
    let fragmentOpcode = 0;
    const chunk = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        // Handle every complete frame in the buffer.
        for (;;) {
          const parsed = parseFrame(buffer);
          if (parsed === null) break;
          if (typeof parsed === "string") {
            this.close(parsed === "too-large" ? 1009 : 1002, parsed);
            return await this.#untilClosed();
          }
          buffer = buffer.subarray(parsed.length);
          const { opcode, fin, payload } = parsed;
          if (opcode >= 0x8) {
            if (opcode === 0x8) {
              const code = payload.length >= 2 ? (payload[0] << 8) | payload[1] : 1005;
              const reason = payload.length > 2 ? decoder.decode(payload.subarray(2)) : "";
              const byPeer = !this.#closeSent;
              if (byPeer) {
                // Echo the code (RFC 6455 §5.5.1), then end TCP once the echo is written.
                this.#enqueueFrame(0x8, payload.slice(0, 2));
                this.#closeSent = true;
              }
              await this.drain();
              this.#finish(code, reason, byPeer);
              return;
            }
            if (opcode === 0x9 && !this.closing) this.#enqueueFrame(0xa, payload);
            continue;
          }
          // After our close frame the peer's data is discarded (RFC 6455 §1.4).
          const discard = this.closing;
          if (opcode === 0x0) {
            if (fragmentOpcode === 0) {
              this.close(1002, "continuation without a message");
              return await this.#untilClosed();
            }
          } else {
            if (fragmentOpcode !== 0) {
              this.close(1002, "new message inside a fragmented one");
              return await this.#untilClosed();
            }
            fragmentOpcode = opcode;
          }
          fragments.push(payload);
          fragmentBytes += payload.length;
          if (fragmentBytes > MAX_CLIENT_MESSAGE) {
            this.close(1009, "message too big");
            return await this.#untilClosed();
          }
          if (!fin) continue;
          const whole = fragments.length === 1 ? fragments[0] : concat(fragments, fragmentBytes);
          const text = fragmentOpcode === 0x1;
          fragments = [];
          fragmentBytes = 0;
          fragmentOpcode = 0;
          if (!discard) this.#handlers.onMessage(text ? decoder.decode(whole) : whole);
          if (this.#closed) return;
        }
        const turn = yieldIfBusy();
        if (turn) await turn;
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        buffer = buffer.length === 0
          ? chunk.slice(0, n)
          : concat([buffer, chunk.subarray(0, n)], buffer.length + n);
      }
    } catch {
      // reset by peer, or closed by us
    }
    this.#finish(null, "", false);
  }

  /** After a protocol error: read (and ignore) until the peer's close frame or the close timeout. */
  async #untilClosed(): Promise<void> {
    const chunk = new Uint8Array(16 * 1024);
    let buffer: Uint8Array = new Uint8Array(0);
    try {
      while (!this.#closed) {
        const n = await this.#conn.read(chunk);
        if (n === null) break;
        buffer = concat([buffer, chunk.subarray(0, n)], buffer.length + n);
        for (;;) {
          const parsed = parseFrame(buffer);
          if (parsed === null || typeof parsed === "string") break;
          buffer = buffer.subarray(parsed.length);
          if (parsed.opcode === 0x8) {
            const code = parsed.payload.length >= 2 ? (parsed.payload[0] << 8) | parsed.payload[1] : 1005;
            this.#finish(code, "", false);
            return;
          }
        }
      }
    } catch {
      // closed by the timeout
    }
    this.#finish(null, "", false);
  }
}

function concat(parts: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

/** Bytes in the header of a server frame (never masked) whose payload is `length` bytes. */
export function frameHeaderLength(length: number): number {
  return length < 126 ? 2 : length < 65536 ? 4 : 10;
}

/**
 * Writes the header of a server frame (7-, 16- or 64-bit payload length) into `out` at `at`; returns
 * where the payload starts. For callers that build whole frames themselves (the flood).
 */
export function writeFrameHeader(out: Uint8Array, at: number, opcode: number, length: number): number {
  out[at] = 0x80 | opcode; // FIN: the fake never fragments its messages
  if (length < 126) {
    out[at + 1] = length;
    return at + 2;
  }
  if (length < 65536) {
    out[at + 1] = 126;
    out[at + 2] = length >> 8;
    out[at + 3] = length & 0xff;
    return at + 4;
  }
  out[at + 1] = 127;
  new DataView(out.buffer, out.byteOffset + at + 2, 8).setBigUint64(0, BigInt(length));
  return at + 10;
}

function frameHeader(opcode: number, length: number): Uint8Array {
  const out = new Uint8Array(frameHeaderLength(length));
  writeFrameHeader(out, 0, opcode, length);
  return out;
}

type ParseError =
  | "too-large"
  | "unmasked frame"
  | "reserved bits set"
  | "unknown opcode"
  | "bad control frame";

/** Parses (and unmasks) one client frame at the start of `b`, or returns null when it is incomplete. */
export function parseFrame(
  b: Uint8Array,
): { opcode: number; fin: boolean; payload: Uint8Array; length: number } | ParseError | null {
  if (b.length < 2) return null;
  const fin = (b[0] & 0x80) !== 0;
  const opcode = b[0] & 0x0f;
  if ((b[0] & 0x70) !== 0) return "reserved bits set"; // no extension was negotiated
  if ((opcode > 0x2 && opcode < 0x8) || opcode > 0xa) return "unknown opcode";
  // Clients must mask every frame (RFC 6455 §5.1).
  if ((b[1] & 0x80) === 0) return "unmasked frame";
  let length = b[1] & 0x7f;
  let offset = 2;
  if (opcode >= 0x8 && (!fin || length > 125)) return "bad control frame";
  if (length === 126) {
    if (b.length < 4) return null;
    length = (b[2] << 8) | b[3];
    offset = 4;
  } else if (length === 127) {
    if (b.length < 10) return null;
    const big = new DataView(b.buffer, b.byteOffset + 2, 8).getBigUint64(0);
    if (big > BigInt(MAX_CLIENT_MESSAGE)) return "too-large";
    length = Number(big);
    offset = 10;
  }
  if (length > MAX_CLIENT_MESSAGE) return "too-large";
  const maskOffset = offset;
  offset += 4;
  if (b.length < offset + length) return null;
  const payload = b.slice(offset, offset + length);
  for (let i = 0; i < payload.length; i++) payload[i] ^= b[maskOffset + (i & 3)];
  return { opcode, fin, payload, length: offset + length };
}

export interface WsServerOptions {
  hostname?: string;
  port?: number;
  /** Called for every upgraded connection, before its first frame is read. */
  onConnection(connection: WsConnection): void;
  /** When it returns true, connections are accepted and closed at once (a dead host). */
  refuse?: () => boolean;
  /** How long to wait for the peer's answer to our close frame before ending TCP. Default 1000 ms. */
  closeTimeoutMs?: number;
}

export class WsServer {
  readonly #listener: Deno.TcpListener;
  readonly #options: WsServerOptions;
  /** Raw connections still in the HTTP handshake, and upgraded ones. */
  readonly #handshaking = new Set<Deno.Conn>();
  readonly #connections = new Set<WsConnection>();
  readonly #running = new Set<Promise<void>>();
  #nextId = 1;
  #accepting: Promise<void>;

  private constructor(listener: Deno.TcpListener, options: WsServerOptions) {
    this.#listener = listener;
    this.#options = options;
    this.#accepting = this.#acceptLoop();
  }

  static listen(options: WsServerOptions): WsServer {
    const listener = Deno.listen({ hostname: options.hostname ?? "127.0.0.1", port: options.port ?? 0 });
    return new WsServer(listener, options);
  }

  get port(): number {
    return this.#listener.addr.port;
  }

  async #acceptLoop(): Promise<void> {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch {
        return;
      }
      if (this.#options.refuse?.()) {
        conn.close();
        continue;
      }
      // As Discord's edge does: without it, Nagle's algorithm and the reader's delayed ACKs hold the tail
      // of a write back by up to ~40 ms (a bot reading the fake at 4 × 2000/s measured p50 12.5 ms, 0.65
      // ms with it).
      conn.setNoDelay(true);
      this.#handshaking.add(conn);
      const running: Promise<void> = this.#serve(conn).finally(() => this.#running.delete(running));
      this.#running.add(running);
    }
  }

  async #serve(conn: Deno.Conn): Promise<void> {
    let upgraded: { connection: WsConnection; rest: Uint8Array } | null = null;
    try {
      upgraded = await this.#handshake(conn);
    } catch {
      // the client went away, or sent something that is not an upgrade request
    } finally {
      this.#handshaking.delete(conn);
    }
    if (!upgraded) {
      try {
        conn.close();
      } catch {
        // already closed
      }
      return;
    }
    const { connection, rest } = upgraded;
    this.#connections.add(connection);
    try {
      this.#options.onConnection(connection);
      await connection.run(rest);
      await connection.settled();
    } finally {
      this.#connections.delete(connection);
    }
  }

  /** Reads the HTTP upgrade request and answers 101; returns null after answering 400. */
  async #handshake(conn: Deno.Conn): Promise<{ connection: WsConnection; rest: Uint8Array } | null> {
    const chunk = new Uint8Array(16 * 1024);
    let buffer: Uint8Array = new Uint8Array(0);
    let headerEnd = -1;
    while (headerEnd < 0) {
      const n = await conn.read(chunk);
      if (n === null) return null;
      buffer = concat([buffer, chunk.subarray(0, n)], buffer.length + n);
      headerEnd = indexOfHeaderEnd(buffer);
      if (headerEnd < 0 && buffer.length > 16 * 1024) return null;
    }
    const head = decoder.decode(buffer.subarray(0, headerEnd));
    const [requestLine, ...headerLines] = head.split("\r\n");
    const [method, target = "/"] = requestLine.split(" ");
    const headers = new Map<string, string>();
    for (const line of headerLines) {
      const colon = line.indexOf(":");
      if (colon > 0) headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const key = headers.get("sec-websocket-key");
    const isUpgrade = method === "GET" && headers.get("upgrade")?.toLowerCase() === "websocket" &&
      (headers.get("connection") ?? "").toLowerCase().includes("upgrade") && key !== undefined;
    if (!isUpgrade || headers.get("sec-websocket-version") !== "13") {
      const status = isUpgrade ? "426 Upgrade Required\r\nSec-WebSocket-Version: 13" : "400 Bad Request";
      await conn.write(
        encoder.encode(`HTTP/1.1 ${status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`),
      );
      return null;
    }
    // No Sec-WebSocket-Extensions header: a permessage-deflate offer is declined by leaving it out.
    await writeAll(
      conn,
      encoder.encode(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          `Sec-WebSocket-Accept: ${acceptKey(key!)}\r\n\r\n`,
      ),
    );
    const connection = new WsConnection(this.#nextId++, target, headers, conn, this.#options.closeTimeoutMs);
    return { connection, rest: buffer.slice(headerEnd + 4) };
  }

  /** Stops accepting, drops every connection (no close frame), and waits until all of them are done. */
  async close(): Promise<void> {
    try {
      this.#listener.close();
    } catch {
      // already closed
    }
    for (const conn of this.#handshaking) {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
    for (const connection of this.#connections) connection.drop();
    await this.#accepting;
    await Promise.all([...this.#running]);
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

function indexOfHeaderEnd(b: Uint8Array): number {
  for (let i = 0; i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i;
  }
  return -1;
}
