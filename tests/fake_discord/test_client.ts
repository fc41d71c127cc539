/**
 * A bare gateway client for the fake's own tests: Deno's built-in `WebSocket` and `node:zlib`, and
 * deliberately none of gatehouse's code. If the fake and gatehouse shared a decoder, a bug in it would
 * hide on both sides; here the fake is checked against independent implementations.
 *
 * Compressed streams are decoded with one `node:zlib` stream per connection (`createInflate` or
 * `createZstdDecompress`, fed strictly in order), and its output is cut into payloads by a JSON
 * scanner, so no assumption is made about where the decoder's output chunks end.
 */
import zlib from "node:zlib";

// deno-lint-ignore no-explicit-any
export type Msg = { op: number; t: string | null; s: number | null; d: any };
export type Compression = "zlib-stream" | "zstd-stream" | "none";

export interface Client {
  /** Every payload received, parsed, in order. */
  messages: Msg[];
  /** The JSON text of every payload, in order (to check key order). */
  texts: string[];
  /** WebSocket messages received. */
  raw: number;
  /** zlib-stream: WebSocket messages that ended with `00 00 ff ff`. */
  suffixes: number;
  /** Every WebSocket message's bytes, when `keepRaw` was asked for. */
  rawMessages: Uint8Array[];
  closed: { code: number; reason: string } | null;
  /** Set if the decoder failed (corrupt stream). */
  decodeError: Error | null;
  send(payload: unknown): void;
  /** Closes with `code` (default 4000) and waits until the socket is closed. */
  close(code?: number): Promise<void>;
  /** Resolves when the socket has closed (whoever closed it) and the decoder is released. */
  done(): Promise<void>;
  waitFor(predicate: () => boolean, what?: string, timeoutMs?: number): Promise<void>;
  dispatches(): Msg[];
}

/** Cuts a byte stream into top-level JSON values (the gateway sends objects back to back). */
export class JsonSplitter {
  #pending: Uint8Array[] = [];
  #depth = 0;
  #inString = false;
  #escape = false;

  push(chunk: Uint8Array, emit: (json: Uint8Array) => void): void {
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk[i];
      if (this.#inString) {
        if (this.#escape) this.#escape = false;
        else if (c === 0x5c) this.#escape = true;
        else if (c === 0x22) this.#inString = false;
      } else if (c === 0x22) this.#inString = true;
      else if (c === 0x7b || c === 0x5b) this.#depth++;
      else if ((c === 0x7d || c === 0x5d) && --this.#depth === 0) {
        this.#pending.push(chunk.subarray(start, i + 1));
        emit(concat(this.#pending));
        this.#pending = [];
        start = i + 1;
      }
    }
    if (start < chunk.length) this.#pending.push(chunk.slice(start));
  }
}

export function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0];
  let total = 0;
  for (const part of parts) total += part.length;
  const out = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

const decoder = new TextDecoder();

export function connect(
  url: string,
  compression: Compression = "none",
  options: { query?: string; keepRaw?: boolean; onMessage?: (msg: Msg, client: Client) => void } = {},
): Client {
  const query = options.query ?? "v=10&encoding=json";
  const ws = new WebSocket(`${url}/?${query}${compression === "none" ? "" : `&compress=${compression}`}`);
  ws.binaryType = "arraybuffer";
  const splitter = new JsonSplitter();
  const stream = compression === "zlib-stream"
    ? zlib.createInflate()
    : compression === "zstd-stream"
    ? zlib.createZstdDecompress()
    : null;
  let streamClosed: Promise<void> = Promise.resolve();
  const wsClosed = new Promise<void>((resolve) => ws.addEventListener("close", () => resolve()));
  const client: Client = {
    messages: [],
    texts: [],
    raw: 0,
    suffixes: 0,
    rawMessages: [],
    closed: null,
    decodeError: null,
    send: (payload) => ws.send(typeof payload === "string" ? payload : JSON.stringify(payload)),
    close: (code = 4000) => {
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(code);
      return client.done();
    },
    done: async () => {
      await wsClosed;
      await streamClosed;
    },
    waitFor: async (predicate, what = "condition", timeoutMs = 5000) => {
      const deadline = Date.now() + timeoutMs;
      while (!predicate()) {
        if (client.decodeError) throw client.decodeError;
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
    dispatches: () => client.messages.filter((m) => m.op === 0),
  };
  const onJson = (json: Uint8Array) => {
    const text = decoder.decode(json);
    const msg = JSON.parse(text);
    client.texts.push(text);
    client.messages.push(msg);
    options.onMessage?.(msg, client);
  };
  if (stream) {
    stream.on("data", (chunk: Uint8Array) => splitter.push(chunk, onJson));
    stream.on("error", (error: Error) => client.decodeError = error);
    streamClosed = new Promise((resolve) => stream.on("close", () => resolve()));
  }
  ws.onmessage = (event) => {
    client.raw++;
    if (typeof event.data === "string") {
      if (options.keepRaw) client.rawMessages.push(new TextEncoder().encode(event.data));
      onJson(new TextEncoder().encode(event.data));
      return;
    }
    const bytes = new Uint8Array(event.data);
    if (options.keepRaw) client.rawMessages.push(bytes);
    const n = bytes.length;
    if (
      n >= 4 && bytes[n - 4] === 0 && bytes[n - 3] === 0 && bytes[n - 2] === 0xff && bytes[n - 1] === 0xff
    ) {
      client.suffixes++;
    }
    if (stream) stream.write(bytes);
    else client.decodeError = new Error("binary message without transport compression");
  };
  ws.onclose = (event) => {
    client.closed = { code: event.code, reason: event.reason };
    // The stream never ends (no trailer on the wire): destroy it once what was written is decoded.
    stream?.write(new Uint8Array(0), () => stream.destroy());
  };
  return client;
}

/** A minimal valid IDENTIFY. */
export function identify(shard: [number, number] = [0, 1], extra: Record<string, unknown> = {}) {
  return {
    op: 2,
    d: {
      token: "fake-token",
      intents: 513,
      properties: { os: "linux", browser: "test", device: "test" },
      shard,
      ...extra,
    },
  };
}

/** Connects, waits for HELLO, IDENTIFYs and waits for READY plus `guilds` GUILD_CREATEs. */
export async function identified(
  url: string,
  compression: Compression = "none",
  shard: [number, number] = [0, 1],
  guilds = 2,
  options: Parameters<typeof connect>[2] = {},
): Promise<Client> {
  const client = connect(url, compression, options);
  await client.waitFor(() => client.messages.length >= 1, "HELLO");
  client.send(identify(shard));
  await client.waitFor(() => client.dispatches().length >= 1 + guilds, "READY and GUILD_CREATEs");
  return client;
}
