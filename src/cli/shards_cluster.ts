/**
 * `gatehouse shards` in cluster mode (`[cluster] mode = "redis"`): the bot's shards are spread over
 * processes, so no single control listener knows them all. The view comes from Redis instead — the
 * leases say who owns each shard, the reports the processes publish say how it is (status_board.ts) —
 * and `--check` judges the whole bot by the rules it applies to one process, with every shard of the
 * count held to them: a shard nobody owns, or whose owner reports nothing, is not ready.
 *
 * Redis errors are printed without the URL's secrets: the URL may hold a password.
 */
import type { GatehouseConfig } from "../config/load.ts";
import { type ClusterStatus, readClusterStatus } from "../cluster/status_board.ts";
import { connectRedis } from "../redis/client.ts";
import { redisUrlSecretParts } from "../redis/url.ts";
import { age, table } from "./output.ts";
import { type CheckResult, type CheckThresholds, judge } from "./shards.ts";

export type ClusterFetch = { ok: true; status: ClusterStatus } | { ok: false; reason: string };

/** The cluster's view from `[redis] url` under `[redis] prefix`, within `timeoutMs`, or why not. */
export async function fetchClusterStatus(config: GatehouseConfig, timeoutMs: number): Promise<ClusterFetch> {
  const url = config.redis.url.reveal();
  const prefix = config.redis.prefix;
  const where = `Redis ([redis] url, prefix ${JSON.stringify(prefix)})`;
  let lastError: string | null = null;
  let client;
  try {
    const ca = config.redis.tlsCa === null ? null : await Deno.readTextFile(config.redis.tlsCa);
    client = connectRedis(url, {
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      connectTimeout: timeoutMs,
      commandTimeout: timeoutMs,
    }, ca);
  } catch (error) {
    return { ok: false, reason: `cannot read the cluster status from ${where}: ${hide(error, url)}` };
  }
  client.on("error", (error: Error) => (lastError = error.message));
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    const status = await Promise.race([
      readClusterStatus(client, prefix, config.shards.count ?? undefined),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { ok: true, status };
  } catch (error) {
    const why = lastError ?? (error as Error).message;
    return { ok: false, reason: `cannot read the cluster status from ${where}: ${hide(why, url)}` };
  } finally {
    clearTimeout(timer);
    client.disconnect();
  }
}

/** `text` (or an error's message) without the URL or any secret part of it. */
function hide(text: unknown, url: string): string {
  let out = text instanceof Error ? text.message : String(text);
  for (const part of [url, ...redisUrlSecretParts(url)].sort((a, b) => b.length - a.length)) {
    if (part.length > 0) out = out.replaceAll(part, "<redacted>");
  }
  return out;
}

/** The whole bot's health: every shard of the count owned, ready and within the thresholds. */
export function checkCluster(fetched: ClusterFetch, t: CheckThresholds): CheckResult {
  if (!fetched.ok) return { code: 2, status: "down", summary: `DOWN: ${fetched.reason}` };
  const c = fetched.status;
  if (c.shard_count === null) {
    return {
      code: 2,
      status: "down",
      summary: `DOWN: no process of the bot reports to Redis under prefix ${JSON.stringify(c.prefix)} ` +
        "(and [shards] count is not set)",
    };
  }
  const notReady = c.shards.filter((s) => !s.ready).length;
  // Unowned shards are listed among the not-ready ones; within --max-not-ready they still degrade.
  const problems = c.unowned.length > 0 && notReady <= t.maxNotReady
    ? [`${c.unowned.length} shard(s) without an owner (${c.unowned.slice(0, 10).join(", ")})`]
    : [];
  const reporting = c.nodes.filter((n) => n.report !== null);
  const sinks = reporting.flatMap((n) =>
    n.report!.sinks.map((s) => ({ name: `${n.node}/${s.name}`, lag: s.lag }))
  );
  return judge({ shards: c.shards, sinks }, t, problems, ` on ${reporting.length} node(s)`);
}

export function renderCluster(c: ClusterStatus): string {
  const header = `gatehouse cluster ${JSON.stringify(c.prefix)}: ${c.shards_ready}/${c.shard_count ?? 0} ` +
    `shard(s) ready on ${c.nodes.length} node(s)` +
    (c.unowned.length > 0 ? `; ${c.unowned.length} without an owner` : "") +
    (c.unreported.length > 0 ? `; ${c.unreported.length} not reported by their owner` : "") +
    (c.reported_counts.length > 1 ? `; nodes report counts ${c.reported_counts.join(", ")}` : "");
  const preparing = c.resharding?.state === "preparing" ? c.resharding : null;
  const reshardLine = preparing
    ? `\nresharding ${preparing.from} → ${preparing.to} (${preparing.trigger}, by ${preparing.node}): ` +
      `${preparing.loaded}/${preparing.to} new shard(s) loaded; the ${preparing.from} deliver until the switch`
    : "";
  const rows = [...c.shards, ...c.new_shards].map((s) => [
    s.count !== null && preparing && s.count === preparing.to ? `${s.id}/${s.count} (new)` : s.id,
    s.node ?? "-",
    s.ready ? s.state : `${s.state} (not ready${s.why && !s.why.startsWith("state") ? `: ${s.why}` : ""})`,
    s.latency_ms === null ? "-" : `${s.latency_ms} ms`,
    s.guilds ?? "-",
    s.seq ?? "-",
    s.session_age_s === null ? "-" : age(s.session_age_s * 1000),
    s.events_per_s === null ? "-" : s.events_per_s.toFixed(1),
    s.last_event_age_s === null ? "-" : `${age(s.last_event_age_s * 1000)} ago`,
  ]);
  const shards = rows.length === 0
    ? "no shards known (no report gives the count; set [shards] count)"
    : table(
      ["SHARD", "NODE", "STATE", "LATENCY", "GUILDS", "SEQ", "SESSION", "EVENTS/S", "LAST EVENT"],
      rows,
    );
  const nodes = c.nodes.length === 0 ? "" : "\n\n" + table(
    ["NODE", "PID", "VERSION", "UP", "SHARDS", "READY"],
    c.nodes.map((n) => [
      n.node,
      n.report?.pid ?? "-",
      n.report?.version ?? "-",
      n.report === null ? "no report" : age(n.report.uptime_s * 1000),
      n.shards.length,
      n.report === null ? "-" : c.shards.filter((s) => s.node === n.node && s.ready).length,
    ]),
  );
  const sinkRows = c.nodes.flatMap((n) =>
    (n.report?.sinks ?? []).map((s) => [n.node, s.name, s.cursor, s.lag, s.errors])
  );
  const sinks = sinkRows.length === 0
    ? ""
    : "\n\n" + table(["NODE", "SINK", "CURSOR", "LAG", "ERRORS"], sinkRows);
  return `${header}${reshardLine}\n\n${shards}${nodes}${sinks}`;
}
