/**
 * The configuration as the CLI loads it, and the `run` flags, both from the key table: each key with a
 * flag is one option, its `--help` line its help text with the environment variables it also reads.
 */
import { Option } from "commander";
import { camelCase } from "../config/key.ts";
import { ALL_KEYS, type FlagName } from "../config/keys.ts";
import { ConfigError, type GatehouseConfig, loadConfig } from "../config/load.ts";
import { ExitError } from "./errors.ts";

/** Raw option values from commander: `--config`, and one string per key with a flag. */
export type RunFlags = { config?: string } & Partial<Record<FlagName, string>>;

/** The commander options of the keys that have a flag, in the table's order. */
export function runFlagOptions(): Option[] {
  const options: Option[] = [];
  for (const key of ALL_KEYS) {
    if (!key.flag) continue;
    const { option, arg, help, choices } = key.flag;
    const flag = new Option(`--${option} <${arg}>`, `${help} [${key.env.join(", ")}]`);
    if (choices) flag.choices(choices);
    options.push(flag);
  }
  return options;
}

/** Flag values by commander's names, without the options that are no key (`--config`). */
function keyFlags(flags: RunFlags): Partial<Record<FlagName, string>> {
  const out: Partial<Record<FlagName, string>> = {};
  for (const key of ALL_KEYS) {
    if (!key.flag) continue;
    const name = camelCase(key.flag.option) as FlagName;
    if (flags[name] !== undefined) out[name] = flags[name];
  }
  return out;
}

/** The configuration from the file, the environment and `flags`; a ConfigError becomes exit code 2. */
export function loadRunConfig(
  flags: RunFlags,
  options: { requireToken?: boolean } = {},
): { config: GatehouseConfig; warnings: string[] } {
  try {
    return loadConfig({
      configPath: flags.config,
      env: (name) => Deno.env.get(name),
      flags: keyFlags(flags),
      requireToken: options.requireToken,
    });
  } catch (error) {
    if (error instanceof ConfigError) throw new ExitError(2, `configuration error:\n${error.message}`);
    throw error;
  }
}
