/**
 * Fencing for the Redis sink in cluster mode: many gatehouse processes of one bot share Redis, each
 * shard is owned by the process whose node name its lease key holds (`{<prefix>}:lease:<count>:<shard>`,
 * src/cluster/keys.ts), and a shard that moves RESUMEs from the shared session (`…:session:…`). Three
 * rules keep that exactly once:
 *
 * - A stale owner does not write: the events of a Discord session are appended only while this node
 *   holds their shard's lease (a missing key is held by nobody). Fenced events are counted, logged once
 *   per shard, and acknowledged (the cursor moves on, the sink does not retry them for ever): the new
 *   owner resumed the session from the shared seq, so Discord replays those events to it. (If that
 *   resume fails, Discord replays them to nobody: they were lost with the old connection either way.)
 *   gatehouse's own events (no session) are not fenced: nobody else holds them.
 * - The shared seq never runs ahead of the streams: it moves, forward only and for the same session id,
 *   to the highest seq of the batch, after every stream's script succeeded, in one script that checks
 *   the lease again. A shard with an event fenced by its lease in this delivery does not move (the lease
 *   may have moved away and back between two streams' scripts).
 * - What a node's journal holds from before it (re)takes a lease is fenced (`fenceThrough`): received
 *   under an older ownership, it may follow a gap (events fenced meanwhile), and appending it would move
 *   the stream's marks past events nobody appended. The resumed session replays it instead. So a node
 *   must treat a lease it finds gone or changed as lost (stop the shard), and take it again only through
 *   `fenceThrough` and a RESUME from the shared seq, never by quietly writing the key again. The fence
 *   must also be in force before the lease is taken, for the deliveries under way too: one that passed
 *   the check before it was set, with its script still on the way to Redis, would find the lease held
 *   again (`RedisSink.fence` waits for them; ClusterOwnership's `beforeAcquire` calls it).
 *
 * Where the checks run. Single Redis (and Sentinel): in the append script of each stream, atomically
 * with the appends (any key may be read there), so an owner whose lease moved between two scripts
 * appends nothing after the move. Redis Cluster: a stream (`<prefix>:<EVENT>`) and the lease keys are in
 * different slots, so the leases are read in one step before the appends (MGET in the prefix's slot):
 * an owner losing its lease in that round trip may still append one batch. That costs no duplicate for
 * a resumed session (the stream's marks skip the new owner's replay of the same seqs), never moves the
 * seq (the final script checks the lease again, atomically, in the prefix's slot) and, when the new owner
 * started a new session instead, adds only that batch of the old session's events, late.
 */
import type { EventBatch } from "../journal/journal.ts";
import type { RedisClient } from "../redis/client.ts";
import type { Logger } from "../util/log.ts";
import { ADVANCE_LUA, type ClusterKeys, clusterKeys } from "../cluster/keys.ts";

/** Cluster mode of the Redis sink. */
export interface ClusterFencing {
  /** This process's node name: the value of the lease keys it holds. */
  node: string;
  /** The cluster prefix (src/cluster/keys.ts), the same for every process of the bot. */
  prefix: string;
  /**
   * The shard count of the shards this process runs (events carry their shard id only); read at each
   * use, so a reshard's switch may change it.
   */
  shardCount: number;
  /**
   * The shard count of a Discord session, when it is not `shardCount` (during and after a reshard both
   * counts' events may be in one batch). Unknown sessions are `shardCount`'s.
   */
  countOf?: (sessionId: string) => number | undefined;
  /** Milliseconds since the epoch, for the sessions' `updated_at` (default Date.now). */
  now?: () => number;
}

/**
 * The append script with fencing. KEYS: the stream, its marks, its scopes by last use, then lease keys.
 * ARGV: maxlen, group, node, then scope, position, data, lease (its index in KEYS; 0 = not fenced) per
 * event. Returns {appended, skipped, fenced, {lease indexes not held}}.
 */
export const FENCED_APPEND_SCRIPT = `
local maxlen = tonumber(ARGV[1])
local node = ARGV[3]
if ARGV[2] ~= "" then
  local created = redis.pcall("XGROUP", "CREATE", KEYS[1], ARGV[2], "0", "MKSTREAM")
  if type(created) == "table" and created.err and not string.find(created.err, "BUSYGROUP") then
    return redis.error_reply(created.err)
  end
end
local held = {}
local marks = {}
local appended, skipped, fenced = 0, 0, 0
for i = 4, #ARGV, 4 do
  local scope, position, lease = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 3])
  local ok = true
  if lease > 0 then
    ok = held[lease]
    if ok == nil then
      ok = redis.call("GET", KEYS[lease]) == node
      held[lease] = ok
    end
  end
  if not ok then
    fenced = fenced + 1
  else
    local mark = marks[scope]
    if mark == nil then mark = tonumber(redis.call("HGET", KEYS[2], scope) or "0") end
    if position > mark then
      if maxlen > 0 then
        redis.call("XADD", KEYS[1], "MAXLEN", "~", maxlen, "*", "data", ARGV[i + 2])
      else
        redis.call("XADD", KEYS[1], "*", "data", ARGV[i + 2])
      end
      mark = position
      appended = appended + 1
    else
      skipped = skipped + 1
    end
    marks[scope] = mark
  end
end
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
for scope, mark in pairs(marks) do
  redis.call("HSET", KEYS[2], scope, string.format("%.0f", mark))
  redis.call("ZADD", KEYS[3], now, scope)
end
local old = redis.call("ZRANGEBYSCORE", KEYS[3], "-inf", now - 604800000, "LIMIT", 0, 16)
for _, scope in ipairs(old) do
  redis.call("HDEL", KEYS[2], scope)
  redis.call("ZREM", KEYS[3], scope)
end
local lost = {}
for lease, ok in pairs(held) do
  if not ok then table.insert(lost, lease) end
end
return {appended, skipped, fenced, lost}
`;

/**
 * The final step. KEYS: lease key, session key per session. ARGV: node, at, then session id, seq per
 * session. Returns how many sessions moved.
 */
export const FENCED_ADVANCE_SCRIPT = `
local node, at = ARGV[1], tonumber(ARGV[2])
local advanced = 0
for k = 1, #KEYS, 2 do
  local a = k + 2
  if redis.call("GET", KEYS[k]) == node then
    local key, id, seq = KEYS[k + 1], ARGV[a], tonumber(ARGV[a + 1])
    ${ADVANCE_LUA}
  end
end
return advanced
`;

/** A Discord session in a batch: its shard, id and the highest seq delivered of it. */
interface Advance {
  shard: number;
  count: number;
  sessionId: string;
  seq: number;
}

type FenceClient = RedisClient & {
  gatehouseAdvance(...args: Array<string | number>): Promise<number>;
};

/** The fencing of one sink: lease keys per shard, the sessions to advance, shards known to be fenced. */
export class Fence {
  readonly node: string;
  readonly keys: ClusterKeys;
  readonly #options: ClusterFencing;
  /** Events not appended because another node holds their shard's lease, or `fenceThrough`. */
  fenced = 0;
  readonly #client: FenceClient;
  readonly #log?: Logger;
  readonly #now: () => number;
  /** Per `<count>:<shard>`: its session events up to this journal id are fenced (`fenceThrough`). */
  readonly #through = new Map<string, number>();
  /** The count of each scope seen (a few sessions per shard). */
  readonly #scopeCounts = new Map<string, number>();
  /** Shards fenced by their lease since their last advance: logged once when they become fenced. */
  readonly #reported = new Set<number>();

  /** Defines the scripts on `client` (the sink's). */
  constructor(options: ClusterFencing, client: RedisClient, log?: Logger) {
    if (options.node === "") throw new Error("cluster node name must not be empty");
    this.node = options.node;
    this.keys = clusterKeys(options.prefix);
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#log = log;
    this.#client = client as FenceClient;
    client.defineCommand("gatehouseFencedAppend", { lua: FENCED_APPEND_SCRIPT });
    client.defineCommand("gatehouseAdvance", { lua: FENCED_ADVANCE_SCRIPT });
  }

  /**
   * The session events of `shard` with journal ids up to `id` are fenced from now on, whoever holds the
   * lease. The integrator calls it when this node is about to take the shard's lease, its shard stopped,
   * with the journal's last id: what the journal holds from before was received under an older ownership
   * and may follow a gap (events fenced meanwhile); the resumed session replays it from the shared seq.
   * Such events do not hold back the advance of the events after them. Returns whether the fence rose
   * (false: it was at `id` or past it already).
   */
  fenceThrough(shard: number, id: number, count = this.shardCount): boolean {
    const key = `${count}:${shard}`;
    if ((this.#through.get(key) ?? 0) >= id) return false;
    this.#through.set(key, id);
    return true;
  }

  /** The shard count the shards run with now (`ClusterFencing.shardCount`). */
  get shardCount(): number {
    return this.#options.shardCount;
  }

  /** Whether event `i` is fenced by `fenceThrough`. */
  fencedThrough(batch: EventBatch, i: number): boolean {
    if (this.#through.size === 0) return false;
    return batch.id(i) <= (this.#through.get(`${this.countOf(batch, i)}:${batch.shard(i)}`) ?? 0);
  }

  /** The shard count of event `i`'s session (`ClusterFencing.countOf`), else `shardCount`. */
  countOf(batch: EventBatch, i: number): number {
    const lookup = this.#options.countOf;
    if (lookup === undefined) return this.shardCount;
    const scope = batch.scope(i);
    let count = this.#scopeCounts.get(scope);
    if (count === undefined) {
      const session = sessionOf(scope);
      const known = session === null ? undefined : lookup(session);
      if (known === undefined) return this.shardCount;
      if (this.#scopeCounts.size >= 4096) this.#scopeCounts.clear();
      this.#scopeCounts.set(scope, count = known);
    }
    return count;
  }

  /** Redis Cluster: the lease keys of the batch's shards this node does not hold (one MGET, one slot). */
  async notHeld(batch: EventBatch): Promise<Set<string>> {
    const leases = new Set<string>();
    for (let i = 0; i < batch.count; i++) {
      const lease = this.leaseOf(batch, i);
      if (lease !== null) leases.add(lease);
    }
    if (leases.size === 0) return leases;
    const keys = [...leases];
    const holders = await this.#client.mget(...keys);
    return new Set(keys.filter((_, i) => holders[i] !== this.node));
  }

  /**
   * After every stream's script succeeded: moves the shared sessions to what reached the streams
   * (FENCED_ADVANCE_SCRIPT), counts what was fenced and logs the shards newly fenced by their lease.
   */
  async finish(batch: EventBatch, fencedShards: ReadonlySet<number>, fenced: number): Promise<void> {
    const advances = this.advances(batch, fencedShards);
    if (advances.length > 0) await this.#client.gatehouseAdvance(...this.advanceArgs(advances));
    for (const a of advances) this.#reported.delete(a.shard);
    this.fenced += fenced;
    for (const shard of fencedShards) {
      if (this.#reported.has(shard)) continue;
      this.#reported.add(shard);
      this.#log?.warn(
        "redis: shard {shard}'s lease is held by another node: its events are not appended from here " +
          "(the holder resumed the session; Discord replays them there); {total} fenced so far",
        { shard, total: this.fenced },
      );
    }
  }

  /** The shard's lease key, or null for an event of no Discord session (gatehouse's own). */
  leaseOf(batch: EventBatch, i: number): string | null {
    return sessionOf(batch.scope(i)) === null
      ? null
      : this.keys.lease(this.countOf(batch, i), batch.shard(i));
  }

  /**
   * For each Discord session of the batch whose shard no lease fenced, the highest seq of the events not
   * fenced through their id (`fenceThrough`: they are older than the resume that replays them).
   */
  advances(batch: EventBatch, fenced: ReadonlySet<number>): Advance[] {
    const bySession = new Map<string, Advance>();
    for (let i = 0; i < batch.count; i++) {
      const shard = batch.shard(i);
      const sessionId = sessionOf(batch.scope(i));
      if (sessionId === null || fenced.has(shard) || this.fencedThrough(batch, i)) continue;
      const seq = batch.position(i);
      const known = bySession.get(sessionId);
      if (known === undefined) {
        bySession.set(sessionId, { shard, count: this.countOf(batch, i), sessionId, seq });
      } else if (seq > known.seq) known.seq = seq;
    }
    return [...bySession.values()];
  }

  /** The final script's arguments: keys then argv (FENCED_ADVANCE_SCRIPT). */
  advanceArgs(advances: Advance[]): Array<string | number> {
    const keys: string[] = [];
    const argv: Array<string | number> = [this.node, this.#now()];
    for (const a of advances) {
      keys.push(this.keys.lease(a.count, a.shard), this.keys.session(a.count, a.shard));
      argv.push(a.sessionId, a.seq);
    }
    return [keys.length, ...keys, ...argv];
  }
}

/** The session id of a Discord session's scope (`<shard>:<session id>`, identity.ts), else null. */
function sessionOf(scope: string): string | null {
  if (scope.startsWith("gatehouse:")) return null;
  const colon = scope.indexOf(":");
  return colon < 0 ? null : scope.slice(colon + 1);
}
