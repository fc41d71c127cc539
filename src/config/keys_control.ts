/** Configuration keys of the control listener (and Spectacles' names for it) and of logging. */
import { Secret } from "../util/secret.ts";
import { defineKey } from "./key.ts";
import * as p from "./parsers.ts";
import { type ListenAddress, LOG_LEVELS, type LogLevel } from "./schema.ts";

export const controlAddress = defineKey({
  path: "control.address",
  env: ["GATEHOUSE_CONTROL_ADDRESS"],
  flag: {
    option: "control-address",
    arg: "addr",
    help: 'control listener: host:port (port 0 = any free port) or "off"',
  },
  default: { hostname: "127.0.0.1", port: 7979 } as ListenAddress,
  parser: p.listenAddress('host:port (e.g. "127.0.0.1:7979"; port 0 = any free port), or "off"'),
  set: (c, v) => (c.control.address = v),
  get: (c) => c.control.address,
  docs: {
    toml: '"127.0.0.1:7979"',
    notes: "the control listener (metrics, health, `/shards`, actions): `host:port`, `[v6]:port`, `:port` " +
      "(every interface) or `off`; port `0` = any free port (`gatehouse shards` finds it in " +
      "`<store>.control`). A non-loopback address needs `[control] token`",
    comment: "The control listener: /metrics (Prometheus), /healthz, /readyz, /shards, and actions " +
      "(reconnect a shard, send a command) when a token is set. host:port, [v6]:port or :port (every " +
      'interface); port 0 = any free port (gatehouse shards finds it in <store path>.control); "off" = no ' +
      "listener. A non-loopback address needs a token.",
  },
});

export const controlToken = defineKey({
  path: "control.token",
  env: ["GATEHOUSE_CONTROL_TOKEN"],
  default: null,
  parser: p.bearerToken,
  secret: true,
  set: (c, v) => (c.control.token = v === null ? null : new Secret(v)),
  get: (c) => c.control.token?.reveal() ?? null,
  docs: {
    default: "none (actions off)",
    example: '"change-me-to-a-long-random-string"',
    notes: "bearer token (≥ 16 characters, no whitespace inside) for the actions; compared in constant " +
      "time; never logged",
    comment: "Bearer token for the actions (at least 16 characters, no whitespace inside; never logged). " +
      "Unset by default = actions off.",
  },
});

export const prometheusAddress = defineKey({
  path: "prometheus.address",
  env: ["PROMETHEUS_ADDRESS"],
  default: controlAddress.default,
  aliasOf: controlAddress,
  parser: p.listenAddress('host:port or :port (an alias of control.address), or "off"'),
  set: (c, v) => (c.control.address = v),
  get: (c) => c.control.address,
  docs: {
    default: "—",
    example: '"127.0.0.1:9090"',
    notes: "Spectacles' name: used as `[control] address` when that is not set",
    comment: 'Spectacles\' name for [control] address, used when that is not set (":9090" = every ' +
      "interface, which needs [control] token).",
  },
});

export const prometheusEndpoint = defineKey({
  path: "prometheus.endpoint",
  env: ["PROMETHEUS_ENDPOINT"],
  default: "/metrics",
  parser: p.matching(/^\/[\w\-./]*$/, 'a path starting with "/" (default "/metrics")'),
  set: (c, v) => (c.control.metricsPath = v),
  get: (c) => c.control.metricsPath,
  docs: {
    notes: "the path of the Prometheus metrics",
    comment: "The path of the metrics on the control listener.",
  },
});

export const logLevel = defineKey({
  path: "log.level",
  env: ["GATEHOUSE_LOG_LEVEL"],
  flag: { option: "log-level", arg: "level", help: "trace, debug, info, warning, error or fatal" },
  default: "info" as LogLevel,
  parser: p.oneOf(LOG_LEVELS, LOG_LEVELS.join(", "), true),
  set: (c, v) => (c.log.level = v),
  get: (c) => c.log.level,
  docs: {
    notes: "trace, debug, info, warning, error, fatal. Logs go to stderr: text on a terminal, JSON lines " +
      "otherwise",
    comment: "trace, debug, info, warning, error or fatal. Logs go to stderr: text on a terminal, JSON " +
      "lines otherwise.",
  },
});

/** In the order of the README's table (and of error messages). */
export const CONTROL_KEYS = [
  controlAddress,
  controlToken,
  prometheusAddress,
  prometheusEndpoint,
  logLevel,
] as const;
