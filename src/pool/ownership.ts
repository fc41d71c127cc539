/**
 * Shard ownership: which shards this process may run, now. The pool starts what it is given and stops
 * what it loses; ownership decides.
 *
 * - `StaticOwnership`: the shard plan's ids, for the whole run (one process, or ids split by hand).
 * - `LeaseOwnership`: a shard is ours while we hold its lease in a `LeaseStore`, renewed on a timer and
 *   checked against a local deadline (fencing: a process that could not renew in time stops claiming
 *   the shard *before* the lease can expire elsewhere; the deadlines are in held_leases.ts).
 *   `LocalLeaseStore` keeps leases in memory (one process, tests); cluster mode's `RedisLeaseStore`
 *   (src/cluster/redis_leases.ts) passes the same contract suite (tests/pool/ownership_contract.ts).
 * - Cluster mode's `ClusterOwnership` (src/cluster/cluster_ownership.ts): leases as here, for this
 *   process's share of every shard among the live members, with hand-offs as the members change.
 */
import { type Clock, systemClock, type TimerId } from "../util/clock.ts";
import { attempt, HeldLeases } from "./held_leases.ts";

/** A shard of one shard count: resharding runs two counts side by side. */
export interface ShardKey {
  id: number;
  count: number;
}

export function shardKeyName(key: ShardKey): string {
  return `${key.count}:${key.id}`;
}

export interface ShardOwnership {
  /** Begins owning (acquiring leases, …); resolves once the first set of owned shards is known. */
  start(): Promise<void>;
  /** The shards this process owns now, by shard count then id. */
  owned(): ShardKey[];
  /** True while this process may still act for `key` (send, write its session). */
  holds(key: ShardKey): boolean;
  /** Called with the new set whenever it changes; returns the unsubscribe function. */
  subscribe(listener: (owned: ShardKey[]) => void): () => void;
  /** Gives up every shard (releasing leases) and stops renewing. */
  stop(): Promise<void>;
}

function sorted(keys: ShardKey[]): ShardKey[] {
  return [...keys].sort((a, b) => a.count - b.count || a.id - b.id);
}

/** The plan's shards, from start to stop. */
export class StaticOwnership implements ShardOwnership {
  readonly #keys: ShardKey[];
  readonly #names: Set<string>;
  #running = false;

  constructor(keys: ShardKey[]) {
    this.#keys = sorted(keys);
    this.#names = new Set(keys.map(shardKeyName));
  }

  start(): Promise<void> {
    this.#running = true;
    return Promise.resolve();
  }

  owned(): ShardKey[] {
    return this.#running ? [...this.#keys] : [];
  }

  holds(key: ShardKey): boolean {
    return this.#running && this.#names.has(shardKeyName(key));
  }

  subscribe(_listener: (owned: ShardKey[]) => void): () => void {
    return () => {};
  }

  stop(): Promise<void> {
    this.#running = false;
    return Promise.resolve();
  }
}

/** Leases by name, each with one owner and an expiry. Every operation is atomic. */
export interface LeaseStore {
  /** Takes `name` for `owner` for `ttlMs` when it is free or already `owner`'s; true when held. */
  acquire(name: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Extends `owner`'s lease to `ttlMs` from now; false when it is not (or no longer) `owner`'s. */
  renew(name: string, owner: string, ttlMs: number): Promise<boolean>;
  /** Deletes the lease if it is `owner`'s (compare-and-delete); true when it was. */
  release(name: string, owner: string): Promise<boolean>;
  /** Who holds `name` now, or null. */
  holder(name: string): Promise<string | null>;
}

/** Leases in this process's memory, expiring on `clock`. */
export class LocalLeaseStore implements LeaseStore {
  readonly #clock: Clock;
  readonly #leases = new Map<string, { owner: string; expires: number }>();

  constructor(clock: Clock = systemClock) {
    this.#clock = clock;
  }

  #current(name: string): { owner: string; expires: number } | null {
    const lease = this.#leases.get(name);
    if (!lease) return null;
    if (lease.expires <= this.#clock.now()) {
      this.#leases.delete(name);
      return null;
    }
    return lease;
  }

  acquire(name: string, owner: string, ttlMs: number): Promise<boolean> {
    const lease = this.#current(name);
    if (lease && lease.owner !== owner) return Promise.resolve(false);
    this.#leases.set(name, { owner, expires: this.#clock.now() + ttlMs });
    return Promise.resolve(true);
  }

  renew(name: string, owner: string, ttlMs: number): Promise<boolean> {
    const lease = this.#current(name);
    if (!lease || lease.owner !== owner) return Promise.resolve(false);
    lease.expires = this.#clock.now() + ttlMs;
    return Promise.resolve(true);
  }

  release(name: string, owner: string): Promise<boolean> {
    const lease = this.#current(name);
    if (!lease || lease.owner !== owner) return Promise.resolve(false);
    this.#leases.delete(name);
    return Promise.resolve(true);
  }

  holder(name: string): Promise<string | null> {
    return Promise.resolve(this.#current(name)?.owner ?? null);
  }
}

export interface LeaseOwnershipOptions {
  store: LeaseStore;
  /** This process's name in the leases (host name + pid, say): unique across processes and hosts. */
  node: string;
  /** The shards this process tries to own. */
  wanted: ShardKey[];
  /** How long a lease lasts without renewal. */
  leaseMs: number;
  /** Lease names are `${prefix}${count}:${id}`. */
  prefix?: string;
  clock?: Clock;
  /** Called when a lease operation fails (the store is unreachable); ownership keeps trying. */
  onError?: (error: Error) => void;
}

/**
 * Owns each wanted shard whose lease it holds. Renews every third of the lease; a shard whose renewal
 * has not succeeded by its local deadline (two thirds of the lease after the last success) is no longer
 * held, so this process stops acting for it a third of a lease before another may take it.
 */
export class LeaseOwnership implements ShardOwnership {
  readonly #o: LeaseOwnershipOptions;
  readonly #clock: Clock;
  readonly #prefix: string;
  readonly #held: HeldLeases;
  #timer: TimerId | null = null;
  #inFlight = false;
  #running = false;

  constructor(options: LeaseOwnershipOptions) {
    this.#o = options;
    this.#clock = options.clock ?? systemClock;
    this.#prefix = options.prefix ?? "";
    this.#held = new HeldLeases(this.#clock, options.leaseMs);
  }

  async start(): Promise<void> {
    this.#running = true;
    await this.#round();
    this.#schedule();
  }

  owned(): ShardKey[] {
    return this.#held.owned();
  }

  holds(key: ShardKey): boolean {
    return this.#running && this.#held.holds(this.#name(key));
  }

  subscribe(listener: (owned: ShardKey[]) => void): () => void {
    return this.#held.subscribe(listener);
  }

  async stop(): Promise<void> {
    this.#running = false;
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
    const held = this.#held.clear();
    this.#held.changed();
    this.#held.close();
    await Promise.all(
      held.map((name) => attempt(() => this.#o.store.release(name, this.#o.node), this.#o.onError)),
    );
  }

  #name(key: ShardKey): string {
    return `${this.#prefix}${shardKeyName(key)}`;
  }

  /** Renews (or acquires) every third of the lease; a round still waiting for the store is not doubled. */
  #schedule(): void {
    if (!this.#running) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = null;
      if (!this.#inFlight) void this.#round();
      this.#schedule();
    }, Math.max(1, Math.floor(this.#o.leaseMs / 3)));
  }

  async #round(): Promise<void> {
    const { store, node, leaseMs, onError } = this.#o;
    this.#inFlight = true;
    try {
      await Promise.all(this.#o.wanted.map(async (key) => {
        const name = this.#name(key);
        const started = this.#clock.now();
        // Renewed while held; once the local deadline passed, taken afresh (if nobody else took it).
        const held = this.#held.holds(name)
          ? await attempt(() => store.renew(name, node, leaseMs), onError)
          : await attempt(() => store.acquire(name, node, leaseMs), onError);
        if (!this.#running) {
          // stop() already released what it held: an acquisition answered since is released too.
          if (held === true) await attempt(() => store.release(name, node), onError);
          return;
        }
        if (held === true) this.#held.renewed(name, key, started);
        else if (held === false) this.#held.drop(name);
        // null (the store failed): the local deadline decides.
      }));
    } finally {
      this.#inFlight = false;
    }
    if (this.#running) this.#held.changed();
  }
}
