/**
 * The NDJSON event line (README, "Output"): `{"id":…,"uid":"…","shard":…,` followed by Discord's own payload
 * bytes after its opening brace, so `d` is exactly what Discord sent and nothing is parsed or
 * re-serialised. `id` is the store's; `uid` is the event's identity everywhere (journal/identity.ts).
 * A transformed batch may add members after `shard` (`EventBatch.extra`: the transforms' annotation).
 * Lines are assembled into one growable buffer per batch.
 */
import type { EventBatch } from "../journal/journal.ts";
import { Pending } from "../journal/batch.ts";

const encoder = new TextEncoder();
const ID_PREFIX = encoder.encode('{"id":');
const UID_PREFIX = encoder.encode(',"uid":"');
const SHARD_PREFIX = encoder.encode('","shard":');
/** The most a line adds to its scope and payload: prefixes, three integers, `:`, `,` or `}`, newline. */
const LINE_OVERHEAD = ID_PREFIX.length + 20 + UID_PREFIX.length + 1 + 20 + SHARD_PREFIX.length + 10 + 2;

/** A growable byte buffer that NDJSON lines are appended to. */
export class LineBuffer {
  #bytes: Uint8Array;
  #length = 0;
  /** Lines appended since the last `take`. */
  lines = 0;
  /** Encoded scopes (a few sessions per shard at a time), so a line does not encode its session again. */
  #scopes = new Map<string, Uint8Array>();
  /** The scope of the line before (runs of one session's events skip the map). */
  #lastScope: string | null = null;
  #lastScopeBytes: Uint8Array = new Uint8Array(0);

  /** `#bytes` as 32-bit words, for the newline search. */
  #words: Uint32Array;

  constructor(initialCapacity = 64 * 1024) {
    this.#bytes = new Uint8Array(initialCapacity);
    this.#words = wordsOf(this.#bytes);
  }

  get length(): number {
    return this.#length;
  }

  /**
   * Appends one event line. `payload[start]` must be the payload's opening `{`.
   * Raw newlines can only be insignificant whitespace in JSON (inside strings they are escaped), so
   * they are turned into spaces: the line stays one line and means the same.
   */
  append(
    id: number,
    scope: string,
    position: number,
    shard: number,
    payload: Uint8Array,
    start: number,
  ): void {
    this.#line(id, scope, position, shard, null, payload, start, payload.length);
  }

  /** Appends event `i` of a batch. */
  appendEvent(batch: EventBatch, i: number): void {
    const payload = batch.payload(i);
    const extra = batch.extra === undefined ? null : batch.extra(i);
    this.#line(
      batch.id(i),
      batch.scope(i),
      batch.position(i),
      batch.shard(i),
      extra,
      payload,
      0,
      payload.length,
    );
  }

  /**
   * Appends every event of a batch. The journal's own batches are read in place (their payloads lie
   * back to back in one buffer): no view is made per event.
   */
  appendBatch(batch: EventBatch): void {
    if (batch instanceof Pending) {
      const { bytes, ends } = batch;
      this.#reserve(batch.length + batch.count * LINE_OVERHEAD);
      let from = 0;
      for (let i = 0; i < batch.count; i++) {
        const to = ends[i];
        this.#line(batch.ids[i], batch.scope(i), batch.position(i), batch.shards[i], null, bytes, from, to);
        from = to;
      }
      return;
    }
    for (let i = 0; i < batch.count; i++) this.appendEvent(batch, i);
  }

  /**
   * One line from `src[start]` (the payload's `{`) up to `limit` (exclusive), with `extra` (members
   * without braces) after `shard`.
   */
  #line(
    id: number,
    scope: string,
    position: number,
    shard: number,
    extra: Uint8Array | null,
    src: Uint8Array,
    start: number,
    limit: number,
  ): void {
    let end = limit;
    while (end > start && isSpace(src[end - 1])) end--;
    const body = end - start - 1;
    const scopeBytes = scope === this.#lastScope ? this.#lastScopeBytes : this.#scope(scope);
    this.#reserve(LINE_OVERHEAD + scopeBytes.length + body + (extra === null ? 0 : extra.length + 1));
    const bytes = this.#bytes;
    let at = this.#length;
    bytes.set(ID_PREFIX, at);
    at = writeInt(bytes, at + ID_PREFIX.length, id);
    bytes.set(UID_PREFIX, at);
    at += UID_PREFIX.length;
    bytes.set(scopeBytes, at);
    at += scopeBytes.length;
    bytes[at++] = 0x3a; // :
    at = writeInt(bytes, at, position);
    bytes.set(SHARD_PREFIX, at);
    at = writeInt(bytes, at + SHARD_PREFIX.length, shard);
    if (extra !== null) {
      bytes[at++] = 0x2c; // ,
      bytes.set(extra, at);
      at += extra.length;
    }
    // Discord's payload after its `{`; an empty object `{}` needs no comma.
    if (body > 1) {
      bytes[at++] = 0x2c; // ,
      const from = at;
      bytes.set(src.subarray(start + 1, end), at);
      at += body;
      if (hasNewline(bytes, this.#words, from, at)) {
        for (let i = from; i < at; i++) if (bytes[i] === 0x0a || bytes[i] === 0x0d) bytes[i] = 0x20;
      }
    } else {
      bytes[at++] = 0x7d; // }
    }
    bytes[at++] = 0x0a;
    this.#length = at;
    this.lines++;
  }

  /**
   * Appends one entry of a binary wire format (wire_format.ts): `head` (if any), then `body`, then a
   * newline — the separator the Redis sink's packing expects after each entry (redis_append.ts).
   */
  appendRaw(head: Uint8Array | null, body: Uint8Array): void {
    const headLength = head?.length ?? 0;
    this.#reserve(headLength + body.length + 1);
    let at = this.#length;
    if (head !== null) {
      this.#bytes.set(head, at);
      at += headLength;
    }
    this.#bytes.set(body, at);
    at += body.length;
    this.#bytes[at++] = 0x0a;
    this.#length = at;
    this.lines++;
  }

  /** A scope as the bytes of a JSON string's content (escaped if it ever needs it). */
  #scope(scope: string): Uint8Array {
    let bytes = this.#scopes.get(scope);
    if (bytes === undefined) {
      bytes = encoder.encode(JSON.stringify(scope).slice(1, -1));
      if (this.#scopes.size >= 4096) this.#scopes.clear();
      this.#scopes.set(scope, bytes);
    }
    this.#lastScope = scope;
    this.#lastScopeBytes = bytes;
    return bytes;
  }

  /** The bytes appended so far (a view, valid until the next append) and resets the buffer. */
  take(): Uint8Array {
    const out = this.#bytes.subarray(0, this.#length);
    this.#length = 0;
    this.lines = 0;
    return out;
  }

  /** Drops a buffer that grew large during a burst, so memory goes back down. */
  shrink(capacity = 64 * 1024): void {
    if (this.#length === 0 && this.#bytes.length > capacity * 4) {
      this.#bytes = new Uint8Array(capacity);
      this.#words = wordsOf(this.#bytes);
    }
  }

  #reserve(extra: number): void {
    const needed = this.#length + extra;
    if (needed <= this.#bytes.length) return;
    let size = this.#bytes.length * 2;
    while (size < needed) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.#bytes.subarray(0, this.#length));
    this.#bytes = bigger;
    this.#words = wordsOf(bigger);
  }
}

function wordsOf(bytes: Uint8Array): Uint32Array {
  return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2);
}

/**
 * Whether `bytes[from..to)` holds a raw newline. Four bytes at a time (a word has a 0x0a byte when
 * `w ^ 0x0a0a0a0a` has a zero byte): `indexOf` takes about a nanosecond per byte, more than the rest of
 * the line costs. `words` views the same buffer, which starts word-aligned.
 */
function hasNewline(bytes: Uint8Array, words: Uint32Array, from: number, to: number): boolean {
  let i = from;
  const head = Math.min(to, (from + 3) & ~3);
  for (; i < head; i++) if (bytes[i] === 0x0a) return true;
  const lastWord = to >>> 2;
  for (let w = i >>> 2; w < lastWord; w++) {
    const v = words[w] ^ 0x0a0a0a0a;
    if (((v - 0x01010101) & ~v & 0x80808080) !== 0) return true;
  }
  for (i = Math.max(i, lastWord << 2); i < to; i++) if (bytes[i] === 0x0a) return true;
  return false;
}

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** Writes a non-negative integer as ASCII digits; returns the index after it. */
function writeInt(bytes: Uint8Array, at: number, value: number): number {
  if (value < 10) {
    bytes[at] = 0x30 + value;
    return at + 1;
  }
  let digits = 1;
  for (let bound = 10; bound <= value && digits < 21; bound *= 10) digits++;
  let end = at + digits;
  for (let v = value; v > 0; v = Math.floor(v / 10)) bytes[--end] = 0x30 + (v % 10);
  return at + digits;
}
