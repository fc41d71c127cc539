/**
 * Checking that a payload is one JSON text in valid UTF-8, without parsing it.
 *
 * gatehouse forwards dispatches byte for byte (see frame.ts: only the header is read), so whatever
 * Discord sends inside `d` reaches stdout and the brokers as it is. A payload with invalid JSON or
 * invalid UTF-8 would make a line that stops a `| jq` reader, so each payload is checked once as it
 * arrives. That check is on the hot path: it builds nothing (no strings, no objects), walks the bytes
 * once, skips plain ASCII string content four bytes at a time, and looks at UTF-8 only where a byte
 * ≥ 0x80 appears.
 *
 * The rules are RFC 8259's, and the answers are those of
 * `JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes))` succeeding:
 * any value at the top level, whitespace only as space, tab, LF and CR (a byte-order mark is not
 * whitespace), lone surrogate escapes such as `"\ud800"` accepted (they are valid JSON syntax), and
 * numbers of any size (`1e400` is valid JSON even if it parses to Infinity). Nesting is tracked with
 * an explicit stack, so depth is limited only by memory.
 *
 * Why the code looks the way it does: V8 does not constant-fold module-level `const`s nor inline calls
 * to module-level functions reliably in optimized code (each use is a context load and a hole check,
 * each call a generic call). So the hot function, `scan`, is one loop with byte values written as
 * literals (the character in a comment) and no calls except on rarer paths: escapes, non-ASCII
 * bytes, fractions and exponents, and errors. Indexes are forced to int32 (`| 0`) where they come
 * from arguments or calls, so that optimized code keeps them in registers untagged.
 */

/** 1 for a byte that a string may hold as it is (0x20..0x7F except `"` and `\`); 0 for the rest. */
const PLAIN = new Uint8Array(256);
for (let c = 0x20; c < 0x80; c++) PLAIN[c] = c === 0x22 || c === 0x5c ? 0 : 1;

/** 1 for the byte after a backslash in a one-character escape: `\" \\ \/ \b \f \n \r \t`. */
const SHORT_ESCAPE = new Uint8Array(256);
for (const c of '"\\/bfnrt') SHORT_ESCAPE[c.charCodeAt(0)] = 1;

/** 1 for a hex digit (either case). */
const HEX = new Uint8Array(256);
for (const c of "0123456789abcdefABCDEF") HEX[c.charCodeAt(0)] = 1;

/** What the scanner last found wrong (one of these), and where (an index into the bytes). */
const EMPTY = 1, UTF8 = 2, UNTERMINATED_STRING = 3, CONTROL_IN_STRING = 4, BAD_ESCAPE = 5;
const BAD_UNICODE_ESCAPE = 6, BAD_NUMBER = 7, BAD_LITERAL = 8, EXPECTED_VALUE = 9, EXPECTED_KEY = 10;
const EXPECTED_COLON = 11, EXPECTED_COMMA_OR_BRACE = 12, EXPECTED_COMMA_OR_BRACKET = 13, AFTER_VALUE = 14;
let problem = 0;
let problemAt = 0;

/** Records a problem; returns -1 so that index-returning helpers can `return fail(…)`. */
function fail(kind: number, at: number): number {
  problem = kind;
  problemAt = at;
  return -1;
}

/** The nesting stack: 1 for an open object, 2 for an open array. Grown (and later shrunk) as needed. */
const INITIAL_STACK = 1024;
let stackBuffer = new Uint8Array(INITIAL_STACK);

/**
 * The bytes of the payload's buffer as 32-bit words, for skipping string content four bytes at a
 * time; `base` is the payload's offset in that buffer. The view is kept while payloads keep arriving
 * in the same buffer (a decompressor's output buffer, say), so that such a payload costs no
 * allocation; the price is that the last buffer checked stays reachable until another one is. On a
 * big-endian machine the view is empty and every byte is looked at on its own.
 */
const NO_WORDS = new Int32Array(0);
let words: Int32Array<ArrayBufferLike> = NO_WORDS;
let wordsBuffer: ArrayBufferLike | null = null;
let wordsByteLength = -1;
let base = 0;
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Indexes are int32s in the scanner: a buffer must stay below 2 GiB (Discord's payloads are far smaller). */
const MAX_BUFFER = 0x7ffffff0;

/** Checks the arguments and points `words` and `base` at `bytes`. */
function prepare(bytes: Uint8Array, start: number, end: number): void {
  if (!((start | 0) === start && (end | 0) === end && 0 <= start && start <= end && end <= bytes.length)) {
    throw new RangeError(
      `JSON check range [${start}, ${end}) is not within the ${bytes.length} bytes given ` +
        "(need integers with 0 <= start <= end <= length)",
    );
  }
  const buffer = bytes.buffer;
  base = bytes.byteOffset;
  // byteLength changes only for a resizable buffer or a detached one (0): make a view that fits again.
  if (buffer !== wordsBuffer || buffer.byteLength !== wordsByteLength) {
    if (buffer.byteLength > MAX_BUFFER) {
      throw new RangeError(`JSON check: buffer of ${buffer.byteLength} bytes is larger than 2 GiB`);
    }
    wordsBuffer = buffer;
    wordsByteLength = buffer.byteLength;
    words = LITTLE_ENDIAN && buffer.byteLength >= 4
      ? new Int32Array(buffer, 0, buffer.byteLength >> 2)
      : NO_WORDS;
  }
}

/*
 * Plain string bytes, four at a time: for a little-endian word `x`, with `lo = x & 0x7f7f7f7f` (so no
 * byte sum carries into the next byte),
 *   (lo + 0x60606060)              has a byte's high bit set when that byte's low 7 bits are ≥ 0x20,
 *   ((lo ^ 0x22222222) + 0x7f7f7f7f)  … when they are not 0x22 (`"`),
 *   ((lo ^ 0x5c5c5c5c) + 0x7f7f7f7f)  … when they are not 0x5C (`\`),
 *   ~x                              … when the byte itself is < 0x80.
 * ANDed together and with 0x80808080, a high bit is set exactly for a plain byte; inverted, exactly
 * for a byte that needs a look. Each test is exact per byte, so the lowest set bit marks the first
 * such byte, and bytes before a string's start can simply be masked off.
 */

/** True when `b[start, end)` is one JSON text; otherwise false, with `problem` and `problemAt` set. */
function scan(b: Uint8Array, start: number, end: number): boolean {
  start |= 0;
  end |= 0;
  const w = words;
  const off = base;
  const plain = PLAIN;
  // Words from this index on hold no byte of [start, end) (or are not whole in the buffer).
  const wordStop = Math.min(w.length, (off + end + 3) >> 2);
  let stack = stackBuffer;
  let depth = 0;
  let inObject = false;
  let isKey = false;
  let i = start;
  let c = 0;
  while (i < end && ((c = b[i]) === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) i++;
  if (i >= end) return fail(EMPTY, i) === 0;
  for (;;) {
    // A value (or, when isKey, an object key) starts at i, possibly after whitespace.
    if (i >= end) return fail(isKey ? EXPECTED_KEY : EXPECTED_VALUE, i) === 0;
    c = b[i];
    if (c === 0x22) { // "
      const open = i++;
      // The hot loop: most of a Discord payload is plain ASCII inside strings (see above).
      let k = (i + off) >> 2;
      let m = 0;
      if (k < wordStop) {
        let x = w[k];
        let lo = x & 0x7f7f7f7f;
        m = ~((lo + 0x60606060) & ((lo ^ 0x22222222) + 0x7f7f7f7f) & ((lo ^ 0x5c5c5c5c) + 0x7f7f7f7f) & ~x) &
          0x80808080 & (-1 << (((i + off) & 3) << 3));
        while (m === 0 && ++k < wordStop) {
          x = w[k];
          lo = x & 0x7f7f7f7f;
          m =
            ~((lo + 0x60606060) & ((lo ^ 0x22222222) + 0x7f7f7f7f) & ((lo ^ 0x5c5c5c5c) + 0x7f7f7f7f) & ~x) &
            0x80808080;
        }
        // The first byte that needs a look (it may lie past `end`: then the string is unterminated).
        i = (k << 2) - off + (m === 0 ? 0 : (31 - Math.clz32(m & -m)) >> 3);
      }
      // Bytes after the buffer's last whole word, one at a time (all of them when the view is empty).
      if (m === 0) { while (i < end && plain[b[i]] === 1) i++; }
      if (i < end && b[i] === 0x22) i++;
      else {
        i = stringRest(b, open, i, end) | 0;
        if (i < 0) return false;
      }
      if (isKey) {
        while (i < end && ((c = b[i]) === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) i++;
        if (i >= end || b[i] !== 0x3a) return fail(EXPECTED_COLON, i) === 0; // :
        i++;
        isKey = false;
        continue;
      }
    } else if (c <= 0x20 && (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) {
      i++;
      continue;
    } else if (isKey) {
      return fail(EXPECTED_KEY, i) === 0;
    } else if ((c >= 0x30 && c <= 0x39) || c === 0x2d) { // 0-9 -
      const first = i;
      if (c === 0x2d) c = ++i < end ? b[i] : 0;
      if (c >= 0x31 && c <= 0x39) { // 1-9
        i++;
        while (i < end && (c = b[i]) >= 0x30 && c <= 0x39) i++;
      } else if (c === 0x30) i++;
      else return fail(BAD_NUMBER, first) === 0;
      if (i < end && ((c = b[i]) === 0x2e || c === 0x65 || c === 0x45 || (c >= 0x30 && c <= 0x39))) { // . e E 0-9
        i = numberRest(b, first, i, end) | 0;
        if (i < 0) return false;
      }
    } else if (c === 0x7b || c === 0x5b) { // { [
      const object = c === 0x7b;
      i++;
      while (i < end && ((c = b[i]) === 0x20 || c === 0x0a || c === 0x0d || c === 0x09)) i++;
      if (i < end && b[i] === (object ? 0x7d : 0x5d)) i++; // } ]
      else {
        if (depth === stack.length) {
          const larger = new Uint8Array(stack.length * 2);
          larger.set(stack);
          stack = stackBuffer = larger;
        }
        stack[depth++] = object ? 1 : 2;
        inObject = object;
        isKey = object;
        continue;
      }
    } else if (c === 0x6e) { // n
      if (i + 3 < end && b[i + 1] === 0x75 && b[i + 2] === 0x6c && b[i + 3] === 0x6c) i += 4; // ull
      else return fail(BAD_LITERAL, i) === 0;
    } else if (c === 0x66) { // f
      if (i + 4 < end && b[i + 1] === 0x61 && b[i + 2] === 0x6c && b[i + 3] === 0x73 && b[i + 4] === 0x65) {
        i += 5; // alse
      } else return fail(BAD_LITERAL, i) === 0;
    } else if (c === 0x74) { // t
      if (i + 3 < end && b[i + 1] === 0x72 && b[i + 2] === 0x75 && b[i + 3] === 0x65) i += 4; // rue
      else return fail(BAD_LITERAL, i) === 0;
    } else {
      return fail(EXPECTED_VALUE, i) === 0;
    }
    // After a value: a comma, the end of containers, or the end of the text.
    for (;;) {
      if (i >= end) {
        if (depth === 0) return true;
        return fail(inObject ? EXPECTED_COMMA_OR_BRACE : EXPECTED_COMMA_OR_BRACKET, i) === 0;
      }
      c = b[i];
      if (c === 0x2c && depth !== 0) { // ,
        i++;
        isKey = inObject;
        break;
      }
      if (c === (inObject ? 0x7d : 0x5d) && depth !== 0) { // } ]
        i++;
        depth--;
        inObject = depth !== 0 && stack[depth - 1] === 1;
        continue;
      }
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
        i++;
        continue;
      }
      if (depth === 0) return fail(AFTER_VALUE, i) === 0;
      return fail(inObject ? EXPECTED_COMMA_OR_BRACE : EXPECTED_COMMA_OR_BRACKET, i) === 0;
    }
  }
}

/**
 * The rest of a string from `i`, the first byte after the opening quote at `open` that is not plain
 * ASCII: escapes, UTF-8 sequences, the closing quote or a problem. Returns the index just past the
 * closing quote, or -1.
 */
function stringRest(b: Uint8Array, open: number, i: number, end: number): number {
  open |= 0;
  i |= 0;
  end |= 0;
  const w = words;
  const off = base;
  const plain = PLAIN, shortEscape = SHORT_ESCAPE, hexDigit = HEX;
  const wordStop = Math.min(w.length, (off + end + 3) >> 2);
  for (;;) {
    if (i >= end) return fail(UNTERMINATED_STRING, open);
    let c = b[i];
    if (c >= 0x80) {
      // UTF-8, one sequence per turn (text in most scripts is runs of them). The second byte's range
      // rules out overlong forms (E0 80..9F, F0 80..8F), encoded surrogates (ED A0..BF) and code
      // points above U+10FFFF (F4 90..BF); C0, C1, F5..FF and a stray continuation byte start none.
      if (c < 0xc2) return fail(UTF8, i);
      if (c < 0xe0) {
        if (i + 1 >= end || (b[i + 1] & 0xc0) !== 0x80) return fail(UTF8, i);
        i += 2;
      } else if (c < 0xf0) {
        if (i + 2 >= end) return fail(UTF8, i);
        const c1 = b[i + 1];
        if (
          c1 < (c === 0xe0 ? 0xa0 : 0x80) || c1 > (c === 0xed ? 0x9f : 0xbf) || (b[i + 2] & 0xc0) !== 0x80
        ) {
          return fail(UTF8, i);
        }
        i += 3;
      } else if (c < 0xf5) {
        if (i + 3 >= end) return fail(UTF8, i);
        const c1 = b[i + 1];
        if (
          c1 < (c === 0xf0 ? 0x90 : 0x80) || c1 > (c === 0xf4 ? 0x8f : 0xbf) || (b[i + 2] & 0xc0) !== 0x80 ||
          (b[i + 3] & 0xc0) !== 0x80
        ) return fail(UTF8, i);
        i += 4;
      } else return fail(UTF8, i);
      continue;
    }
    if (c === 0x22) return i + 1; // "
    if (c === 0x5c) { // \
      if (i + 1 >= end) return fail(UNTERMINATED_STRING, open);
      c = b[i + 1];
      if (shortEscape[c] === 1) i += 2;
      else if (c === 0x75) { // u
        if (
          i + 5 >= end ||
          (hexDigit[b[i + 2]] & hexDigit[b[i + 3]] & hexDigit[b[i + 4]] & hexDigit[b[i + 5]]) === 0
        ) {
          return fail(BAD_UNICODE_ESCAPE, i);
        }
        i += 6;
      } else return fail(BAD_ESCAPE, i);
      continue;
    }
    if (c < 0x20) return fail(CONTROL_IN_STRING, i);
    // A plain byte: skip to the next byte that needs a look, four at a time as in `scan`.
    i++;
    let k = (i + off) >> 2;
    let m = 0;
    if (k < wordStop) {
      let x = w[k];
      let lo = x & 0x7f7f7f7f;
      m = ~((lo + 0x60606060) & ((lo ^ 0x22222222) + 0x7f7f7f7f) & ((lo ^ 0x5c5c5c5c) + 0x7f7f7f7f) & ~x) &
        0x80808080 & (-1 << (((i + off) & 3) << 3));
      while (m === 0 && ++k < wordStop) {
        x = w[k];
        lo = x & 0x7f7f7f7f;
        m = ~((lo + 0x60606060) & ((lo ^ 0x22222222) + 0x7f7f7f7f) & ((lo ^ 0x5c5c5c5c) + 0x7f7f7f7f) & ~x) &
          0x80808080;
      }
      i = (k << 2) - off + (m === 0 ? 0 : (31 - Math.clz32(m & -m)) >> 3);
    }
    if (m === 0) { while (i < end && plain[b[i]] === 1) i++; }
  }
}

/**
 * The rest of a number that starts at `first` (a `-` or a digit), from `i`, where its integer part
 * has been read up to a `.`, `e`, `E` or digit. Returns the index just past the number, or -1.
 */
function numberRest(b: Uint8Array, first: number, i: number, end: number): number {
  let c = b[i];
  // A digit right after the integer part: only possible after a leading 0 ("01"), which JSON forbids.
  if (c >= 0x30 && c <= 0x39) return fail(BAD_NUMBER, first);
  if (c === 0x2e) { // .
    const digits = ++i;
    while (i < end && (c = b[i]) >= 0x30 && c <= 0x39) i++;
    if (i === digits) return fail(BAD_NUMBER, first);
    if (i >= end) return i;
    c = b[i];
  }
  if (c === 0x65 || c === 0x45) { // e E
    i++;
    if (i < end && ((c = b[i]) === 0x2b || c === 0x2d)) i++; // + -
    const digits = i;
    while (i < end && (c = b[i]) >= 0x30 && c <= 0x39) i++;
    if (i === digits) return fail(BAD_NUMBER, first);
  }
  return i;
}

/**
 * True exactly when `bytes[start, end)` is one JSON text (RFC 8259: one value, whitespace around it)
 * in valid UTF-8: the same answer as `JSON.parse` of the bytes decoded by a fatal, BOM-keeping
 * TextDecoder, at a fraction of its cost, because nothing is decoded or built. For the hot path: call
 * it once per payload; on false, `jsonProblem` says why, for the log line.
 */
export function isValidJson(bytes: Uint8Array, start = 0, end: number = bytes.length): boolean {
  prepare(bytes, start, end);
  const ok = scan(bytes, start, end);
  // A very deep text grew the stack: do not keep megabytes of it for the rest of the process.
  if (stackBuffer.length > 65536) stackBuffer = new Uint8Array(INITIAL_STACK);
  return ok;
}

/** What the scanner can find wrong, by name (index: the scanner's number for it). */
const PROBLEM_KINDS = [
  "invalid",
  "empty",
  "utf8",
  "unterminated_string",
  "control_in_string",
  "bad_escape",
  "bad_unicode_escape",
  "bad_number",
  "bad_literal",
  "expected_value",
  "expected_key",
  "expected_colon",
  "expected_comma_or_brace",
  "expected_comma_or_bracket",
  "after_value",
] as const;

export type JsonProblemKind = typeof PROBLEM_KINDS[number];

/** What the last `isValidJson` that returned false found, and where (an index into its bytes). */
export function lastProblem(): { kind: JsonProblemKind; at: number } {
  return { kind: PROBLEM_KINDS[problem] ?? "invalid", at: problemAt };
}
