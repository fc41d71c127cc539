import assert from "node:assert/strict";
import { parse as parseToml } from "smol-toml";
import { renderConfigTable, renderExample, replaceConfigTable, tableCells } from "../../src/config/docs.ts";
import { ALL_KEYS } from "../../src/config/keys.ts";
import { token } from "../../src/config/keys_discord.ts";
import { emptyConfig } from "../../src/config/schema.ts";

const root = new URL("../../", import.meta.url);
const readme = Deno.readTextFileSync(new URL("README.md", root));
const example = Deno.readTextFileSync(new URL("config.example.toml", root));

Deno.test("README's configuration table is the key table's (deno task config-docs writes it)", () => {
  // Cells compared trimmed: the layout is deno fmt's business.
  assert.deepEqual(tableCells(readme), tableCells(renderConfigTable(ALL_KEYS)));
});

Deno.test("config.example.toml is the key table's (deno task config-docs writes it)", () => {
  assert.equal(example, renderExample(ALL_KEYS));
});

Deno.test("a key missing from the table, or from the docs, is a difference", () => {
  const fewer = ALL_KEYS.filter((key) => key.path !== "redis.max_len");
  assert.notDeepEqual(tableCells(renderConfigTable(fewer)), tableCells(renderConfigTable(ALL_KEYS)));
  assert.notEqual(renderExample(fewer), renderExample(ALL_KEYS));
  // Replacing the table keeps the rest of the README as it is.
  const replaced = replaceConfigTable(readme, renderConfigTable(fewer));
  assert.equal(replaced.split("\n").length, readme.split("\n").length - 1);
  assert.ok(!replaced.includes("`[redis] max_len`"));
});

Deno.test("every default the docs show is the default the loader uses; every example value is valid", () => {
  for (const key of ALL_KEYS) {
    // The token is required: its "" only stands for "put it here".
    if (key === token) continue;
    const shown = key.docs.toml ?? (key.default === null || key.aliasOf ? null : JSON.stringify(key.default));
    const text = shown ?? key.docs.example;
    assert.ok(text !== undefined, `${key.path}: no default and no example`);
    const doc = parseToml(key.docs.table ? text : `value = ${text}`) as Record<string, unknown>;
    // A table inside a table (`[proxy.cache]`) is found by its dotted path.
    const raw = key.docs.table
      ? key.path.split(".").reduce<unknown>((at, part) => (at as Record<string, unknown>)?.[part], doc)
      : doc.value;
    const parsed = key.parser.parse(raw);
    assert.ok(parsed.ok, `${key.path}: ${text} is not valid`);
    if (shown !== null) assert.deepEqual(parsed.value, key.default, key.path);
  }
});

Deno.test("every key's setter and getter meet: get(set(c, v)) is v", () => {
  for (const key of ALL_KEYS) {
    const config = emptyConfig();
    key.set(config, key.default);
    assert.deepEqual(key.get(config), key.default, key.path);
  }
});
