/**
 * Compression for the fake Discord. The faithful compressors (one context per connection, every payload
 * flushed) are gatehouse's own (src/gateway/compress.ts), which `replay --serve` uses too.
 *
 * `TemplateZlib` is the cheap zlib-stream for floods: each payload is a stored (uncompressed) deflate
 * block carrying the varying prefix (`{"t":…,"s":…,"op":0,"d":`), followed by the body compressed once,
 * in advance, by a fresh raw deflater. That is still one valid zlib stream, because no block refers back
 * to earlier data and every block ends byte-aligned (`00 00 ff ff`). A connection that used a real
 * deflater may switch to it after any flushed payload (the decoder's window then holds data the
 * deflater never saw, so it can never switch back).
 */
import zlib from "node:zlib";

export { type Compressor, ZlibCompressor, ZstdCompressor } from "../../src/gateway/compress.ts";
import type { Compressor } from "../../src/gateway/compress.ts";

const encoder = new TextEncoder();

/** A non-final stored deflate block holding `bytes` (at most 65535), written into `out` at `at`. */
function writeStoredBlock(out: Uint8Array, at: number, bytes: Uint8Array): number {
  const n = bytes.length;
  out[at] = 0x00; // BFINAL 0, BTYPE 00 (stored); the rest of the byte is padding
  out[at + 1] = n & 0xff;
  out[at + 2] = n >> 8;
  out[at + 3] = ~n & 0xff;
  out[at + 4] = (~n >> 8) & 0xff;
  out.set(bytes, at + 5);
  return at + 5 + n;
}

/** A non-final stored deflate block holding `bytes` (at most 65535). */
export function storedBlock(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + bytes.length);
  writeStoredBlock(out, 0, bytes);
  return out;
}

/**
 * `text` as raw deflate blocks from a fresh compressor: no back-references to anything before them,
 * no final block, ending byte-aligned with `00 00 ff ff`.
 */
export function precompress(text: string | Uint8Array): Uint8Array {
  const bytes = typeof text === "string" ? encoder.encode(text) : text;
  return new Uint8Array(zlib.deflateRawSync(bytes, { finishFlush: zlib.constants.Z_SYNC_FLUSH }));
}

/** zlib-stream from independent blocks: cheap for the fake, still one valid zlib stream. */
export class TemplateZlib implements Compressor {
  #headerSent: boolean;

  /** `headerSent`: the stream header `78 9c` already went out (switching from a real deflater). */
  constructor(headerSent = false) {
    this.#headerSent = headerSent;
  }

  /** 2 when the stream header `78 9c` must precede the next payload (then it counts as sent), else 0. */
  takeHeader(): number {
    if (this.#headerSent) return 0;
    this.#headerSent = true;
    return 2;
  }

  /**
   * One payload as chunks to send back to back: the stored block with `prefix`, then `tail`
   * (`precompress`ed once, shared by every payload that uses it).
   */
  parts(prefix: Uint8Array, tail: Uint8Array): Uint8Array[] {
    const header = this.takeHeader();
    const blocks = Math.max(1, Math.ceil(prefix.length / 65535));
    const head = new Uint8Array(header + blocks * 5 + prefix.length);
    if (header) head.set([0x78, 0x9c]);
    let at = header;
    for (let i = 0; i < prefix.length || at === header; i += 65535) {
      at = writeStoredBlock(head, at, prefix.subarray(i, i + 65535));
    }
    return [head, tail];
  }

  compress(payload: Uint8Array): Uint8Array {
    const header = this.takeHeader();
    const blocks = precompress(payload);
    const out = new Uint8Array(header + blocks.length);
    if (header) out.set([0x78, 0x9c]);
    out.set(blocks, header);
    return out;
  }

  close(): void {}
}
