/**
 * Resharding without downtime (docs/architecture.md, "Resharding"): a new shard set comes up beside the
 * running one and takes over with nothing lost.
 *
 * 1. A trigger (the periodic check, a request, a close with 4011) is decided by `decideReshard`.
 * 2. The new set's shards are added to the pool: they identify through the same identify queue as
 *    everything else, while the running set keeps delivering. Every dispatch of the new set is held here
 *    (in memory, up to `maxHeldBytes`), in arrival order with its sessions, and matched against the
 *    running set's deliveries (`OverlapFilter`, docs/protocol.md §13): a held event the running set also
 *    delivered is marked a repeat.
 * 3. Once every new shard is READY and has received the GUILD_CREATE of every guild of its READY (or
 *    none came for `guildWaitMs`), the switch, in one turn: `GATEHOUSE_RESHARDED` is emitted, the old
 *    sessions are forgotten by the journal, the held items go to the journal in their order (repeats only
 *    advance their session's seq), and from then on the new set delivers and the old one is closed
 *    (code 1000: its sessions are not needed again). For `windowMs` after the switch the new set's
 *    dispatches are still matched against what the old set delivered last.
 * 4. A new set that is not ready within the timeout, a new shard closed for good, or a hold past its
 *    bound gives the reshard up: the new shards are closed, what they held is dropped (the old set
 *    delivered all of it), and the old set never stopped.
 *
 * The old set's deliveries are remembered only for the guilds whose owner in the new set is READY (those
 * of the two seconds before that READY too, for events in flight around it): a delivery the new set can
 * never see would otherwise wait in the filter and take the place of a later event with the same bytes.
 *
 * Nothing here awaits on a dispatch: every dispatch is handled synchronously in the shard's turn.
 */
import type { GatewayBotInfo } from "../gateway/protocol.ts";
import { dataOf, fieldOf } from "../gateway/frame.ts";
import type { ResumableSession } from "../gateway/shard.ts";
import type { DispatchSink } from "../gateway/shard_types.ts";
import { type Clock, systemClock, type TimerId } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { OverlapFilter } from "./overlap.ts";
import type { ShardKey } from "./ownership.ts";
import type { PoolFailure } from "./pool.ts";
import { decideReshard, type ReshardTrigger } from "./reshard_plan.ts";

/** What the resharder needs of the dispatcher: delivering, and advancing a seq without delivering. */
export interface ReshardSink extends DispatchSink {
  /** A repeat: its seq is recorded (a RESUME must not ask for it again), the event is not delivered. */
  skip(shard: number, t: string, s: number, payload: Uint8Array, start: number): void;
}

export interface ReshardPool {
  add(key: ShardKey): boolean;
  remove(key: ShardKey, code?: number): Promise<unknown>;
}

export interface ReshardJournal {
  sessionStarted(shardCount: number, shard: number, session: ResumableSession): void;
  sessionLost(shardCount: number, shard: number): void;
}

/**
 * Cluster mode: one reshard for the whole bot. A trigger starts it for everyone (`start`); each member
 * then runs, through `Resharder.follow`, the new shards that overlap its old ones, reports those that
 * are loaded, and switches (`switchNow`) or gives up (`abortNow`) when the bot does.
 */
export interface ReshardCoordinator {
  /** Starts a reshard of the bot to `count`; resolves with null when started, else why not. */
  start(
    plan: { count: number; from: number; trigger: ReshardTrigger["kind"]; why: string },
  ): Promise<string | null>;
  /** New shards of the reshard under way here that are loaded (READY with their guilds). */
  loaded(ids: number[]): void;
  /** This member gives the reshard up: the bot does. */
  giveUp(why: string): void;
}

export interface ResharderOptions {
  /** The shard count running now. */
  count: number;
  pool: ReshardPool;
  sink: ReshardSink;
  journal: ReshardJournal;
  fetchInfo: () => Promise<GatewayBotInfo>;
  /** Session starts always kept back (`[gateway] identify_reserve`). */
  reserve: number;
  threshold: number;
  /** The periodic check (0: none). */
  intervalMs: number;
  /** How long a new set may take to be ready (0: from its identify rounds). */
  timeoutMs: number;
  maxHeldBytes: number;
  /** null: resharding can run here; else why it cannot (every trigger is refused with it). */
  unavailable?: string | null;
  logger: Logger;
  clock?: Clock;
  /** How long after the switch the new set's dispatches are still matched. Default 30 s. */
  windowMs?: number;
  /** A new shard is loaded when no GUILD_CREATE of its READY came for this long. Default 15 s. */
  guildWaitMs?: number;
  /** The most one turn spends handing the hold to the journal at the switch (ms). Default 5. */
  drainSliceMs?: number;
  /** Cluster mode: the reshard is the bot's, decided and switched through Redis. */
  coordinator?: ReshardCoordinator;
  /** The switch happened: `count` runs now (routing, status). */
  onSwitched?: (count: number) => void;
  /** A reshard was decided against: a 4011 that cannot be answered fails the pool with this. */
  onUnanswered4011?: (failure: PoolFailure) => void;
}

/** Guilds each shard owns at most (Discord closes with 4011 past it). */
const IDENTIFY_ROUND_MS = 5_000;
/** Old deliveries from this long before a new shard's READY are matched against it (in flight). */
const BEFORE_READY_MS = 2_000;
const TICK_MS = 1_000;
/** The most one turn spends handing the hold to the journal at the switch. */
const DRAIN_SLICE_MS = 5;

type HeldItem =
  | { kind: "event"; shard: number; t: string; s: number; bytes: Uint8Array; repeat: boolean }
  | { kind: "internal"; shard: number; t: string; d: Record<string, unknown> }
  | { kind: "session"; shard: number; session: ResumableSession | null };

type HeldEvent = Extract<HeldItem, { kind: "event" }>;

interface NewShard {
  readyAt: number | null;
  /** Guild ids of its READY that no GUILD_CREATE came for yet (null before READY). */
  waiting: Set<string> | null;
  lastGuildAt: number;
  loaded: boolean;
}

interface Preparing {
  count: number;
  trigger: ReshardTrigger["kind"];
  why: string;
  startedAt: number;
  shards: Map<number, NewShard>;
  held: HeldItem[];
  heldEvents: number;
  heldBytes: number;
  timeoutAt: number;
  /** Old deliveries whose owner in the new set is not READY yet, per owner: the last `BEFORE_READY_MS`. */
  early: Map<number, Array<{ t: string; d: Uint8Array; at: number }>>;
  /** Loaded shards already told to the coordinator. */
  reported: Set<number>;
  tick: TimerId | undefined;
  switching: boolean;
  /** Whether this process emits GATEHOUSE_RESHARDED at the switch (one process of a cluster does). */
  announce: boolean;
  /** After the switch: how much of the hold went to the journal. */
  drained: number;
  /** `counts.repeatsRemoved` when it began. */
  repeatsAtStart: number;
}

/** Why a reshard was not started. */
export type ReshardRefusal = "not_needed" | "budget" | "invalid" | "busy" | "unavailable" | "error";

/** What a request got: the reshard started, or why not. */
export type ReshardAnswer =
  | { reshard: true; count: number; why: string }
  | { reshard: false; why: string; reason: ReshardRefusal };

/** The last reshard's outcome, for status and logs. */
export interface ReshardOutcome {
  outcome: "switched" | "aborted" | "refused";
  from: number;
  to: number | null;
  trigger: ReshardTrigger["kind"];
  why: string;
  at: number;
  /** From the trigger to the switch (switched only). */
  tookMs?: number;
}

export interface ReshardStatus {
  state: "idle" | "preparing" | "settling";
  /** The count that delivers now. */
  delivering: number;
  /** The count coming up (preparing), or the one just replaced (settling). */
  other: number | null;
  ready?: number;
  loaded?: number;
  total?: number;
  heldEvents?: number;
  heldBytes?: number;
  startedAt?: number;
  last: ReshardOutcome | null;
  counts: ReshardCounts;
}

/** Counters for metrics. */
export interface ReshardCounts {
  started: number;
  switched: number;
  aborted: number;
  refused: Record<ReshardRefusal, number>;
  /** Held events of the new set marked repeats (the old set delivered them), and after the switch. */
  repeatsRemoved: number;
  /** New-set events delivered at the switch from the hold, and old-set events dropped after it. */
  released: number;
  oldDropped: number;
  lastSwitchMs: number | null;
}

const textDecoder = new TextDecoder();
const GUILD_ID = new TextEncoder().encode("guild_id");
const ID = new TextEncoder().encode("id");
const EMPTY = new Uint8Array(0);

export class Resharder {
  readonly #o: ResharderOptions;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #windowMs: number;
  readonly #guildWaitMs: number;
  #current: number;
  #phase: "idle" | "preparing" | "settling" = "idle";
  #next: Preparing | null = null;
  /** The count replaced by the last switch, while its dispatches are still arriving (settling). */
  #previous: number | null = null;
  #filter: OverlapFilter | null = null;
  /** The switched set whose hold is still being handed to the journal (its new events join the hold). */
  #release: Preparing | null = null;
  #settleTimer: TimerId | undefined;
  #periodic: TimerId | undefined;
  #stopped = false;
  /** Guilds of each running shard's last READY. */
  readonly #guilds = new Map<number, number>();
  #last: ReshardOutcome | null = null;
  #answering4011: Promise<ReshardAnswer> | null = null;
  readonly counts: ReshardCounts = {
    started: 0,
    switched: 0,
    aborted: 0,
    refused: { not_needed: 0, budget: 0, invalid: 0, busy: 0, unavailable: 0, error: 0 },
    repeatsRemoved: 0,
    released: 0,
    oldDropped: 0,
    lastSwitchMs: null,
  };
  /** The sinks handed to shards, one per count (a shard keeps its sink for its life). */
  readonly #sinks = new Map<number, DispatchSink>();

  constructor(options: ResharderOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.logger;
    this.#current = options.count;
    this.#windowMs = options.windowMs ?? 30_000;
    this.#guildWaitMs = options.guildWaitMs ?? 15_000;
  }

  /** The count that delivers. */
  get count(): number {
    return this.#current;
  }

  /** Starts the periodic check (when it has an interval and resharding can run here). */
  start(): void {
    if (this.#o.unavailable || this.#o.intervalMs <= 0) return;
    const every = this.#o.intervalMs;
    const check = () => {
      this.#periodic = this.#clock.setTimeout(check, every);
      void this.request({ kind: "periodic" });
    };
    this.#periodic = this.#clock.setTimeout(check, every);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#periodic !== undefined) this.#clock.clearTimeout(this.#periodic);
    if (this.#settleTimer !== undefined) this.#clock.clearTimeout(this.#settleTimer);
    if (this.#next?.tick !== undefined) this.#clock.clearTimeout(this.#next.tick);
  }

  /** The sink for the shards of `count`. */
  sinkFor(count: number): DispatchSink {
    let sink = this.#sinks.get(count);
    if (!sink) {
      sink = {
        dispatch: (shard, t, s, payload, start) => this.#dispatch(count, shard, t, s, payload, start),
        internal: (shard, t, d) => this.#internal(count, shard, t, d),
      };
      this.#sinks.set(count, sink);
    }
    return sink;
  }

  /**
   * A shard's session started or ended (the pool's `onSession`). Returns false when it is not the
   * journal's business: the new set's sessions are held until the switch, and a replaced set's are
   * forgotten.
   */
  onSession(key: ShardKey, session: ResumableSession | null): boolean {
    if (key.count === this.#current && this.#release) {
      this.#release.held.push({ kind: "session", shard: key.id, session: session && { ...session } });
      return false;
    }
    if (key.count === this.#current) return true;
    const next = this.#next;
    if (next && key.count === next.count) {
      next.held.push({ kind: "session", shard: key.id, session: session && { ...session } });
      return false;
    }
    // A replaced (or given up) set: its rows go, nothing of it comes back.
    if (session === null) this.#o.journal.sessionLost(key.count, key.id);
    return false;
  }

  /**
   * A shard closed for good (the pool's `onFatal`). Returns true when the resharder answers it: a new
   * shard's failure gives its reshard up, a 4011 on the running set starts one.
   */
  onFatal(failure: PoolFailure): boolean {
    if (this.#next && failure.count === this.#next.count) {
      this.#abort(
        `new shard ${failure.shard} of ${failure.count} was closed with ${failure.code}: ${failure.reason}`,
      );
      return true;
    }
    if (failure.code !== 4011 || failure.count !== this.#current || this.#o.unavailable) return false;
    if (this.#next) return true; // a reshard is under way: it answers the 4011 already
    // Every shard of a set too small closes with 4011: one request answers them all.
    this.#answering4011 ??= this.request({ kind: "close_4011" }).finally(() => (this.#answering4011 = null));
    void this.#answering4011.then((result) => {
      if (!result.reshard && !this.#next) this.#o.onUnanswered4011?.(failure);
    });
    return true;
  }

  /** Decides a trigger and, when it says so, starts the new set. */
  async request(trigger: ReshardTrigger): Promise<ReshardAnswer> {
    const refuse = (reason: ReshardRefusal, why: string): ReshardAnswer => {
      this.counts.refused[reason]++;
      const level = trigger.kind === "periodic" && reason === "not_needed" ? "debug" : "warn";
      this.#log[level]("reshard ({trigger}) not started: {why}", { trigger: trigger.kind, why });
      if (trigger.kind !== "periodic" || reason !== "not_needed") {
        this.#last = {
          outcome: "refused",
          from: this.#current,
          to: null,
          trigger: trigger.kind,
          why,
          at: this.#clock.now(),
        };
      }
      return { reshard: false, why, reason };
    };
    if (this.#o.unavailable) return refuse("unavailable", this.#o.unavailable);
    if (this.#stopped) return refuse("unavailable", "gatehouse is stopping");
    if (this.#phase !== "idle") {
      return refuse(
        "busy",
        `a reshard is under way (${this.#current} → ${this.#next?.count ?? this.#current})`,
      );
    }
    let info: GatewayBotInfo;
    try {
      info = await this.#o.fetchInfo();
    } catch (error) {
      return refuse("error", `GET /gateway/bot failed: ${(error as Error).message}`);
    }
    if (this.#phase !== "idle") return refuse("busy", "a reshard started meanwhile");
    if (this.#stopped) return refuse("unavailable", "gatehouse is stopping");
    const limit = info.session_start_limit;
    const decision = decideReshard({
      trigger,
      currentCount: this.#current,
      guilds: this.guilds(),
      recommended: info.shards,
      maxConcurrency: limit.max_concurrency,
      sessionStartsRemaining: limit.remaining,
      reserve: this.#o.reserve,
      threshold: this.#o.threshold,
      multipleOf: this.#o.coordinator ? this.#current : 1,
    });
    if (!decision.reshard) return refuse(decision.reason, decision.why);
    const coordinator = this.#o.coordinator;
    if (coordinator) {
      let busy: string | null;
      try {
        busy = await coordinator.start({
          count: decision.count,
          from: this.#current,
          trigger: trigger.kind,
          why: decision.why,
        });
      } catch (error) {
        return refuse("error", `cannot start the reshard in Redis: ${(error as Error).message}`);
      }
      if (busy !== null) return refuse("busy", busy);
      return decision;
    }
    this.#begin(decision.count, trigger.kind, decision.why, limit.max_concurrency, null);
    return decision;
  }

  /**
   * Cluster mode: the bot reshards to `count`; this member runs new shards `ids` (added to the pool by
   * the caller as their leases are taken) and holds their events until `switchNow`.
   */
  follow(plan: {
    count: number;
    ids: number[];
    trigger: ReshardTrigger["kind"];
    why: string;
    startedAt: number;
    maxConcurrency: number;
  }): boolean {
    if (this.#phase !== "idle" || plan.count === this.#current) return false;
    this.#begin(plan.count, plan.trigger, plan.why, plan.maxConcurrency, plan.ids, plan.startedAt);
    return true;
  }

  /** Cluster mode: the bot switches to the new set now; `announce`: this member emits GATEHOUSE_RESHARDED. */
  switchNow(count: number, announce: boolean): boolean {
    const next = this.#next;
    if (!next || next.count !== count) return false;
    next.announce = announce;
    this.#switch(next);
    return true;
  }

  /** Cluster mode: the bot switched to `count` without this member taking part (it joined meanwhile). */
  adopt(count: number): void {
    if (this.#phase !== "idle" || count === this.#current) return;
    this.#current = count;
    this.#guilds.clear();
    this.#o.onSwitched?.(count);
  }

  /** Cluster mode: the bot gave the reshard up (this member or another). */
  abortNow(count: number, why: string): void {
    if (this.#next?.count === count) this.#abort(why, false);
  }

  /** Guilds of the running set, from its READYs. */
  guilds(): number {
    let n = 0;
    for (const count of this.#guilds.values()) n += count;
    return n;
  }

  status(): ReshardStatus {
    const next = this.#next;
    const base = {
      state: this.#phase,
      delivering: this.#current,
      other: next?.count ?? this.#previous,
      last: this.#last,
      counts: this.counts,
    };
    if (!next) return base;
    let ready = 0, loaded = 0;
    for (const shard of next.shards.values()) {
      if (shard.readyAt !== null) ready++;
      if (shard.loaded) loaded++;
    }
    return {
      ...base,
      ready,
      loaded,
      total: next.count,
      heldEvents: next.heldEvents,
      heldBytes: next.heldBytes,
      startedAt: next.startedAt,
    };
  }

  // ---- the dispatch path ----

  #dispatch(count: number, shard: number, t: string, s: number, payload: Uint8Array, start: number): void {
    if (count === this.#current) {
      if (this.#release !== null) {
        this.#hold(this.#release, shard, t, s, payload, start);
        return;
      }
      if (t === "READY") this.#noteGuilds(shard, payload, start);
      const filter = this.#filter;
      if (filter === null) {
        this.#o.sink.dispatch(shard, t, s, payload, start);
      } else if (this.#phase === "preparing") {
        this.#o.sink.dispatch(shard, t, s, payload, start);
        this.#rememberOld(filter, t, payload, start);
      } else {
        // Settling: the new set delivers; what the old set delivered last is not delivered again.
        const d = dataOf(payload.subarray(start)) ?? EMPTY;
        if (filter.offer("new", t, d) === "deliver") this.#o.sink.dispatch(shard, t, s, payload, start);
        else {
          this.counts.repeatsRemoved++;
          this.#o.sink.skip(shard, t, s, payload, start);
        }
      }
      return;
    }
    const next = this.#next;
    if (next && count === next.count) {
      this.#hold(next, shard, t, s, payload, start);
      return;
    }
    // The replaced set after the switch, or a set given up: the delivering set has these events.
    this.counts.oldDropped++;
  }

  #internal(count: number, shard: number, t: string, d: Record<string, unknown>): void {
    if (count === this.#current && this.#release) this.#release.held.push({ kind: "internal", shard, t, d });
    else if (count === this.#current) this.#o.sink.internal(shard, t, d);
    else if (this.#next && count === this.#next.count) {
      this.#next.held.push({ kind: "internal", shard, t, d });
    }
  }

  /** An old delivery while the new set prepares: remembered if its guild's new owner can see it. */
  #rememberOld(filter: OverlapFilter, t: string, payload: Uint8Array, start: number): void {
    const next = this.#next!;
    const d = dataOf(payload.subarray(start)) ?? EMPTY;
    const owner = ownerOf(d, next.count);
    const now = this.#clock.now();
    if (next.shards.get(owner)?.readyAt == null) {
      // Not READY yet: kept for a moment, in case the READY is only behind in our socket.
      let early = next.early.get(owner);
      if (!early) next.early.set(owner, early = []);
      early.push({ t, d: d.slice(), at: now });
      while (early.length > 0 && early[0].at < now - BEFORE_READY_MS) early.shift();
      return;
    }
    this.#offerOld(filter, t, d, now);
  }

  #offerOld(filter: OverlapFilter, t: string, d: Uint8Array, at: number): void {
    if (filter.offer("old", t, d, at) === "drop-repeat") {
      // The new set had it first: its held copy is the repeat (the old set delivers it now).
      const held = filter.matched as HeldEvent | undefined;
      if (held && !held.repeat) {
        held.repeat = true;
        this.counts.repeatsRemoved++;
      }
    }
  }

  #hold(next: Preparing, shard: number, t: string, s: number, payload: Uint8Array, start: number): void {
    const bytes = payload.slice(start);
    const item: HeldEvent = { kind: "event", shard, t, s, bytes, repeat: false };
    next.held.push(item);
    next.heldEvents++;
    next.heldBytes += bytes.length;
    const d = dataOf(bytes) ?? EMPTY;
    const filter = this.#filter!;
    const preparing = this.#next === next;
    if (preparing && t === "READY") this.#newReady(next, shard, bytes, filter);
    else if (preparing && t === "GUILD_CREATE") this.#newGuild(next, shard, d);
    if (filter.offer("new", t, d, undefined, item) === "drop-repeat") {
      item.repeat = true;
      this.counts.repeatsRemoved++;
    }
    if (preparing && next.heldBytes > this.#o.maxHeldBytes) {
      this.#abort(
        `the new set's events held until the switch passed [resharding] max_held ` +
          `(${next.heldBytes} bytes)`,
      );
    }
  }

  #newReady(next: Preparing, shard: number, bytes: Uint8Array, filter: OverlapFilter): void {
    const state = next.shards.get(shard);
    if (!state) return;
    const now = this.#clock.now();
    state.readyAt = now;
    state.lastGuildAt = now;
    state.waiting = new Set(readyGuildIds(bytes));
    state.loaded = state.waiting.size === 0;
    // What the old set delivered for this shard's guilds just before: possibly in flight around the READY.
    for (const early of next.early.get(shard) ?? []) {
      if (early.at >= now - BEFORE_READY_MS) this.#offerOld(filter, early.t, early.d, early.at);
    }
    next.early.delete(shard);
    this.#log.info("reshard {from} → {to}: new shard {shard} is READY ({guilds} guild(s) to load)", {
      from: this.#current,
      to: next.count,
      shard,
      guilds: state.waiting.size,
    });
    this.#checkReady(next);
  }

  #newGuild(next: Preparing, shard: number, d: Uint8Array): void {
    const state = next.shards.get(shard);
    if (!state?.waiting || state.loaded) return;
    const id = stringValue(fieldOf(d, ID));
    if (id === null || !state.waiting.delete(id)) return;
    state.lastGuildAt = this.#clock.now();
    if (state.waiting.size === 0) {
      state.loaded = true;
      this.#checkReady(next);
    }
  }

  #checkReady(next: Preparing): void {
    const coordinator = this.#o.coordinator;
    if (coordinator) {
      const loaded = [...next.shards].filter(([id, s]) => s.loaded && !next.reported.has(id)).map(([id]) =>
        id
      );
      for (const id of loaded) next.reported.add(id);
      if (loaded.length > 0) coordinator.loaded(loaded);
      return;
    }
    for (const shard of next.shards.values()) if (!shard.loaded) return;
    if (next.switching) return;
    next.switching = true;
    // Not inside the shard's dispatch: the switch hands the whole hold to the journal.
    this.#clock.setTimeout(() => {
      if (this.#next === next) this.#switch(next);
    }, 0);
  }

  // ---- lifecycle of a reshard ----

  #begin(
    count: number,
    trigger: ReshardTrigger["kind"],
    why: string,
    maxConcurrency: number,
    ids: number[] | null,
    startedAt = this.#clock.now(),
  ): void {
    const now = startedAt;
    const rounds = Math.ceil(count / Math.max(1, maxConcurrency));
    const timeoutMs = this.#o.timeoutMs > 0 ? this.#o.timeoutMs : 120_000 + 2 * rounds * IDENTIFY_ROUND_MS;
    const shards = new Map<number, NewShard>();
    for (let id = 0; id < count; id++) {
      shards.set(id, { readyAt: null, waiting: null, lastGuildAt: 0, loaded: false });
    }
    const next: Preparing = {
      count,
      trigger,
      why,
      startedAt: now,
      shards,
      held: [],
      heldEvents: 0,
      heldBytes: 0,
      timeoutAt: now + timeoutMs,
      early: new Map(),
      reported: new Set(),
      tick: undefined,
      switching: false,
      announce: true,
      drained: 0,
      repeatsAtStart: this.counts.repeatsRemoved,
    };
    this.#next = next;
    this.#phase = "preparing";
    this.#filter = new OverlapFilter({ clock: this.#clock, windowMs: this.#windowMs });
    this.counts.started++;
    this.#log.info(
      "resharding ({trigger}): {why}; the new set identifies beside the running one (at most {s} s)",
      { trigger, why, s: Math.round(timeoutMs / 1000) },
    );
    const tick = () => {
      if (this.#next !== next) return;
      next.tick = this.#clock.setTimeout(tick, TICK_MS);
      this.#tick(next);
    };
    next.tick = this.#clock.setTimeout(tick, TICK_MS);
    // Cluster mode: the caller adds them as it takes their leases.
    if (ids === null) { for (let id = 0; id < count; id++) this.#o.pool.add({ id, count }); }
    else this.#checkReady(next);
  }

  #tick(next: Preparing): void {
    const now = this.#clock.now();
    for (const [id, shard] of next.shards) {
      if (shard.readyAt === null || shard.loaded) continue;
      if (now - shard.lastGuildAt >= this.#guildWaitMs) {
        shard.loaded = true;
        this.#log.warn(
          "reshard {from} → {to}: new shard {shard} got no GUILD_CREATE for {n} guild(s) of its READY in " +
            "{s} s; counted as loaded (they come when Discord has them)",
          {
            from: this.#current,
            to: next.count,
            shard: id,
            n: shard.waiting?.size ?? 0,
            s: this.#guildWaitMs / 1000,
          },
        );
      }
    }
    this.#checkReady(next);
    if (this.#next === next && !next.switching && now >= next.timeoutAt) {
      const late = [...next.shards].filter(([, s]) => !s.loaded).map(([id]) => id);
      this.#abort(
        `new shard(s) ${late.join(", ")} of ${next.count} not READY with their guilds within ` +
          `${Math.round((now - next.startedAt) / 1000)} s`,
      );
    }
  }

  #switch(next: Preparing): void {
    const from = this.#current;
    const to = next.count;
    const now = this.#clock.now();
    if (next.tick !== undefined) this.#clock.clearTimeout(next.tick);
    const journal = this.#o.journal;
    // The old sessions end here for the journal (their rows go); the new ones start with their items.
    for (let id = 0; id < from; id++) journal.sessionLost(from, id);
    this.#next = null;
    this.#release = next;
    this.#previous = from;
    this.#current = to;
    this.#phase = "settling";
    this.#guilds.clear();
    const repeats = this.counts.repeatsRemoved - next.repeatsAtStart;
    if (next.announce) {
      this.#o.sink.internal(0, "GATEHOUSE_RESHARDED", {
        old_count: from,
        new_count: to,
        trigger: next.trigger,
        reason: next.why,
        started_at: new Date(next.startedAt).toISOString(),
        took_ms: now - next.startedAt,
        held_events: next.heldEvents,
        repeats_removed: repeats,
      });
    }
    this.counts.switched++;
    this.counts.lastSwitchMs = now - next.startedAt;
    this.#last = {
      outcome: "switched",
      from,
      to,
      trigger: next.trigger,
      why: next.why,
      at: now,
      tookMs: now - next.startedAt,
    };
    this.#log.info(
      "resharded {from} → {to} in {s} s: the new set delivers ({events} held event(s), {repeats} repeat(s) " +
        "removed so far); the old set closes",
      { from, to, s: ((now - next.startedAt) / 1000).toFixed(1), events: next.heldEvents, repeats },
    );
    for (let id = 0; id < from; id++) void this.#o.pool.remove({ id, count: from }, 1000);
    this.#o.onSwitched?.(to);
    this.#drain(next);
  }

  /**
   * Hands the hold to the journal in its order, a slice per turn (heartbeats and reads go on between
   * slices); what the new set receives meanwhile joins the end of the hold. Then the overlap settles.
   */
  #drain(next: Preparing): void {
    if (this.#release !== next) return;
    const sink = this.#o.sink;
    const journal = this.#o.journal;
    const to = next.count;
    const held = next.held;
    const deadline = performance.now() + (this.#o.drainSliceMs ?? DRAIN_SLICE_MS);
    let i = next.drained;
    for (let n = 0; i < held.length; i++, n++) {
      if ((n & 255) === 255 && performance.now() >= deadline) break;
      const item = held[i];
      if (item.kind === "session") {
        if (item.session) journal.sessionStarted(to, item.shard, item.session);
        else journal.sessionLost(to, item.shard);
      } else if (item.kind === "internal") {
        sink.internal(item.shard, item.t, item.d);
      } else {
        if (item.t === "READY") this.#noteGuilds(item.shard, item.bytes, 0);
        if (item.repeat) sink.skip(item.shard, item.t, item.s, item.bytes, 0);
        else {
          sink.dispatch(item.shard, item.t, item.s, item.bytes, 0);
          this.counts.released++;
        }
      }
    }
    next.drained = i;
    if (i < held.length) {
      this.#clock.setTimeout(() => this.#drain(next), 0);
      return;
    }
    next.held = [];
    this.#release = null;
    this.#settleTimer = this.#clock.setTimeout(() => {
      this.#settleTimer = undefined;
      const counts = this.#filter?.counts;
      this.#filter = null;
      this.#previous = null;
      this.#phase = "idle";
      this.#log.info("reshard overlap over: {dropped} repeat(s) removed in all", {
        dropped: counts?.dropped ?? 0,
      });
    }, this.#windowMs);
  }

  #abort(why: string, tell = true): void {
    const next = this.#next;
    if (!next) return;
    if (tell) this.#o.coordinator?.giveUp(why);
    if (next.tick !== undefined) this.#clock.clearTimeout(next.tick);
    this.#next = null;
    this.#filter = null;
    this.#phase = "idle";
    this.counts.aborted++;
    this.#last = {
      outcome: "aborted",
      from: this.#current,
      to: next.count,
      trigger: next.trigger,
      why,
      at: this.#clock.now(),
    };
    this.#log.error("reshard {from} → {to} given up: {why}; the {from} running shard(s) keep delivering", {
      from: this.#current,
      to: next.count,
      why,
    });
    for (let id = 0; id < next.count; id++) void this.#o.pool.remove({ id, count: next.count }, 1000);
  }

  #noteGuilds(shard: number, payload: Uint8Array, start: number): void {
    this.#guilds.set(shard, readyGuildIds(payload.subarray(start)).length);
  }
}

/** The new-set shard that owns the guild of `d` (`guild_id`; shard 0 for events without one). */
function ownerOf(d: Uint8Array, count: number): number {
  const id = stringValue(fieldOf(d, GUILD_ID));
  if (id === null || !/^\d{1,20}$/.test(id)) return 0;
  return Number((BigInt(id) >> 22n) % BigInt(count));
}

/** The text of a JSON string value's bytes (with quotes), or null. */
function stringValue(bytes: Uint8Array | null): string | null {
  if (bytes === null || bytes.length < 2 || bytes[0] !== 0x22) return null;
  return textDecoder.decode(bytes.subarray(1, bytes.length - 1));
}

/** The guild ids of a READY payload (`d.guilds[].id`); none when it cannot be read. */
function readyGuildIds(payload: Uint8Array): string[] {
  try {
    const guilds = JSON.parse(textDecoder.decode(payload))?.d?.guilds;
    if (!Array.isArray(guilds)) return [];
    return guilds.map((g) => g?.id).filter((id): id is string => typeof id === "string");
  } catch {
    return [];
  }
}
