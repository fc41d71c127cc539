/**
 * Prometheus metrics, with `prom-client`. It runs under Deno, with one exception: its process memory
 * and file-descriptor metrics read /proc/self/status and /proc/self/fd, which Deno allows only with
 * --allow-all, and prom-client then reports 0 silently. Those are replaced here by
 * `process_resident_memory_bytes` from `Deno.memoryUsage()`; its CPU, start time, heap and event-loop
 * lag metrics (`perf_hooks.monitorEventLoopDelay`) work as they are.
 *
 * Gateway values are not counted through prom-client on the event path: its labelled `inc()` costs
 * ~0.16 µs per call (measured), against ~0.01 µs for our own counters (`stats.ts`). Every gatehouse
 * series is set from those counters and the shards' current state in `collect()`, when /metrics is
 * scraped.
 */
import client from "prom-client";
import { LATENCY_BUCKETS } from "./stats.ts";
import { type GatewayView, readiness } from "./status.ts";

const STATES = [
  "idle",
  "connecting",
  "handshaking",
  "identifying",
  "resuming",
  "ready",
  "waiting",
  "fatal",
  "stopped",
];

interface Snapshot {
  now: number;
  shards: ReturnType<GatewayView["shards"]>;
  journal: ReturnType<GatewayView["journal"]>;
  identify: ReturnType<GatewayView["identify"]>;
  sinks: ReturnType<GatewayView["sinks"]>;
}

function snapshot(view: GatewayView): Snapshot {
  return {
    now: view.now(),
    shards: view.shards(),
    journal: view.journal(),
    identify: view.identify(),
    sinks: view.sinks(),
  };
}

export class Metrics {
  readonly registry = new client.Registry();
  readonly #view: GatewayView;
  #snapshot: Snapshot | null = null;

  constructor(view: GatewayView) {
    this.#view = view;
    const registers = [this.registry];
    // What the series read, taken once per scrape (every gauge would otherwise ask the shards again).
    const snap = () => (this.#snapshot ??= snapshot(view));
    // The lag monitor wakes up this often (ms); prom-client's default of 10 costs idle CPU.
    client.collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
    for (
      const broken of [
        "process_resident_memory_bytes",
        "process_virtual_memory_bytes",
        "process_heap_bytes",
        "process_open_fds",
        "process_max_fds",
      ]
    ) {
      this.registry.removeSingleMetric(broken);
    }
    new client.Gauge({
      name: "process_resident_memory_bytes",
      help: "Resident memory size in bytes.",
      registers,
      collect() {
        this.set(Deno.memoryUsage().rss);
      },
    });
    const stats = view.stats;

    // A counter whose value comes from our own counters at scrape time.
    const counter = (
      name: string,
      help: string,
      labelNames: string[],
      fill: (set: (labels: Record<string, string | number>, value: number) => void) => void,
    ) =>
      new client.Counter({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          fill((labels, value) => {
            if (value > 0) this.inc(labels, value);
          });
        },
      });
    const gauge = (
      name: string,
      help: string,
      labelNames: string[],
      fill: (set: (labels: Record<string, string | number>, value: number) => void) => void,
    ) =>
      new client.Gauge({
        name,
        help,
        labelNames,
        registers,
        collect() {
          this.reset();
          fill((labels, value) => this.set(labels, value));
        },
      });

    counter(
      "gatehouse_events_received_total",
      "Dispatches received from Discord, by shard and event type (including those the events allow-list leaves out).",
      ["shard", "type"],
      (set) => {
        for (const [shard, type, n] of stats.received.entries()) set({ shard, type }, n);
      },
    );
    counter(
      "gatehouse_events_delivered_total",
      "Events a sink acknowledged, by sink, shard and event type.",
      ["sink", "shard", "type"],
      (set) => {
        for (const [sink, counts] of stats.delivered) {
          for (const [shard, type, n] of counts.entries()) set({ sink, shard, type }, n);
        }
      },
    );
    gauge(
      "gatehouse_shard_state",
      "1 for the shard's current state (idle, connecting, handshaking, identifying, resuming, ready, waiting, fatal, stopped), 0 for the others.",
      ["shard", "state"],
      (set) => {
        for (const s of snap().shards) {
          for (const state of STATES) set({ shard: s.id, state }, s.state === state ? 1 : 0);
        }
      },
    );
    gauge(
      "gatehouse_shard_ready",
      "1 while the shard's session is live (READY or RESUMED) and Discord was heard from within 1.5 heartbeat intervals.",
      ["shard"],
      (set) => {
        const now = snap().now;
        for (const s of snap().shards) set({ shard: s.id }, readiness(s, now).ready ? 1 : 0);
      },
    );
    gauge(
      "gatehouse_shard_latency_seconds",
      "Time from the shard's last heartbeat to its ACK.",
      ["shard"],
      (set) => {
        for (const s of snap().shards) if (s.latencyMs !== null) set({ shard: s.id }, s.latencyMs / 1000);
      },
    );
    gauge(
      "gatehouse_shard_sequence",
      "The last sequence number of the shard's session.",
      ["shard"],
      (set) => {
        for (const s of snap().shards) if (s.seq !== null) set({ shard: s.id }, s.seq);
      },
    );
    gauge("gatehouse_shard_guilds", "Guilds the shard is in.", ["shard"], (set) => {
      for (const s of snap().shards) set({ shard: s.id }, stats.guilds(s.id));
    });
    gauge(
      "gatehouse_shard_last_frame_age_seconds",
      "Time since the shard last received anything from Discord.",
      ["shard"],
      (set) => {
        const now = snap().now;
        for (const s of snap().shards) {
          if (s.lastFrameAt !== null) set({ shard: s.id }, (now - s.lastFrameAt) / 1000);
        }
      },
    );
    // Heartbeats are rare (one per shard per ~41 s): observed as they happen.
    const latency = new client.Histogram({
      name: "gatehouse_heartbeat_latency_seconds",
      help: "Heartbeat round trips (heartbeat to ACK), all shards.",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    stats.onLatency = (seconds) => latency.observe(seconds);
    counter(
      "gatehouse_shard_reconnects_total",
      "Reconnects, by shard and what caused them (zombie, op7, op9, op9_resumable, dropped, close_<code>, connect_timeout, bad_stream, protocol_error, operator).",
      ["shard", "reason"],
      (set) => {
        for (const [shard, reasons] of stats.reconnects) {
          for (const [reason, n] of reasons) set({ shard, reason }, n);
        }
      },
    );
    counter(
      "gatehouse_shard_resumes_total",
      "Sessions resumed, by shard and what caused the reconnect (restart = resumed after gatehouse started).",
      ["shard", "reason"],
      (set) => {
        for (const [shard, reasons] of stats.resumes) {
          for (const [reason, n] of reasons) set({ shard, reason }, n);
        }
      },
    );
    counter(
      "gatehouse_shard_identifies_total",
      "New sessions (IDENTIFY → READY), by shard.",
      ["shard"],
      (set) => {
        for (const [shard, n] of stats.identifies) set({ shard }, n);
      },
    );
    counter(
      "gatehouse_shard_sessions_lost_total",
      "Sessions Discord invalidated (a GATEHOUSE_SESSION_INVALIDATED event each), by shard.",
      ["shard"],
      (set) => {
        for (const [shard, n] of stats.sessionsLost) set({ shard }, n);
      },
    );
    counter(
      "gatehouse_shard_protocol_errors_total",
      "Frames Discord sent that could not be used (bad_seq, bad_ready, bad_resumed, bad_hello, bad_resume_url, " +
        "invalid_payload, bad_frame) and events that could not be handed over (handover), by shard.",
      ["shard", "kind"],
      (set) => {
        for (const [shard, kinds] of stats.protocolErrors) {
          for (const [kind, n] of kinds) set({ shard, kind }, n);
        }
      },
    );
    gauge(
      "gatehouse_identify_budget_remaining",
      "Session starts (IDENTIFYs) left in Discord's daily budget, as gatehouse last learned it.",
      [],
      (set) => {
        const b = snap().identify;
        if (Number.isFinite(b.remaining)) set({}, b.remaining);
      },
    );
    gauge("gatehouse_identify_budget_total", "Size of Discord's daily session-start budget.", [], (set) => {
      const b = snap().identify;
      if (Number.isFinite(b.total)) set({}, b.total);
    });
    gauge(
      "gatehouse_identify_budget_reset_seconds",
      "Time until Discord's session-start budget refills.",
      [],
      (set) => set({}, Math.max(0, (snap().identify.resetAt - snap().now) / 1000)),
    );
    gauge(
      "gatehouse_journal_last_id",
      "Id of the last event given out.",
      [],
      (set) => set({}, snap().journal.lastId),
    );
    gauge(
      "gatehouse_journal_size_bytes",
      "Size of the SQLite store.",
      [],
      (set) => set({}, snap().journal.sizeBytes),
    );
    gauge(
      "gatehouse_journal_pending_events",
      "Events received and not yet committed to the store.",
      [],
      (set) => set({}, snap().journal.pendingEvents),
    );
    counter(
      "gatehouse_journal_commits_total",
      "Journal transactions committed.",
      [],
      (set) => set({}, snap().journal.commits),
    );
    counter(
      "gatehouse_journal_commit_failures_total",
      "Journal transactions that failed (and were retried).",
      [],
      (set) => set({}, snap().journal.failedCommits),
    );
    counter(
      "gatehouse_events_filtered_total",
      "Dispatches the events allow-list left out (their seq still counts).",
      [],
      (set) => set({}, stats.filtered),
    );
    gauge("gatehouse_sink_cursor", "Id of the last event the sink acknowledged.", ["sink"], (set) => {
      for (const s of snap().sinks) set({ sink: s.name }, s.cursor);
    });
    gauge(
      "gatehouse_sink_lag_events",
      "Events committed but not acknowledged by the sink (committed head − sink cursor), the lag pacing measures.",
      ["sink"],
      (set) => {
        const last = snap().journal.lastId;
        for (const s of snap().sinks) set({ sink: s.name }, s.lagEvents ?? Math.max(0, last - s.cursor));
      },
    );
    gauge(
      "gatehouse_sink_lag_seconds",
      "Age of the oldest committed event the sink has not acknowledged (0 when caught up).",
      ["sink"],
      (set) => {
        for (const s of snap().sinks) if (s.lagSeconds !== undefined) set({ sink: s.name }, s.lagSeconds);
      },
    );
    counter(
      "gatehouse_sink_paced_seconds_total",
      "Time the sink held reading from Discord because it was healthy but behind (pacing), by sink.",
      ["sink"],
      (set) => {
        for (const s of snap().sinks) if (s.pacedSeconds !== undefined) set({ sink: s.name }, s.pacedSeconds);
      },
    );
    counter("gatehouse_sink_errors_total", "Failed deliveries (retried), by sink.", ["sink"], (set) => {
      for (const s of snap().sinks) set({ sink: s.name }, s.errors);
    });
    counter(
      "gatehouse_sink_duplicates_total",
      "Events a sink skipped because they were already delivered (after a restart, or by another process).",
      ["sink"],
      (set) => {
        for (const s of snap().sinks) if (s.duplicates !== undefined) set({ sink: s.name }, s.duplicates);
      },
    );
    if (view.sinks().some((s) => s.transforms !== undefined)) {
      const transforms = function* () {
        for (const s of snap().sinks) if (s.transforms) yield [s.name, s.transforms] as const;
      };
      counter(
        "gatehouse_transform_dropped_total",
        "Events the transforms did not deliver to the sink, by sink and transform (unavailable_guild_delete, " +
          "unchanged_message_update).",
        ["sink", "transform"],
        (set) => {
          for (const [sink, c] of transforms()) {
            set({ sink, transform: "unavailable_guild_delete" }, c.droppedUnavailableGuildDelete);
            set({ sink, transform: "unchanged_message_update" }, c.droppedUnchangedMessageUpdate);
          }
        },
      );
      counter(
        "gatehouse_transform_guild_create_total",
        "GUILD_CREATEs the transforms annotated, by sink and kind (loading, available, joined).",
        ["sink", "kind"],
        (set) => {
          for (const [sink, c] of transforms()) {
            set({ sink, kind: "loading" }, c.loading);
            set({ sink, kind: "available" }, c.available);
            set({ sink, kind: "joined" }, c.joined);
          }
        },
      );
      counter(
        "gatehouse_transform_renamed_total",
        'Loading GUILD_CREATEs delivered as GUILD_LOADED_DD ([transforms] guild_create = "rename"), by sink.',
        ["sink"],
        (set) => {
          for (const [sink, c] of transforms()) set({ sink }, c.renamed);
        },
      );
    }
    gauge(
      "gatehouse_command_queue_depth",
      "Commands waiting for the shard's send budget, by shard.",
      ["shard"],
      (set) => {
        for (const s of snap().shards) set({ shard: s.id }, s.queuedCommands);
      },
    );
    counter(
      "gatehouse_commands_total",
      "Commands taken from the bot, by source (stdin, redis, amqp, control) and result (accepted, rejected).",
      ["source", "result"],
      (set) => {
        for (const [key, n] of stats.commands) {
          const [source, result] = key.split("\u0000");
          set({ source, result }, n);
        }
      },
    );
    gauge(
      "gatehouse_shard_count",
      "The shard count that delivers (a reshard's switch changes it).",
      [],
      (set) => set({}, view.shardCount),
    );
    if (view.resharding) {
      const resharding = () => view.resharding!();
      gauge(
        "gatehouse_reshard_state",
        "1 for the state resharding is in: idle, preparing (a new set comes up beside the delivering one), " +
          "settling (switched; repeats of the old set still removed).",
        ["state"],
        (set) => {
          const state = resharding().state;
          for (const s of ["idle", "preparing", "settling"]) set({ state: s }, s === state ? 1 : 0);
        },
      );
      gauge(
        "gatehouse_reshard_new_shards",
        "While a reshard prepares: the new set's shards, READY, and loaded (every guild of the READY received).",
        ["phase"],
        (set) => {
          const r = resharding();
          set({ phase: "total" }, r.total ?? 0);
          set({ phase: "ready" }, r.ready ?? 0);
          set({ phase: "loaded" }, r.loaded ?? 0);
        },
      );
      gauge(
        "gatehouse_reshard_held_bytes",
        "Bytes of the new set's events held until the switch ([resharding] max_held bounds it).",
        [],
        (set) => set({}, resharding().heldBytes ?? 0),
      );
      counter(
        "gatehouse_reshards_total",
        "Reshards by outcome: started, switched (the new set took over), aborted (given up; the old set kept on).",
        ["outcome"],
        (set) => {
          const c = resharding().counts;
          set({ outcome: "started" }, c.started);
          set({ outcome: "switched" }, c.switched);
          set({ outcome: "aborted" }, c.aborted);
        },
      );
      counter(
        "gatehouse_reshards_refused_total",
        "Reshard triggers not acted on, by reason: not_needed, budget (session starts), invalid, busy, " +
          "unavailable, error (GET /gateway/bot failed).",
        ["reason"],
        (set) => {
          for (const [reason, n] of Object.entries(resharding().counts.refused)) set({ reason }, n);
        },
      );
      counter(
        "gatehouse_reshard_repeats_removed_total",
        "Events both shard sets received around a switch whose second copy was not delivered.",
        [],
        (set) => set({}, resharding().counts.repeatsRemoved),
      );
      gauge(
        "gatehouse_reshard_last_switch_seconds",
        "From the trigger to the switch, for the last reshard that switched (0 before any).",
        [],
        (set) => set({}, (resharding().counts.lastSwitchMs ?? 0) / 1000),
      );
    }
    if (view.proxy) {
      const proxy = () => view.proxy!();
      gauge("gatehouse_proxy_clients", "Bots connected to the proxy, by shard.", ["shard"], (set) => {
        const by = new Map<number, number>();
        for (const c of proxy().clients) by.set(c.shard, (by.get(c.shard) ?? 0) + 1);
        for (const [shard, n] of by) set({ shard }, n);
      });
      gauge(
        "gatehouse_proxy_client_behind_events",
        "The most journal ids a proxy client of the shard is behind the newest (an upper bound of its lag).",
        ["shard"],
        (set) => {
          const by = new Map<number, number>();
          for (const c of proxy().clients) by.set(c.shard, Math.max(by.get(c.shard) ?? 0, c.behind));
          for (const [shard, n] of by) set({ shard }, n);
        },
      );
      gauge(
        "gatehouse_proxy_client_buffered_bytes",
        "Bytes waiting to be sent to the proxy's clients, by shard ([proxy] max_buffer bounds each client).",
        ["shard"],
        (set) => {
          const by = new Map<number, number>();
          for (const c of proxy().clients) by.set(c.shard, (by.get(c.shard) ?? 0) + c.bufferedBytes);
          for (const [shard, n] of by) set({ shard }, n);
        },
      );
      gauge(
        "gatehouse_proxy_sessions",
        "Proxy client sessions kept (connected, or resumable).",
        [],
        (set) => set({}, proxy().sessions),
      );
      gauge(
        "gatehouse_proxy_cache_guilds",
        "Guilds in the proxy's cache, by availability.",
        ["state"],
        (set) => {
          const c = proxy().cache;
          set({ state: "available" }, c.guilds - c.unavailable);
          set({ state: "unavailable" }, c.unavailable);
        },
      );
      gauge(
        "gatehouse_proxy_cache_entries",
        "Entries in the proxy's cache, by kind ([proxy.cache]).",
        ["kind"],
        (set) => {
          for (const [kind, k] of Object.entries(proxy().cache.kinds)) set({ kind }, k.entries);
        },
      );
      gauge(
        "gatehouse_proxy_cache_bytes",
        "Bytes of JSON the proxy's cache holds, by kind (what it keeps; the process's memory is higher).",
        ["kind"],
        (set) => {
          for (const [kind, k] of Object.entries(proxy().cache.kinds)) set({ kind }, k.bytes);
        },
      );
      counter(
        "gatehouse_proxy_events_total",
        "Events sent to proxy clients (one per client).",
        [],
        (set) => set({}, proxy().counters.events),
      );
      counter(
        "gatehouse_proxy_sessions_total",
        "Proxy client sessions by how they began: identified (a start-up from the cache), resumed, invalidated " +
          "(a RESUME answered with op 9).",
        ["how"],
        (set) => {
          const c = proxy().counters;
          set({ how: "identified" }, c.startUps);
          set({ how: "resumed" }, c.resumes);
          set({ how: "invalidated" }, c.invalidated);
        },
      );
      counter(
        "gatehouse_proxy_slow_closed_total",
        "Proxy clients closed (resumably, 4000) because more than [proxy] max_buffer waited for them.",
        [],
        (set) => set({}, proxy().counters.slowClosed),
      );
      counter(
        "gatehouse_proxy_reshard_reconnects_total",
        "Proxy clients told to reconnect (op 7) because the bot was resharded and their shard count ended.",
        [],
        (set) => set({}, proxy().counters.reshardReconnects),
      );
      counter(
        "gatehouse_proxy_commands_total",
        "Commands proxy clients sent to their shard.",
        [],
        (set) => set({}, proxy().counters.commands),
      );
    }
    if (view.node !== undefined) {
      const node = view.node;
      gauge(
        "gatehouse_cluster_node_info",
        "1, labelled with this process's node name in cluster mode ([cluster] node).",
        ["node"],
        (set) => set({ node }, 1),
      );
      gauge(
        "gatehouse_cluster_shards_owned",
        "Shards this process runs now (it holds their leases), of gatehouse_cluster_shard_count.",
        [],
        (set) => set({}, snap().shards.length),
      );
      gauge(
        "gatehouse_cluster_shard_count",
        "The bot's shard count, shared by every process of the cluster.",
        [],
        (set) => set({}, view.shardCount),
      );
    }
    gauge("gatehouse_start_time_seconds", "When this gatehouse started (Unix time).", [], (set) => {
      set({}, view.startedAt / 1000);
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  async text(): Promise<string> {
    this.#snapshot = snapshot(this.#view);
    try {
      return await this.registry.metrics();
    } finally {
      this.#snapshot = null;
    }
  }
}
