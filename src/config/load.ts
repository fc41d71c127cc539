/**
 * Loading the configuration: the TOML file, then environment variables, then flags (later wins).
 * Every value keeps its source so an error can say exactly where a bad value came from.
 */
import { parse as parseToml, TomlError } from "smol-toml";
import { Secret } from "../util/secret.ts";
import {
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
  readTextFile?: (path: string) => string;
  /** `inspect` and `replay` read the store only: no token needed. */
  requireToken?: boolean;
}

interface RawValue {
  value: unknown;
  source: Source;
}

export function loadConfig(options: LoadOptions): { config: GatehouseConfig; warnings: string[] } {
  const warnings: string[] = [];
  const errors: string[] = [];
  const path = options.configPath ?? DEFAULT_CONFIG_PATH;
  const raw = new Map<string, RawValue>();

  const file = readFile(
    path,
    options.configPath !== undefined,
    options.readTextFile ?? Deno.readTextFileSync,
  );
  if (file !== null) collectFile(file, path, raw, errors, warnings);

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

  if (!raw.has("token") && options.requireToken !== false) {
    errors.unshift(`no Discord token: set DISCORD_TOKEN or \`token\` in ${path}`);
  }
  const count = values.get("shards.count") as number | undefined;
  const ids = values.get("shards.ids") as number[] | undefined;
  if (count !== undefined && ids !== undefined) {
    const outside = ids.filter((id) => id >= count);
    if (outside.length > 0) {
      const source = describeSource(raw.get("shards.ids")!.source);
      errors.push(
        `shards.ids = ${JSON.stringify(ids)} (from ${source}) is invalid: ids must be below shards.count ` +
          `(${count}); ${outside.join(", ")} ${outside.length === 1 ? "is" : "are"} not`,
      );
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

  const get = <T>(key: string, fallback: T): T => (values.has(key) ? values.get(key) as T : fallback);
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
    broker: {
      types: get("broker.type", DEFAULTS.broker.types),
      group: get("broker.group", DEFAULTS.broker.group),
    },
    redis: {
      url: get("redis.url", DEFAULTS.redis.url),
      prefix: get("redis.prefix", DEFAULTS.redis.prefix),
      streams: get("redis.streams", DEFAULTS.redis.streams),
      maxLen: get("redis.max_len", DEFAULTS.redis.maxLen),
      tlsCa: get("redis.tls_ca", DEFAULTS.redis.tlsCa),
    },
    amqp: {
      url: get("amqp.url", DEFAULTS.amqp.url),
      exchange: get("amqp.exchange", DEFAULTS.amqp.exchange),
    },
    http: {
      url: get("http.url", DEFAULTS.http.url),
      authorization: get("http.authorization", DEFAULTS.http.authorization),
    },
    control: {
      // [prometheus] address is Spectacles' name for the same listener; [control] address wins.
      address: values.has("control.address")
        ? values.get("control.address") as ListenAddress
        : get("prometheus.address", DEFAULTS.control.address),
      token: get("control.token", DEFAULTS.control.token),
      metricsPath: get("prometheus.endpoint", DEFAULTS.control.metricsPath),
    },
    log: { level: get("log.level", DEFAULTS.log.level) },
  };
  const control = config.control.address;
  if (control !== null && config.control.token === null && !isLoopback(control.hostname)) {
    throw new ConfigError(
      `control.address = ${control.hostname}:${control.port} is reachable from other machines, and ` +
        "control.token is not set: the control listener binds a non-loopback address only with a token. " +
        'Set [control] token (or GATEHOUSE_CONTROL_TOKEN), or bind 127.0.0.1, or set it to "off"',
    );
  }
  if (config.broker.types.includes("http") && config.http.url === null) {
    throw new ConfigError(
      "broker.type includes http but http.url is not set: set [http] url or GATEHOUSE_HTTP_URL",
    );
  }
  return { config, warnings };
}

function readFile(path: string, explicit: boolean, read: (path: string) => string): string | null {
  try {
    return read(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound && !explicit) return null;
    const why = error instanceof Deno.errors.NotFound ? "no such file" : (error as Error).message;
    throw new ConfigError(`cannot read config file ${path}: ${why}`);
  }
}

/** Flattens the TOML document into keys, reporting syntax errors, unknown keys and unsupported tables. */
function collectFile(
  text: string,
  path: string,
  raw: Map<string, RawValue>,
  errors: string[],
  warnings: string[],
): void {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (error) {
    if (error instanceof TomlError) {
      const reason = error.message.split("\n")[0];
      throw new ConfigError(`${path}:${error.line}:${error.column}: invalid TOML: ${reason}`);
    }
    throw new ConfigError(`${path}: invalid TOML: ${(error as Error).message}`);
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
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function unknownKey(key: string, path: string, known: Set<string>): string {
  const suggestion = closest(key, [...known]);
  return `unknown key ${key} in ${path}` + (suggestion ? ` (did you mean ${suggestion}?)` : "");
}

function invalid(def: KeyDef, given: RawValue, allowed: string): string {
  const shown = def.secret ? "<redacted>" : JSON.stringify(given.value) ?? String(given.value);
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
