/**
 * The Lua scripts of the Redis identify queue (redis_identify.ts), one key each so they run on any
 * topology, a Redis Cluster included: compare-and-set of a bucket's holder, and the daily budget's
 * count taken and given back atomically.
 */
import type { RedisClient } from "../redis/client.ts";

/** KEYS: bucket. ARGV: token, interval. 0 when taken, else ms until the holder's slot ends. */
const TAKE_SCRIPT = `
if redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then return 0 end
local ttl = redis.call("PTTL", KEYS[1])
if ttl == -1 then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return tonumber(ARGV[2])
end
if ttl < 1 then return 1 end
return ttl
`;

/** KEYS: bucket. ARGV: token, interval. The slot runs a full interval from now, unless another holds it. */
const SENT_SCRIPT = `
local holder = redis.call("GET", KEYS[1])
if holder == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end
if not holder then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  return 2
end
return 0
`;

/** KEYS: bucket. ARGV: token. Compare and delete. */
const RELEASE_SCRIPT = `
if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end
return 0
`;

/** KEYS: budget. ARGV: reserve. {1 taken | 0 at the reserve | -1 missing, starts left, ms to reset}. */
const BUDGET_SCRIPT = `
local value = redis.call("GET", KEYS[1])
if not value then return {-1, 0, 0} end
local left = tonumber(value)
local ttl = redis.call("PTTL", KEYS[1])
if ttl < 0 then
  redis.call("PEXPIRE", KEYS[1], 86400000)
  ttl = 86400000
end
if left <= tonumber(ARGV[1]) then return {0, left, ttl} end
redis.call("DECR", KEYS[1])
return {1, left - 1, ttl}
`;

/** KEYS: budget. Gives back a start taken for a waiter that left meanwhile. */
const REFUND_SCRIPT = `
if redis.call("EXISTS", KEYS[1]) == 1 then return redis.call("INCR", KEYS[1]) end
return -1
`;

export type IdentifyScripts = RedisClient & {
  gatehouseIdentifyTake(key: string, token: string, ms: number): Promise<number>;
  gatehouseIdentifySent(key: string, token: string, ms: number): Promise<number>;
  gatehouseIdentifyRelease(key: string, token: string): Promise<number>;
  gatehouseIdentifyBudget(key: string, reserve: number): Promise<[number, number, number]>;
  gatehouseIdentifyRefund(key: string): Promise<number>;
};

/** Defines the scripts on `client` (idempotent per client) and returns it typed with them. */
export function defineIdentifyScripts(client: RedisClient): IdentifyScripts {
  client.defineCommand("gatehouseIdentifyTake", { numberOfKeys: 1, lua: TAKE_SCRIPT });
  client.defineCommand("gatehouseIdentifySent", { numberOfKeys: 1, lua: SENT_SCRIPT });
  client.defineCommand("gatehouseIdentifyRelease", { numberOfKeys: 1, lua: RELEASE_SCRIPT });
  client.defineCommand("gatehouseIdentifyBudget", { numberOfKeys: 1, lua: BUDGET_SCRIPT });
  client.defineCommand("gatehouseIdentifyRefund", { numberOfKeys: 1, lua: REFUND_SCRIPT });
  return client as IdentifyScripts;
}
