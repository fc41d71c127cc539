/**
 * Compression as Discord does it, for the servers gatehouse runs (`replay --serve`) and for its test
 * double: one persistent context per connection, every payload flushed (zlib Z_SYNC_FLUSH, so it ends
 * `00 00 ff ff`; zstd ZSTD_e_flush, one frame that never ends). Synchronous, through the native handle
 * behind `node:zlib` (see decompress.ts for why), so writes to a connection stay in order.
 */
import zlib from "node:zlib";
import type { NativeHandle } from "./decompress.ts";
import type { Compression } from "./protocol.ts";

let scratch = new Uint8Array(256 * 1024);

function run(handle: NativeHandle, state: Uint32Array, flush: number, input: Uint8Array): Uint8Array {
  let inOff = 0, inLen = input.length, produced = 0;
  for (;;) {
    const room = scratch.length - produced;
    handle.writeSync(flush, input, inOff, inLen, scratch, produced, room);
    const availOut = state[0], availIn = state[1];
    produced += room - availOut;
    inOff += inLen - availIn;
    inLen = availIn;
    if (availOut > 0 && availIn === 0) return scratch.slice(0, produced);
    if (availOut === 0) {
      const bigger = new Uint8Array(scratch.length * 2);
      bigger.set(scratch.subarray(0, produced));
      scratch = bigger;
    }
  }
}

export interface Compressor {
  /** Compressed bytes of one payload (a fresh copy). */
  compress(payload: Uint8Array): Uint8Array;
  close(): void;
}

function open(kind: "deflate" | "zstd"): { handle: NativeHandle; state: Uint32Array } {
  const stream =
    (kind === "deflate" ? zlib.createDeflate({ chunkSize: 64 }) : zlib.createZstdCompress()) as unknown as {
      _handle: NativeHandle;
      _writeState: Uint32Array;
    };
  stream._handle.onerror = (message) => {
    throw new Error(`compression failed: ${message}`);
  };
  return { handle: stream._handle, state: stream._writeState };
}

export class ZlibCompressor implements Compressor {
  readonly #native = open("deflate");
  compress(payload: Uint8Array): Uint8Array {
    return run(this.#native.handle, this.#native.state, zlib.constants.Z_SYNC_FLUSH, payload);
  }
  close(): void {
    this.#native.handle.close();
  }
}

export class ZstdCompressor implements Compressor {
  readonly #native = open("zstd");
  compress(payload: Uint8Array): Uint8Array {
    return run(this.#native.handle, this.#native.state, 1, /* ZSTD_e_flush */ payload);
  }
  close(): void {
    this.#native.handle.close();
  }
}

export function createCompressor(mode: Compression): Compressor | null {
  if (mode === "zlib-stream") return new ZlibCompressor();
  if (mode === "zstd-stream") return new ZstdCompressor();
  return null;
}
