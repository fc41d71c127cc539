/**
 * The Redis keys of cluster mode, shared by every gatehouse process of one bot: the sessions their
 * shards RESUME from (redis_sessions.ts), the leases saying which process owns a shard now (the lease
 * store), and the fencing the Redis sink does with both (src/sinks/redis_fence.ts). They are built
 * here only, so the three cannot disagree on a name.
 *
 * Every key starts with the prefix in braces, `{<prefix>}:`: a Redis Cluster hash tag, so all of one
 * bot's cluster keys sit in one slot and one script may read a lease and move a session atomically
 * there too. (The event streams are not in that slot: see the fencing module for what that costs.)
 *
 * - `{<prefix>}:session:<count>:<shard>`: hash `session_id`, `seq`, `resume_url`, `updated_at` (ms).
 * - `{<prefix>}:sessions`: set of `<count>:<shard>` with a session hash (what `load` reads).
 * - `{<prefix>}:lease:<count>:<shard>`: string, the node holding the shard (the lease store sets it).
 * - `{<prefix>}:nodes`: sorted set, each live member (node name) scored by the end of its registration (ms).
 * - `{<prefix>}:shard_count`: the cluster's shard count, set by its first member (SET NX).
 * - `{<prefix>}:reshard`: hash, the bot's reshard (src/cluster/reshard_coordinator.ts): `epoch`, `from`, `to`,
 *   `state` (preparing, switched, aborted), `trigger`, `why`, `started_at`, `node`, and who switched or
 *   gave it up; `{<prefix>}:reshard:loaded`: set of the new shards loaded (READY with their guilds).
 * - `{<prefix>}:status:<node>`: string, the node's status report as JSON (src/cluster/status_board.ts),
 *   republished every few seconds with an expiry of about three periods, so a dead node's report goes.
 */

export interface ClusterKeys {
  readonly prefix: string;
  session(shardCount: number, shard: number): string;
  readonly sessions: string;
  lease(shardCount: number, shard: number): string;
  readonly nodes: string;
  readonly shardCount: string;
  readonly reshard: string;
  readonly reshardLoaded: string;
  status(node: string): string;
}

/** The keys under `prefix` (no braces in it: they would move the hash tag). */
export function clusterKeys(prefix: string): ClusterKeys {
  if (prefix === "" || /[{}]/.test(prefix)) {
    throw new Error(`cluster prefix ${JSON.stringify(prefix)} must be non-empty and without braces`);
  }
  const tag = `{${prefix}}`;
  return {
    prefix,
    session: (count, shard) => `${tag}:session:${count}:${shard}`,
    sessions: `${tag}:sessions`,
    lease: (count, shard) => `${tag}:lease:${count}:${shard}`,
    nodes: `${tag}:nodes`,
    shardCount: `${tag}:shard_count`,
    reshard: `${tag}:reshard`,
    reshardLoaded: `${tag}:reshard:loaded`,
    status: (node) => `${tag}:status:${node}`,
  };
}

/**
 * Moves a session hash's seq forward, in Lua (shared by the store's `advance` and the sink's fenced
 * one). Expects `key` (the session hash), `id` (session id) and `seq`, `at` (numbers) to be defined.
 */
export const ADVANCE_LUA = `
if redis.call("HGET", key, "session_id") == id and tonumber(redis.call("HGET", key, "seq") or "0") < seq then
  redis.call("HSET", key, "seq", string.format("%.0f", seq), "updated_at", string.format("%.0f", at))
  advanced = advanced + 1
end
`;
