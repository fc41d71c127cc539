/**
 * Redis URLs, for the sink, the command source and the config loader (no client is loaded here):
 *
 *   redis://[user:password@]host:port[/db]          a server (rediss:// = TLS), as ioredis takes it
 *   redis+sentinel://[user:password@]h1:26379,h2:26379/mymaster[/db][?sentinelPassword=…]
 *                                                   Sentinel: the master named `mymaster`, found through
 *                                                   the sentinels and followed across failovers
 *   redis+cluster://[user:password@]h1:7000,h2:7001  a Redis Cluster, from any of its nodes
 *
 * `rediss+sentinel://` and `rediss+cluster://` use TLS. The password and user apply to the data
 * nodes; ioredis does the rest (discovery, redirections, reconnects). In the Sentinel and Cluster forms a
 * password may hold `/ ? @ :` unencoded (see `parseRedisUrl`); in the server form, as in any URL, they
 * must be percent-encoded.
 */
import { decodedForms, urlProblem, urlSecretParts } from "../util/secret.ts";

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

/**
 * Reads a Redis URL; throws an Error saying which part is wrong ("host 2 is not host:port") and never
 * any part of the URL: it may hold a password, and the message goes to logs and the terminal.
 *
 * In the Sentinel and Cluster forms the userinfo ends at the last `@` that a valid host list follows,
 * so a password may hold `/`, `?`, `@` and `:` as it is (percent-encoding works too). An `@` after the
 * hosts (in the master name or the query) must be percent-encoded when a valid host list could follow it.
 */
export function parseRedisUrl(url: string): RedisTopology {
  const match = matchScheme(url);
  if (!match.mode) {
    const problem = urlProblem(url, ["redis", "rediss"]);
    if (problem) throw new Error(problem);
    if (!/^(\/\d{0,9})?\/?$/.test(new URL(url).pathname)) {
      throw new Error("the database (the path) is not a number");
    }
    return { kind: "server", url };
  }
  return splitMultiHost(match.rest, match.mode, match.tls).topology;
}

/**
 * The parts of a Redis URL that are secret on their own, for the log redactor: the userinfo, the
 * password and the Sentinel password, each as written and decoded. Empty when there are none or the
 * URL does not parse.
 */
export function redisUrlSecretParts(url: string): string[] {
  let parts: string[];
  try {
    const match = matchScheme(url);
    if (!match.mode) return urlSecretParts(url);
    const { userinfo, sentinelPassword } = splitMultiHost(match.rest, match.mode, match.tls);
    parts = [];
    if (userinfo !== null) {
      parts.push(userinfo);
      const colon = userinfo.indexOf(":");
      parts.push(...decodedForms(colon >= 0 ? userinfo.slice(colon + 1) : userinfo));
    }
    if (sentinelPassword !== null) parts.push(...decodedForms(sentinelPassword));
  } catch {
    return [];
  }
  return [...new Set(parts)].filter((part) => part.length > 0);
}

function matchScheme(url: string): { tls: boolean; mode: "sentinel" | "cluster" | undefined; rest: string } {
  if (/\s/.test(url)) throw new Error("it contains whitespace (percent-encode it: %20)");
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f]/.test(url)) throw new Error("it contains a control character");
  const match = /^(rediss?)(?:\+(sentinel|cluster))?:\/\/(.*)$/s.exec(url);
  if (!match) throw new Error("not a redis://, rediss://, redis+sentinel:// or redis+cluster:// URL");
  return { tls: match[1] === "rediss", mode: match[2] as "sentinel" | "cluster" | undefined, rest: match[3] };
}

/** At most this many `@` are tried as the end of the userinfo (a pasted blob must not take long). */
const MAX_AT_CANDIDATES = 32;

interface MultiHost {
  topology: RedisTopology;
  /** As written (percent-encoded or not), for the redactor. */
  userinfo: string | null;
  sentinelPassword: string | null;
}

/**
 * `rest` (after `scheme://`) of a Sentinel or Cluster URL. Each `@` from the last one back is tried as
 * the end of the userinfo, then none; the first reading that is valid throughout wins. When none is,
 * the error is the one of the first reading tried (the last `@`: where the userinfo most likely ends).
 */
function splitMultiHost(rest: string, mode: "sentinel" | "cluster", tls: boolean): MultiHost {
  const candidates: number[] = [];
  for (let at = rest.lastIndexOf("@"); at >= 0 && candidates.length < MAX_AT_CANDIDATES;) {
    candidates.push(at);
    at = at === 0 ? -1 : rest.lastIndexOf("@", at - 1);
  }
  candidates.push(-1);
  let firstError: unknown = null;
  for (const at of candidates) {
    try {
      return readMultiHost(at >= 0 ? rest.slice(0, at) : null, rest.slice(at + 1), mode, tls);
    } catch (error) {
      firstError ??= error;
    }
  }
  throw firstError;
}

function readMultiHost(
  userinfo: string | null,
  tail: string,
  mode: "sentinel" | "cluster",
  tls: boolean,
): MultiHost {
  const cut = tail.search(/[/?]/);
  const hostList = cut < 0 ? tail : tail.slice(0, cut);
  const after = cut < 0 ? "" : tail.slice(cut);
  const q = after.indexOf("?");
  const path = q < 0 ? after : after.slice(0, q);
  const query = q < 0 ? null : after.slice(q + 1);
  const defaultPort = mode === "sentinel" ? 26379 : 6379;
  const hosts: Array<{ host: string; port: number }> = [];
  hostList.split(",").forEach((entry, i) => {
    if (entry !== "") hosts.push(parseHost(entry, i + 1, defaultPort));
  });
  if (hosts.length === 0) throw new Error(`a redis+${mode}:// URL needs at least one host:port`);
  let username: string | undefined;
  let password: string | undefined;
  if (userinfo !== null) {
    const colon = userinfo.indexOf(":");
    username = colon >= 0 ? decode(userinfo.slice(0, colon), "the user name") || undefined : undefined;
    password = decode(colon >= 0 ? userinfo.slice(colon + 1) : userinfo, "the password");
  }
  if (mode === "cluster") {
    if ((path !== "" && path !== "/") || query !== null) {
      throw new Error("a redis+cluster:// URL takes no path or query after the hosts");
    }
    return {
      topology: { kind: "cluster", nodes: hosts, username, password, tls },
      userinfo,
      sentinelPassword: null,
    };
  }
  const segments = path.split("/").slice(1);
  if (segments.length > 1 && segments[segments.length - 1] === "") segments.pop();
  const name = segments[0] ? decode(segments[0], "the master name") : "";
  if (!name) throw new Error("a redis+sentinel:// URL names the master after the hosts: …/name");
  if (segments.length > 2) throw new Error("only a database number may follow the master name");
  if (segments[1] !== undefined && !/^\d{1,9}$/.test(segments[1])) {
    throw new Error("the database after the master name is not a number");
  }
  const db = segments[1] === undefined ? 0 : Number(segments[1]);
  let rawSentinelPassword: string | null = null;
  for (const param of (query ?? "").split("&")) {
    if (param === "") continue;
    const eq = param.indexOf("=");
    if (eq < 0 || param.slice(0, eq) !== "sentinelPassword") {
      throw new Error("the only query parameter of a redis+sentinel:// URL is sentinelPassword");
    }
    rawSentinelPassword = param.slice(eq + 1);
  }
  const sentinelPassword = rawSentinelPassword === null
    ? undefined
    : decode(rawSentinelPassword, "the sentinelPassword");
  return {
    topology: { kind: "sentinel", sentinels: hosts, name, db, username, password, sentinelPassword, tls },
    userinfo,
    sentinelPassword: rawSentinelPassword,
  };
}

/** Host `index` (from 1) of a host list: `name`, `1.2.3.4` or `[v6]`, with an optional port. */
function parseHost(text: string, index: number, defaultPort: number): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9_.-]+))(?::(.*))?$/s.exec(text);
  if (!m) throw new Error(`host ${index} is not host:port`);
  const host = m[1] ?? m[2];
  if (m[3] === undefined) return { host, port: defaultPort };
  const port = /^\d{1,5}$/.test(m[3]) ? Number(m[3]) : 0;
  if (port < 1 || port > 65535) throw new Error(`the port of host ${index} is not a number from 1 to 65535`);
  return { host, port };
}

/** Percent-decodes a part of the URL; `what` names it in the error (the text itself never). */
function decode(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new Error(`${what} is not valid percent-encoding (write % as %25)`);
  }
}
