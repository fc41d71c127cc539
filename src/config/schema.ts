/**
 * The shape of a loaded configuration and the types its keys share. Each key itself — its TOML path,
 * environment variables, flag, default, check and documentation — is one entry of the table in
 * `keys.ts`; `load.ts` walks that table.
 */
import type { Compression, Presence } from "../discord/identify.ts";
import type { CacheKinds } from "../proxy/cache.ts";
import type { Secret } from "../util/secret.ts";
import type { TransformOptions } from "../sinks/transforms.ts";
import type { WireFormat } from "./wire_formats.ts";

export type LogLevel = "trace" | "debug" | "info" | "warning" | "error" | "fatal";
export const LOG_LEVELS: readonly LogLevel[] = ["trace", "debug", "info", "warning", "error", "fatal"];

export interface GatehouseConfig {
  /** Required; a leading "Bot " is stripped. */
  token: Secret;
  /** Allow-list of event names; null = every event. */
  events: string[] | null;
  intents: number;
  /** null = Discord's recommendation / every id. */
  shards: { count: number | null; ids: number[] | null };
  api: { version: number; scheme: "http" | "https"; host: string };
  presence: Presence | null;
  gateway: { compression: Compression; largeThreshold: number; identifyReserve: number };
  store: {
    path: string;
    /** false = keep sessions, cursors and ids but not events. */
    journal: boolean;
    /** Delivered events older than this are pruned (ms; 0 = keep). */
    maxAgeMs: number;
    /** Delivered events are pruned, oldest first, while the store uses more than this (bytes; 0 = no limit). */
    maxSizeBytes: number;
    /** The store never grows past this: writes stop (and wait) and, if that is not enough, even undelivered events are pruned (bytes; 0 = none). */
    hardMaxSizeBytes: number;
    /** Group commit: at most one journal transaction per this many ms (0 = one per event-loop turn). */
    commitIntervalMs: number;
  };
  /** Where events go: one or more sinks, each with its own cursor. */
  broker: {
    types: SinkType[];
    group: string;
    /** The wire format of the Redis and RabbitMQ sinks and command sources. */
    format: WireFormat;
  };
  redis: {
    /** May hold a password. */
    url: Secret;
    prefix: string;
    /**
     * What event stream names start with: `{prefix}:`; in the drop-in formats "" (bare names) unless
     * `[redis] prefix` was given. Set by the loader.
     */
    streamPrefix: string;
    streams: "per-event" | "single";
    maxLen: number;
    /** Commands another process read but did not acknowledge for this long are taken over (ms). */
    commandClaimIdleMs: number;
    /** PEM file of the CA(s) that sign the server's certificate (rediss://); null = the system's. */
    tlsCa: string | null;
    /**
     * That file's text, read while loading (so a file that cannot be read is an error naming where
     * `tls_ca` was set); null when `tls_ca` is not set, Redis is not a sink, or broker files were not read.
     */
    tlsCaPem: string | null;
  };
  /** The URL may hold a password. */
  amqp: { url: Secret; exchange: string };
  /** What the sinks' events go through on their way from the journal (all off by default). */
  transforms: TransformOptions;
  /** The URL may hold a password or a token in its query; the header is a credential. */
  http: { url: Secret | null; authorization: Secret | null };
  /** Cluster mode: the shards shared by every process of the bot through Redis (`off`: this process's plan). */
  cluster: {
    mode: "off" | "redis";
    leaseMs: number;
    /** This process's name in the cluster; null = host name + pid. */
    node: string | null;
  };
  /** Resharding: when to, and the bounds of a new shard set coming up beside the old one. */
  resharding: { threshold: number; intervalMs: number; timeoutMs: number; maxHeldBytes: number };
  /** Proxy mode: a Discord-compatible gateway for unmodified bots (`listen` null = off). */
  proxy: {
    listen: ListenAddress;
    /** null = the bot token. */
    token: Secret | null;
    resumeWindowMs: number;
    maxBufferBytes: number;
    cache: CacheKinds;
  };
  /** The control listener: metrics, health, status, actions (with `token`). */
  control: { address: ListenAddress; token: Secret | null; metricsPath: string };
  log: { level: LogLevel };
}

/**
 * A configuration with its sections but no values yet: the loader sets every key's default into it
 * through the key's setter, then the values given. (`redis.tlsCaPem` is no key: the loader reads it.)
 */
export function emptyConfig(): GatehouseConfig {
  const sections = {
    shards: {},
    api: {},
    gateway: {},
    store: {},
    broker: {},
    redis: { tlsCaPem: null },
    amqp: {},
    http: {},
    transforms: {},
    cluster: {},
    resharding: {},
    proxy: {},
    control: {},
    log: {},
  };
  return sections as unknown as GatehouseConfig;
}

export type SinkType = "stdout" | "redis" | "amqp" | "http";

/** Where the control listener binds; null = off. */
export type ListenAddress = { hostname: string; port: number } | null;

/** Whether `hostname` can only be reached from this machine. */
export function isLoopback(hostname: string): boolean {
  return hostname === "localhost" || hostname === "::1" || /^127\.\d+\.\d+\.\d+$/.test(hostname);
}

/** Where a value came from, for messages: `gatehouse.toml`, `env DISCORD_TOKEN`, `flag --events`. */
export type Source = { kind: "file"; path: string } | { kind: "env"; name: string } | {
  kind: "flag";
  name: string;
};

export function describeSource(source: Source): string {
  switch (source.kind) {
    case "file":
      return source.path;
    case "env":
      return `env ${source.name}`;
    case "flag":
      return `flag --${source.name}`;
  }
}

/** Spectacles keys and variables this version accepts but does not act on yet. */
export const NOT_YET_SUPPORTED = {
  tables: ["shard_store"],
  /** Keys of supported tables that this version ignores. */
  keys: ["broker.message_timeout", "redis.pool_size"],
  env: [
    "BROKER_MESSAGE_TIMEOUT",
    "SHARD_STORE_TYPE",
    "SHARD_STORE_PREFIX",
    "REDIS_POOL_SIZE",
  ],
};
