/**
 * Reading a gateway payload without parsing it. gatehouse forwards dispatches byte for byte; it only
 * needs `op`, `s` and `t`, which Discord puts before `d` (`{"t":…,"s":…,"op":0,"d":…}`). The scanner
 * walks the top-level keys and stops at `d` once it has the other three, so the cost does not grow
 * with the size of the event. Other key orders still work: values it does not need are skipped.
 */

/** Result of the last successful `scanHeader`. Module-level to avoid an allocation per event. */
export const header = {
  /** Opcode, or -1 when absent. */
  op: -1,
  /** Sequence number, -1 when null/absent, BAD_SEQ when it is not a safe non-negative integer. */
  s: -1,
  /** Byte range of the event name inside the payload (without quotes); tStart = -1 when null. */
  tStart: -1,
  tEnd: -1,
  /** Index of the payload's opening `{`. */
  start: 0,
};

const QUOTE = 0x22, BACKSLASH = 0x5c, COLON = 0x3a, COMMA = 0x2c;
const OPEN_BRACE = 0x7b, CLOSE_BRACE = 0x7d, OPEN_BRACKET = 0x5b, CLOSE_BRACKET = 0x5d;
const LOWER_D = 0x64, LOWER_O = 0x6f, LOWER_P = 0x70, LOWER_S = 0x73, LOWER_T = 0x74, LOWER_N = 0x6e;
const MINUS = 0x2d, ZERO = 0x30, NINE = 0x39;

/**
 * `header.s` of a sequence number that cannot be used: negative, or beyond 2^53 where doubles lose
 * integers (99999999999999999999 would otherwise compare as "already seen" with every later event).
 */
export const BAD_SEQ = -2;

function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipSpace(b: Uint8Array, i: number): number {
  while (i < b.length && isSpace(b[i])) i++;
  return i;
}

/** Index just past the string starting at the quote at `i`, or -1. */
function skipString(b: Uint8Array, i: number): number {
  i++;
  while (i < b.length) {
    const c = b[i];
    if (c === QUOTE) return i + 1;
    i += c === BACKSLASH ? 2 : 1;
  }
  return -1;
}

/** Index just past the JSON value starting at `i`, or -1 when it is cut short. */
function skipValue(b: Uint8Array, i: number): number {
  const c = b[i];
  if (c === QUOTE) return skipString(b, i);
  if (c === OPEN_BRACE || c === OPEN_BRACKET) {
    let depth = 0;
    while (i < b.length) {
      const x = b[i];
      if (x === QUOTE) {
        i = skipString(b, i);
        if (i < 0) return -1;
        continue;
      }
      if (x === OPEN_BRACE || x === OPEN_BRACKET) depth++;
      else if (x === CLOSE_BRACE || x === CLOSE_BRACKET) {
        depth--;
        if (depth === 0) return i + 1;
      }
      i++;
    }
    return -1;
  }
  // number, true, false, null
  while (i < b.length) {
    const x = b[i];
    if (x === COMMA || x === CLOSE_BRACE || x === CLOSE_BRACKET || isSpace(x)) return i;
    i++;
  }
  return i;
}

/**
 * Parses an integer at `i` into `intValue`: `null` gives -1, a negative number or one beyond
 * Number.MAX_SAFE_INTEGER gives BAD_SEQ. Returns the end index or -1.
 */
let intValue = 0;
function readInt(b: Uint8Array, i: number): number {
  if (b[i] === LOWER_N) {
    intValue = -1;
    return skipValue(b, i);
  }
  let negative = false;
  if (b[i] === MINUS) {
    negative = true;
    i++;
  }
  const first = i;
  let value = 0;
  while (i < b.length && b[i] >= ZERO && b[i] <= NINE) {
    value = value * 10 + (b[i] - ZERO);
    i++;
  }
  if (i === first) return -1;
  intValue = negative || !Number.isSafeInteger(value) ? BAD_SEQ : value;
  return i;
}

/**
 * Scans the top level of a payload into `header`. Returns false when the bytes are not a JSON object
 * with a numeric `op` (a bad frame: the caller logs and skips it).
 */
export function scanHeader(b: Uint8Array): boolean {
  let i = skipSpace(b, 0);
  if (b[i] !== OPEN_BRACE) return false;
  header.start = i;
  header.op = -1;
  header.s = -1;
  header.tStart = -1;
  header.tEnd = -1;
  let haveS = false, haveT = false;
  i++;
  for (;;) {
    i = skipSpace(b, i);
    if (i >= b.length) return false;
    if (b[i] === CLOSE_BRACE) break;
    if (b[i] !== QUOTE) return false;
    const keyStart = i + 1;
    const keyEnd = skipString(b, i);
    if (keyEnd < 0) return false;
    const keyLength = keyEnd - 1 - keyStart;
    i = skipSpace(b, keyEnd);
    if (b[i] !== COLON) return false;
    i = skipSpace(b, i + 1);
    if (i >= b.length) return false;
    const k0 = b[keyStart];
    if (keyLength === 2 && k0 === LOWER_O && b[keyStart + 1] === LOWER_P) {
      i = readInt(b, i);
      if (i < 0) return false;
      header.op = intValue;
    } else if (keyLength === 1 && k0 === LOWER_S) {
      i = readInt(b, i);
      if (i < 0) return false;
      header.s = intValue;
      haveS = true;
    } else if (keyLength === 1 && k0 === LOWER_T) {
      if (b[i] === QUOTE) {
        const end = skipString(b, i);
        if (end < 0) return false;
        header.tStart = i + 1;
        header.tEnd = end - 1;
        i = end;
      } else {
        i = skipValue(b, i);
        if (i < 0) return false;
      }
      haveT = true;
    } else if (keyLength === 1 && k0 === LOWER_D && header.op >= 0 && (header.op !== 0 || (haveS && haveT))) {
      // Everything needed is known: `d` (the bulk of the payload) is never walked.
      return true;
    } else {
      i = skipValue(b, i);
      if (i < 0) return false;
    }
    i = skipSpace(b, i);
    if (b[i] === COMMA) i++;
    else if (b[i] !== CLOSE_BRACE) return false;
  }
  return header.op >= 0;
}

/** Interned event names: the same few dozen names arrive millions of times. */
const names = new Map<number, { bytes: Uint8Array; name: string }[]>();
const decoder = new TextDecoder();

/** The event name in `b[start, end)` as a string, without allocating for names seen before. */
export function eventName(b: Uint8Array, start: number, end: number): string {
  let hash = 0x811c9dc5;
  for (let i = start; i < end; i++) hash = Math.imul(hash ^ b[i], 0x01000193);
  const length = end - start;
  const entries = names.get(hash);
  if (entries) {
    outer: for (const entry of entries) {
      if (entry.bytes.length !== length) continue;
      for (let i = 0; i < length; i++) if (entry.bytes[i] !== b[start + i]) continue outer;
      return entry.name;
    }
  }
  const bytes = b.slice(start, end);
  let name = decoder.decode(bytes);
  if (name.includes("\\")) {
    try {
      name = JSON.parse(`"${name}"`);
    } catch {
      // keep the raw text of a malformed escape
    }
  }
  if (names.size < 4096) {
    if (entries) entries.push({ bytes, name });
    else names.set(hash, [{ bytes, name }]);
  }
  return name;
}

/**
 * The bytes of a payload's `d` value (a view), or null when there is none. Walks `d` to its end, so
 * it is for the few places that rewrite an envelope (replay) or look inside one event in many (a reshard's
 * READY and GUILD_CREATEs), not for the hot path.
 */
export function dataOf(b: Uint8Array): Uint8Array | null {
  return fieldOf(b, D_KEY);
}

const D_KEY = new Uint8Array([LOWER_D]);

/**
 * The bytes of the value of top-level key `key` (its bytes, unescaped names only) of the JSON object in
 * `b` (a view; a string keeps its quotes), or null when `b` is no object or has no such key.
 */
export function fieldOf(b: Uint8Array, key: Uint8Array): Uint8Array | null {
  let i = skipSpace(b, 0);
  if (b[i] !== OPEN_BRACE) return null;
  i++;
  for (;;) {
    i = skipSpace(b, i);
    if (i >= b.length || b[i] === CLOSE_BRACE || b[i] !== QUOTE) return null;
    const keyStart = i + 1;
    const keyEnd = skipString(b, i);
    if (keyEnd < 0) return null;
    i = skipSpace(b, keyEnd);
    if (b[i] !== COLON) return null;
    i = skipSpace(b, i + 1);
    const valueEnd = skipValue(b, i);
    if (valueEnd < 0) return null;
    if (keyEnd - 1 - keyStart === key.length && sameBytes(b, keyStart, key)) return b.subarray(i, valueEnd);
    i = skipSpace(b, valueEnd);
    if (b[i] === COMMA) i++;
    else return null;
  }
}

/**
 * Where the value of top-level key `key` of the JSON object in `b` starts, or -1; the value itself is not
 * walked (for `d`: the keys inside it are read with `membersOf` without walking all of it first).
 */
export function valueStart(b: Uint8Array, key: Uint8Array): number {
  let i = skipSpace(b, 0);
  if (b[i] !== OPEN_BRACE) return -1;
  i++;
  for (;;) {
    i = skipSpace(b, i);
    if (i >= b.length || b[i] !== QUOTE) return -1;
    const keyStart = i + 1;
    const keyEnd = skipString(b, i);
    if (keyEnd < 0) return -1;
    i = skipSpace(b, keyEnd);
    if (b[i] !== COLON) return -1;
    i = skipSpace(b, i + 1);
    if (keyEnd - 1 - keyStart === key.length && sameBytes(b, keyStart, key)) return i;
    const valueEnd = skipValue(b, i);
    if (valueEnd < 0) return -1;
    i = skipSpace(b, valueEnd);
    if (b[i] === COMMA) i++;
    else return -1;
  }
}

/**
 * The values (views; strings with their quotes) of `keys` among the members of the JSON object whose `{`
 * is at `b[at]`, into `out` (null where absent), in one pass that stops once every key is found. Returns
 * how many were found. For a few keys of a large object (a message's `id` and `content`).
 */
export function membersOf(
  b: Uint8Array,
  at: number,
  keys: readonly Uint8Array[],
  out: Array<Uint8Array | null>,
): number {
  out.length = keys.length;
  out.fill(null);
  let found = 0;
  let i = skipSpace(b, at);
  if (b[i] !== OPEN_BRACE) return 0;
  i++;
  while (found < keys.length) {
    i = skipSpace(b, i);
    if (i >= b.length || b[i] !== QUOTE) return found;
    const keyStart = i + 1;
    const keyEnd = skipString(b, i);
    if (keyEnd < 0) return found;
    i = skipSpace(b, keyEnd);
    if (b[i] !== COLON) return found;
    i = skipSpace(b, i + 1);
    const valueEnd = skipValue(b, i);
    if (valueEnd < 0) return found;
    const length = keyEnd - 1 - keyStart;
    for (let k = 0; k < keys.length; k++) {
      if (out[k] === null && keys[k].length === length && sameBytes(b, keyStart, keys[k])) {
        out[k] = b.subarray(i, valueEnd);
        found++;
        break;
      }
    }
    i = skipSpace(b, valueEnd);
    if (b[i] === COMMA) i++;
    else return found;
  }
  return found;
}

function sameBytes(b: Uint8Array, at: number, key: Uint8Array): boolean {
  for (let j = 0; j < key.length; j++) if (b[at + j] !== key[j]) return false;
  return true;
}
