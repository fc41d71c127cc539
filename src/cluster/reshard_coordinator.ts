/**
 * Cluster mode's reshard: one for the whole bot, decided and switched through Redis (keys.ts:
 * `{<prefix>}:reshard`, `{<prefix>}:reshard:loaded`).
 *
 * - **Start**: whichever member a trigger reaches (the periodic check, a request, a 4011) writes the plan
 *   in one script, unless one is under way or the bot's count is no longer the one the plan starts from.
 * - **Follow**: every member reads the plan every `pollMs`; one it has not followed yet, it follows: it runs
 *   the new shards whose guilds are a subset of its old ones (the new count is a multiple of the old one,
 *   so new shard `j` takes from old shard `j % from`), holding their events (src/pool/resharder.ts).
 * - **Loaded**: members add the new shards that are READY with their guilds to the loaded set; the script
 *   that adds the last one switches the plan (and sets `{<prefix>}:shard_count`): one decision. That member
 *   announces it (GATEHOUSE_RESHARDED); every member switches at its next read.
 * - **Give up**: a member whose part times out or fails marks the plan aborted; every member gives up.
 *
 * Redis holds the decision only: the events stay on the members, so a Redis outage during a reshard
 * delays the switch (or ends it in a time-out) and loses nothing.
 */
import type { RedisClient } from "../redis/client.ts";
import type { ReshardTrigger } from "../pool/reshard_plan.ts";
import { type ClusterKeys, clusterKeys } from "./keys.ts";

/** KEYS: reshard, loaded, shard_count. ARGV: epoch, from, to, trigger, why, started_at, node. */
const START = `
if redis.call("HGET", KEYS[1], "state") == "preparing" then
  return "busy:" .. (redis.call("HGET", KEYS[1], "from") or "?") .. ":" .. (redis.call("HGET", KEYS[1], "to") or "?")
end
local count = redis.call("GET", KEYS[3])
if count ~= ARGV[2] then return "count:" .. (count or "none") end
redis.call("DEL", KEYS[1], KEYS[2])
redis.call("HSET", KEYS[1], "epoch", ARGV[1], "from", ARGV[2], "to", ARGV[3], "trigger", ARGV[4],
  "why", ARGV[5], "started_at", ARGV[6], "node", ARGV[7], "state", "preparing")
return "ok"
`;

/** KEYS: reshard, loaded, shard_count. ARGV: epoch, node, now, ids... Returns 1 when this call switched. */
const LOADED = `
if redis.call("HGET", KEYS[1], "epoch") ~= ARGV[1] or redis.call("HGET", KEYS[1], "state") ~= "preparing" then
  return 0
end
for i = 4, #ARGV do redis.call("SADD", KEYS[2], ARGV[i]) end
local to = tonumber(redis.call("HGET", KEYS[1], "to"))
if redis.call("SCARD", KEYS[2]) >= to then
  redis.call("HSET", KEYS[1], "state", "switched", "switched_by", ARGV[2], "switched_at", ARGV[3])
  redis.call("SET", KEYS[3], tostring(to))
  return 1
end
return 0
`;

/** KEYS: reshard. ARGV: epoch, why, node, now. Returns 1 when this call gave it up. */
const ABORT = `
if redis.call("HGET", KEYS[1], "epoch") ~= ARGV[1] or redis.call("HGET", KEYS[1], "state") ~= "preparing" then
  return 0
end
redis.call("HSET", KEYS[1], "state", "aborted", "why", ARGV[2], "aborted_by", ARGV[3], "aborted_at", ARGV[4])
return 1
`;

/** The plan as Redis holds it. */
export interface ReshardPlan {
  epoch: string;
  from: number;
  to: number;
  state: "preparing" | "switched" | "aborted";
  trigger: ReshardTrigger["kind"];
  why: string;
  startedAt: number;
  node: string;
  switchedBy?: string;
}

type CoordinatorClient = RedisClient & {
  gatehouseReshardStart(...args: Array<string | number>): Promise<string>;
  gatehouseReshardLoaded(...args: Array<string | number>): Promise<number>;
  gatehouseReshardAbort(...args: Array<string | number>): Promise<number>;
};

export class RedisReshardPlans {
  readonly #client: CoordinatorClient;
  readonly #keys: ClusterKeys;
  readonly #node: string;

  constructor(client: RedisClient, prefix: string, node: string) {
    this.#client = client as CoordinatorClient;
    this.#keys = clusterKeys(prefix);
    this.#node = node;
    client.defineCommand("gatehouseReshardStart", { numberOfKeys: 3, lua: START });
    client.defineCommand("gatehouseReshardLoaded", { numberOfKeys: 3, lua: LOADED });
    client.defineCommand("gatehouseReshardAbort", { numberOfKeys: 1, lua: ABORT });
  }

  /** Writes a new plan; null when started, else why not. */
  async start(
    plan: { from: number; to: number; trigger: string; why: string; at: number },
  ): Promise<string | null> {
    const k = this.#keys;
    const answer = await this.#client.gatehouseReshardStart(
      k.reshard,
      k.reshardLoaded,
      k.shardCount,
      crypto.randomUUID(),
      plan.from,
      plan.to,
      plan.trigger,
      plan.why,
      plan.at,
      this.#node,
    );
    if (answer === "ok") return null;
    const [kind, a, b] = String(answer).split(":");
    if (kind === "busy") return `the bot is already resharding (${a} → ${b})`;
    return `the bot's shard count is ${a} now, not ${plan.from}`;
  }

  /** The plan, or null when there is none. */
  async read(): Promise<ReshardPlan | null> {
    const h = await this.#client.hgetall(this.#keys.reshard);
    if (!h || !h.epoch) return null;
    return {
      epoch: h.epoch,
      from: Number(h.from),
      to: Number(h.to),
      state: h.state as ReshardPlan["state"],
      trigger: h.trigger as ReshardPlan["trigger"],
      why: h.why ?? "",
      startedAt: Number(h.started_at),
      node: h.node ?? "",
      ...(h.switched_by ? { switchedBy: h.switched_by } : {}),
    };
  }

  /** Adds loaded new shards; true when this call switched the bot. */
  async loaded(epoch: string, ids: number[]): Promise<boolean> {
    const k = this.#keys;
    const switched = await this.#client.gatehouseReshardLoaded(
      k.reshard,
      k.reshardLoaded,
      k.shardCount,
      epoch,
      this.#node,
      Date.now(),
      ...ids,
    );
    return Number(switched) === 1;
  }

  /** Gives the plan up; true when this call did. */
  async abort(epoch: string, why: string): Promise<boolean> {
    return Number(
      await this.#client.gatehouseReshardAbort(this.#keys.reshard, epoch, why, this.#node, Date.now()),
    ) ===
      1;
  }
}
