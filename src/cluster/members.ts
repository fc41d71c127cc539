/**
 * Who is in the cluster, and which shards each member should run. Nobody lists shard ids per process:
 * each process registers itself, sees the others, and takes its share of every shard.
 *
 * Members live in one sorted set, `{prefix}:nodes`: member = node name, score = when its registration
 * ends (Redis's clock, ms). A process re-registers on its lease timer (`beat`) and removes itself on
 * stop (`leave`); a process that dies drops out when its score passes. Reading with Redis's own time
 * means hosts' clocks need not agree. The set itself expires when its last member's registration does.
 *
 * Membership only plans: it says what a process should try to own. Leases decide what it does own, so
 * two processes that briefly disagree about who is live never both run a shard.
 */
import type { ShardKey } from "../pool/ownership.ts";
import type { RedisClient } from "../redis/client.ts";
import { type Clock, systemClock } from "../util/clock.ts";

export interface Membership {
  /** Registers `node` as live for `ttlMs` from now (again: extends it); resolves with the live nodes. */
  beat(node: string, ttlMs: number): Promise<string[]>;
  /** The live nodes, sorted. */
  live(): Promise<string[]>;
  /** Removes `node` at once. */
  leave(node: string): Promise<void>;
}

/** Redis's time in ms, in a script. */
const NOW = `
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
`;

/** KEYS: the nodes. ARGV: node, ttl (ms). Returns the live nodes. */
const BEAT_SCRIPT = `${NOW}
redis.call("ZREMRANGEBYSCORE", KEYS[1], "-inf", string.format("%.0f", now))
redis.call("ZADD", KEYS[1], string.format("%.0f", now + tonumber(ARGV[2])), ARGV[1])
local last = redis.call("ZRANGE", KEYS[1], -1, -1, "WITHSCORES")
redis.call("PEXPIRE", KEYS[1], string.format("%.0f", math.max(1, tonumber(last[2]) - now)))
return redis.call("ZRANGE", KEYS[1], 0, -1)
`;

/** KEYS: the nodes. Returns the live nodes. */
const LIVE_SCRIPT = `${NOW}
return redis.call("ZRANGEBYSCORE", KEYS[1], "(" .. string.format("%.0f", now), "+inf")
`;

type MembersClient = RedisClient & {
  gatehouseMembersBeat(key: string, node: string, ttlMs: number): Promise<string[]>;
  gatehouseMembersLive(key: string): Promise<string[]>;
};

const byName = (nodes: string[]): string[] => [...nodes].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

/** Members in the sorted set `key` (`{prefix}:nodes`). */
export class RedisMembers implements Membership {
  readonly #client: MembersClient;
  readonly #key: string;

  constructor(client: RedisClient, key: string) {
    client.defineCommand("gatehouseMembersBeat", { numberOfKeys: 1, lua: BEAT_SCRIPT });
    client.defineCommand("gatehouseMembersLive", { numberOfKeys: 1, lua: LIVE_SCRIPT });
    this.#client = client as MembersClient;
    this.#key = key;
  }

  async beat(node: string, ttlMs: number): Promise<string[]> {
    return byName(await this.#client.gatehouseMembersBeat(this.#key, node, Math.max(1, Math.floor(ttlMs))));
  }

  async live(): Promise<string[]> {
    return byName(await this.#client.gatehouseMembersLive(this.#key));
  }

  async leave(node: string): Promise<void> {
    await this.#client.zrem(this.#key, node);
  }
}

/** Members in this process's memory, on `clock` (one process, tests). */
export class LocalMembers implements Membership {
  readonly #clock: Clock;
  readonly #until = new Map<string, number>();

  constructor(clock: Clock = systemClock) {
    this.#clock = clock;
  }

  beat(node: string, ttlMs: number): Promise<string[]> {
    this.#until.set(node, this.#clock.now() + ttlMs);
    return this.live();
  }

  live(): Promise<string[]> {
    const now = this.#clock.now();
    for (const [node, until] of this.#until) if (until <= now) this.#until.delete(node);
    return Promise.resolve(byName([...this.#until.keys()]));
  }

  leave(node: string): Promise<void> {
    this.#until.delete(node);
    return Promise.resolve();
  }
}

/**
 * The shards of `keys` that `node` should run when `nodes` are live: every shard count is spread on its
 * own, each node getting ⌊m/n⌋ or ⌈m/n⌉ of its m shards. Pure: every member computes the same answer
 * from the same list.
 *
 * Why not "sort the nodes, shard i to nodes[i % n]": exact, but one join or leave moves nearly every
 * shard (12 shards, 3 → 4 nodes: 9 move), and each move is a reconnect. Why not plain rendezvous
 * hashing (each shard to the node with the highest hash of node and shard): a join moves only what the
 * new node takes, but the shares are uneven (12 shards on 3 nodes are often 6/4/2). This is rendezvous
 * hashing with capacities: all (shard, node) pairs by descending hash, each pair taken when the shard is
 * still free and the node below its share. Shares are exact, and a join or leave moves little more
 * than the minimum (12 shards, 3 → 4 nodes: 3.7 on average over many node names, the least possible is
 * 3; tests/cluster/share_test.ts measures it).
 */
export function shareOf(nodes: string[], node: string, keys: ShardKey[]): ShardKey[] {
  const members = [...new Set(nodes)];
  if (!members.includes(node)) return [];
  const counts = [...new Set(keys.map((k) => k.count))].sort((a, b) => a - b);
  const mine: ShardKey[] = [];
  for (const count of counts) {
    const shards = [...new Set(keys.filter((k) => k.count === count).map((k) => k.id))].sort((a, b) => a - b);
    const owner = spread(members, count, shards);
    for (const id of shards) if (owner.get(id) === node) mine.push({ id, count });
  }
  return mine;
}

function spread(nodes: string[], count: number, ids: number[]): Map<number, string> {
  const floor = Math.floor(ids.length / nodes.length);
  let extras = ids.length % nodes.length;
  const pairs: Array<{ score: number; id: number; node: string }> = [];
  for (const id of ids) {
    for (const n of nodes) pairs.push({ score: hash(`${n}\0${count}:${id}`), id, node: n });
  }
  pairs.sort((a, b) => b.score - a.score || (a.node < b.node ? -1 : a.node > b.node ? 1 : 0) || a.id - b.id);
  const load = new Map(nodes.map((n) => [n, 0]));
  const owner = new Map<number, string>();
  for (const { id, node } of pairs) {
    if (owner.has(id)) continue;
    const taken = load.get(node)!;
    if (taken > floor || (taken === floor && extras === 0)) continue;
    if (taken === floor) extras--;
    load.set(node, taken + 1);
    owner.set(id, node);
  }
  return owner;
}

/** FNV-1a over UTF-16 units, then Murmur3's finaliser: 32 well-mixed bits. */
function hash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}
