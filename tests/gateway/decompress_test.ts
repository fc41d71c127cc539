import assert from "node:assert/strict";
import zlib from "node:zlib";
import {
  createDecompressor,
  DecompressError,
  PassthroughDecompressor,
  ZlibStreamDecompressor,
  ZstdStreamDecompressor,
} from "../../src/gateway/decompress.ts";

const hex = (s: string) => new Uint8Array(s.match(/../g)!.map((h) => parseInt(h, 16)));
const text = (b: Uint8Array | null) => (b === null ? null : new TextDecoder().decode(b));

// Real HELLO frames captured from Discord (docs/protocol.md §6).
const ZLIB_HELLO = hex(
  "789c34c9410a83301005d0bbfc755262a9207315233235431b8851e2d85242eede6eba7bf02a1494cf940c8e3fb61dd4398300aa780a17bd0beb1cb34a797102ddba6bfffb590b2f021a317a3c58e5cd1fbb9760578ed90efd103c4cf558e352b6c383dcc5b509536b5f000000ffff",
);
const ZLIB_HELLO_TEXT =
  '{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250,"_trace":["[\\"gateway-prd-main-858d\\",{\\"micros\\":0.0}]"]}}';
const ZSTD_HELLO = hex(
  "28b52ffd00406403004207191c7089737428d0cb55ffa74a4b7ecbdee7ff9712d3d4ab9097d2ff3304312247620224fd7a8d63cbe10ba22f85f106c952f55bcef7a4e29c5c6c827b0b5fc70f3db3759d1c25414019fab608c7cd2c492f13da2d1b0ef5ca51527aa77947ad3d8cbe0f030100244a12",
);
const ZSTD_HELLO_TEXT =
  '{"t":null,"s":null,"op":10,"d":{"heartbeat_interval":41250,"_trace":["[\\"gateway-prd-us-east1-c-7s4x\\",{\\"micros\\":0.0}]"]}}';

Deno.test("zlib-stream: the real HELLO vector decodes whole", () => {
  const d = new ZlibStreamDecompressor();
  assert.equal(ZLIB_HELLO.length, 111);
  assert.equal(text(d.push(ZLIB_HELLO)), ZLIB_HELLO_TEXT);
  d.close();
});

Deno.test("zlib-stream: the HELLO vector split in two at every position decodes once", () => {
  for (let cut = 1; cut < ZLIB_HELLO.length; cut++) {
    const d = new ZlibStreamDecompressor();
    assert.equal(d.push(ZLIB_HELLO.slice(0, cut)), null, `cut ${cut}: first part must not complete`);
    assert.equal(text(d.push(ZLIB_HELLO.slice(cut))), ZLIB_HELLO_TEXT, `cut ${cut}`);
    d.close();
  }
});

Deno.test("zlib-stream: split in three messages", () => {
  const d = new ZlibStreamDecompressor();
  assert.equal(d.push(ZLIB_HELLO.slice(0, 30)), null);
  assert.equal(d.push(ZLIB_HELLO.slice(30, 80)), null);
  assert.equal(text(d.push(ZLIB_HELLO.slice(80))), ZLIB_HELLO_TEXT);
  d.close();
});

Deno.test("zlib-stream: a truncated message (no flush suffix) yields nothing and is completed later", () => {
  const d = new ZlibStreamDecompressor();
  assert.equal(d.push(ZLIB_HELLO.slice(0, 100)), null);
  assert.equal(text(d.push(ZLIB_HELLO.slice(100))), ZLIB_HELLO_TEXT);
  d.close();
});

Deno.test("zlib-stream: a message cut inside the deflate data but ending like a flush is an error, then reset recovers", () => {
  const d = new ZlibStreamDecompressor();
  const broken = new Uint8Array([...ZLIB_HELLO.slice(0, 2), 0xff, 0xff, 0xff, 0x00, 0x00, 0xff, 0xff]);
  assert.throws(() => d.push(broken), DecompressError);
  d.reset();
  assert.equal(text(d.push(ZLIB_HELLO)), ZLIB_HELLO_TEXT);
  d.close();
});

/** Compresses payloads as Discord does: one deflate stream, Z_SYNC_FLUSH after each. */
async function zlibStream(payloads: string[]): Promise<Uint8Array[]> {
  const deflate = zlib.createDeflate();
  const out: Uint8Array[] = [];
  for (const payload of payloads) {
    const chunks: Uint8Array[] = [];
    const onData = (chunk: Uint8Array) => chunks.push(chunk);
    deflate.on("data", onData);
    deflate.write(payload);
    await new Promise<void>((resolve) => deflate.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve()));
    deflate.off("data", onData);
    out.push(new Uint8Array(Buffer.concat(chunks)));
  }
  deflate.close();
  return out;
}

Deno.test("zlib-stream: one context across messages (later messages back-reference earlier ones)", async () => {
  const payloads = Array.from(
    { length: 50 },
    (_, i) =>
      JSON.stringify({ t: "MESSAGE_CREATE", s: i + 1, op: 0, d: { content: "hello world ".repeat(20), i } }),
  );
  const frames = await zlibStream(payloads);
  // Back-references make later frames much smaller than the first.
  assert.ok(frames[10].length < frames[0].length / 2);
  const d = new ZlibStreamDecompressor();
  for (let i = 0; i < frames.length; i++) assert.equal(text(d.push(frames[i])), payloads[i]);
  d.close();
  // A fresh context cannot decode a later frame on its own: that is why a context lives per connection.
  const fresh = new ZlibStreamDecompressor();
  assert.throws(() => fresh.push(frames[10]), DecompressError);
  fresh.close();
});

Deno.test("zlib-stream: a payload larger than the shared output buffer", async () => {
  const big = JSON.stringify({ t: "GUILD_CREATE", s: 2, op: 0, d: { members: "x".repeat(3_000_000) } });
  const [frame] = await zlibStream([big]);
  const d = new ZlibStreamDecompressor();
  assert.equal(text(d.push(frame)), big);
  d.close();
});

Deno.test("zlib-stream: two decompressors interleaved keep separate contexts", async () => {
  const a = await zlibStream(["aaaa aaaa aaaa", "aaaa aaaa aaaa aaaa"]);
  const b = await zlibStream(["bbbb bbbb", "bbbb bbbb bbbb"]);
  const da = new ZlibStreamDecompressor(), db = new ZlibStreamDecompressor();
  assert.equal(text(da.push(a[0])), "aaaa aaaa aaaa");
  assert.equal(text(db.push(b[0])), "bbbb bbbb");
  assert.equal(text(da.push(a[1])), "aaaa aaaa aaaa aaaa");
  assert.equal(text(db.push(b[1])), "bbbb bbbb bbbb");
  da.close();
  db.close();
});

Deno.test("zstd-stream: the real HELLO vector decodes whole", () => {
  const d = new ZstdStreamDecompressor();
  assert.equal(ZSTD_HELLO.length, 117);
  assert.equal(text(d.push(ZSTD_HELLO)), ZSTD_HELLO_TEXT);
  d.close();
});

Deno.test("zstd-stream: the HELLO vector fed in two parts yields the whole payload across both", () => {
  for (const cut of [1, 10, 60, 116]) {
    const d = new ZstdStreamDecompressor();
    const first = text(d.push(ZSTD_HELLO.slice(0, cut))) ?? "";
    const second = text(d.push(ZSTD_HELLO.slice(cut))) ?? "";
    assert.equal(first + second, ZSTD_HELLO_TEXT, `cut ${cut}`);
    d.close();
  }
});

Deno.test("zstd-stream: a truncated message gives at most part of the payload, never a crash", () => {
  const d = new ZstdStreamDecompressor();
  const partial = text(d.push(ZSTD_HELLO.slice(0, 60))) ?? "";
  assert.ok(ZSTD_HELLO_TEXT.startsWith(partial));
  assert.notEqual(partial, ZSTD_HELLO_TEXT);
  d.close();
});

Deno.test("zstd-stream: garbage is a DecompressError and reset recovers", () => {
  const d = new ZstdStreamDecompressor();
  assert.throws(() => d.push(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), DecompressError);
  d.reset();
  assert.equal(text(d.push(ZSTD_HELLO)), ZSTD_HELLO_TEXT);
  d.close();
});

Deno.test("zstd-stream: one unended frame across many flushed messages", async () => {
  const compress = zlib.createZstdCompress();
  const d = new ZstdStreamDecompressor();
  for (let i = 0; i < 20; i++) {
    const payload = JSON.stringify({
      t: "TYPING_START",
      s: i + 1,
      op: 0,
      d: { i, pad: "z".repeat(i * 100) },
    });
    const chunks: Uint8Array[] = [];
    const onData = (chunk: Uint8Array) => chunks.push(chunk);
    compress.on("data", onData);
    compress.write(payload);
    await new Promise<void>((resolve) => compress.flush(1, /* ZSTD_e_flush */ () => resolve()));
    compress.off("data", onData);
    assert.equal(text(d.push(new Uint8Array(Buffer.concat(chunks)))), payload);
  }
  compress.close();
  d.close();
});

Deno.test("none: passes messages through", () => {
  const d = createDecompressor("none");
  assert.ok(d instanceof PassthroughDecompressor);
  const bytes = new TextEncoder().encode('{"op":11}');
  assert.equal(d.push(bytes), bytes);
});
