/**
 * The fencing both lease ownerships share (`LeaseOwnership`, cluster mode's `ClusterOwnership`): the
 * leases a process holds, each until a local deadline two thirds of the lease after the start of its
 * last successful renewal. The deadline is counted from before the request (the store may have set the
 * lease at any moment after it), so a process that cannot renew stops acting for a shard a third of a
 * lease before the lease can expire and another process take it. A timer notices each deadline as it
 * passes, so subscribers learn of it even while the store does not answer.
 */
import type { Clock, TimerId } from "../util/clock.ts";
import type { ShardKey } from "./ownership.ts";

export interface HeldLease {
  key: ShardKey;
  /** The local deadline (clock ms). */
  until: number;
}

export class HeldLeases {
  readonly #clock: Clock;
  readonly #termMs: number;
  /** By lease name. */
  readonly #held = new Map<string, HeldLease>();
  /** Held, but no longer owned (being handed off). */
  readonly #hidden = new Set<string>();
  readonly #listeners = new Set<(owned: ShardKey[]) => void>();
  #timer: TimerId | null = null;
  #last = "";

  constructor(clock: Clock, leaseMs: number) {
    this.#clock = clock;
    this.#termMs = Math.floor((leaseMs * 2) / 3);
  }

  get(name: string): HeldLease | undefined {
    return this.#held.get(name);
  }

  /** Before its deadline. */
  holds(name: string): boolean {
    return (this.#held.get(name)?.until ?? 0) > this.#clock.now();
  }

  /** A renewal (or acquisition) of `name` that started at `started` succeeded. */
  renewed(name: string, key: ShardKey, started: number): void {
    this.#held.set(name, { key, until: started + this.#termMs });
  }

  drop(name: string): void {
    this.#held.delete(name);
    this.#hidden.delete(name);
  }

  /** Keeps `name` held but leaves it out of `owned()`. */
  hide(name: string): void {
    this.#hidden.add(name);
  }

  hidden(name: string): boolean {
    return this.#hidden.has(name);
  }

  entries(): Array<[string, HeldLease]> {
    return [...this.#held];
  }

  /** Forgets every lease; returns their names. */
  clear(): string[] {
    const names = [...this.#held.keys()];
    this.#held.clear();
    this.#hidden.clear();
    return names;
  }

  /** The held, not hidden shards before their deadline, by shard count then id. */
  owned(): ShardKey[] {
    const now = this.#clock.now();
    return [...this.#held]
      .filter(([name, h]) => h.until > now && !this.#hidden.has(name))
      .map(([, h]) => h.key)
      .sort((a, b) => a.count - b.count || a.id - b.id);
  }

  subscribe(listener: (owned: ShardKey[]) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Tells the subscribers when `owned()` changed, and watches for the next deadline. */
  changed(): void {
    const owned = this.owned();
    const text = owned.map((k) => `${k.count}:${k.id}`).join(",");
    if (text !== this.#last) {
      this.#last = text;
      for (const listener of this.#listeners) listener(owned);
    }
    this.#watch();
  }

  /** Stops watching deadlines (at stop). */
  close(): void {
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
  }

  #watch(): void {
    this.close();
    const now = this.#clock.now();
    const next = Math.min(...[...this.#held.values()].map((h) => h.until).filter((until) => until > now));
    if (!Number.isFinite(next)) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = null;
      this.changed();
    }, next - now);
  }
}

/** Runs a store operation; a failure is reported and answers null (the local deadline decides then). */
export async function attempt<T>(
  operation: () => Promise<T>,
  onError?: (error: Error) => void,
): Promise<T | null> {
  try {
    return await operation();
  } catch (error) {
    onError?.(error instanceof Error ? error : new Error(String(error)));
    return null;
  }
}
