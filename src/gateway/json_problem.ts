/**
 * Why a payload is not one JSON text in valid UTF-8, in words for a log line. The check itself is
 * `isValidJson` (json_check.ts, on the hot path); this runs only for a payload that failed it.
 */
import { isValidJson, lastProblem } from "./json_check.ts";

function hex(c: number): string {
  return `0x${c.toString(16).toUpperCase().padStart(2, "0")}`;
}

/** A byte for a message: its hex value, with the character when it is printable ASCII. */
function describeByte(c: number): string {
  return c > 0x20 && c < 0x7f ? `'${String.fromCharCode(c)}' (${hex(c)})` : hex(c);
}

/** Why the UTF-8 sequence starting at `i` is invalid, or null when it is a valid one. */
function utf8Problem(b: Uint8Array, i: number, end: number): string | null {
  const c = b[i];
  if (c < 0x80) return null;
  if (c < 0xc0) return `stray continuation byte ${hex(c)}`;
  if (c === 0xc0 || c === 0xc1) return `${hex(c)} starts only overlong encodings`;
  if (c >= 0xf5) return `byte ${hex(c)} never appears in UTF-8`;
  const length = c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
  for (let k = 1; k < length; k++) {
    if (i + k >= end) {
      return `the ${length}-byte sequence starting with ${hex(c)} is cut short by the end of the text`;
    }
    const x = b[i + k];
    if (k === 1) {
      if ((c === 0xe0 && x >= 0x80 && x < 0xa0) || (c === 0xf0 && x >= 0x80 && x < 0x90)) {
        return `overlong encoding ${hex(c)} ${hex(x)}`;
      }
      if (c === 0xed && x >= 0xa0 && x < 0xc0) {
        return `${hex(c)} ${hex(x)} encodes a surrogate (U+D800..U+DFFF)`;
      }
      if (c === 0xf4 && x >= 0x90 && x < 0xc0) {
        return `${hex(c)} ${hex(x)} encodes a code point above U+10FFFF`;
      }
    }
    if ((x & 0xc0) !== 0x80) {
      return `${hex(c)} must be followed by ${length - 1} continuation bytes, not ${hex(x)}`;
    }
  }
  return null;
}

/** The last byte before `i` (within `[start, i)`) that is not whitespace, or -1. */
function previousByte(b: Uint8Array, start: number, i: number): number {
  for (let k = i - 1; k >= start; k--) {
    const c = b[k];
    if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) return c;
  }
  return -1;
}

/**
 * Why `bytes[start, end)` is not one JSON text in valid UTF-8, and where, for a log line; null when it
 * is (exactly when `isValidJson` is true). Positions count from `start`, so a message reads the same
 * whatever buffer the payload sits in. It runs the same scanner as `isValidJson`, then spends a little
 * more time describing where it stopped: the first problem in the text, which may be a syntax error
 * before an invalid UTF-8 sequence further on.
 */
export function jsonProblem(bytes: Uint8Array, start = 0, end: number = bytes.length): string | null {
  if (isValidJson(bytes, start, end)) return null;
  const { kind, at } = lastProblem();
  const where = `at byte ${at - start}`;
  const c = at < end ? bytes[at] : -1;
  const found = c < 0 ? "the end of the text" : describeByte(c);
  // Outside strings, a byte >= 0x80 is out of place in any case; say whether it is also bad UTF-8.
  const stray = c >= 0x80
    ? (c === 0xef && at + 2 < end && bytes[at + 1] === 0xbb && bytes[at + 2] === 0xbf
      ? `a byte-order mark (EF BB BF) ${where}, which JSON does not allow`
      : utf8Problem(bytes, at, end) === null
      ? `a non-ASCII character ${where}, outside a string`
      : `invalid UTF-8 ${where}: ${utf8Problem(bytes, at, end)}`)
    : null;
  switch (kind) {
    case "empty":
      return "empty text: no JSON value (only whitespace or nothing)";
    case "utf8":
      return `invalid UTF-8 ${where}: ${utf8Problem(bytes, at, end) ?? "invalid sequence"}`;
    case "unterminated_string":
      return `unterminated string ${where}`;
    case "control_in_string":
      return `control character ${hex(c)} inside a string ${where} (it must be escaped)`;
    case "bad_escape":
      return `invalid escape ${where}: a backslash followed by ${describeByte(bytes[at + 1])}` +
        ' (allowed: \\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)';
    case "bad_unicode_escape":
      return `invalid \\u escape ${where}: it needs 4 hex digits`;
    case "bad_number":
      return `invalid number ${where}`;
    case "bad_literal":
      return `invalid literal ${where} (only true, false and null)`;
    case "expected_value":
      if (c === 0x5d && previousByte(bytes, start, at) === 0x2c) return `trailing comma before ']' ${where}`;
      return stray ?? `expected a value ${where}, found ${found}`;
    case "expected_key":
      if (c === 0x7d && previousByte(bytes, start, at) === 0x2c) return `trailing comma before '}' ${where}`;
      return stray ?? `expected a string key ${where}, found ${found}`;
    case "expected_colon":
      return stray ?? `expected ':' after an object key ${where}, found ${found}`;
    case "expected_comma_or_brace":
      return stray ?? `expected ',' or '}' in an object ${where}, found ${found}`;
    case "expected_comma_or_bracket":
      return stray ?? `expected ',' or ']' in an array ${where}, found ${found}`;
    case "after_value":
      return stray ?? `unexpected ${found} after the JSON value ${where}`;
  }
  return `invalid JSON ${where}`;
}
