/**
 * Writes the configuration's documentation from the key table: the README's table of keys and
 * `config.example.toml`. With `--check`, writes nothing and exits 1 when either is out of date.
 *
 *   deno task config-docs [--check]
 */
import { renderConfigTable, renderExample, replaceConfigTable } from "../src/config/docs.ts";
import { ALL_KEYS } from "../src/config/keys.ts";

const root = new URL("../", import.meta.url);
const files = [
  {
    url: new URL("README.md", root),
    render: (old: string) => replaceConfigTable(old, renderConfigTable(ALL_KEYS)),
  },
  { url: new URL("config.example.toml", root), render: () => renderExample(ALL_KEYS) },
];

const check = Deno.args.includes("--check");
let stale = 0;
for (const file of files) {
  const old = Deno.readTextFileSync(file.url);
  const text = file.render(old);
  if (text === old) continue;
  const name = file.url.pathname.split("/").pop();
  if (check) {
    console.error(`${name} is out of date: run deno task config-docs`);
    stale++;
  } else {
    Deno.writeTextFileSync(file.url, text);
    console.error(`wrote ${name}`);
  }
}
if (stale > 0) Deno.exit(1);
