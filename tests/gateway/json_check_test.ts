import assert from "node:assert/strict";
import fc from "npm:fast-check@4.11.0";
import { isValidJson } from "../../src/gateway/json_check.ts";
import { jsonProblem } from "../../src/gateway/json_problem.ts";
import { guildCreatePayload, guildIdFor, trafficEvent } from "../fake_discord/events.ts";

const encoder = new TextEncoder();
const enc = (s: string) => encoder.encode(s);
const fatal = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

/** The reference answer: what a fatal TextDecoder and JSON.parse make of the bytes. */
function reference(bytes: Uint8Array): boolean {
  try {
    JSON.parse(fatal.decode(bytes));
    return true;
  } catch {
    return false;
  }
}

/** Bytes for a failure message: as text and in hex when short. */
function show(bytes: Uint8Array): string {
  if (bytes.length > 300) return `${bytes.length} bytes: ${show(bytes.subarray(0, 300))}…`;
  const hex = [...bytes].map((c) => c.toString(16).padStart(2, "0")).join(" ");
  return `${JSON.stringify(new TextDecoder().decode(bytes))} [${hex}]`;
}

/** Fails, with `what()` as the message, when `actual` is not `expected` (the message is built only then). */
function same<T>(actual: T, expected: T, what: () => string): void {
  if (actual !== expected) assert.fail(`${what()}: got ${String(actual)}, expected ${String(expected)}`);
}

/** Asserts the validator's answer, that it agrees with the reference, and that jsonProblem agrees. */
function expectJson(bytes: Uint8Array, valid: boolean): void {
  assert.equal(isValidJson(bytes), valid, `isValidJson should be ${valid} for ${show(bytes)}`);
  assert.equal(
    reference(bytes),
    valid,
    `the reference disagrees with the test's expectation for ${show(bytes)}`,
  );
  const problem = jsonProblem(bytes);
  if (valid) assert.equal(problem, null, `jsonProblem should be null for ${show(bytes)}`);
  else assert.equal(typeof problem, "string", `jsonProblem should explain ${show(bytes)}`);
}

const valid = (...texts: string[]) => texts.forEach((t) => expectJson(enc(t), true));
const invalid = (...texts: string[]) => texts.forEach((t) => expectJson(enc(t), false));
/** Bytes from hex pairs and strings: raw([0x22], "a", [0xc2, 0x80], [0x22]). */
const raw = (...parts: (number[] | Uint8Array | string)[]) => {
  const bytes: number[] = [];
  for (const part of parts) bytes.push(...(typeof part === "string" ? enc(part) : part));
  return new Uint8Array(bytes);
};
/** A JSON string holding exactly these bytes between its quotes. */
const quoted = (...bytes: number[]) => raw([0x22], bytes, [0x22]);

Deno.test("literals, and every kind of value at the top level", () => {
  valid("true", "false", "null", "0", "-1", '"x"', '""', "[]", "{}", '{"a":1}', "[1,2,3]");
  invalid("tru", "True", "TRUE", "nul", "nulll", "falsey", "fals", "t", "n", "f", "undefined", "NaN");
  invalid("truex", "null1", "[nul]", '{"a":tru}', "[true false]");
});

Deno.test("whitespace: space, tab, LF and CR around and inside structure; nothing else", () => {
  valid(" 1", "1 ", "\t\n\r 1 \r\n\t", ' { "a" : [ 1 , 2 ] , "b" : { } } ', "[ ]", "{ }", "[\n]", "{\r\n}");
  invalid(
    "",
    " ",
    "\t\n\r ",
    "\f1",
    "1\f",
    "\v1",
    "[1,\v2]",
    "\u00a01",
    "1\u00a0",
    "\u20281",
    "1\u2028",
    "\u30001",
  );
  // A byte-order mark is not whitespace (ignoreBOM keeps it, and JSON.parse rejects U+FEFF).
  expectJson(raw([0xef, 0xbb, 0xbf], "{}"), false);
  expectJson(raw("{}", [0xef, 0xbb, 0xbf]), false);
  expectJson(raw("[", [0xef, 0xbb, 0xbf], "1]"), false);
  // NUL and other control bytes outside strings.
  expectJson(raw("1", [0]), false);
  expectJson(raw([0], "1"), false);
  expectJson(raw("[1,", [0x1f], "2]"), false);
});

Deno.test("numbers: JSON's grammar exactly, any size", () => {
  valid(
    "0",
    "-0",
    "1",
    "-1",
    "10",
    "1234567890",
    "0.5",
    "-0.5",
    "10.25",
    "1e5",
    "1E5",
    "1e+5",
    "1e-5",
    "1E-5",
  );
  valid("0e0", "-0.0e-0", "0.000001", "123.456e789", "1.7976931348623157e308", "5e-324");
  // Bigger than a double: still valid JSON (JSON.parse gives Infinity or loses precision).
  valid("1e400", "-1e400", "1e-400", "123456789012345678901234567890123456789012345678901234567890");
  valid("9".repeat(5000), "0." + "1".repeat(5000), "1e" + "9".repeat(400), "[1e400,-1e400]");
  valid("[0,-0,1,-1]", '{"a":-0.5e+10}');
  invalid(
    "01",
    "00",
    "-01",
    "-00",
    "+1",
    "+0",
    ".5",
    "-.5",
    "1.",
    "-1.",
    "1.e5",
    "1e",
    "1E",
    "1e+",
    "1e-",
    "1e+-5",
  );
  invalid(
    "-",
    "--1",
    "- 1",
    "0x10",
    "0X10",
    "0b1",
    "0o7",
    "1_000",
    "1,5",
    "Infinity",
    "-Infinity",
    "NaN",
    "1.5.5",
  );
  invalid("1e5.5", "1ee5", "1e5e5", "0.", "[01]", "[1.]", '{"a":.5}', "[-]", "[1e]", "1 .5", "1. 5", "1 e5");
});

Deno.test("strings: every escape, \\u in any case, lone surrogate escapes, raw bytes", () => {
  valid('"\\""', '"\\\\"', '"\\/"', '"\\b"', '"\\f"', '"\\n"', '"\\r"', '"\\t"', '"\\u0000"', '"\\u001f"');
  valid('"\\uabcd"', '"\\uABCD"', '"\\uAbCd"', '"\\u00e9\\u4E2D"', '"\\"\\\\\\/\\b\\f\\n\\r\\t\\u0041"');
  valid(
    '"\\ud800"',
    '"\\udfff"',
    '"\\udc00\\ud800"',
    '"\\ud83d\\ude00"',
    '"a\\ud800b"',
    '{"\\ud800":"\\udfff"}',
  );
  valid(
    '"/"',
    '"\'"',
    '"\x7f"',
    '"~ !#$%&()*+,-.0123456789:;<=>?@[]^_`{|}"',
    '"' + "x".repeat(100_000) + '"',
  );
  invalid(
    '"\\x41"',
    '"\\U0041"',
    '"\\a"',
    '"\\v"',
    '"\\0"',
    '"\\\'"',
    '"\\ "',
    '"\\"',
    '"\\',
    '"\\u"',
    '"\\u1"',
  );
  invalid('"\\u12"', '"\\u123"', '"\\u12G4"', '"\\u-123"', '"\\u 123"', '"\\u12"x', '"\\uD80"', '"\\u{41}"');
  invalid('"', '"abc', '"abc\\"', "'abc'", '"abc"x', '["abc]', '{"a:1}', '"a""b"');
  // Raw control bytes must be escaped; DEL (0x7F) need not be.
  for (let c = 0; c < 0x20; c++) expectJson(quoted(0x61, c, 0x62), false);
  expectJson(quoted(0x09), false);
  expectJson(quoted(0x0a), false);
});

Deno.test("UTF-8: the smallest and largest code point of each length, and their invalid neighbours", () => {
  const cases: [string, number[], boolean][] = [
    ["U+0080", [0xc2, 0x80], true],
    ["U+07FF", [0xdf, 0xbf], true],
    ["U+0800", [0xe0, 0xa0, 0x80], true],
    ["U+D7FF", [0xed, 0x9f, 0xbf], true],
    ["U+E000", [0xee, 0x80, 0x80], true],
    ["U+FFFF", [0xef, 0xbf, 0xbf], true],
    ["U+FEFF inside a string", [0xef, 0xbb, 0xbf], true],
    ["U+10000", [0xf0, 0x90, 0x80, 0x80], true],
    ["U+10FFFF", [0xf4, 0x8f, 0xbf, 0xbf], true],
    ["U+2028", [0xe2, 0x80, 0xa8], true],
    ["overlong U+007F", [0xc1, 0xbf], false],
    ["overlong U+0000", [0xc0, 0x80], false],
    ["overlong U+07FF", [0xe0, 0x9f, 0xbf], false],
    ["overlong U+0000 in 3", [0xe0, 0x80, 0x80], false],
    ["overlong U+FFFF", [0xf0, 0x8f, 0xbf, 0xbf], false],
    ["overlong U+0000 in 4", [0xf0, 0x80, 0x80, 0x80], false],
    ["surrogate U+D800", [0xed, 0xa0, 0x80], false],
    ["surrogate U+DFFF", [0xed, 0xbf, 0xbf], false],
    ["surrogate pair encoded as two", [0xed, 0xa0, 0xbd, 0xed, 0xb8, 0x80], false],
    ["U+110000", [0xf4, 0x90, 0x80, 0x80], false],
    ["F5", [0xf5, 0x80, 0x80, 0x80], false],
    ["F7", [0xf7, 0xbf, 0xbf, 0xbf], false],
    ["F8 (5-byte form)", [0xf8, 0x88, 0x80, 0x80, 0x80], false],
    ["FE", [0xfe], false],
    ["FF", [0xff], false],
    ["stray 80", [0x80], false],
    ["stray BF", [0xbf], false],
    ["two continuations", [0x80, 0x80], false],
    ["continuation after a full sequence", [0xc2, 0x80, 0x80], false],
    ["truncated 2", [0xc2], false],
    ["truncated 3 after 1", [0xe0], false],
    ["truncated 3 after 2", [0xe0, 0xa0], false],
    ["truncated 4 after 3", [0xf0, 0x90, 0x80], false],
    ["ASCII where a continuation belongs", [0xc2, 0x41], false],
    ["ASCII in the middle of 3", [0xe2, 0x41, 0x80], false],
    ["lead byte where a continuation belongs", [0xe2, 0x82, 0xc2, 0x80], false],
    ["C0 alone", [0xc0], false],
    ["C1 alone", [0xc1], false],
  ];
  for (const [name, bytes, ok] of cases) {
    // Inside a string, at its start, in its middle and at its end, and in a key.
    for (
      const text of [
        quoted(...bytes),
        quoted(0x61, ...bytes, 0x62),
        raw('{"', bytes, '":1}'),
        raw('["ab', bytes, '"]'),
      ]
    ) {
      same(isValidJson(text), ok, () => `${name}: ${show(text)}`);
      same(reference(text), ok, () => `${name} (reference): ${show(text)}`);
    }
    // Cut off by the end of the text (no closing quote): never valid.
    expectJson(raw([0x22], bytes), false);
    // Outside a string: never valid, whatever the encoding.
    expectJson(raw("[", bytes, "]"), false);
    expectJson(raw(bytes), false);
  }
  // Every lead byte with every second byte, completed with continuation bytes to the length the lead
  // byte announces, against the table of well-formed sequences (Unicode, Table 3-7).
  const secondRange = (lead: number): [number, number] | null =>
    lead < 0xc2
      ? null
      : lead <= 0xdf
      ? [0x80, 0xbf]
      : lead === 0xe0
      ? [0xa0, 0xbf]
      : lead === 0xed
      ? [0x80, 0x9f]
      : lead <= 0xef
      ? [0x80, 0xbf]
      : lead === 0xf0
      ? [0x90, 0xbf]
      : lead <= 0xf3
      ? [0x80, 0xbf]
      : lead === 0xf4
      ? [0x80, 0x8f]
      : null;
  for (let lead = 0x80; lead <= 0xff; lead++) {
    const length = lead >= 0xf0 && lead <= 0xf7 ? 4 : lead >= 0xe0 && lead <= 0xef ? 3 : 2;
    const range = secondRange(lead);
    for (let second = 0; second <= 0xff; second++) {
      const text = quoted(lead, second, ...new Array(length - 2).fill(0x80));
      const wellFormed = range !== null && second >= range[0] && second <= range[1];
      same(isValidJson(text), wellFormed, () => show(text));
    }
  }
});

Deno.test("objects and arrays: keys, colons, commas in their places", () => {
  valid('{"a":1,"b":[true,{"c":null}],"":""}', "[[],[[]],{},[{}]]", '{"a":{"a":{"a":{}}}}', '{"a":1,"a":2}');
  invalid("{", "[", "}", "]", "{]", "[}", "[[]", "[]]", "{{}}", "{[]}", '{"a":1', '{"a":1,', '["a",');
  invalid(
    "{1:2}",
    "{a:1}",
    "{'a':1}",
    '{"a"}',
    '{"a":}',
    '{"a" 1}',
    '{"a",1}',
    "{:1}",
    '{"a"::1}',
    '{"a":1:2}',
  );
  invalid(
    '{"a":1,}',
    '{"a":1,,"b":2}',
    "{,}",
    '{,"a":1}',
    '{"a":1 "b":2}',
    '{"a":1;"b":2}',
    "{null:1}",
    "{[]:1}",
  );
  invalid(
    "[1,]",
    "[,]",
    "[,1]",
    "[1,,2]",
    "[1 2]",
    "[1;2]",
    '["a" "b"]',
    "[1]]",
    "[[1]",
    "[1}",
    '{"a":[}',
    '{"a":{]}',
  );
  invalid("1 2", "{}{}", "[][]", "{} []", '"a" "b"', "[] x", "1,", "[],", "{}:", "true false", "null null");
});

Deno.test("nesting 100 000 deep, of arrays, objects and both, without recursion", () => {
  const n = 100_000;
  expectJson(enc("[".repeat(n) + "]".repeat(n)), true);
  expectJson(enc('{"a":'.repeat(n) + "1" + "}".repeat(n)), true);
  expectJson(enc('[{"a":'.repeat(n) + "[]" + "}]".repeat(n)), true);
  expectJson(enc("[".repeat(n) + "1" + "]".repeat(n)), true);
  // One bracket short, one too many, mismatched at the bottom, a bad value at the bottom.
  expectJson(enc("[".repeat(n) + "]".repeat(n - 1)), false);
  expectJson(enc("[".repeat(n) + "]".repeat(n + 1)), false);
  expectJson(enc('[{"a":'.repeat(n) + "[]" + "]}".repeat(n)), false);
  expectJson(enc("[".repeat(n) + "01" + "]".repeat(n)), false);
  // Deeper still (the stack grows past what it keeps), then shallow texts again.
  assert.equal(isValidJson(enc("[".repeat(5 * n) + "]".repeat(5 * n))), true);
  assert.equal(isValidJson(enc("[".repeat(5 * n) + "]".repeat(5 * n - 1))), false);
  valid("[[1]]", '{"a":[{}]}', "[]");
});

Deno.test("jsonProblem says what is wrong and where (byte offsets from start)", () => {
  const cases: [Uint8Array, RegExp][] = [
    [enc(""), /^empty text/],
    [enc("  "), /^empty text/],
    [quoted(0x61, 0xc0, 0x80), /^invalid UTF-8 at byte 2: 0xC0 starts only overlong encodings$/],
    [quoted(0xed, 0xa0, 0x80), /^invalid UTF-8 at byte 1: 0xED 0xA0 encodes a surrogate/],
    [quoted(0xf4, 0x90, 0x80, 0x80), /^invalid UTF-8 at byte 1: .*above U\+10FFFF/],
    [quoted(0xe0, 0x9f, 0xbf), /^invalid UTF-8 at byte 1: overlong encoding 0xE0 0x9F$/],
    [quoted(0x80), /^invalid UTF-8 at byte 1: stray continuation byte 0x80$/],
    [quoted(0xff), /^invalid UTF-8 at byte 1: byte 0xFF never appears in UTF-8$/],
    [raw([0x22, 0xe2, 0x82]), /^invalid UTF-8 at byte 1: the 3-byte sequence .* cut short/],
    [
      quoted(0xe2, 0x41, 0x80),
      /^invalid UTF-8 at byte 1: 0xE2 must be followed by 2 continuation bytes, not 0x41$/,
    ],
    [raw("[", [0x80], "]"), /^invalid UTF-8 at byte 1: stray continuation byte/],
    [raw("[", [0xc3, 0xa9], "]"), /^a non-ASCII character at byte 1, outside a string$/],
    [raw([0xef, 0xbb, 0xbf], "{}"), /^a byte-order mark \(EF BB BF\) at byte 0/],
    [enc('{"a":"bc'), /^unterminated string at byte 5$/],
    [enc('{"a'), /^unterminated string at byte 1$/],
    [enc('"ab\\'), /^unterminated string at byte 0$/],
    [enc('["a\nb"]'), /^control character 0x0A inside a string at byte 3/],
    [enc('"\\x"'), /^invalid escape at byte 1: a backslash followed by 'x' \(0x78\)/],
    [enc('"\\u12G4"'), /^invalid \\u escape at byte 1: it needs 4 hex digits$/],
    [enc("[1,01]"), /^invalid number at byte 3$/],
    [enc("[1.]"), /^invalid number at byte 1$/],
    [enc("[-]"), /^invalid number at byte 1$/],
    [enc("[nul]"), /^invalid literal at byte 1/],
    [enc("[1,]"), /^trailing comma before '\]' at byte 3$/],
    [enc('{"a":1 ,\n}'), /^trailing comma before '}' at byte 9$/],
    [enc("[1,"), /^expected a value at byte 3, found the end of the text$/],
    [enc("[1,:]"), /^expected a value at byte 3, found ':' \(0x3A\)$/],
    [enc("{1:2}"), /^expected a string key at byte 1, found '1' \(0x31\)$/],
    [enc('{"a" 1}'), /^expected ':' after an object key at byte 5, found '1'/],
    [enc('{"a":1]'), /^expected ',' or '}' in an object at byte 6, found '\]'/],
    [enc("[1}"), /^expected ',' or '\]' in an array at byte 2, found '}'/],
    [enc("[1"), /^expected ',' or '\]' in an array at byte 2, found the end of the text$/],
    [enc("{} x"), /^unexpected 'x' \(0x78\) after the JSON value at byte 3$/],
    [raw("1", [0]), /^unexpected 0x00 after the JSON value at byte 1$/],
  ];
  for (const [bytes, pattern] of cases) {
    const problem = jsonProblem(bytes);
    assert.match(problem ?? "(null)", pattern, show(bytes));
    // Positions count from `start`: the same text inside a larger buffer reads the same.
    const padded = raw('xx"[', bytes, ']"yy');
    assert.equal(jsonProblem(padded, 4, 4 + bytes.length), problem, `padded ${show(bytes)}`);
  }
  assert.equal(jsonProblem(enc('{"t":"READY","s":1,"op":0,"d":{}}')), null);
});

Deno.test("start and end: defaults, sub-ranges, and arguments out of range", () => {
  const bytes = enc('xx[1,"a"]yy');
  assert.equal(isValidJson(bytes), false);
  assert.equal(isValidJson(bytes, 2, 9), true);
  assert.equal(isValidJson(bytes, 2), false);
  assert.equal(isValidJson(bytes, 3, 4), true); // "1"
  assert.equal(isValidJson(bytes, 5, 8), true); // "\"a\""
  assert.equal(isValidJson(bytes, 5, 7), false); // unterminated, though a quote follows the range
  assert.equal(isValidJson(bytes, 4, 4), false); // empty
  assert.equal(jsonProblem(bytes, 5, 7), "unterminated string at byte 0");
  for (const [start, end] of [[-1, 3], [4, 3], [0, 12], [0.5, 3], [0, NaN], [NaN, 3], [0, Infinity]]) {
    assert.throws(() => isValidJson(bytes, start, end), RangeError, `[${start}, ${end})`);
    assert.throws(() => jsonProblem(bytes, start, end), RangeError, `[${start}, ${end})`);
  }
  // Views at every alignment of one buffer, and a buffer whose length is no multiple of 4.
  const text = '{"abcdefghij":"klmnopqrstuvwxyz","n":[1,2]}';
  for (let offset = 0; offset < 8; offset++) {
    const buffer = new Uint8Array(offset + text.length + offset % 3);
    buffer.set(enc(text), offset);
    const view = buffer.subarray(offset, offset + text.length);
    assert.equal(isValidJson(view), true, `offset ${offset}`);
    assert.equal(isValidJson(buffer, offset, offset + text.length), true, `range at ${offset}`);
    assert.equal(isValidJson(view, 0, text.length - 1), false, `cut at ${offset}`);
  }
  // A resizable buffer that grows between checks, and a SharedArrayBuffer.
  const resizable = new ArrayBuffer(8, { maxByteLength: 1024 });
  const first = enc('"abc"');
  new Uint8Array(resizable).set(first);
  assert.equal(isValidJson(new Uint8Array(resizable, 0, first.length)), true);
  resizable.resize(600);
  const second = enc(JSON.stringify({ long: "y".repeat(500) }));
  new Uint8Array(resizable).set(second);
  assert.equal(isValidJson(new Uint8Array(resizable, 0, second.length)), true);
  assert.equal(isValidJson(new Uint8Array(resizable, 0, second.length - 3)), false);
  const shared = new Uint8Array(new SharedArrayBuffer(64));
  shared.set(enc('["shared",{"x":true}]'));
  assert.equal(isValidJson(shared, 0, 21), true);
  assert.equal(isValidJson(shared), false); // trailing NUL bytes
});

// ---- property tests ---------------------------------------------------------------------------

/** Dispatch payloads as gatehouse receives them, some with non-ASCII text. */
const GUILD = guildIdFor(0, 1, 0);
const NON_ASCII = ["héllo wörld", "日本語のテキスト", "😀👍🏽🎉", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 \u{10ffff}\u{ffff}", "Привет"];
const dispatch = (t: string, d: unknown) =>
  enc(`{"t":${JSON.stringify(t)},"s":1,"op":0,"d":${JSON.stringify(d)}}`);
const PAYLOADS: Uint8Array[] = [
  ...Array.from({ length: 40 }, (_, seed) => {
    const { t, d } = trafficEvent(GUILD, seed);
    if (seed % 3 === 0) (d as Record<string, unknown>).content = NON_ASCII[seed % NON_ASCII.length];
    return dispatch(t, d);
  }),
  dispatch("GUILD_CREATE", guildCreatePayload(GUILD, 0, 3)),
  enc(
    JSON.stringify(
      JSON.parse(new TextDecoder().decode(dispatch("GUILD_CREATE", guildCreatePayload(GUILD, 1, 3)))),
      null,
      2,
    ),
  ),
];

const lonelySurrogates = fc.constantFrom("\ud800", "\udbff", "\udc00", "\udfff", "\ud83d", "\ude00");
const unicodeValue = fc.oneof(
  fc.jsonValue({ stringUnit: "binary" }),
  fc.jsonValue({ stringUnit: "grapheme" }),
  fc.dictionary(fc.string({ unit: "binary" }), fc.string({ unit: "binary" })),
  fc.array(
    fc.string({
      unit: fc.oneof(fc.string({ unit: "binary", minLength: 1, maxLength: 1 }), lonelySurrogates),
    }),
  ),
);

Deno.test("property: JSON.stringify of any JSON value, encoded as UTF-8, is valid", () => {
  fc.assert(
    fc.property(fc.jsonValue(), fc.constantFrom(undefined, 2, "\t"), (value, indent) => {
      const bytes = enc(JSON.stringify(value, null, indent));
      return isValidJson(bytes) && jsonProblem(bytes) === null;
    }),
    { numRuns: 2000, seed: 0x15a11d },
  );
  fc.assert(
    fc.property(unicodeValue, fc.constantFrom(undefined, 1, "\r\n"), (value, indent) => {
      const bytes = enc(JSON.stringify(value, null, indent));
      return isValidJson(bytes) && jsonProblem(bytes) === null;
    }),
    { numRuns: 2000, seed: 0x0dd },
  );
});

/** Byte sequences worth splicing in: invalid UTF-8, valid multi-byte characters, JSON's own tokens. */
const INTERESTING: number[][] = [
  [0xc0, 0x80],
  [0xc1, 0xbf],
  [0xe0, 0x80, 0x80],
  [0xe0, 0x9f, 0xbf],
  [0xed, 0xa0, 0x80],
  [0xed, 0xbf, 0xbf],
  [0xf0, 0x8f, 0xbf, 0xbf],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf5, 0x80, 0x80, 0x80],
  [0x80],
  [0xbf],
  [0xff],
  [0xfe],
  [0xc2],
  [0xe2, 0x82],
  [0xf0, 0x9f, 0x98],
  [0xef, 0xbb, 0xbf],
  [0xc2, 0x80],
  [0xdf, 0xbf],
  [0xe0, 0xa0, 0x80],
  [0xef, 0xbf, 0xbf],
  [0xf0, 0x90, 0x80, 0x80],
  [0xf4, 0x8f, 0xbf, 0xbf],
  [0xe2, 0x80, 0xa8],
  [0xc3, 0xa9],
  ...[
    '"',
    "\\",
    "\\u",
    "\\ud800",
    "\\u00e9",
    "\\x",
    ",",
    ":",
    "[",
    "]",
    "{",
    "}",
    "0",
    "-",
    ".",
    "e",
    "E+",
    "01",
  ]
    .map((s) => [...enc(s)]),
  ...["true", "null", "fals", " ", "\t", "\n", "\r", "\f", '"a"', '"k":', ",{}", "[]", "1e400"].map((
    s,
  ) => [...enc(s)]),
  [0x00],
  [0x1f],
  [0x7f],
  [0x20, 0x22],
];
const chunk = fc.oneof(
  fc.constantFrom(...INTERESTING).map((b) => new Uint8Array(b)),
  fc.uint8Array({ minLength: 1, maxLength: 6 }),
  fc.uint8Array({ minLength: 1, maxLength: 4, min: 0x80, max: 0xff }),
);
type Mutation =
  | { op: "set" | "xor"; at: number; value: number }
  | { op: "insert"; at: number; bytes: Uint8Array }
  | { op: "delete"; at: number; count: number }
  | { op: "truncate"; at: number }
  | { op: "splice"; at: number; count: number; bytes: Uint8Array };
const at = fc.nat({ max: 1 << 20 });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("set" as const), at, value: fc.nat({ max: 255 }) }),
  fc.record({ op: fc.constant("xor" as const), at, value: fc.constantFrom(1, 2, 4, 8, 16, 32, 64, 128) }),
  fc.record({ op: fc.constant("insert" as const), at, bytes: chunk }),
  fc.record({ op: fc.constant("delete" as const), at, count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ op: fc.constant("truncate" as const), at }),
  fc.record({ op: fc.constant("splice" as const), at, count: fc.integer({ min: 1, max: 4 }), bytes: chunk }),
);

function mutate(bytes: Uint8Array, mutations: Mutation[]): Uint8Array {
  let b = bytes;
  for (const m of mutations) {
    const i = b.length === 0 ? 0 : m.at % (b.length + 1);
    const before = b.subarray(0, i);
    switch (m.op) {
      case "set":
      case "xor": {
        if (i >= b.length) break;
        b = b.slice();
        b[i] = m.op === "set" ? m.value : b[i] ^ m.value;
        break;
      }
      case "insert":
        b = concat(before, m.bytes, b.subarray(i));
        break;
      case "delete":
        b = concat(before, b.subarray(i + m.count));
        break;
      case "truncate":
        b = b.slice(0, i);
        break;
      case "splice":
        b = concat(before, m.bytes, b.subarray(i + m.count));
        break;
    }
  }
  return b;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** A valid text to start from: a realistic payload most of the time, else a small JSON value. */
const base = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...PAYLOADS) },
  { weight: 2, arbitrary: fc.jsonValue().map((v) => enc(JSON.stringify(v))) },
  { weight: 1, arbitrary: unicodeValue.map((v) => enc(JSON.stringify(v, null, 1))) },
);
const mutated = fc.tuple(base, fc.array(mutation, { minLength: 1, maxLength: 4 })).map(([b, ms]) =>
  mutate(b, ms)
);

Deno.test("property: on mutated payloads the validator agrees exactly with TextDecoder + JSON.parse", () => {
  let accepted = 0, rejected = 0;
  fc.assert(
    fc.property(mutated, (bytes) => {
      const expected = reference(bytes);
      if (expected) accepted++;
      else rejected++;
      same(isValidJson(bytes), expected, () => show(bytes));
      same(jsonProblem(bytes) === null, expected, () => `jsonProblem of ${show(bytes)}`);
    }),
    { numRuns: 5000, seed: 0x5eed },
  );
  console.log(`mutated payloads: ${accepted} valid, ${rejected} invalid`);
  // Both answers must be common, or the property says little.
  assert.ok(accepted > 250 && rejected > 2500, `accepted ${accepted}, rejected ${rejected}`);
});

Deno.test("property: a sub-range answers as a copy of it does, whatever bytes surround it", () => {
  const surround = fc.oneof(
    fc.uint8Array({ maxLength: 9 }),
    fc.constantFrom(...INTERESTING).map((b) => new Uint8Array(b)),
    fc.constantFrom("aaaaaaaa", '"', '""""', "]}", " 1", "\\").map(enc),
  );
  const text = fc.oneof(base, mutated);
  fc.assert(
    fc.property(text, surround, surround, (bytes, before, after) => {
      const copy = bytes.slice();
      const expected = isValidJson(copy);
      same(expected, reference(copy), () => show(copy));
      const problem = jsonProblem(copy);
      const buffer = concat(before, bytes, after);
      const start = before.length, end = before.length + bytes.length;
      same(isValidJson(buffer, start, end), expected, () => `${show(copy)} in ${show(buffer)}`);
      same(
        isValidJson(buffer.subarray(start, end)),
        expected,
        () => `${show(copy)} viewed in ${show(buffer)}`,
      );
      same(jsonProblem(buffer, start, end), problem, () => `jsonProblem of ${show(copy)} in ${show(buffer)}`);
    }),
    { numRuns: 3000, seed: 0xc0ffee },
  );
  // Arbitrary cuts of realistic payloads: almost all invalid, each must agree with its copy.
  fc.assert(
    fc.property(fc.constantFrom(...PAYLOADS), at, at, (bytes, x, y) => {
      const start = Math.min(x, y) % (bytes.length + 1),
        end = Math.max(start, Math.max(x, y) % (bytes.length + 1));
      const copy = bytes.slice(start, end);
      same(isValidJson(bytes, start, end), reference(copy), () => `[${start}, ${end}) of ${show(bytes)}`);
      same(
        jsonProblem(bytes, start, end),
        jsonProblem(copy),
        () => `jsonProblem of [${start}, ${end}) of ${show(bytes)}`,
      );
    }),
    { numRuns: 2000, seed: 7 },
  );
});
