/**
 * Starts proxy mode for `gatehouse run`: the cache, the hub fed by the journal, and the listener. Its
 * own module, so a run without `[proxy] listen` loads none of it.
 */
import type { GatehouseConfig } from "../config/schema.ts";
import type { Journal } from "../journal/journal.ts";
import type { Store } from "../journal/store.ts";
import type { Pool } from "../pool/pool.ts";
import type { Logger } from "../util/log.ts";
import { GuildCache } from "./cache.ts";
import { ProxyHub } from "./hub.ts";
import { startProxyServer } from "./server.ts";

export interface ProxyStatus {
  url: string;
  clients: ReturnType<ProxyHub["clients"]>;
  sessions: number;
  cache: ReturnType<GuildCache["stats"]>;
  counters: ProxyHub["counters"];
}

export interface RunningProxy {
  status: () => ProxyStatus;
  stop(): Promise<void>;
}

export function startProxy(
  config: GatehouseConfig,
  parts: { journal: Journal; store: Store; pool: Pool; count: () => number; logger: Logger },
): RunningProxy {
  const { journal, store, pool, logger: log } = parts;
  const listen = config.proxy.listen!;
  const cache = new GuildCache(config.proxy.cache);
  const hub = new ProxyHub({
    gateway: {
      count: parts.count,
      runs: (id, count) => count === parts.count() && pool.get(id, count) !== undefined,
      send: (id, count, op, d) => pool.get(id, count)?.send(op, d) ?? `shard ${id} does not run here`,
      intents: config.intents,
    },
    journal,
    store: config.store.journal
      ? {
        read: (afterId, limit) => store.events.read(afterId, limit),
        minId: () => store.events.minId(),
        loadSessions: () => store.proxySessions.load(),
      }
      : null,
    cache,
    token: (config.proxy.token ?? config.token).reveal(),
    resumeWindowMs: config.proxy.resumeWindowMs,
    maxBufferBytes: config.proxy.maxBufferBytes,
    logger: log,
  });
  const server = startProxyServer({
    hub,
    hostname: listen.hostname,
    port: listen.port,
    count: parts.count,
    logger: log,
  });
  log.info("proxy: listening on {url} (point a bot's API at {api}/api)", {
    url: server.url,
    api: server.url.replace(/^ws/, "http"),
  });
  if (!config.store.journal) {
    log.warn("proxy: [store] journal = false: clients cannot RESUME (there are no events to resume from)");
  }
  return {
    status: () => ({
      url: server.url,
      clients: hub.clients(),
      sessions: hub.sessionCount,
      cache: cache.stats(),
      counters: hub.counters,
    }),
    stop: () => server.stop(),
  };
}
