/**
 * Loading the configuration: the TOML file, then environment variables, then flags (later wins).
 * Every value keeps its source so an error can say exactly where a bad value came from.
 */
import { parse as parseToml, TomlError } from "smol-toml";
import { redisUrlSecretParts } from "../redis/url.ts";
import { addSecret } from "../util/log.ts";
import { Secret, urlSecretParts } from "../util/secret.ts";
import {
  bounded,
  DEFAULTS,
  describeSource,
  type FlagName,
  type GatehouseConfig,
  isLoopback,
  type KeyDef,
  KEYS,
  KNOWN_EVENTS,
  type ListenAddress,
  NOT_YET_SUPPORTED,
  showValue,
  type SinkType,
  type Source,
} from "./schema.ts";

export type { FlagName, GatehouseConfig, LogLevel } from "./schema.ts";

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
  const raw = new Map<string, RawValue>();

  // A file that cannot be read or parsed is one problem; the env and flags are still checked.
  let fileUsable = true;
  const file = readFile(path, options.configPath !== undefined, readTextFile, errors);
  if (file === undefined) fileUsable = false;
  else if (file !== null) fileUsable = collectFile(file, path, raw, errors, warnings);

  for (const def of KEYS) {
    for (const name of def.env) {
      const text = options.env(name);
      if (text !== undefined && text !== "") {
        raw.set(def.key, { value: def.fromText(text), source: { kind: "env", name } });
        break;
      }
    }
    if (def.flag) {
      const text = options.flags[def.flag.name];
      if (text !== undefined) {
        raw.set(def.key, { value: def.fromText(text), source: { kind: "flag", name: def.flag.option } });
      }
    }
  }
  for (const name of NOT_YET_SUPPORTED.env) {
    if (options.env(name)) {
      warnings.push(`env ${name} is ignored: this version of gatehouse does not support it yet`);
    }
  }

  const values = new Map<string, unknown>();
  for (const def of KEYS) {
    const given = raw.get(def.key);
    if (!given) continue;
    const result = def.parse(given.value);
    if (result.ok) values.set(def.key, result.value);
    else errors.push(invalid(def, given, result.allowed));
  }

  // The token may be in a file that could not be read: that file's error says enough.
  if (!raw.has("token") && options.requireToken !== false && fileUsable) {
    errors.unshift(`no Discord token: set DISCORD_TOKEN or \`token\` in ${path}`);
  }
  const get = <T>(key: string, fallback: T): T => (values.has(key) ? values.get(key) as T : fallback);
  const from = (key: string) => `from ${describeSource(raw.get(key)!.source)}`;

  const count = values.get("shards.count") as number | undefined;
  const ids = values.get("shards.ids") as number[] | undefined;
  if (count !== undefined && ids !== undefined) {
    const outside = ids.filter((id) => id >= count);
    if (outside.length > 0) {
      errors.push(
        `shards.ids = ${showValue(ids)} (${from("shards.ids")}) is invalid: ids must be below shards.count ` +
          `(${count}); ${bounded(outside.join(", "))} ${outside.length === 1 ? "is" : "are"} not`,
      );
    }
  }

  // [prometheus] address is Spectacles' name for the same listener; [control] address wins.
  const addressKey = values.has("control.address") ? "control.address" : "prometheus.address";
  const address = get<ListenAddress>(addressKey, DEFAULTS.control.address);
  const controlToken = get<string | null>("control.token", DEFAULTS.control.token);
  if (address !== null && !raw.has("control.token") && !isLoopback(address.hostname)) {
    const source = addressKey === "control.address"
      ? from(addressKey)
      : `from prometheus.address in ${describeSource(raw.get(addressKey)!.source)}`;
    errors.push(
      `control.address = ${address.hostname}:${address.port} (${source}) is reachable from other machines, ` +
        "and control.token is not set: the control listener binds a non-loopback address only with a token. " +
        'Set [control] token (or GATEHOUSE_CONTROL_TOKEN), or bind 127.0.0.1, or set it to "off"',
    );
  }
  const types = get<SinkType[]>("broker.type", DEFAULTS.broker.types);
  const httpUrl = get<string | null>("http.url", DEFAULTS.http.url);
  if (types.includes("http") && httpUrl === null && !raw.has("http.url")) {
    errors.push(
      `broker.type = ${showValue(raw.get("broker.type")!.value)} (${from("broker.type")}) includes http, ` +
        "but http.url is not set: set [http] url or GATEHOUSE_HTTP_URL",
    );
  }
  const tlsCa = get<string | null>("redis.tls_ca", DEFAULTS.redis.tlsCa);
  let tlsCaPem: string | null = null;
  if (
    tlsCa !== null && types.includes("redis") && (options.readBrokerFiles ?? options.requireToken !== false)
  ) {
    const problem = `redis.tls_ca = ${showValue(tlsCa)} (${from("redis.tls_ca")})`;
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

  const events = values.has("events") ? values.get("events") as string[] | null : DEFAULTS.events;
  for (const name of events ?? []) {
    if (!KNOWN_EVENTS.has(name) && !name.startsWith("GATEHOUSE_")) {
      warnings.push(
        `events: ${name} is not a documented Discord event name (it is still forwarded if Discord sends it)`,
      );
    }
  }

  const secret = (text: string | null) => (text === null ? null : new Secret(text));
  const authorization = get<string | null>("http.authorization", DEFAULTS.http.authorization);
  const config: GatehouseConfig = {
    token: new Secret((values.get("token") as string | undefined) ?? ""),
    events,
    intents: get("intents", DEFAULTS.intents),
    shards: { count: get("shards.count", null), ids: get("shards.ids", null) },
    api: {
      version: get("api.version", DEFAULTS.api.version),
      scheme: get("api.scheme", DEFAULTS.api.scheme),
      host: get("api.host", DEFAULTS.api.host),
    },
    presence: get("presence", DEFAULTS.presence),
    gateway: {
      compression: get("gateway.compression", DEFAULTS.gateway.compression),
      largeThreshold: get("gateway.large_threshold", DEFAULTS.gateway.largeThreshold),
      identifyReserve: get("gateway.identify_reserve", DEFAULTS.gateway.identifyReserve),
    },
    store: {
      path: get("store.path", DEFAULTS.store.path),
      journal: get("store.journal", DEFAULTS.store.journal),
      maxAgeMs: get("store.max_age", DEFAULTS.store.maxAgeMs),
      maxSizeBytes: get("store.max_size", DEFAULTS.store.maxSizeBytes),
      hardMaxSizeBytes: get("store.hard_max_size", DEFAULTS.store.hardMaxSizeBytes),
      commitIntervalMs: get("store.commit_interval_ms", DEFAULTS.store.commitIntervalMs),
    },
    broker: { types, group: get("broker.group", DEFAULTS.broker.group) },
    redis: {
      url: new Secret(get("redis.url", DEFAULTS.redis.url)),
      prefix: get("redis.prefix", DEFAULTS.redis.prefix),
      streams: get("redis.streams", DEFAULTS.redis.streams),
      maxLen: get("redis.max_len", DEFAULTS.redis.maxLen),
      commandClaimIdleMs: get("redis.command_claim_idle_ms", DEFAULTS.redis.commandClaimIdleMs),
      tlsCa,
      tlsCaPem,
    },
    amqp: {
      url: new Secret(get("amqp.url", DEFAULTS.amqp.url)),
      exchange: get("amqp.exchange", DEFAULTS.amqp.exchange),
    },
    http: { url: secret(httpUrl), authorization: secret(authorization) },
    control: {
      address,
      token: secret(controlToken),
      metricsPath: get("prometheus.endpoint", DEFAULTS.control.metricsPath),
    },
    log: { level: get("log.level", DEFAULTS.log.level) },
  };
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
  raw: Map<string, RawValue>,
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
  const known = new Set(KEYS.map((def) => def.key));
  const tables = new Set([...known].filter((key) => key.includes(".")).map((key) => key.split(".")[0]));

  for (const [name, value] of Object.entries(doc)) {
    if (NOT_YET_SUPPORTED.tables.includes(name)) {
      warnings.push(`[${name}] in ${path} is ignored: this version of gatehouse does not support it yet`);
      continue;
    }
    if (known.has(name)) {
      raw.set(name, { value, source });
      continue;
    }
    if (tables.has(name) && isTable(value)) {
      for (const [sub, subValue] of Object.entries(value)) {
        const key = `${name}.${sub}`;
        if (known.has(key)) raw.set(key, { value: subValue, source });
        else if (NOT_YET_SUPPORTED.keys.includes(key)) {
          warnings.push(`${key} in ${path} is ignored: this version of gatehouse does not support it yet`);
        } else errors.push(unknownKey(key, path, known));
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

function invalid(def: KeyDef, given: RawValue, allowed: string): string {
  const shown = def.secret ? "<redacted>" : showValue(given.value);
  const typeNote = given.source.kind === "file" && !def.secret ? ` (a TOML ${tomlType(given.value)})` : "";
  return `${def.key} = ${shown}${typeNote} (from ${
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
