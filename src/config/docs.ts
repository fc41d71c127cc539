/**
 * The configuration's documentation, rendered from the key table: the README's table of keys and
 * `config.example.toml`. `deno task config-docs` writes both; a test fails when either disagrees.
 */
import type { AnyKey } from "./key.ts";
import { TABLE_INTROS } from "./keys.ts";

/** Lines of the example file are at most this long. */
const WIDTH = 108;

const EXAMPLE_HEADER = [
  "# gatehouse configuration — every key with its default.",
  "#",
  "# Sources, later wins: this file (--config PATH, default gatehouse.toml) ← environment variables ← flags.",
  "# Names follow Spectacles' gateway where it has them. Each key names its env variable and flag.",
  "# Generated from the key table (src/config/keys_*.ts) by `deno task config-docs`: edit it there.",
];

/** The README's table of keys starts with this line (its header row). */
const TABLE_HEADER = ["key (TOML)", "environment", "flag", "default", "allowed / notes"];

/** `shards.count` → `["shards", "count"]`; a top-level key has no table. */
function split(key: AnyKey): [string | null, string] {
  const dot = key.path.indexOf(".");
  return dot < 0 ? [null, key.path] : [key.path.slice(0, dot), key.path.slice(dot + 1)];
}

/** The default as TOML, or null when the key has none (the example then shows a commented line). */
function defaultToml(key: AnyKey): string | null {
  if (key.aliasOf) return null;
  if (key.docs.toml !== undefined) return key.docs.toml;
  if (key.default === null) return null;
  return JSON.stringify(key.default).replace(/,(?=\S)/g, ", ");
}

/** The TOML of a key's line in the example: its default, or the value shown on a commented line. */
function exampleToml(key: AnyKey): { toml: string; commented: boolean } {
  const toml = defaultToml(key);
  if (toml !== null) return { toml, commented: false };
  if (key.docs.example === undefined) throw new Error(`${key.path} has neither a default nor an example`);
  return { toml: key.docs.example, commented: true };
}

/** Words of `text` (each `\n` starts a new line) as `# ` comment lines of at most WIDTH characters. */
function comment(text: string): string[] {
  const lines: string[] = [];
  for (const paragraph of text.split("\n")) {
    let line = "#";
    for (const word of paragraph.split(" ").filter((w) => w !== "")) {
      if (line.length + 1 + word.length > WIDTH && line !== "#") {
        lines.push(line);
        line = "#";
      }
      line += ` ${word}`;
    }
    lines.push(line);
  }
  return lines;
}

/** `name = value`, an array broken after its commas when the line would be too long. */
function assignment(name: string, toml: string): string[] {
  const line = `${name} = ${toml}`;
  if (line.length <= WIDTH || !toml.startsWith("[")) return [line];
  const [first, ...rest] = toml.split(", ");
  const lines: string[] = [];
  let current = `${name} = ${first}`;
  for (const part of rest) {
    // + 1 for the comma that ends a broken line.
    if (current.length + 2 + part.length + 1 > WIDTH) {
      lines.push(`${current},`);
      current = `  ${part}`;
    } else {
      current += `, ${part}`;
    }
  }
  lines.push(current);
  return lines;
}

/** Where a key is read besides the file: `env A or B (the first set wins), flag --x`. */
function sourcesLine(key: AnyKey): string {
  const env = key.env.length === 1 ? key.env[0] : `${key.env.join(" or ")} (the first set wins)`;
  return `env ${env}` + (key.flag ? `, flag --${key.flag.option}` : "");
}

/** One key's lines in the example file: comment, sources, then `name = value` (commented without default). */
function exampleBlock(key: AnyKey): string[] {
  const [, name] = split(key);
  const { toml, commented } = exampleToml(key);
  const value = key.docs.table ? toml.split("\n") : assignment(name, toml);
  return [
    ...comment(key.docs.comment),
    ...comment(sourcesLine(key)),
    ...value.map((line) => (commented ? `# ${line}` : line)),
  ];
}

/** `config.example.toml`: top-level keys, then each table in the order of its first key, then whole tables. */
export function renderExample(keys: readonly AnyKey[]): string {
  const out = [...EXAMPLE_HEADER];
  const tables = new Map<string, AnyKey[]>();
  for (const key of keys) {
    const [table] = split(key);
    if (table === null && !key.docs.table) out.push("", ...exampleBlock(key));
    else if (table !== null) tables.set(table, [...(tables.get(table) ?? []), key]);
  }
  for (const [table, members] of tables) {
    out.push("", `[${table}]`);
    if (TABLE_INTROS[table]) out.push(...comment(TABLE_INTROS[table]), "");
    for (const key of members) out.push(...exampleBlock(key));
  }
  // A table inside a table (`[proxy.cache]`) was written as its table's last key.
  for (const key of keys) if (key.docs.table && split(key)[0] === null) out.push("", ...exampleBlock(key));
  return out.join("\n") + "\n";
}

const code = (text: string) => `\`${text}\``;

/** One key's row of the README's table. */
function tableRow(key: AnyKey): string[] {
  const [table, name] = split(key);
  const toml = defaultToml(key);
  const shownDefault = key.docs.default ??
    (toml === null ? "none" : code(/^".*"$/.test(toml) ? JSON.parse(toml) : toml));
  return [
    code(key.docs.table ? `[${key.path}]` : table === null ? name : `[${table}] ${name}`),
    key.env.map(code).join(", "),
    key.flag ? code(`--${key.flag.option}`) : "—",
    shownDefault,
    key.docs.notes,
  ].map((cell) => cell.replaceAll("|", "\\|"));
}

/** The README's table of keys, laid out as `deno fmt` lays out Markdown tables. */
export function renderConfigTable(keys: readonly AnyKey[]): string {
  const rows = [TABLE_HEADER, ...keys.map(tableRow)];
  const widths = TABLE_HEADER.map((_, i) => Math.max(...rows.map((row) => [...row[i]].length)));
  const line = (cells: string[]) =>
    `| ${cells.map((cell, i) => cell + " ".repeat(widths[i] - [...cell].length)).join(" | ")} |`;
  const [header, ...body] = rows;
  return [line(header), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n") + "\n";
}

/** The lines of the README's table of keys: from its header row to the last row. */
function findTable(readme: string): { start: number; end: number } {
  const lines = readme.split("\n");
  const start = lines.findIndex((l) => /^\|\s*key \(TOML\)\s*\|/.test(l));
  if (start < 0) throw new Error("README.md has no configuration table (a row starting `| key (TOML) |`)");
  let end = start;
  while (end < lines.length && lines[end].startsWith("|")) end++;
  return { start, end };
}

/** The README with its table of keys replaced by `table`. */
export function replaceConfigTable(readme: string, table: string): string {
  const lines = readme.split("\n");
  const { start, end } = findTable(readme);
  return [...lines.slice(0, start), ...table.trimEnd().split("\n"), ...lines.slice(end)].join("\n");
}

/** The cells of the README's table of keys, trimmed (so the comparison does not depend on padding). */
export function tableCells(markdown: string): string[][] {
  const lines = markdown.split("\n");
  const { start, end } = findTable(markdown);
  return lines.slice(start, end)
    .filter((_, i) => i !== 1)
    .map((row) => row.slice(1, -1).split(/(?<!\\)\|/).map((cell) => cell.trim()));
}
