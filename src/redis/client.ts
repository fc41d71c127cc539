/** One Redis connection from one URL (the forms are in `url.ts`), for the sink and the command source. */
import { Cluster, Redis, type RedisOptions } from "ioredis";
import { parseRedisUrl } from "./url.ts";

export type RedisClient = Redis | Cluster;

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
