/**
 * One Redis connection from one URL, for the sink and the command source:
 *
 *   redis://[user:password@]host:port[/db]          a server (rediss:// = TLS), as ioredis takes it
 *   redis+sentinel://[user:password@]h1:26379,h2:26379/mymaster[/db][?sentinelPassword=…]
 *                                                   Sentinel: the master named `mymaster`, found through
 *                                                   the sentinels and followed across failovers
 *   redis+cluster://[user:password@]h1:7000,h2:7001  a Redis Cluster, from any of its nodes
 *
 * `rediss+sentinel://` and `rediss+cluster://` use TLS. The password and user apply to the data
 * nodes; ioredis does the rest (discovery, redirections, reconnects).
 */
import { Cluster, Redis, type RedisOptions } from "ioredis";

export type RedisClient = Redis | Cluster;

export type RedisTopology =
  | { kind: "server"; url: string }
  | {
    kind: "sentinel";
    sentinels: Array<{ host: string; port: number }>;
    name: string;
    db: number;
    username?: string;
    password?: string;
    sentinelPassword?: string;
    tls: boolean;
  }
  | {
    kind: "cluster";
    nodes: Array<{ host: string; port: number }>;
    username?: string;
    password?: string;
    tls: boolean;
  };

export const REDIS_URL_PATTERN = /^rediss?(\+sentinel|\+cluster)?:\/\/\S+$/;

/** Reads a Redis URL; throws an Error naming what is wrong (without the URL: it may hold a password). */
export function parseRedisUrl(url: string): RedisTopology {
  const match = /^(rediss?)(?:\+(sentinel|cluster))?:\/\/(.+)$/.exec(url);
  if (!match) throw new Error("not a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL");
  const [, scheme, mode, rest] = match;
  if (!mode) return { kind: "server", url };
  const tls = scheme === "rediss";
  const at = rest.lastIndexOf("@", rest.search(/[/?]|$/));
  const auth = at >= 0 ? rest.slice(0, at) : "";
  const afterAuth = at >= 0 ? rest.slice(at + 1) : rest;
  const [hostsAndPath, query = ""] = afterAuth.split("?", 2);
  const [hostList, ...path] = hostsAndPath.split("/");
  const defaultPort = mode === "sentinel" ? 26379 : 6379;
  const hosts = hostList.split(",").filter((h) => h.length > 0).map((h) => parseHost(h, defaultPort));
  if (hosts.length === 0) throw new Error(`a redis+${mode}:// URL needs at least one host:port`);
  let username: string | undefined;
  let password: string | undefined;
  if (auth) {
    const colon = auth.indexOf(":");
    username = colon >= 0 ? decodeURIComponent(auth.slice(0, colon)) || undefined : undefined;
    password = decodeURIComponent(colon >= 0 ? auth.slice(colon + 1) : auth);
  }
  if (mode === "cluster") return { kind: "cluster", nodes: hosts, username, password, tls };
  const name = path[0] ? decodeURIComponent(path[0]) : "";
  if (!name) throw new Error("a redis+sentinel:// URL names the master after the hosts: …/mymaster");
  const db = path[1] ? Number(path[1]) : 0;
  if (!Number.isInteger(db) || db < 0) throw new Error("the database after the master name must be a number");
  const sentinelPassword = new URLSearchParams(query).get("sentinelPassword") ?? undefined;
  return { kind: "sentinel", sentinels: hosts, name, db, username, password, sentinelPassword, tls };
}

function parseHost(text: string, defaultPort: number): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(text);
  if (!m) throw new Error(`bad host in Redis URL: ${text}`);
  return { host: m[1].replace(/^\[|\]$/g, ""), port: m[2] ? Number(m[2]) : defaultPort };
}

/**
 * A client for `url`; `options` (retry strategy, queueing) apply to every connection it makes. `ca`:
 * PEM certificates that sign the servers' (TLS URLs; default: the system's roots).
 */
export function connectRedis(url: string, options: RedisOptions, ca: string | null = null): RedisClient {
  const t = parseRedisUrl(url);
  const tls = ca === null ? {} : { ca };
  if (t.kind === "server") return new Redis(url, url.startsWith("rediss:") ? { ...options, tls } : options);
  if (t.kind === "sentinel") {
    return new Redis({
      ...options,
      sentinels: t.sentinels,
      name: t.name,
      db: t.db,
      username: t.username,
      password: t.password,
      sentinelPassword: t.sentinelPassword,
      ...(t.tls ? { tls, sentinelTLS: tls, enableTLSForSentinelMode: true } : {}),
    });
  }
  return new Cluster(t.nodes, {
    clusterRetryStrategy: options.retryStrategy,
    enableOfflineQueue: options.enableOfflineQueue ?? true,
    redisOptions: {
      ...options,
      username: t.username,
      password: t.password,
      ...(t.tls ? { tls } : {}),
    },
  });
}
