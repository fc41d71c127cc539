/** Configuration keys of delivery: which sinks, and the Redis, AMQP and HTTP sinks' settings. */
import { Secret } from "../util/secret.ts";
import { defineKey } from "./key.ts";
import * as p from "./parsers.ts";
import type { SinkType } from "./schema.ts";
import { WIRE_FORMATS, type WireFormat } from "./wire_formats.ts";

export const brokerType = defineKey({
  path: "broker.type",
  env: ["BROKER_TYPE"],
  default: ["stdout"] as SinkType[],
  parser: p.sinkTypes,
  set: (c, v) => (c.broker.types = v),
  get: (c) => c.broker.types,
  docs: {
    toml: '"stdout"',
    notes: "where events go: one or more of `stdout`, `redis`, `amqp`, `http` (a string or a list; " +
      "comma-separated in env). Each sink has its own cursor",
    comment: 'Where events go: one or more of "stdout", "redis", "amqp" and "http" (a string or a list; ' +
      "comma-separated in env). Each sink has its own cursor in the store: a sink that is down catches up " +
      "from the journal, in order, when it is back.",
  },
});

export const brokerGroup = defineKey({
  path: "broker.group",
  env: ["BROKER_GROUP"],
  default: "gatehouse",
  parser: p.matching(/^[\w.:-]{1,64}$/, "a consumer group name (letters, digits, _ . : -)"),
  set: (c, v) => (c.broker.group = v),
  get: (c) => c.broker.group,
  docs: {
    notes: "consumer group created on every Redis stream when missing",
    comment: "Consumer group created on every Redis stream when missing.",
  },
});

export const brokerFormat = defineKey({
  path: "broker.format",
  env: ["GATEHOUSE_BROKER_FORMAT"],
  default: "gatehouse" as WireFormat,
  parser: p.oneOf(WIRE_FORMATS, '"gatehouse", "spectacles" or "discordjs"', true),
  set: (c, v) => (c.broker.format = v),
  get: (c) => c.broker.format,
  docs: {
    notes: "the wire format of the Redis and RabbitMQ sinks and command sources: `gatehouse` (NDJSON " +
      "lines), or what existing consumers read: `spectacles` (Spectacles' streams, exchange and `SEND` " +
      "commands) or `discordjs` (@discordjs/brokers' streams and `gateway_send`); see " +
      "[Drop-in wire formats](#drop-in-wire-formats)",
    comment: 'The wire format of the Redis and RabbitMQ sinks and command sources. "gatehouse": each ' +
      'event is its NDJSON line, commands are JSON. "spectacles": what Spectacles consumers read — a ' +
      "stream per event name (the bare name, e.g. MESSAGE_CREATE) whose entries' data field is the " +
      "event's d as msgpack binary; RabbitMQ: the direct exchange named after [broker] group; commands " +
      'from the SEND stream or queue. "discordjs": what @discordjs/brokers reads — a stream per event ' +
      "name, data = msgpack {shardId, payload: d}; commands from the gateway_send stream. Only Discord's " +
      "events go out in the drop-in formats (gatehouse's own GATEHOUSE_* events stay on stdout and in the " +
      "journal).",
  },
});

export const redisUrl = defineKey({
  path: "redis.url",
  env: ["REDIS_URL"],
  default: "redis://127.0.0.1:6379",
  parser: p.redisUrl,
  secret: true,
  set: (c, v) => (c.redis.url = new Secret(v)),
  get: (c) => c.redis.url.reveal(),
  docs: {
    notes: "`redis://`, `rediss://`, `redis+sentinel://h:26379/master` or `redis+cluster://h:7000,h:7001` " +
      "(see [Redis Streams](#redis-streams)); checked at start (hosts, ports 1–65535, master name); never " +
      "logged or shown in errors",
    comment: "redis:// or rediss:// URL, redis+sentinel://host:26379[,host:port…]/mastername[/db]" +
      "[?sentinelPassword=…], or redis+cluster://host:port[,host:port…]. It may hold a password: it is never " +
      "logged or shown in errors. In the sentinel and cluster forms the password may hold / ? @ : as they " +
      "are; in redis:// percent-encode them (%2F %3F %40 %3A). Checked at start: an error says which part " +
      "is wrong.",
  },
});

export const redisPrefix = defineKey({
  path: "redis.prefix",
  env: ["GATEHOUSE_REDIS_PREFIX"],
  default: "gatehouse",
  parser: p.matching(/^[\w.:-]{1,64}$/, "a key prefix (letters, digits, _ . : -)"),
  set: (c, v) => (c.redis.prefix = v),
  get: (c) => c.redis.prefix,
  docs: {
    notes: "stream names start with it (`{prefix}:…`); in the drop-in formats the event and command " +
      "streams have their bare names unless a prefix is set",
    comment: "Stream names start with this ({prefix}:…). In the drop-in formats ([broker] format) the " +
      "event streams and the command stream have their bare names (MESSAGE_CREATE, SEND, gateway_send), " +
      "as their consumers expect, unless a prefix is set here; then they are {prefix}:MESSAGE_CREATE and " +
      "so on.",
  },
});

export const redisStreams = defineKey({
  path: "redis.streams",
  env: ["GATEHOUSE_REDIS_STREAMS"],
  default: "per-event" as "per-event" | "single",
  parser: p.oneOf(["per-event", "single"], '"per-event" or "single"'),
  set: (c, v) => (c.redis.streams = v),
  get: (c) => c.redis.streams,
  docs: {
    notes: "`per-event`: one stream per event name, `{prefix}:{EVENT}` (as Spectacles); `single`: " +
      "`{prefix}:events`",
    comment: '"per-event": one stream per event name, {prefix}:{EVENT} (as Spectacles does);\n"single": ' +
      "one stream, {prefix}:events. Redis assigns the entry ids; per stream, a hash {<stream>}:seen keeps " +
      "the highest seq appended per Discord session, so an event delivered again (after a crash, or by " +
      "another gatehouse) is skipped: each event is in the streams once, whoever wrote it.",
  },
});

export const redisMaxLen = defineKey({
  path: "redis.max_len",
  env: ["GATEHOUSE_REDIS_MAX_LEN"],
  default: 0,
  parser: p.integer(0, Infinity, "a non-negative integer (0 = no trimming)"),
  set: (c, v) => (c.redis.maxLen = v),
  get: (c) => c.redis.maxLen,
  docs: {
    notes:
      "approximate MAXLEN per stream; `0` = no trimming (trimming drops entries nobody may have read yet)",
    comment:
      "Approximate MAXLEN per stream (0 = no trimming; trimming drops entries nobody may have read yet).",
  },
});

export const commandClaimIdle = defineKey({
  path: "redis.command_claim_idle_ms",
  env: ["GATEHOUSE_COMMAND_CLAIM_IDLE_MS"],
  default: 30_000,
  parser: p.integer(100, 86_400_000, "an integer from 100 to 86400000 (milliseconds)"),
  set: (c, v) => (c.redis.commandClaimIdleMs = v),
  get: (c) => c.redis.commandClaimIdleMs,
  docs: {
    notes:
      "commands a process read from Redis but did not acknowledge for this long (it crashed) are taken " +
      "over by another process; 100–86400000 ms",
    comment: "Commands read from Redis by a process that then crashed are taken over by another (or the " +
      "restarted) process once they were not acknowledged for this many milliseconds (100 to 86400000).",
  },
});

export const redisTlsCa = defineKey({
  path: "redis.tls_ca",
  env: ["GATEHOUSE_REDIS_TLS_CA"],
  default: null,
  parser: p.nonEmpty("the path of a PEM file with the CA certificate(s) of the Redis servers"),
  set: (c, v) => (c.redis.tlsCa = v),
  get: (c) => c.redis.tlsCa,
  docs: {
    default: "none (the system's CAs)",
    example: '"/etc/gatehouse/redis-ca.pem"',
    notes: "PEM file with the CA certificate(s) of `rediss://` servers (self-signed or a private CA); read " +
      "at start when Redis is a sink: a file that cannot be read, or is not PEM, is a configuration error " +
      "naming where `tls_ca` was set",
    comment: "For rediss:// (and rediss+sentinel://, rediss+cluster://): a PEM file with the CA " +
      "certificate(s) that sign the servers' certificates, when they are not signed by a CA the system " +
      "trusts. Unset by default. Read at start when redis is a sink: a file that cannot be read, or is not " +
      "PEM, is a configuration error.",
  },
});

export const amqpUrl = defineKey({
  path: "amqp.url",
  env: ["AMQP_URL"],
  default: "amqp://guest:guest@127.0.0.1:5672",
  parser: p.url(["amqp", "amqps"], "an amqp:// or amqps:// URL like amqp://user:password@host:5672/vhost"),
  secret: true,
  set: (c, v) => (c.amqp.url = new Secret(v)),
  get: (c) => c.amqp.url.reveal(),
  docs: {
    notes: "RabbitMQ `amqp://` or `amqps://` URL, checked at start (a host, port 1–65535, no whitespace; " +
      "`/ ? # @` in the password percent-encoded); never logged or shown in errors",
    comment: "RabbitMQ: amqp:// or amqps:// URL (it may hold a password: it is never logged or shown in " +
      "errors). Checked at start: a host, port 1-65535, no whitespace; / ? # @ in the password " +
      "percent-encoded.",
  },
});

export const amqpExchange = defineKey({
  path: "amqp.exchange",
  env: ["GATEHOUSE_AMQP_EXCHANGE"],
  default: "gatehouse",
  parser: p.matching(/^[\w.:-]{1,127}$/, "an exchange name (letters, digits, _ . : -)"),
  set: (c, v) => (c.amqp.exchange = v),
  get: (c) => c.amqp.exchange,
  docs: {
    notes: "durable topic exchange (declared when missing); routing key = event name",
    comment: "Durable topic exchange, declared when missing. Routing key = event name; message_id = the " +
      "journal id; persistent messages; publisher confirms are the acknowledgement.",
  },
});

export const httpUrl = defineKey({
  path: "http.url",
  env: ["GATEHOUSE_HTTP_URL"],
  default: null,
  parser: p.url(["http", "https"], "an http:// or https:// URL"),
  secret: true,
  set: (c, v) => (c.http.url = v === null ? null : new Secret(v)),
  get: (c) => c.http.url?.reveal() ?? null,
  docs: {
    example: '"https://bot.example/gateway-events"',
    notes: "the HTTP sink's endpoint (needed when `[broker] type` includes `http`), checked at start like " +
      "`[amqp] url`; never logged or shown in errors",
    comment:
      'The endpoint of the HTTP sink. Unset by default; needed when type includes "http". Checked at ' +
      "start like [amqp] url; never logged or shown in errors.",
  },
});

export const httpAuthorization = defineKey({
  path: "http.authorization",
  env: ["GATEHOUSE_HTTP_AUTHORIZATION"],
  default: null,
  parser: p.authorization,
  secret: true,
  set: (c, v) => (c.http.authorization = v === null ? null : new Secret(v)),
  get: (c) => c.http.authorization?.reveal() ?? null,
  docs: {
    example: '"Bearer change-me"',
    notes: "the `Authorization` header sent with each POST (no line breaks); never logged",
    comment: "The Authorization header sent with each POST (no line breaks; never logged).",
  },
});

/** In the order of the README's table (and of error messages). */
export const DELIVERY_KEYS = [
  brokerType,
  brokerGroup,
  brokerFormat,
  redisUrl,
  redisPrefix,
  redisStreams,
  redisMaxLen,
  commandClaimIdle,
  redisTlsCa,
  amqpUrl,
  amqpExchange,
  httpUrl,
  httpAuthorization,
] as const;
