/** The value checks of configuration keys, at their edges (plain checks, no schema library). */
import assert from "node:assert/strict";
import * as p from "../../src/config/parsers.ts";

const ok = <T>(parser: p.Parser<T>, raw: unknown) => {
  const result = parser.parse(raw);
  assert.ok(result.ok, `${JSON.stringify(raw)} is allowed`);
  return result.value;
};
const refused = <T>(parser: p.Parser<T>, raw: unknown) =>
  assert.equal(parser.parse(raw).ok, false, `${JSON.stringify(raw)} is refused`);

Deno.test("parsers: integers, enums, patterns, non-empty strings, the API version", () => {
  const port = p.integer(0, 65535, "a port");
  assert.equal(ok(port, 0), 0);
  assert.equal(ok(port, 65535), 65535);
  for (const raw of [-1, 65536, 1.5, NaN, Infinity, "80", null, undefined]) refused(port, raw);
  assert.equal(ok(p.positiveInteger, 1_000_000), 1_000_000);
  for (const raw of [0, -3, 1_000_001, 2.5, 2 ** 60]) refused(p.positiveInteger, raw);
  assert.equal(p.positiveInteger.fromText(" 12 "), 12);
  assert.equal(p.positiveInteger.fromText("12x"), "12x");

  const level = p.oneOf(["debug", "info"], "debug or info", true);
  assert.equal(ok(level, "info"), "info");
  refused(level, "INFO");
  refused(level, "warning");
  assert.equal(level.fromText(" INFO "), "info");

  const hex = p.matching(/^[0-9a-f]+$/g, "hex");
  assert.equal(ok(hex, "ab"), "ab");
  assert.equal(ok(hex, "ab"), "ab", "a global pattern matches every time");
  refused(hex, "xyz");
  refused(hex, 12);

  const name = p.nonEmpty("a name");
  assert.equal(ok(name, "x"), "x");
  refused(name, "");
  refused(name, 1);

  assert.equal(ok(p.apiVersion, 9), 9);
  assert.equal(ok(p.apiVersion, 10), 10);
  refused(p.apiVersion, 8);
  refused(p.apiVersion, "10");
});

Deno.test("parsers: presence defaults, Spectacles' game, and what is refused", () => {
  assert.deepEqual(ok(p.presence, {}), { since: null, activities: [], status: "online", afk: false });
  assert.deepEqual(
    ok(p.presence, { activities: [{ name: "a", url: null }], game: { name: "g", type: 2, state: "s" } }),
    {
      since: null,
      activities: [{ name: "a", type: 0 }, { name: "g", type: 2, state: "s" }],
      status: "online",
      afk: false,
    },
  );
  for (
    const raw of [
      [],
      null,
      "online",
      { status: "busy" },
      { afk: "yes" },
      { since: 1.5 },
      { activities: {} },
      { activities: [{ name: "" }] },
      { activities: [{ name: "a", type: 6 }] },
      { activities: [{ name: "a", url: 3 }] },
      { activities: [{ name: "a", extra: 1 }] },
      { game: { type: 1 } },
      { mood: "happy" },
    ]
  ) refused(p.presence, raw);
});
