/**
 * One configuration key, declared once: where it is read from (TOML path, environment variables, flag),
 * its default, its check, where it goes in `GatehouseConfig`, and its documentation. The loader, the `run`
 * flags with their `--help`, the README's table and `config.example.toml` all follow from these entries.
 */
import type { Parser } from "./parsers.ts";
import type { GatehouseConfig } from "./schema.ts";

export interface FlagSpec<F extends string = string> {
  /** The option without its dashes: `shard-count` (commander hands it over as `shardCount`). */
  readonly option: F;
  /** The value's name in `--help`: `n` gives `--shard-count <n>`. */
  readonly arg: string;
  /** The `--help` line; the environment variables are added in brackets. */
  readonly help: string;
  /** Values commander checks itself (any other is a usage error), shown in `--help`. */
  readonly choices?: readonly string[];
}

/** How a key appears in the README's table and in `config.example.toml`. */
export interface KeyDocs {
  /** The value is a whole TOML table (`[presence]`): the example file writes it last. */
  readonly table?: boolean;
  /** The README's "allowed / notes" cell (Markdown). */
  readonly notes: string;
  /** The comment above the key in `config.example.toml` (wrapped there; `\n` starts a new line). */
  readonly comment: string;
  /** The README's default cell, when the default as TOML does not say it (`Discord's recommendation`). */
  readonly default?: string;
  /** The default as the example file writes it, when that is not its JSON (`"7d"` for 7 days in ms). */
  readonly toml?: string;
  /** For a key without a default: the value of the commented-out line in the example file. */
  readonly example?: string;
}

export interface KeySpec<T, F extends string = string> {
  /** Its TOML path: `token`, `gateway.large_threshold` (also the name in every message). */
  readonly path: string;
  /** Environment variables, in priority order: the first one set wins. */
  readonly env: readonly string[];
  readonly flag?: FlagSpec<F>;
  readonly default: T;
  readonly parser: Parser<T>;
  /** Printed in messages as `<redacted>` instead of the value. */
  readonly secret?: boolean;
  /**
   * Another key that sets the same field and wins over this one (Spectacles' `prometheus.address` for
   * `control.address`); this key's default is not applied.
   */
  readonly aliasOf?: KeySpec<T>;
  /** Puts a value into the configuration (a method, so a table holds keys of every type). */
  set(config: GatehouseConfig, value: T): void;
  /** Reads it back: `get(set(c, v))` is `v`. */
  get(config: GatehouseConfig): T;
  readonly docs: KeyDocs;
}

/** Any key of the table. */
// The setter is a method, so its parameter is checked bivariantly and every KeySpec<T> fits here.
export type AnyKey = KeySpec<unknown>;

/** A key, with its flag's option name kept as a literal type (so `FlagName` can be derived from it). */
export function defineKey<T, F extends string = never>(spec: KeySpec<T, F>): KeySpec<T, F> {
  return spec;
}

/** `shard-count` → `shardCount`, as commander names option values. */
export type CamelCase<S extends string> = S extends `${infer Head}-${infer Tail}`
  ? `${Head}${Capitalize<CamelCase<Tail>>}`
  : S;

export function camelCase<S extends string>(text: S): CamelCase<S> {
  return text.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase()) as CamelCase<S>;
}
