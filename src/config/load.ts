/**
 * Loading the configuration: the TOML file, then environment variables, then flags (later wins), for
 * every key of the table in `keys.ts`; what a key does not get is its default. Every value keeps its
 * source so an error can say exactly where a bad value came from. The checks that involve several keys
 * name those keys by their table entries, so a misspelt key is a type error.
 */
import { parse as parseToml, TomlError } from "smol-toml";
import { KNOWN_EVENTS } from "../discord/events.ts";
import { redisUrlSecretParts } from "../redis/url.ts";
import { addSecret } from "../util/log.ts";
import { urlSecretParts } from "../util/secret.ts";
import { type AnyKey, camelCase, type KeySpec } from "./key.ts";
import { ALL_KEYS, type FlagName } from "./keys.ts";
import { controlAddress, controlToken, prometheusAddress } from "./keys_control.ts";
import { brokerFormat, brokerType, httpUrl, redisPrefix, redisStreams, redisTlsCa } from "./keys_delivery.ts";
import { events, shardCount, shardIds, token } from "./keys_discord.ts";
import {
  describeSource,
  emptyConfig,
  type GatehouseConfig,
  isLoopback,
  NOT_YET_SUPPORTED,
  type Source,
} from "./schema.ts";
import { bounded, showValue } from "./show.ts";

export type { FlagName } from "./keys.ts";
export type { GatehouseConfig, LogLevel } from "./schema.ts";

/** A configuration problem: the message is for the operator; the CLI exits with code 2. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

export const DEFAULT_CONFIG_PATH = "gatehouse.toml";

export interface LoadOptions {
  /** From --config: when given, the file must exist. Default `gatehouse.toml`, which may be missing. */
  configPath?: string;
  env: (name: string) => string | undefined;
  flags: Partial<Record<FlagName, string>>;
  /** Reads the config file and the files it names (`[redis] tls_ca`). */
  readTextFile?: (path: string) => string;
  /** `inspect` and `replay` read the store only: no token needed. */
  requireToken?: boolean;
  /**
   * Read the files the sinks need (the Redis CA of `[redis] tls_ca`). Default: when a token is required
   * (`run`); `inspect`, `replay` and `shards` connect to no broker, so a CA they cannot read is no error.
   */
  readBrokerFiles?: boolean;
}

interface RawValue {
  value: unknown;
  source: Source;
}

/**
 * The configuration from the file, the environment and the flags. Every problem found is reported, one
 * per line, in a single ConfigError: an operator fixes them all in one go.
 */
export function loadConfig(options: LoadOptions): { config: GatehouseConfig; warnings: string[] } {
  const warnings: string[] = [];
  const errors: string[] = [];
  const path = options.configPath ?? DEFAULT_CONFIG_PATH;
  const readTextFile = options.readTextFile ?? Deno.readTextFileSync;
  const raw = new Map<AnyKey, RawValue>();

  // A file that cannot be read or parsed is one problem; the env and flags are still checked.
  let fileUsable = true;
  const file = readFile(path, options.configPath !== undefined, readTextFile, errors);
  if (file === undefined) fileUsable = false;
  else if (file !== null) fileUsable = collectFile(file, path, raw, errors, warnings);

  for (const key of ALL_KEYS) {
    for (const name of key.env) {
      const text = options.env(name);
      if (text !== undefined && text !== "") {
        raw.set(key, { value: key.parser.fromText(text), source: { kind: "env", name } });
        break;
      }
    }
    if (key.flag) {
      const text = options.flags[camelCase(key.flag.option) as FlagName];
      if (text !== undefined) {
        raw.set(key, { value: key.parser.fromText(text), source: { kind: "flag", name: key.flag.option } });
      }
    }
  }
  for (const name of NOT_YET_SUPPORTED.env) {
    if (options.env(name)) {
      warnings.push(`env ${name} is ignored: this version of gatehouse does not support it yet`);
    }
  }

  const values = new Map<AnyKey, unknown>();
  for (const key of ALL_KEYS) {
    const given = raw.get(key);
    if (!given) continue;
    const result = key.parser.parse(given.value);
    if (result.ok) values.set(key, result.value);
    else errors.push(invalid(key, given, result.allowed));
  }
  /** The value given for `key` (from any source), if it was valid. */
  const valueOf = <T>(key: KeySpec<T>): T | undefined => values.get(key as AnyKey) as T | undefined;
  const rawOf = (key: AnyKey): RawValue | undefined => raw.get(key);

  // The token may be in a file that could not be read: that file's error says enough.
  if (!rawOf(token) && options.requireToken !== false && fileUsable) {
    errors.unshift(`no Discord token: set DISCORD_TOKEN or \`token\` in ${path}`);
  }
  const from = (key: AnyKey) => `from ${describeSource(rawOf(key)!.source)}`;

  const count = valueOf(shardCount) ?? undefined;
  const ids = valueOf(shardIds) ?? undefined;
  if (count !== undefined && ids !== undefined) {
    const outside = ids.filter((id) => id >= count);
    if (outside.length > 0) {
      errors.push(
        `shards.ids = ${showValue(ids)} (${from(shardIds)}) is invalid: ids must be below shards.count ` +
          `(${count}); ${bounded(outside.join(", "))} ${outside.length === 1 ? "is" : "are"} not`,
      );
    }
  }

  // [prometheus] address is Spectacles' name for the same listener; [control] address wins.
  const addressKey = values.has(controlAddress) ? controlAddress : prometheusAddress;
  const address = valueOf(addressKey) ?? (values.has(addressKey) ? null : controlAddress.default);
  if (address !== null && !rawOf(controlToken) && !isLoopback(address.hostname)) {
    const source = addressKey === controlAddress
      ? from(addressKey)
      : `from prometheus.address in ${describeSource(rawOf(addressKey)!.source)}`;
    errors.push(
      `control.address = ${address.hostname}:${address.port} (${source}) is reachable from other machines, ` +
        "and control.token is not set: the control listener binds a non-loopback address only with a token. " +
        'Set [control] token (or GATEHOUSE_CONTROL_TOKEN), or bind 127.0.0.1, or set it to "off"',
    );
  }
  const types = valueOf(brokerType) ?? brokerType.default;
  if (types.includes("http") && valueOf(httpUrl) == null && !rawOf(httpUrl)) {
    errors.push(
      `broker.type = ${showValue(rawOf(brokerType)!.value)} (${from(brokerType)}) includes http, ` +
        "but http.url is not set: set [http] url or GATEHOUSE_HTTP_URL",
    );
  }
  const format = valueOf(brokerFormat) ?? brokerFormat.default;
  if (format !== "gatehouse" && valueOf(redisStreams) === "single") {
    errors.push(
      `redis.streams = "single" (${from(redisStreams)}) does not go with broker.format = "${format}" ` +
        `(${from(brokerFormat)}): ${format} consumers read one stream per event name; leave redis.streams ` +
        'unset (or "per-event")',
    );
  }
  if (format === "discordjs" && types.includes("amqp")) {
    errors.push(
      `broker.format = "discordjs" (${from(brokerFormat)}) has no RabbitMQ convention (@discordjs/brokers ` +
        `speaks Redis only), and broker.type includes amqp: use format "spectacles" or "gatehouse" for ` +
        "RabbitMQ, or drop amqp",
    );
  }
  if (format !== "gatehouse" && !types.includes("redis") && !types.includes("amqp")) {
    warnings.push(
      `broker.format = "${format}" applies to the redis and amqp sinks only, and broker.type has neither`,
    );
  }
  const tlsCa = valueOf(redisTlsCa) ?? null;
  let tlsCaPem: string | null = null;
  if (
    tlsCa !== null && types.includes("redis") && (options.readBrokerFiles ?? options.requireToken !== false)
  ) {
    const problem = `redis.tls_ca = ${showValue(tlsCa)} (${from(redisTlsCa)})`;
    try {
      tlsCaPem = readTextFile(tlsCa);
      if (!/-----BEGIN [A-Z0-9 ]*CERTIFICATE-----/.test(tlsCaPem)) {
        errors.push(`${problem} is not a PEM file (no -----BEGIN CERTIFICATE----- line)`);
      }
    } catch (error) {
      errors.push(`${problem} cannot be read: ${readProblem(error)}`);
    }
  }
  if (errors.length > 0) throw new ConfigError(errors.join("\n"));

  for (const name of valueOf(events) ?? []) {
    if (!KNOWN_EVENTS.has(name) && !name.startsWith("GATEHOUSE_")) {
      warnings.push(
        `events: ${name} is not a documented Discord event name (it is still forwarded if Discord sends it)`,
      );
    }
  }

  // Every default first, then every value given; an alias only when the key it stands for is not given.
  const config = emptyConfig();
  for (const key of ALL_KEYS) if (!key.aliasOf) key.set(config, key.default);
  for (const key of ALL_KEYS) {
    if (values.has(key) && !(key.aliasOf && values.has(key.aliasOf as AnyKey))) {
      key.set(config, values.get(key));
    }
  }
  config.redis.tlsCaPem = tlsCaPem;
  // Drop-in consumers read bare names (MESSAGE_CREATE, SEND): a prefix only when one was asked for.
  config.redis.streamPrefix = format === "gatehouse" || values.has(redisPrefix)
    ? `${config.redis.prefix}:`
    : "";
  return { config, warnings };
}

/**
 * Registers every secret of `config` with the log redactor, so that no log line shows one even when a
 * library puts it in an error message: the token, the control token, the Authorization header (and its
 * credential alone), and the broker URLs with their userinfo and passwords (as written and decoded).
 * `run` calls it once the configuration is loaded, before anything logs.
 */
export function registerSecrets(config: GatehouseConfig): void {
  addSecret(config.token.reveal());
  if (config.control.token) addSecret(config.control.token.reveal());
  if (config.http.authorization) {
    const header = config.http.authorization.reveal();
    addSecret(header);
    // "Bearer abc…": a library may print the credential without its scheme.
    const credential = /^\S+\s+(.+)$/.exec(header)?.[1];
    if (credential) addSecret(credential, { fragment: true });
  }
  const urls = [config.amqp.url.reveal(), config.http.url?.reveal()];
  for (const url of urls) {
    if (!url) continue;
    addSecret(url);
    for (const part of urlSecretParts(url)) addSecret(part, { fragment: true });
  }
  const redis = config.redis.url.reveal();
  addSecret(redis);
  for (const part of redisUrlSecretParts(redis)) addSecret(part, { fragment: true });
}

/**
 * Reads the config file: its text, null when the default file is missing (which is fine), or undefined
 * when it cannot be read (the problem is added to `errors`).
 */
function readFile(
  path: string,
  explicit: boolean,
  read: (path: string) => string,
  errors: string[],
): string | null | undefined {
  try {
    return read(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound && !explicit) return null;
    errors.push(`cannot read config file ${path}: ${readProblem(error)}`);
    return undefined;
  }
}

/** Why a file could not be read, in a few words. */
function readProblem(error: unknown): string {
  if (error instanceof Deno.errors.NotFound) return "no such file";
  if (error instanceof Deno.errors.PermissionDenied) return "permission denied";
  if (error instanceof Deno.errors.IsADirectory) return "it is a directory";
  return bounded((error as Error).message);
}

/** Flattens the TOML document into keys, reporting syntax errors, unknown keys and unsupported tables. */
function collectFile(
  text: string,
  path: string,
  raw: Map<AnyKey, RawValue>,
  errors: string[],
  warnings: string[],
): boolean {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (error) {
    const reason = bounded((error as Error).message.split("\n")[0]);
    errors.push(
      error instanceof TomlError
        ? `${path}:${error.line}:${error.column}: invalid TOML: ${reason}`
        : `${path}: invalid TOML: ${reason}`,
    );
    return false;
  }
  const source: Source = { kind: "file", path };
  const byPath = new Map(ALL_KEYS.map((key) => [key.path, key]));
  const known = new Set(byPath.keys());
  const tables = new Set([...known].filter((key) => key.includes(".")).map((key) => key.split(".")[0]));

  for (const [name, value] of Object.entries(doc)) {
    if (NOT_YET_SUPPORTED.tables.includes(name)) {
      warnings.push(`[${name}] in ${path} is ignored: this version of gatehouse does not support it yet`);
      continue;
    }
    const key = byPath.get(name);
    if (key) {
      raw.set(key, { value, source });
      continue;
    }
    if (tables.has(name) && isTable(value)) {
      for (const [sub, subValue] of Object.entries(value)) {
        const dotted = `${name}.${sub}`;
        const key = byPath.get(dotted);
        if (key) raw.set(key, { value: subValue, source });
        else if (NOT_YET_SUPPORTED.keys.includes(dotted)) {
          warnings.push(`${dotted} in ${path} is ignored: this version of gatehouse does not support it yet`);
        } else errors.push(unknownKey(dotted, path, known));
      }
      continue;
    }
    if (tables.has(name)) {
      errors.push(`${name} in ${path} must be a table ([${name}]), not a ${tomlType(value)}`);
      continue;
    }
    errors.push(unknownKey(name, path, known));
  }
  return true;
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function unknownKey(key: string, path: string, known: Set<string>): string {
  // A key far longer than any known one is no typo (and the edit distance would take long).
  const suggestion = key.length <= 64 ? closest(key, [...known]) : null;
  return `unknown key ${bounded(key)} in ${path}` + (suggestion ? ` (did you mean ${suggestion}?)` : "");
}

function invalid(key: AnyKey, given: RawValue, allowed: string): string {
  const shown = key.secret ? "<redacted>" : showValue(given.value);
  const typeNote = given.source.kind === "file" && !key.secret ? ` (a TOML ${tomlType(given.value)})` : "";
  return `${key.path} = ${shown}${typeNote} (from ${
    describeSource(given.source)
  }) is invalid: must be ${allowed}`;
}

function tomlType(value: unknown): string {
  if (Array.isArray(value)) return "array";
  if (value instanceof Date) return "date";
  if (typeof value === "number") return Number.isInteger(value) ? "integer" : "float";
  if (typeof value === "object" && value !== null) return "table";
  return typeof value;
}

/** The known key closest to `key` by edit distance, if it is close enough to be a typo. */
function closest(key: string, candidates: string[]): string | null {
  let best: string | null = null;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(key, candidate);
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  return bestDistance <= Math.max(2, Math.floor(key.length / 4)) ? best : null;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length];
}
