/** Configuration keys of proxy mode: a Discord-compatible gateway for unmodified bots, fed by gatehouse. */
import {
  CACHE_KIND_NAMES,
  cacheKindField,
  type CacheKinds,
  cacheKindsParser,
  DEFAULT_CACHE_KINDS,
} from "../proxy/cache_kinds.ts";
import { Secret } from "../util/secret.ts";
import { defineKey } from "./key.ts";
import * as p from "./parsers.ts";
import type { ListenAddress } from "./schema.ts";

export const proxyListen = defineKey({
  path: "proxy.listen",
  env: ["GATEHOUSE_PROXY_LISTEN"],
  default: null as ListenAddress,
  parser: p.listenAddress('host:port (e.g. "127.0.0.1:7878"; port 0 = any free port), or "off"'),
  set: (c, v) => (c.proxy.listen = v),
  get: (c) => c.proxy.listen,
  docs: {
    default: "off",
    example: '"127.0.0.1:7878"',
    notes: "proxy mode: a Discord-compatible gateway (and `GET /api/v10/gateway/bot`) for unmodified bots, " +
      "`host:port` or `off`; port `0` = any free port (the address is in `<store>.control` and `/shards`)",
    comment: "Proxy mode: bots connect their usual library here as if it were Discord (point its API at " +
      "http://host:port/api). They get a READY and a GUILD_CREATE per guild from the cache, then the live " +
      "events, and RESUME without missing any. host:port, [v6]:port or :port; port 0 = any free port; " +
      'unset or "off" = no proxy.',
  },
});

export const proxyToken = defineKey({
  path: "proxy.token",
  env: ["GATEHOUSE_PROXY_TOKEN"],
  default: null,
  parser: p.botToken,
  secret: true,
  set: (c, v) => (c.proxy.token = v === null ? null : new Secret(v)),
  get: (c) => c.proxy.token?.reveal() ?? null,
  docs: {
    default: "the bot token",
    example: '"a-token-the-bots-send"',
    notes: 'the token a client\'s IDENTIFY must carry (a leading "Bot " is ignored; compared in constant ' +
      "time; never logged); unset = the bot's own token; anything else is closed with 4004",
    comment: 'The token a bot\'s IDENTIFY must carry (a leading "Bot " is ignored; never logged). Unset = ' +
      "the bot's own token. A wrong one is closed with 4004, as Discord does.",
  },
});

export const proxyResumeWindow = defineKey({
  path: "proxy.resume_window",
  env: ["GATEHOUSE_PROXY_RESUME_WINDOW"],
  default: 15 * 60_000,
  parser: p.duration,
  set: (c, v) => (c.proxy.resumeWindowMs = v),
  get: (c) => c.proxy.resumeWindowMs,
  docs: {
    toml: '"15m"',
    notes: "a client gone for at most this long RESUMEs and gets every event it missed from the journal; " +
      "later, op 9 and a fresh start (`0` = no resuming)",
    comment: "A bot that reconnects within this RESUMEs and gets every event it missed, from the journal " +
      "(as long as retention keeps them); later it gets op 9 (not resumable) and starts afresh. Client " +
      'sessions are stored, so this holds across a restart of gatehouse too. "0" = no resuming.',
  },
});

export const proxyMaxBuffer = defineKey({
  path: "proxy.max_buffer",
  env: ["GATEHOUSE_PROXY_MAX_BUFFER"],
  default: 8 * 1024 * 1024,
  parser: p.size,
  set: (c, v) => (c.proxy.maxBufferBytes = v),
  get: (c) => c.proxy.maxBufferBytes,
  docs: {
    toml: '"8MiB"',
    notes: "what may wait for one slow client; past it, with the oldest of it waiting 2 s, the client is " +
      "closed with 4000 (resumable) and catches up from the journal when it resumes",
    comment: "What may wait, unsent, for one client that reads slowly. Past it, once the oldest of it has " +
      "waited 2 s, the client is closed with 4000 (resumable): it catches up from the journal when it " +
      "resumes (a bot that keeps up is not closed when a burst goes past it for a moment). Shards, the " +
      "journal and other clients never wait for it.",
  },
});

export const proxyCache = defineKey({
  path: "proxy.cache",
  env: ["GATEHOUSE_PROXY_CACHE"],
  default: DEFAULT_CACHE_KINDS as CacheKinds,
  parser: cacheKindsParser,
  set: (c, v) => (c.proxy.cache = v),
  get: (c) => c.proxy.cache,
  docs: {
    table: true,
    toml: "[proxy.cache]\n" +
      CACHE_KIND_NAMES.map((name) => `${name} = ${DEFAULT_CACHE_KINDS[cacheKindField(name)]}`).join("\n"),
    default: "all but `presences`",
    notes: `what the proxy caches for the GUILD_CREATEs it sends a client, per kind (${
      CACHE_KIND_NAMES.map((name) => `\`${name}\``).join(", ")
    }; the guilds themselves always); env: the kinds to cache, comma-separated`,
    comment: "What the proxy caches, kept current from the events, for the GUILD_CREATE it sends a bot " +
      "per guild (the guild objects themselves always; a kind turned off is sent as an empty list). " +
      "users = false keeps only the id of the users in members and presences. In env: the kinds to " +
      "cache, comma-separated.",
  },
});

export const PROXY_KEYS = [proxyListen, proxyToken, proxyResumeWindow, proxyMaxBuffer, proxyCache] as const;
