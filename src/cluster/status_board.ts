/**
 * The status board of cluster mode: how `gatehouse shards` sees every shard of the bot when its shards
 * are spread over many processes, none of which knows the others' state.
 *
 * Each process publishes the status report its control listener serves at `/shards` (status.ts) to
 * `{prefix}:status:<node>` every few seconds, as JSON with an expiry of three periods: a process that
 * dies stops renewing it, and its report disappears on its own; a clean stop deletes it. The report holds
 * no secret (shard states, counters, sink names and cursors, the identify budget's numbers: no session
 * id, no token, no URL).
 *
 * The reader merges the reports with the leases, which alone say who owns a shard: every shard of the
 * count with its owner (the lease's value) and that owner's reported state for it; a shard without a
 * lease is `unowned`, one whose owner publishes no report (or a report not listing it yet) `unreported`.
 * Reports are looked up for the live members (`{prefix}:nodes`) and every lease owner; all these keys
 * share the prefix's hash tag, so one MGET reads them on Redis Cluster too.
 */
import type { RedisClient } from "../redis/client.ts";
import type { Logger } from "../util/log.ts";
import { RateSampler, type ShardReport, type StatusReport, statusReport } from "../control/status.ts";
import type { GatewayView } from "../control/status.ts";
import { VERSION } from "../version.ts";
import { clusterKeys } from "./keys.ts";

/** How often a process publishes its report by default (ms). */
export const STATUS_EVERY_MS = 5_000;

export interface StatusPublisherOptions {
  /** Its owner closes it (the lease client suits: small commands, bounded timeouts). */
  client: RedisClient;
  prefix: string;
  /** This process's node name (`[cluster] node`), the name its leases carry. */
  node: string;
  /** This process's view: its own shards only. */
  view: GatewayView;
  /** Period (ms); the key expires after three of them. */
  everyMs?: number;
  logger?: Logger;
}

/** Publishes this process's status report to `{prefix}:status:<node>` until stopped. */
export class StatusPublisher {
  readonly #o: StatusPublisherOptions;
  readonly #key: string;
  readonly #everyMs: number;
  readonly #rates = new RateSampler();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #running = false;
  #inFlight: Promise<void> = Promise.resolve();
  #failing = false;

  constructor(options: StatusPublisherOptions) {
    this.#o = options;
    this.#key = clusterKeys(options.prefix).status(options.node);
    this.#everyMs = Math.max(10, options.everyMs ?? STATUS_EVERY_MS);
  }

  /** Publishes now, then every period. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    this.#tick();
  }

  /** One publication now; a failure is logged (once until it works again), never thrown. */
  publish(): Promise<void> {
    const run = this.#inFlight.then(() => this.#publishOnce());
    this.#inFlight = run;
    return run;
  }

  /** Stops publishing and deletes the report (best effort: it expires anyway). */
  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#timer);
    await this.#inFlight;
    try {
      await this.#o.client.del(this.#key);
    } catch (error) {
      this.#o.logger?.debug("cluster status: cannot delete {key}: {error}", {
        key: this.#key,
        error: (error as Error).message,
      });
    }
  }

  #tick(): void {
    this.publish().then(() => {
      if (!this.#running) return;
      this.#timer = setTimeout(() => this.#tick(), this.#everyMs);
      Deno.unrefTimer(this.#timer);
    });
  }

  async #publishOnce(): Promise<void> {
    const { view, node, client } = this.#o;
    // Sampled before each report: events/s over the last period.
    this.#rates.sample(view.shards(), view.now());
    const report: StatusReport = { ...statusReport(view, this.#rates, VERSION), node };
    try {
      await client.set(this.#key, JSON.stringify(report), "PX", this.#everyMs * 3);
      if (this.#failing) this.#o.logger?.info("cluster status: publishing again");
      this.#failing = false;
    } catch (error) {
      if (!this.#failing) {
        this.#o.logger?.warn("cluster status: cannot publish this node's report: {error}", {
          error: (error as Error).message,
        });
      }
      this.#failing = true;
    }
  }
}

/** One shard of the bot: its owner and what the owner reports of it (null where nobody reports). */
export type ClusterShard =
  & { id: number; node: string | null; state: string; ready: boolean; why: string | null }
  & { [K in Exclude<keyof ShardReport, "id" | "state" | "ready" | "why">]: ShardReport[K] | null };

/** One process of the bot: the shards whose leases it holds, and its report without the shard rows. */
export interface ClusterNode {
  node: string;
  /** Shard ids of the count whose lease holds this node's name. */
  shards: number[];
  report: Omit<StatusReport, "shards"> | null;
}

export interface ClusterStatus {
  prefix: string;
  /** The count given, else the one most reports give; null when neither is known. */
  shard_count: number | null;
  /** Every count the reports name (more than one while the bot changes its count). */
  reported_counts: number[];
  ready: boolean;
  shards_ready: number;
  shards: ClusterShard[];
  /** Shards without a lease. */
  unowned: number[];
  /** Shards whose owner publishes no report, or one that does not list them. */
  unreported: number[];
  nodes: ClusterNode[];
  /** The bot's last reshard plan ({prefix}:reshard), with how many new shards are loaded; null: none. */
  resharding: {
    state: string;
    from: number;
    to: number;
    loaded: number;
    trigger: string;
    why: string;
    node: string;
    started_at: string | null;
  } | null;
  /** While a reshard prepares: the new set's shards, as their nodes report them (they do not deliver yet). */
  new_shards: ClusterShard[];
}

/** Keys per MGET. */
const CHUNK = 500;

/** The whole bot as Redis knows it now: leases, members and the published reports under `prefix`. */
export async function readClusterStatus(
  client: RedisClient,
  prefix: string,
  shardCount?: number,
): Promise<ClusterStatus> {
  const keys = clusterKeys(prefix);
  const reports = new Map<string, StatusReport | null>();
  const readReports = async (nodes: string[]) => {
    const fresh = nodes.filter((n) => !reports.has(n));
    const values = await mget(client, fresh.map((n) => keys.status(n)));
    fresh.forEach((n, i) => reports.set(n, parseReport(values[i])));
  };
  await readReports(await client.zrange(keys.nodes, 0, -1));
  const counts = [...reports.values()].flatMap((r) => (r === null ? [] : [r.shard_count]));
  const count = shardCount ?? mostCommon(counts);
  const owners = count === null
    ? []
    : await mget(client, Array.from({ length: count }, (_, id) => keys.lease(count, id)));
  await readReports([...new Set(owners.filter((o): o is string => o !== null))]);

  const shards = owners.map((owner, id): ClusterShard => {
    if (owner === null) return missing(id, null, "unowned", "no process holds its lease");
    const report = reports.get(owner) ?? null;
    // A report of another count (the bot is changing its count) says nothing of this count's shard.
    const row = report?.shard_count === count ? report.shards.find((s) => s.id === id) : undefined;
    if (row === undefined) {
      return missing(
        id,
        owner,
        "unreported",
        report === null ? `node ${owner} publishes no status report` : `node ${owner} does not report it yet`,
      );
    }
    return { ...row, node: owner };
  });
  const names = [...reports.keys()].filter((n) => reports.get(n) !== null || owners.includes(n)).sort();
  const plan = await client.hgetall(keys.reshard);
  const resharding = plan?.epoch
    ? {
      state: plan.state,
      from: Number(plan.from),
      to: Number(plan.to),
      loaded: plan.state === "preparing" ? await client.scard(keys.reshardLoaded) : 0,
      trigger: plan.trigger ?? "",
      why: plan.why ?? "",
      node: plan.node ?? "",
      started_at: plan.started_at ? new Date(Number(plan.started_at)).toISOString() : null,
    }
    : null;
  const newShards: ClusterShard[] = [];
  if (resharding?.state === "preparing") {
    for (const [node, report] of reports) {
      for (const row of report?.shards ?? []) {
        if (row.count === resharding.to && row.count !== count) newShards.push({ ...row, node });
      }
    }
    newShards.sort((a, b) => a.id - b.id);
  }
  const ready = shards.filter((s) => s.ready).length;
  return {
    prefix,
    shard_count: count,
    reported_counts: [...new Set(counts)].sort((a, b) => a - b),
    ready: count !== null && count > 0 && ready === count,
    shards_ready: ready,
    shards,
    unowned: shards.filter((s) => s.state === "unowned").map((s) => s.id),
    unreported: shards.filter((s) => s.state === "unreported").map((s) => s.id),
    resharding,
    new_shards: newShards,
    nodes: names.map((node) => {
      const report = reports.get(node) ?? null;
      let summary: ClusterNode["report"] = null;
      if (report !== null) {
        const { shards: _rows, ...rest } = report;
        summary = rest;
      }
      return { node, shards: shards.filter((s) => s.node === node).map((s) => s.id), report: summary };
    }),
  };
}

function missing(id: number, node: string | null, state: string, why: string): ClusterShard {
  return {
    id,
    node,
    state,
    ready: false,
    why,
    count: null,
    delivering: null,
    latency_ms: null,
    guilds: null,
    seq: null,
    session_age_s: null,
    events_per_s: null,
    events: null,
    last_event_age_s: null,
    last_frame_age_s: null,
    reconnects: null,
    queued_commands: null,
  };
}

async function mget(client: RedisClient, keys: string[]): Promise<Array<string | null>> {
  const values: Array<string | null> = [];
  for (let i = 0; i < keys.length; i += CHUNK) values.push(...await client.mget(keys.slice(i, i + CHUNK)));
  return values;
}

/** A report, or null for none or one that is not a report (another program's key, a torn write). */
function parseReport(text: string | null): StatusReport | null {
  if (text === null) return null;
  try {
    const report = JSON.parse(text) as StatusReport;
    if (!Array.isArray(report.shards) || !Number.isInteger(report.shard_count)) return null;
    return report;
  } catch {
    return null;
  }
}

/** The most frequent value (the larger on a tie), or null for none. */
function mostCommon(values: number[]): number | null {
  const tally = new Map<number, number>();
  for (const v of values) tally.set(v, (tally.get(v) ?? 0) + 1);
  let best: number | null = null;
  for (const [v, n] of tally) {
    if (best === null || n > tally.get(best)! || (n === tally.get(best)! && v > best)) best = v;
  }
  return best;
}
