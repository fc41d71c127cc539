/**
 * Shard leases in Redis, for cluster mode: one string key per lease whose value is the owner's node name
 * and whose expiry is the lease's end. Every operation that depends on who holds the lease is one Lua
 * script, so checking the owner and changing the key happen in one step (no other client runs between):
 *
 * - acquire: `SET name owner NX PX ttl`, or, when the lease is already `owner`'s, `PEXPIRE` it;
 * - renew: `PEXPIRE` only while the value is `owner` (compare-and-expire);
 * - release: `DEL` only while the value is `owner` (compare-and-delete): a process whose lease expired
 *   and was taken by another never frees the other's lease;
 * - holder: `GET`.
 *
 * Redis's own clock decides expiry, so hosts' clocks need not agree. The names are chosen by the caller
 * (`ClusterOwnership` uses `{prefix}:lease:{count}:{id}`); each script touches one key, so it runs on
 * Redis Cluster too.
 */
import { backoffDelay } from "../util/backoff.ts";
import type { LeaseStore } from "../pool/ownership.ts";
import { connectRedis, type RedisClient } from "../redis/client.ts";

/** KEYS: the lease. ARGV: owner, ttl (ms). 1 when the lease is (now) the owner's. */
const ACQUIRE_SCRIPT = `
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then return 1 end
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return 1
end
return 0
`;

/** KEYS: the lease. ARGV: owner, ttl (ms). 1 when it was the owner's and now lasts ttl from now. */
const RENEW_SCRIPT = `
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return 1
end
return 0
`;

/** KEYS: the lease. ARGV: owner. 1 when it was the owner's and is gone. */
const RELEASE_SCRIPT = `
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
  return 1
end
return 0
`;

type LeaseClient = RedisClient & {
  gatehouseLeaseAcquire(name: string, owner: string, ttlMs: number): Promise<number>;
  gatehouseLeaseRenew(name: string, owner: string, ttlMs: number): Promise<number>;
  gatehouseLeaseRelease(name: string, owner: string): Promise<number>;
};

/** Defines the lease scripts on `client` (again is harmless). */
function withLeaseScripts(client: RedisClient): LeaseClient {
  client.defineCommand("gatehouseLeaseAcquire", { numberOfKeys: 1, lua: ACQUIRE_SCRIPT });
  client.defineCommand("gatehouseLeaseRenew", { numberOfKeys: 1, lua: RENEW_SCRIPT });
  client.defineCommand("gatehouseLeaseRelease", { numberOfKeys: 1, lua: RELEASE_SCRIPT });
  return client as LeaseClient;
}

export class RedisLeaseStore implements LeaseStore {
  readonly #client: LeaseClient;

  /** Uses `client` (its owner closes it); see `connectLeaseRedis` for the options a lease client wants. */
  constructor(client: RedisClient) {
    this.#client = withLeaseScripts(client);
  }

  async acquire(name: string, owner: string, ttlMs: number): Promise<boolean> {
    return (await this.#client.gatehouseLeaseAcquire(name, owner, positive(ttlMs))) === 1;
  }

  async renew(name: string, owner: string, ttlMs: number): Promise<boolean> {
    return (await this.#client.gatehouseLeaseRenew(name, owner, positive(ttlMs))) === 1;
  }

  async release(name: string, owner: string): Promise<boolean> {
    return (await this.#client.gatehouseLeaseRelease(name, owner)) === 1;
  }

  holder(name: string): Promise<string | null> {
    return this.#client.get(name);
  }
}

/** PX refuses 0 and fractions. */
function positive(ttlMs: number): number {
  return Math.max(1, Math.floor(ttlMs));
}

/**
 * A client for leases and membership, apart from the sink's: a renewal must not queue behind a large
 * batch of events. Every command fails within a third of the lease (`commandTimeout`, also while
 * reconnecting), so a round of renewals never outlasts the next one; reconnects back off 50 ms to 1 s.
 */
export function connectLeaseRedis(url: string, leaseMs: number, tlsCa: string | null = null): RedisClient {
  return connectRedis(url, {
    retryStrategy: (times) => backoffDelay({ baseMs: 50, maxMs: 1_000 }, times),
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    commandTimeout: Math.max(20, Math.floor(leaseMs / 3)),
  }, tlsCa);
}
