/**
 * Transport decompression for one gateway connection (docs/protocol.md §6).
 *
 * Both codecs keep ONE context for the whole connection (messages back-reference earlier ones) and
 * run synchronously per WebSocket message: Deno's `WebSocket` reads the next frame only after the
 * message handler returns, so synchronous work gives natural backpressure, while the asynchronous
 * `node:zlib` stream API mixes up output under bursts on Deno 2.9.
 *
 * We drive the native handle behind `node:zlib` directly (`_handle.writeSync`), because the public
 * synchronous API (`inflateSync`, `_processChunk`) closes the context after one call. All
 * decompressors share one output buffer: a payload returned by `push` is a view into it and is valid
 * only until the next `push` on any decompressor — callers copy what they keep. Sharing the buffer is
 * what keeps an idle shard small (a per-stream 16 KB output buffer would dominate its memory).
 */
import zlib from "node:zlib";
import type { Compression } from "./protocol.ts";

/** Raised for corrupt or oversized compressed input. The connection must be dropped and resumed. */
export class DecompressError extends Error {
  override name = "DecompressError";
}

export interface Decompressor {
  /**
   * Feeds one WebSocket message. Returns the complete gateway payload it finishes, or null when the
   * message is only part of one (zlib-stream messages may span several WebSocket messages).
   * The returned view is valid until the next `push` on any decompressor.
   */
  push(message: Uint8Array): Uint8Array | null;
  /** Drops all state so the object can serve a new connection. */
  reset(): void;
  /** Releases the native context. */
  close(): void;
}

/** Largest gateway payload accepted (a GUILD_CREATE of a huge guild is a few MB). */
export const MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

const ZLIB_SUFFIX_0 = 0x00, ZLIB_SUFFIX_1 = 0x00, ZLIB_SUFFIX_2 = 0xff, ZLIB_SUFFIX_3 = 0xff;

/** The output buffer every decompressor writes into; grows to the largest payload seen. */
let shared = new Uint8Array(256 * 1024);

/** The synchronous native codec behind a `node:zlib` stream (compress.ts uses it too). */
export interface NativeHandle {
  writeSync(
    flush: number,
    input: Uint8Array,
    inOff: number,
    inLen: number,
    out: Uint8Array,
    outOff: number,
    outLen: number,
  ): void;
  reset(): void;
  close(): void;
  onerror: (message: string, errno: number) => void;
}

interface NativeStream {
  _handle: NativeHandle | null;
  _writeState: Uint32Array;
}

function openNative(kind: "inflate" | "zstd"): { handle: NativeHandle; state: Uint32Array } {
  // chunkSize 64 (the minimum) keeps the stream's own, unused output buffer tiny.
  const stream =
    (kind === "inflate"
      ? zlib.createInflate({ chunkSize: 64 })
      : zlib.createZstdDecompress({ chunkSize: 64 } as zlib.ZstdOptions)) as unknown as NativeStream;
  const handle = stream._handle;
  if (!handle || typeof handle.writeSync !== "function" || !(stream._writeState instanceof Uint32Array)) {
    throw new Error(
      `Cannot decompress ${kind === "inflate" ? "zlib-stream" : "zstd-stream"}: this Deno's node:zlib ` +
        'has no synchronous native handle (tested with Deno 2.9.6); use compression = "none"',
    );
  }
  // The handle points back at its Node stream object, which we never use: cut the link so the stream
  // (a few KB of JS per connection) can be collected. `close()` releases the native context.
  for (const symbol of Object.getOwnPropertySymbols(handle)) {
    if (symbol.description === "ownerSymbol") delete (handle as unknown as Record<symbol, unknown>)[symbol];
  }
  return { handle, state: stream._writeState };
}

/**
 * Runs `input` through a native handle into the shared buffer until the input is consumed and the
 * output did not fill the buffer (so nothing is left inside the codec). Returns the bytes produced.
 */
function drain(
  handle: NativeHandle,
  state: Uint32Array,
  flush: number,
  input: Uint8Array,
  errorOf: () => string | null,
): Uint8Array {
  let inOff = 0;
  let inLen = input.length;
  let produced = 0;
  for (;;) {
    const room = shared.length - produced;
    try {
      handle.writeSync(flush, input, inOff, inLen, shared, produced, room);
    } catch (error) {
      // zstd reports corrupt input by throwing; zlib through `onerror`.
      throw new DecompressError((error as Error).message);
    }
    const error = errorOf();
    if (error !== null) throw new DecompressError(error);
    const availOut = state[0];
    const availIn = state[1];
    produced += room - availOut;
    inOff += inLen - availIn;
    inLen = availIn;
    if (availOut > 0 && availIn === 0) return shared.subarray(0, produced);
    if (availOut === 0) {
      if (shared.length >= MAX_MESSAGE_BYTES) {
        throw new DecompressError(`decompressed message exceeds ${MAX_MESSAGE_BYTES} bytes`);
      }
      const bigger = new Uint8Array(shared.length * 2);
      bigger.set(shared.subarray(0, produced));
      shared = bigger;
    }
  }
}

/** zlib-stream: one zlib stream per connection, each payload ends with Z_SYNC_FLUSH's `00 00 ff ff`. */
export class ZlibStreamDecompressor implements Decompressor {
  #handle: NativeHandle | null = null;
  #state: Uint32Array | null = null;
  #error: string | null = null;
  /** Parts of a payload spread over several WebSocket messages. */
  #parts: Uint8Array[] = [];
  #partsLength = 0;
  readonly #errorOf = () => this.#error;

  push(message: Uint8Array): Uint8Array | null {
    const n = message.length;
    if (
      this.#partsLength === 0 && n >= 4 && message[n - 4] === ZLIB_SUFFIX_0 &&
      message[n - 3] === ZLIB_SUFFIX_1 &&
      message[n - 2] === ZLIB_SUFFIX_2 && message[n - 1] === ZLIB_SUFFIX_3
    ) {
      return this.#inflate(message);
    }
    // The WebSocket's buffer may be reused: keep a copy of partial messages.
    this.#parts.push(message.slice());
    this.#partsLength += n;
    const complete = this.#endsWithSuffix();
    if (this.#partsLength > MAX_MESSAGE_BYTES) {
      this.#dropParts();
      throw new DecompressError(`compressed message exceeds ${MAX_MESSAGE_BYTES} bytes without a flush`);
    }
    if (!complete) return null;
    const whole = new Uint8Array(this.#partsLength);
    let offset = 0;
    for (const part of this.#parts) {
      whole.set(part, offset);
      offset += part.length;
    }
    this.#dropParts();
    return this.#inflate(whole);
  }

  #inflate(input: Uint8Array): Uint8Array {
    if (this.#handle === null) {
      const native = openNative("inflate");
      this.#handle = native.handle;
      this.#state = native.state;
      this.#handle.onerror = (message) => {
        this.#error = message;
      };
    }
    return drain(this.#handle, this.#state!, zlib.constants.Z_SYNC_FLUSH, input, this.#errorOf);
  }

  /** Whether the buffered parts end with the flush suffix (which may itself be split). */
  #endsWithSuffix(): boolean {
    if (this.#partsLength < 4) return false;
    const suffix = [ZLIB_SUFFIX_0, ZLIB_SUFFIX_1, ZLIB_SUFFIX_2, ZLIB_SUFFIX_3];
    let want = 3;
    for (let p = this.#parts.length - 1; p >= 0 && want >= 0; p--) {
      const part = this.#parts[p];
      for (let i = part.length - 1; i >= 0 && want >= 0; i--, want--) {
        if (part[i] !== suffix[want]) return false;
      }
    }
    return want < 0;
  }

  #dropParts(): void {
    this.#parts = [];
    this.#partsLength = 0;
  }

  reset(): void {
    // A fresh native context is cheaper to reason about than zlib's reset after an error.
    this.close();
  }

  close(): void {
    this.#dropParts();
    this.#error = null;
    try {
      this.#handle?.close();
    } catch {
      // already closed
    }
    this.#handle = null;
    this.#state = null;
  }
}

/**
 * zstd-stream: one zstd frame per connection that never ends; each WebSocket message is exactly one
 * whole payload, flushed, with no suffix to look for.
 */
export class ZstdStreamDecompressor implements Decompressor {
  #handle: NativeHandle | null = null;
  #state: Uint32Array | null = null;
  #error: string | null = null;
  readonly #errorOf = () => this.#error;

  push(message: Uint8Array): Uint8Array | null {
    if (this.#handle === null) {
      const native = openNative("zstd");
      this.#handle = native.handle;
      this.#state = native.state;
      this.#handle.onerror = (message) => {
        this.#error = message;
      };
    }
    const out = drain(this.#handle, this.#state!, 0, message, this.#errorOf);
    return out.length === 0 ? null : out;
  }

  reset(): void {
    this.close();
  }

  close(): void {
    this.#error = null;
    try {
      this.#handle?.close();
    } catch {
      // already closed
    }
    this.#handle = null;
    this.#state = null;
  }
}

/** compress = none: every message is one whole payload. */
export class PassthroughDecompressor implements Decompressor {
  push(message: Uint8Array): Uint8Array {
    return message;
  }
  reset(): void {}
  close(): void {}
}

export function createDecompressor(mode: Compression): Decompressor {
  switch (mode) {
    case "zlib-stream":
      return new ZlibStreamDecompressor();
    case "zstd-stream":
      return new ZstdStreamDecompressor();
    case "none":
      return new PassthroughDecompressor();
  }
}
