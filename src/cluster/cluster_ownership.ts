/**
 * Cluster mode's shard ownership: many processes of one bot share Redis, nobody lists shard ids per
 * process. Each process registers in the membership, computes its share of every shard from the live
 * members (`shareOf`), and owns a shard of its share once it holds the shard's lease.
 *
 * Names (keys.ts), under the bot's Redis prefix (`[redis] prefix`, e.g. `gatehouse`) as a hash tag:
 * - `{gatehouse}:lease:<count>:<id>`: the lease of shard `id` of `count` (string = owner's node name, PX);
 * - `{gatehouse}:nodes`: the members (sorted set, node name → end of its registration, ms).
 *
 * Every third of the lease a round re-registers, re-reads the members, renews what it holds and tries
 * to take the rest of its share. A shard of its share leased by a live process that no longer should
 * own it is taken once that process releases it; a dead process's lease is taken when it expires.
 * A held shard beyond the share is handed off: `handOff(key)` (the pool stops the shard, flushes its
 * events, closes with 4000) and only then the lease is released. While handing off, the shard is no
 * longer `owned()` (the pool does not start it again) but still `holds()` (it may still flush and
 * store its session), and its lease is still renewed.
 *
 * Fencing as `LeaseOwnership` does it: a shard is held until a local deadline two thirds of the lease
 * after the start of the last successful renewal, so a process that cannot renew stops acting for the
 * shard a third of a lease before another may take it.
 */
import { attempt, HeldLeases } from "../pool/held_leases.ts";
import { type LeaseStore, type ShardKey, type ShardOwnership } from "../pool/ownership.ts";
import { type Clock, systemClock, type TimerId } from "../util/clock.ts";
import { clusterKeys } from "./keys.ts";
import { type Membership, shareOf } from "./members.ts";

/** `{<prefix>}:lease:<count>:<id>` (keys.ts) */
export function leaseName(prefix: string, key: ShardKey): string {
  return clusterKeys(prefix).lease(key.count, key.id);
}

/** `{<prefix>}:nodes` (keys.ts) */
export function nodesKey(prefix: string): string {
  return clusterKeys(prefix).nodes;
}

export interface ClusterOwnershipOptions {
  store: LeaseStore;
  members: Membership;
  /** This process's name (host name + pid, say): unique across processes and hosts. */
  node: string;
  /** Every shard of the bot, of every shard count running; each process takes its share. */
  keys: ShardKey[];
  /** How long a lease (and a registration) lasts without renewal. */
  leaseMs: number;
  /** The bot's Redis prefix. */
  prefix: string;
  /**
   * At start, registers and waits this long before taking any lease (default 0): processes started
   * together then see each other first, instead of the first taking every shard (identifying them all)
   * and handing most of them off again at once.
   */
  settleMs?: number;
  /** Stops a shard this process no longer should own; its lease is released once this resolves. */
  handOff: (key: ShardKey) => Promise<void>;
  /**
   * Awaited before each attempt to take a lease this process does not hold; false skips the attempt
   * (the next round tries again). Cluster mode fences the journal's older events of the shard there and
   * waits for the deliveries under way (RedisSink.fence).
   */
  beforeAcquire?: (key: ShardKey) => Promise<boolean>;
  clock?: Clock;
  /** A store, membership or hand-off failure; ownership keeps trying. */
  onError?: (error: Error) => void;
}

export class ClusterOwnership implements ShardOwnership {
  readonly #o: ClusterOwnershipOptions;
  readonly #clock: Clock;
  /** Held leases by name; the ones being handed off are hidden (held, not owned). */
  readonly #held: HeldLeases;
  /** The members last seen (this process among them). */
  #live: string[];
  #share: { live: string; names: Set<string>; keys: ShardKey[] } | null = null;
  #timer: TimerId | null = null;
  /** Ends the wait of `settleMs` (stop() during it). */
  #settled: (() => void) | null = null;
  #inFlight = false;
  #running = false;
  /** Every shard of the bot (the options' `keys`, until `setKeys`). */
  #keys: ShardKey[];
  /** Held besides the share, never handed off while pinned (a reshard's new shards), by lease name. */
  #pinned = new Map<string, ShardKey>();

  constructor(options: ClusterOwnershipOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#held = new HeldLeases(this.#clock, options.leaseMs);
    this.#live = [options.node];
    this.#keys = options.keys;
  }

  /**
   * Also holds `keys` (taken in the next rounds, renewed, never handed off while pinned), whatever the
   * share says: a reshard's new shards, run beside the old ones they overlap. Replaces the pins before;
   * a held key no longer pinned nor of the share is handed off.
   */
  pin(keys: ShardKey[]): void {
    this.#pinned = new Map(keys.map((k) => [this.#name(k), k]));
    this.#retire();
    if (this.#running && !this.#inFlight && keys.length > 0) void this.#round();
  }

  /** The bot's shards are `keys` from now on (a reshard's switch): shares follow; held others are handed off. */
  setKeys(keys: ShardKey[]): void {
    this.#keys = keys;
    this.#share = null;
    this.#retire();
  }

  /** Hands off at once (hidden from `owned()` now) what is held beyond the share and the pins. */
  #retire(): void {
    if (!this.#running) return;
    const share = this.#shareNow();
    for (const [name, h] of this.#held.entries()) {
      if (share.names.has(name) || this.#pinned.has(name)) continue;
      if (!this.#held.hidden(name) && this.#held.holds(name)) this.#handOff(name, h.key);
    }
    this.#held.changed();
  }

  /** Resolves once the first round is done (after `settleMs`, when set). */
  async start(): Promise<void> {
    this.#running = true;
    const settleMs = this.#o.settleMs ?? 0;
    if (settleMs > 0) {
      // Registered for the wait and a lease beyond it, so the others count this process meanwhile.
      const { members, node, leaseMs } = this.#o;
      const live = await this.#try(() => members.beat(node, settleMs + leaseMs));
      if (live !== null && this.#running) this.#live = live.includes(node) ? live : [...live, node].sort();
      await new Promise<void>((resolve) => {
        this.#settled = resolve;
        this.#timer = this.#clock.setTimeout(resolve, settleMs);
      });
      this.#settled = null;
      this.#timer = null;
      if (!this.#running) return;
    }
    await this.#round();
    this.#schedule();
  }

  owned(): ShardKey[] {
    return this.#held.owned();
  }

  holds(key: ShardKey): boolean {
    return this.#running && this.#held.holds(this.#name(key));
  }

  /** The members this process saw last, sorted. */
  members(): string[] {
    return [...this.#live];
  }

  subscribe(listener: (owned: ShardKey[]) => void): () => void {
    return this.#held.subscribe(listener);
  }

  /** Leaves the membership and releases every lease, without hand-offs (the pool stops on its own). */
  async stop(): Promise<void> {
    if (!this.#running) return;
    this.#running = false;
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    this.#settled?.();
    const held = this.#held.clear();
    this.#held.changed();
    this.#held.close();
    const { store, members, node } = this.#o;
    await Promise.all([
      this.#try(() => members.leave(node)),
      ...held.map((name) => this.#try(() => store.release(name, node))),
    ]);
  }

  #name(key: ShardKey): string {
    return leaseName(this.#o.prefix, key);
  }

  #try<T>(operation: () => Promise<T>): Promise<T | null> {
    return attempt(operation, this.#o.onError);
  }

  #schedule(): void {
    if (!this.#running) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = null;
      if (!this.#inFlight) void this.#round();
      this.#schedule();
    }, Math.max(1, Math.floor(this.#o.leaseMs / 3)));
  }

  /** This process's share of the keys among the members last seen (computed again when they change). */
  #shareNow(): { names: Set<string>; keys: ShardKey[] } {
    const live = this.#live.join("\n");
    if (this.#share?.live !== live) {
      const keys = shareOf(this.#live, this.#o.node, this.#keys);
      this.#share = { live, keys, names: new Set(keys.map((k) => this.#name(k))) };
    }
    return this.#share;
  }

  async #round(): Promise<void> {
    const { members, node, leaseMs } = this.#o;
    this.#inFlight = true;
    try {
      const live = await this.#try(() => members.beat(node, leaseMs));
      if (!this.#running) {
        // stop() left while this beat was under way: leave again, or others plan with a ghost.
        if (live !== null) await this.#try(() => members.leave(node));
        return;
      }
      // Without an answer, the members last seen (the leases keep it safe).
      if (live !== null) this.#live = live.includes(node) ? live : [...live, node].sort();
      const share = this.#shareNow();
      const targets = new Map<string, ShardKey>(share.keys.map((k) => [this.#name(k), k]));
      for (const [name, key] of this.#pinned) targets.set(name, key);
      for (const [name, h] of this.#held.entries()) targets.set(name, h.key);
      const wanted = new Set([...share.names, ...this.#pinned.keys()]);
      await Promise.all([...targets].map(([name, key]) => this.#refresh(name, key, wanted)));
    } finally {
      this.#inFlight = false;
    }
    if (!this.#running) return;
    this.#retire();
  }

  /** Renews a held lease, or takes one of the share; a lapsed lease beyond the share is forgotten. */
  async #refresh(name: string, key: ShardKey, share: Set<string>): Promise<void> {
    const { store, node, leaseMs } = this.#o;
    const started = this.#clock.now();
    const entry = this.#held.get(name);
    const isHeld = this.#held.holds(name);
    if (!isHeld && this.#held.hidden(name)) return; // the hand-off ends it
    if (!isHeld && !share.has(name)) {
      this.#held.drop(name);
      return;
    }
    if (!isHeld && this.#o.beforeAcquire) {
      const ready = await this.#try(() => this.#o.beforeAcquire!(key));
      if (ready !== true || !this.#running || this.#held.get(name) !== entry) return;
    }
    const ok = await this.#try(() =>
      isHeld ? store.renew(name, node, leaseMs) : store.acquire(name, node, leaseMs)
    );
    if (!this.#running) {
      // stop() already released what it held: an acquisition answered since is released too.
      if (ok === true && !isHeld) await this.#try(() => store.release(name, node));
      return;
    }
    // A hand-off that released the lease meanwhile wins over this older answer.
    if (this.#held.get(name) !== entry) return;
    if (ok === true) this.#held.renewed(name, key, started);
    else if (ok === false) this.#held.drop(name);
    // null (the store failed): the local deadline decides.
  }

  /** Stops owning `key` (the pool stops it), then releases its lease once the hook resolves. */
  #handOff(name: string, key: ShardKey): void {
    this.#held.hide(name);
    void (async () => {
      try {
        await this.#o.handOff(key);
      } catch (error) {
        this.#o.onError?.(error instanceof Error ? error : new Error(String(error)));
      }
      if (!this.#running) return; // stop() released it
      this.#held.drop(name);
      this.#held.changed();
      await this.#try(() => this.#o.store.release(name, this.#o.node));
    })();
  }
}
