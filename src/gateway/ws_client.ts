/**
 * A WebSocket client (RFC 6455) over Deno's TCP/TLS sockets, built for a gateway that must not fall
 * behind in memory.
 *
 * Why not Deno's built-in `WebSocket`: under a flood it reads ahead of the message handler and buffers
 * without a useful bound (measured: ~30 MB per connection, 500 MB for 16 flooded shards), and it makes
 * one async operation and one ArrayBuffer per message. Here the read loop asks the socket for more bytes
 * only after every complete frame in the buffer has been handled (each message synchronously; a busy loop
 * takes turns with the others between frames), so a slow consumer makes TCP push back on Discord; one
 * read returns many frames, and each message is handed over as a view into the read buffer (no copy, no
 * allocation). The read buffer grows while reads fill it and shrinks when
 * the connection goes quiet, so an idle shard holds a few KB.
 *
 * Client frames are masked; server frames must not be. Text and binary messages, fragmentation, ping/pong
 * and the close handshake are handled; extensions (permessage-deflate) are never offered.
 */
import { yieldIfBusy } from "../util/cooperate.ts";
import { explainConnectError, Fragments, frame, handshake } from "./ws_wire.ts";

export { explainConnectError, WsError } from "./ws_wire.ts";

export interface WsHandlers {
  onOpen(): void;
  /** One whole message. `data` is a view into the read buffer, valid only during the call. */
  onMessage(data: Uint8Array, text: boolean): void;
  /** Called once. 1006 = no close frame (connection failed or dropped); `reason` says why. */
  onClose(code: number, reason: string): void;
}

export interface WsClientOptions {
  /** Largest message accepted; a bigger one closes the connection with 1009. */
  maxMessageBytes?: number;
  /** Extra request headers (User-Agent). */
  headers?: Record<string, string>;
  /** How long `close()` waits for the server's close frame before dropping TCP. */
  closeTimeoutMs?: number;
}

export const WS_CONNECTING = 0, WS_OPEN = 1, WS_CLOSING = 2, WS_CLOSED = 3;

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const MIN_BUFFER = 4 * 1024;
const MAX_READ_BUFFER = 256 * 1024;
const DEFAULT_MAX_MESSAGE = 64 * 1024 * 1024;

export class WsClient {
  readonly url: URL;
  readonly #handlers: WsHandlers;
  readonly #maxMessage: number;
  readonly #closeTimeoutMs: number;
  #conn: Deno.Conn | null = null;
  #state = WS_CONNECTING;
  #aborted = false;
  #closeNotified = false;
  #closeSentCode: number | null = null;
  #closeReceived = false;
  #closeTimer: ReturnType<typeof setTimeout> | undefined;
  #closed: Promise<void>;
  #resolveClosed!: () => void;
  #writes: Promise<void> = Promise.resolve();
  /** A message sent in several frames, while it arrives. */
  readonly #fragments = new Fragments();
  /** Bytes read so far (for metrics). */
  bytesRead = 0;
  /** While set, the read loop waits here before reading more (flow control). */
  #gate: { promise: Promise<void>; open: () => void } | null = null;

  private constructor(url: URL, handlers: WsHandlers, options: WsClientOptions) {
    this.url = url;
    this.#handlers = handlers;
    this.#maxMessage = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE;
    this.#closeTimeoutMs = options.closeTimeoutMs ?? 2000;
    this.#closed = new Promise((resolve) => (this.#resolveClosed = resolve));
  }

  /** Starts connecting at once; the outcome arrives through the handlers. */
  static connect(url: string, handlers: WsHandlers, options: WsClientOptions = {}): WsClient {
    const parsed = new URL(url);
    if (parsed.protocol !== "ws:" && parsed.protocol !== "wss:") {
      throw new TypeError(`Cannot open a WebSocket to ${url}: the scheme must be ws: or wss:`);
    }
    const client = new WsClient(parsed, handlers, options);
    client.#run(options.headers ?? {});
    return client;
  }

  get readyState(): number {
    return this.#state;
  }

  /** Both sides sent their close frame: the close handshake completed (a clean close). */
  get closedCleanly(): boolean {
    return this.#closeReceived && this.#closeSentCode !== null;
  }

  /** Resolves when the TCP connection is gone. */
  get closed(): Promise<void> {
    return this.#closed;
  }

  /** Stops reading: what Discord sends waits in TCP buffers (and then on Discord's side). */
  pause(): void {
    if (this.#gate !== null) return;
    let open!: () => void;
    const promise = new Promise<void>((resolve) => (open = resolve));
    this.#gate = { promise, open };
  }

  resume(): void {
    const gate = this.#gate;
    this.#gate = null;
    gate?.open();
  }

  /**
   * Sends a text message (ignored unless open). `onWritten` runs once its bytes are handed to the
   * operating system: on a busy process that can be well after this call.
   */
  send(text: string, onWritten?: () => void): void {
    if (this.#state !== WS_OPEN) return;
    this.#write(frame(0x1, encoder.encode(text)), onWritten);
  }

  /**
   * Starts the close handshake with `code`; TCP is dropped if the server does not answer in time.
   * `onClose` is not called for a close we started.
   */
  close(code: number, reason = ""): Promise<void> {
    this.#closeNotified = true;
    if (this.#state === WS_CONNECTING) {
      this.#abortNow();
      return this.#closed;
    }
    if (this.#state !== WS_OPEN) return this.#closed;
    this.#state = WS_CLOSING;
    this.#sendClose(code, reason);
    this.#closeTimer = setTimeout(() => this.#finish(), this.#closeTimeoutMs);
    return this.#closed;
  }

  /** Drops the connection without a close frame; `onClose` is not called. */
  abort(): void {
    this.#closeNotified = true;
    this.#abortNow();
  }

  #abortNow(): void {
    this.#aborted = true;
    this.#finish();
  }

  #sendClose(code: number, reason: string): void {
    if (this.#closeSentCode !== null) return;
    this.#closeSentCode = code;
    const reasonBytes = encoder.encode(reason).subarray(0, 123);
    const payload = new Uint8Array(2 + reasonBytes.length);
    payload[0] = code >> 8;
    payload[1] = code & 0xff;
    payload.set(reasonBytes, 2);
    this.#write(frame(0x8, payload));
  }

  #write(bytes: Uint8Array, onWritten?: () => void): void {
    const conn = this.#conn;
    if (conn === null) return;
    this.#writes = this.#writes.then(async () => {
      let offset = 0;
      while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
      onWritten?.();
    }).catch((error) => this.#fail(1006, `write failed: ${(error as Error).message}`));
  }

  /** Ends the connection and tells the handler once. */
  #fail(code: number, reason: string): void {
    if (!this.#closeNotified) {
      this.#closeNotified = true;
      this.#finish();
      this.#handlers.onClose(code, reason);
      return;
    }
    this.#finish();
  }

  #finish(): void {
    if (this.#state === WS_CLOSED) return;
    this.#state = WS_CLOSED;
    clearTimeout(this.#closeTimer);
    try {
      this.#conn?.close();
    } catch {
      // already closed
    }
    this.#conn = null;
    this.#fragments.clear();
    this.resume();
    this.#resolveClosed();
  }

  async #run(headers: Record<string, string>): Promise<void> {
    const url = this.url;
    const secure = url.protocol === "wss:";
    const hostname = url.hostname.replace(/^\[(.*)\]$/, "$1");
    const port = url.port ? Number(url.port) : secure ? 443 : 80;
    let conn: Deno.Conn;
    try {
      conn = secure ? await Deno.connectTls({ hostname, port }) : await Deno.connect({ hostname, port });
    } catch (error) {
      if (!this.#aborted) this.#fail(1006, explainConnectError(url.host, (error as Error).message));
      return;
    }
    if (this.#aborted) {
      conn.close();
      return;
    }
    this.#conn = conn;
    try {
      (conn as Deno.TcpConn).setNoDelay?.(true);
    } catch {
      // TLS connections may not expose it
    }
    let rest: Uint8Array;
    try {
      rest = await handshake(conn, this.url, headers);
    } catch (error) {
      if (!this.#aborted) this.#fail(1006, explainConnectError(url.host, (error as Error).message));
      return;
    }
    if (this.#aborted || this.#state !== WS_CONNECTING) return;
    this.#state = WS_OPEN;
    this.#handlers.onOpen();
    await this.#readLoop(conn, rest);
  }

  async #readLoop(conn: Deno.Conn, initial: Uint8Array): Promise<void> {
    let buffer = new Uint8Array(Math.max(MIN_BUFFER, initial.length));
    buffer.set(initial);
    let start = 0;
    let end = initial.length;
    /** Bytes the frame being read needs in total (header + payload), once its header is known. */
    let need = 0;
    let quietReads = 0;
    /** The last read filled all the free space: more is probably waiting. */
    let filled = false;
    for (;;) {
      // Handle every complete frame already in the buffer before reading more.
      for (;;) {
        const available = end - start;
        if (available < 2) {
          need = 2;
          break;
        }
        const b1 = buffer[start + 1];
        if ((b1 & 0x80) !== 0) {
          this.#protocolError("the server masked a frame");
          return;
        }
        let length = b1 & 0x7f;
        let header = 2;
        if (length === 126) {
          header = 4;
          if (available < 4) {
            need = 4;
            break;
          }
          length = (buffer[start + 2] << 8) | buffer[start + 3];
        } else if (length === 127) {
          header = 10;
          if (available < 10) {
            need = 10;
            break;
          }
          const high = (buffer[start + 2] << 24 | buffer[start + 3] << 16 | buffer[start + 4] << 8 |
            buffer[start + 5]) >>> 0;
          const low = (buffer[start + 6] << 24 | buffer[start + 7] << 16 | buffer[start + 8] << 8 |
            buffer[start + 9]) >>> 0;
          length = high * 0x1_0000_0000 + low;
        }
        if (length > this.#maxMessage) {
          this.#tooBig(length);
          return;
        }
        if (available < header + length) {
          need = header + length;
          break;
        }
        const b0 = buffer[start];
        const payload = buffer.subarray(start + header, start + header + length);
        start += header + length;
        if (!this.#onFrame(b0 & 0x80, b0 & 0x0f, payload)) return;
        // One read can hold hundreds of frames (tens of ms of work in a flood): take turns between
        // frames too, so other connections, sinks and timers are not held up for a whole read.
        const turn = yieldIfBusy();
        if (turn !== null) {
          await turn;
          if (this.#state === WS_CLOSED) return;
        }
      }
      if (start === end) {
        start = end = 0;
      } else if (start > 0 && buffer.length - start < need) {
        buffer.copyWithin(0, start, end);
        end -= start;
        start = 0;
      }
      // Room for the frame being read; and while reads keep filling the buffer, a bigger one (fewer reads).
      if (buffer.length - start < need || (filled && buffer.length < MAX_READ_BUFFER)) {
        const size = Math.max(need, Math.min(buffer.length * 2, MAX_READ_BUFFER));
        const bigger = new Uint8Array(size);
        bigger.set(buffer.subarray(start, end));
        end -= start;
        start = 0;
        buffer = bigger;
      }
      const turn = yieldIfBusy();
      if (turn !== null) {
        await turn;
        if (this.#state === WS_CLOSED) return;
      }
      while (this.#gate !== null) {
        await this.#gate.promise;
        if (this.#state === WS_CLOSED) return;
      }
      const free = buffer.length - end;
      let n: number | null;
      try {
        n = await conn.read(buffer.subarray(end));
      } catch (error) {
        if (this.#state !== WS_CLOSED) this.#fail(1006, `read failed: ${(error as Error).message}`);
        return;
      }
      if (this.#state === WS_CLOSED) return;
      if (n === null) {
        this.#fail(1006, "connection closed without a close frame");
        return;
      }
      this.bytesRead += n;
      end += n;
      filled = n === free;
      // A quiet connection gives back the memory a burst made it take.
      if (n < free / 4) quietReads++;
      else quietReads = 0;
      if (
        quietReads >= 8 && start === 0 && end < MIN_BUFFER / 2 && buffer.length > MIN_BUFFER &&
        need <= MIN_BUFFER
      ) {
        const smaller = new Uint8Array(MIN_BUFFER);
        smaller.set(buffer.subarray(0, end));
        buffer = smaller;
        quietReads = 0;
      }
    }
  }

  /** Handles one frame; returns false when reading must stop. */
  #onFrame(fin: number, opcode: number, payload: Uint8Array): boolean {
    switch (opcode) {
      case 0x1:
      case 0x2:
        if (this.#fragments.open) return this.#protocolError("a new message began inside a fragmented one");
        if (fin) {
          if (this.#state === WS_OPEN) this.#handlers.onMessage(payload, opcode === 0x1);
        } else this.#fragments.begin(payload, opcode === 0x1);
        return true;
      case 0x0: {
        const fragments = this.#fragments;
        if (!fragments.open) return this.#protocolError("a continuation frame without a message");
        const length = fragments.length + payload.length;
        if (length > this.#maxMessage) return this.#tooBig(length);
        fragments.add(payload);
        if (fin) {
          const text = fragments.text;
          const whole = fragments.take();
          if (this.#state === WS_OPEN) this.#handlers.onMessage(whole, text);
        }
        return true;
      }
      case 0x8: {
        this.#closeReceived = true;
        const code = payload.length >= 2 ? (payload[0] << 8) | payload[1] : 1005;
        const reason = payload.length > 2 ? decoder.decode(payload.subarray(2)) : "";
        if (this.#closeSentCode === null) this.#sendClose(code === 1005 ? 1000 : code, "");
        // Let the echo go out, then end TCP (the server should end it first; do not wait long).
        this.#writes.finally(() => {
          this.#closeTimer = setTimeout(() => this.#finish(), 200);
        });
        this.#state = WS_CLOSING;
        if (!this.#closeNotified) {
          this.#closeNotified = true;
          this.#handlers.onClose(code, reason);
        }
        return false;
      }
      case 0x9:
        if (this.#state === WS_OPEN) this.#write(frame(0xa, payload.slice(0, 125)));
        return true;
      case 0xa:
        return true;
      default:
        return this.#protocolError(`unknown opcode ${opcode}`);
    }
  }

  #protocolError(why: string): false {
    this.#sendClose(1002, "protocol error");
    this.#fail(1002, `WebSocket protocol error: ${why}`);
    return false;
  }

  #tooBig(length: number): false {
    this.#sendClose(1009, "message too big");
    this.#fail(1009, `message of ${length} bytes exceeds the ${this.#maxMessage}-byte limit`);
    return false;
  }
}
