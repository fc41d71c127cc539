/**
 * `gatehouse shards`: every shard of the running gatehouse, read from its control listener (`/shards`).
 * `--json` for scripts, `--watch` to refresh in place, `--check` for cron and load balancers (one
 * summary line; exit 0 healthy, 1 degraded, 2 down or unreachable). When no instance answers, the last
 * state stored in the store is shown instead, and said to be so. In cluster mode the whole bot is read
 * from Redis instead (shards_cluster.ts): every shard with its owner node, `--check` over all of them.
 */
import type { GatehouseConfig } from "../config/load.ts";
import { controlFilePath } from "../control/control_file.ts";
import { listenerUrl } from "../control/server.ts";
import type { StatusReport } from "../control/status.ts";
import { ExitError } from "./errors.ts";
import { inspectStore } from "./inspect.ts";
import { age, count, print, table } from "./output.ts";

export interface ShardsFlags {
  url?: string;
  json?: boolean;
  watch?: boolean;
  interval?: string;
  check?: boolean;
  maxLatency?: string;
  maxNotReady?: string;
  maxLag?: string;
  timeout?: string;
  /** `--reshard` (true) or `--reshard COUNT`. */
  reshard?: boolean | string;
}

export interface CheckThresholds {
  maxLatencyMs: number;
  maxNotReady: number;
  maxLag: number;
}

export interface CheckResult {
  code: 0 | 1 | 2;
  status: "healthy" | "degraded" | "down";
  summary: string;
}

/** Where the running gatehouse listens: --url, else what `run` recorded next to the store, else the config. */
export async function controlUrl(config: GatehouseConfig, flag?: string): Promise<string | null> {
  if (flag) return flag.replace(/\/+$/, "");
  try {
    const recorded = JSON.parse(await Deno.readTextFile(controlFilePath(config.store.path))) as {
      url?: unknown;
    };
    if (typeof recorded.url === "string") return recorded.url;
  } catch {
    // no instance recorded its address (or it has stopped)
  }
  const address = config.control.address;
  if (address === null || address.port === 0) return null;
  // A listener on every interface is reached on loopback.
  const wildcard = { "0.0.0.0": "127.0.0.1", "::": "::1" } as Record<string, string>;
  return listenerUrl(wildcard[address.hostname] ?? address.hostname, address.port);
}

/** GET /shards, or the reason it could not be had. */
export async function fetchStatus(
  url: string | null,
  timeoutMs: number,
): Promise<{ ok: true; report: StatusReport } | { ok: false; reason: string }> {
  if (url === null) {
    return {
      ok: false,
      reason: "no control address (control.address is off or port 0, and no instance recorded one)",
    };
  }
  try {
    const response = await fetch(`${url}/shards`, { signal: AbortSignal.timeout(timeoutMs) });
    if (!response.ok) {
      await response.body?.cancel();
      return { ok: false, reason: `${url}/shards answered ${response.status}` };
    }
    return { ok: true, report: await response.json() as StatusReport };
  } catch (error) {
    const e = error as Error & { cause?: { message?: string } };
    const why = e.name === "TimeoutError"
      ? `no answer within ${timeoutMs} ms`
      : (e.cause?.message ?? e.message).replace(/^error sending request for url \([^)]*\): /, "");
    return { ok: false, reason: `no gatehouse answers at ${url} (${why})` };
  }
}

/** Health from a status report (or its absence) against the thresholds. */
export function check(
  fetched: { ok: true; report: StatusReport } | { ok: false; reason: string },
  t: CheckThresholds,
): CheckResult {
  if (!fetched.ok) return { code: 2, status: "down", summary: `DOWN: ${fetched.reason}` };
  // A new shard set coming up beside the delivering one (a reshard) is not judged yet.
  const report = fetched.report;
  return judge({ ...report, shards: report.shards.filter((s) => s.delivering !== false) }, t);
}

/** What `judge` reads: the shards to hold to the thresholds, and the sinks' lag. */
export interface Judged {
  shards: Array<Pick<StatusReport["shards"][number], "id" | "state" | "ready" | "why" | "latency_ms">>;
  sinks: Array<{ name: string; lag: number }>;
}

/**
 * The verdict on `j`: down when no shard is ready, degraded when a threshold is crossed or one of
 * `problems` (the caller's own) is given, else healthy. `where` follows the count in the facts.
 */
export function judge(j: Judged, t: CheckThresholds, problems: string[] = [], where = ""): CheckResult {
  const total = j.shards.length;
  const notReady = j.shards.filter((s) => !s.ready);
  if (total === 0 || notReady.length === total) {
    return {
      code: 2,
      status: "down",
      summary: `DOWN: 0/${total} shards ready${where}` + describeNotReady(notReady),
    };
  }
  problems = [...problems];
  if (notReady.length > t.maxNotReady) {
    problems.unshift(`${notReady.length} shard(s) not ready${describeNotReady(notReady)}`);
  }
  const slow = j.shards.filter((s) => s.latency_ms !== null && s.latency_ms > t.maxLatencyMs);
  if (slow.length > 0) {
    problems.push(
      `latency over ${t.maxLatencyMs} ms on shard(s) ${
        slow.map((s) => `${s.id} (${s.latency_ms} ms)`).join(", ")
      }`,
    );
  }
  const lagging = j.sinks.filter((s) => s.lag > t.maxLag);
  if (lagging.length > 0) {
    problems.push(`sink lag over ${t.maxLag} events: ${lagging.map((s) => `${s.name} ${s.lag}`).join(", ")}`);
  }
  const latencies = j.shards.map((s) => s.latency_ms).filter((l): l is number => l !== null);
  const facts = `${total - notReady.length}/${total} shards ready${where}, max latency ${
    latencies.length > 0 ? `${Math.max(...latencies)} ms` : "unknown"
  }, sink lag ${j.sinks.map((s) => `${s.name} ${s.lag}`).join(", ") || "none"}`;
  if (problems.length > 0) {
    return { code: 1, status: "degraded", summary: `DEGRADED: ${problems.join("; ")} (${facts})` };
  }
  return { code: 0, status: "healthy", summary: `OK: ${facts}` };
}

function describeNotReady(shards: Judged["shards"]): string {
  if (shards.length === 0) return "";
  const listed = shards.slice(0, 5).map((s) => `${s.id}: ${s.why ?? s.state}`).join(", ");
  return ` (${listed}${shards.length > 5 ? `, … ${shards.length - 5} more` : ""})`;
}

export function renderReport(r: StatusReport): string {
  const header =
    `gatehouse ${r.version} (pid ${r.pid}), up ${
      age(r.uptime_s * 1000)
    }: ${r.shards_ready}/${r.shards.length} ` +
    `shard(s) ready of ${r.shard_count}; journal id ${count(r.journal.last_id)}` +
    (r.identify.remaining === null
      ? ""
      : `; ${r.identify.remaining} of ${r.identify.total} session starts left`);
  const two = new Set(r.shards.map((s) => s.count)).size > 1;
  const rows = r.shards.map((s) => [
    two ? `${s.id}/${s.count}${s.delivering ? "" : " (new)"}` : s.id,
    s.ready ? s.state : `${s.state} (not ready${s.why && !s.why.startsWith("state") ? `: ${s.why}` : ""})`,
    s.latency_ms === null ? "-" : `${s.latency_ms} ms`,
    s.guilds,
    s.seq ?? "-",
    s.session_age_s === null ? "-" : age(s.session_age_s * 1000),
    s.events_per_s.toFixed(1),
    s.last_event_age_s === null ? "-" : `${age(s.last_event_age_s * 1000)} ago`,
  ]);
  const shards = table(
    ["SHARD", "STATE", "LATENCY", "GUILDS", "SEQ", "SESSION", "EVENTS/S", "LAST EVENT"],
    rows,
  );
  const sinks = r.sinks.length === 0 ? "" : "\n\n" + table(
    ["SINK", "CURSOR", "LAG", "ERRORS"],
    r.sinks.map((s) => [s.name, s.cursor, s.lag, s.errors]),
  );
  return `${header}${reshardLine(r)}\n\n${shards}${sinks}${proxySection(r)}`;
}

/** Proxy mode: its address and cache, then one row per connected client. */
function proxySection(r: StatusReport): string {
  const p = r.proxy;
  if (!p) return "";
  const line = `\n\nproxy ${p.url}: ${p.clients.length} client(s), ${p.sessions} session(s) kept; cache ` +
    `${count(p.cache.guilds)} guild(s) (${p.cache.unavailable} unavailable), ${
      count(p.cache.bytes)
    } bytes of ` +
    `JSON, ${count(p.cache.bytes_per_guild)} per guild`;
  if (p.clients.length === 0) return line;
  return line + "\n\n" + table(
    ["CLIENT", "SHARD", "STATE", "SEQ", "BEHIND", "BUFFERED", "CONNECTED"],
    p.clients.map((c) => [
      c.session,
      `${c.shard}/${c.count}`,
      c.state,
      c.seq,
      c.behind,
      count(c.buffered_bytes),
      age(c.connected_s * 1000),
    ]),
  );
}

/** The reshard under way (or the last one), one line under the header. */
function reshardLine(r: StatusReport): string {
  const rs = r.resharding;
  if (!rs) return "";
  if (rs.state === "preparing") {
    return `\nresharding ${rs.delivering} → ${rs.other}: ${rs.ready}/${rs.total} new shard(s) READY, ` +
      `${rs.loaded}/${rs.total} loaded, ${count(rs.held_events ?? 0)} event(s) held; the ${rs.delivering} ` +
      `deliver until the switch`;
  }
  if (rs.state === "settling") {
    return `\nresharded ${rs.other} → ${rs.delivering}: the ${rs.delivering} deliver; repeats of the old set ` +
      `are still removed`;
  }
  const last = rs.last;
  if (!last) return "";
  const to = last.to === null ? "" : ` → ${last.to}`;
  return `\nlast reshard (${last.trigger}, ${last.at}): ${last.outcome} ${last.from}${to}: ${last.why}`;
}

/** `--reshard [COUNT]`: POST /reshard with [control] token; 0 when it started, 1 when refused. */
async function requestReshard(
  config: GatehouseConfig,
  url: string | null,
  flags: ShardsFlags,
  timeoutMs: number,
) {
  if (url === null) {
    throw new ExitError(2, "no running gatehouse found: give --url, or run it with a [control] address");
  }
  let count: number | undefined;
  if (typeof flags.reshard === "string") {
    count = Number(flags.reshard);
    if (!/^\d+$/.test(flags.reshard) || !Number.isSafeInteger(count) || count < 1) {
      throw new ExitError(2, `--reshard takes a positive shard count, not ${JSON.stringify(flags.reshard)}`);
    }
  }
  const token = config.control.token;
  if (token === null) {
    throw new ExitError(
      2,
      "--reshard needs [control] token (GATEHOUSE_CONTROL_TOKEN), as the running gatehouse has",
    );
  }
  let response: Response;
  try {
    response = await fetch(`${url}/reshard`, {
      method: "POST",
      headers: { authorization: `Bearer ${token.reveal()}`, "content-type": "application/json" },
      body: count === undefined ? "" : JSON.stringify({ count }),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (error) {
    throw new ExitError(2, `cannot reach ${url}: ${(error as Error).message}`);
  }
  const body = await response.json().catch(() => ({})) as { why?: string; error?: string; count?: number };
  if (response.status === 202) {
    print(
      flags.json ? JSON.stringify(body) : `resharding: ${body.why}; follow it with gatehouse shards --watch`,
    );
    return 0;
  }
  const why = body.why ?? body.error ?? `HTTP ${response.status}`;
  if (flags.json) print(JSON.stringify(body));
  else print(`not resharding: ${why}`);
  return 1;
}

export async function shards(config: GatehouseConfig, flags: ShardsFlags): Promise<number> {
  const timeoutMs = positive(flags.timeout ?? "3000", "--timeout");
  const thresholds = (): CheckThresholds => ({
    maxLatencyMs: positive(flags.maxLatency ?? "2000", "--max-latency"),
    maxNotReady: positive(flags.maxNotReady ?? "0", "--max-not-ready"),
    maxLag: positive(flags.maxLag ?? "10000", "--max-lag"),
  });
  if (config.cluster.mode === "redis" && flags.url === undefined) {
    return clusterShards(config, flags, timeoutMs, thresholds);
  }
  const url = await controlUrl(config, flags.url);
  if (flags.reshard !== undefined) return await requestReshard(config, url, flags, timeoutMs);
  if (flags.check) {
    const result = check(await fetchStatus(url, timeoutMs), thresholds());
    print(flags.json ? JSON.stringify(result) : result.summary);
    return result.code;
  }
  if (flags.watch) {
    return await watch(flags, async () => {
      const fetched = await fetchStatus(url, timeoutMs);
      return fetched.ok ? { text: renderReport(fetched.report) } : { reason: fetched.reason };
    });
  }
  const fetched = await fetchStatus(url, timeoutMs);
  if (fetched.ok) {
    print(flags.json ? JSON.stringify({ live: true, ...fetched.report }) : renderReport(fetched.report));
    return 0;
  }
  return fromStore(config, fetched.reason, flags.json ?? false);
}

/** `--watch`: the view redrawn every `--interval` seconds until interrupted; a failed read says so and retries. */
async function watch(
  flags: ShardsFlags,
  read: () => Promise<{ text: string } | { reason: string }>,
): Promise<never> {
  const everyMs = positive(flags.interval ?? "2", "--interval") * 1000;
  const terminal = Deno.stdout.isTerminal();
  for (;;) {
    const got = await read();
    const text = "text" in got ? got.text : `${got.reason}; retrying every ${everyMs / 1000} s`;
    print(`${terminal ? "\x1b[H\x1b[2J" : ""}${new Date().toISOString()}\n${text}\n`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

/** Cluster mode: the whole bot, from Redis (`--url` still asks one process's listener). */
async function clusterShards(
  config: GatehouseConfig,
  flags: ShardsFlags,
  timeoutMs: number,
  thresholds: () => CheckThresholds,
): Promise<number> {
  const { checkCluster, fetchClusterStatus, renderCluster } = await import("./shards_cluster.ts");
  if (flags.check) {
    const result = checkCluster(await fetchClusterStatus(config, timeoutMs), thresholds());
    print(flags.json ? JSON.stringify(result) : result.summary);
    return result.code;
  }
  if (flags.watch) {
    return await watch(flags, async () => {
      const fetched = await fetchClusterStatus(config, timeoutMs);
      return fetched.ok ? { text: renderCluster(fetched.status) } : { reason: fetched.reason };
    });
  }
  const fetched = await fetchClusterStatus(config, timeoutMs);
  if (!fetched.ok) throw new ExitError(2, fetched.reason);
  print(
    flags.json
      ? JSON.stringify({ live: true, cluster: true, ...fetched.status })
      : renderCluster(fetched.status),
  );
  return 0;
}

/** No instance answers: the sessions and cursors the store holds, marked as not live. */
function fromStore(config: GatehouseConfig, reason: string, json: boolean): number {
  let stored;
  try {
    stored = inspectStore(config.store.path);
  } catch (error) {
    throw new ExitError(2, `${reason}, and the store cannot be read either: ${(error as Error).message}`);
  }
  if (json) {
    print(JSON.stringify({
      live: false,
      reason,
      store: config.store.path,
      sessions: stored.sessions,
      cursors: stored.cursors,
    }));
    return 0;
  }
  const rows = stored.sessions.map((s) => [
    s.shard,
    s.session,
    s.seq,
    `${age(s.ageSeconds * 1000)} ago`,
    s.resumable ? "yes" : "no",
  ]);
  print(
    `${reason}.\nNot live: the last state stored in ${config.store.path}` +
      (stored.writer ? ` (written by pid ${stored.writer.pid} ${stored.writer.seenSecondsAgo} s ago)` : "") +
      ":\n\n" +
      (rows.length > 0
        ? table(["SHARD", "SESSION", "SEQ", "UPDATED", "RESUMABLE"], rows)
        : "no stored sessions") +
      (stored.cursors.length > 0
        ? "\n\n" + table(["SINK", "CURSOR", "LAG"], stored.cursors.map((c) => [c.sink, c.lastId, c.lag]))
        : ""),
  );
  return 0;
}

function positive(text: string, flag: string): number {
  const n = Number(text);
  if (!Number.isFinite(n) || n < 0) {
    throw new ExitError(2, `${flag} must be a non-negative number, not ${JSON.stringify(text)}`);
  }
  return n;
}
