/**
 * Sessions in Redis, shared by the gatehouse processes of one bot (cluster mode): when a shard moves to
 * another process (its owner died, or gave it up), the new owner RESUMEs from what is stored here, not
 * from its own SQLite. One hash per (shard count, shard) and a set naming them (keys.ts), all in the
 * prefix's Cluster slot, so every write is one atomic script on single Redis and on Redis Cluster.
 *
 * Who moves the seq matters more than where it lives: in cluster mode the Redis sink advances it, in the
 * script that appends the events (src/sinks/redis_fence.ts), so the seq a new owner resumes from never
 * runs past what reached the shared streams. This store's own `advance` keeps the SessionStore contract
 * (forward only, same session only). With a node name, writes are fenced by the shard's lease like the
 * sink's appends. Only what a RESUME needs is stored; never the token.
 */
import type { SessionStore, StoredSession } from "../journal/sessions.ts";
import type { RedisClient } from "../redis/client.ts";
import { ADVANCE_LUA, type ClusterKeys, clusterKeys } from "./keys.ts";

/** Every write first: nothing when a node is named (ARGV[1]) and the lease (KEYS[1]) is not its. */
const FENCE_LUA = `
if ARGV[1] ~= "" and redis.call("GET", KEYS[1]) ~= ARGV[1] then return -1 end
`;

/** KEYS: lease, session hash, index set. ARGV: node, member, session id, seq, resume url, updated at. */
const SAVE_SCRIPT = `${FENCE_LUA}
redis.call("DEL", KEYS[2])
redis.call("HSET", KEYS[2], "session_id", ARGV[3], "seq", ARGV[4], "resume_url", ARGV[5], "updated_at", ARGV[6])
redis.call("SADD", KEYS[3], ARGV[2])
return 1
`;

/** KEYS: lease, session hash. ARGV: node, session id, seq, at. Returns 1 when the seq moved. */
const ADVANCE_SCRIPT = `${FENCE_LUA}
local key, id, seq, at = KEYS[2], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local advanced = 0
${ADVANCE_LUA}
return advanced
`;

/** KEYS: lease, session hash, index set. ARGV: node, member. */
const DELETE_SCRIPT = `${FENCE_LUA}
redis.call("DEL", KEYS[2])
redis.call("SREM", KEYS[3], ARGV[2])
return 1
`;

type SessionClient = RedisClient & {
  gatehouseSessionSave(...args: Array<string | number>): Promise<number>;
  gatehouseSessionAdvance(...args: Array<string | number>): Promise<number>;
  gatehouseSessionDelete(...args: string[]): Promise<number>;
};

export interface RedisSessionStoreOptions {
  /** The connection (the caller's: closing the store does not close it). */
  client: RedisClient;
  /** The cluster prefix (keys.ts): the same for every process of the bot. */
  prefix: string;
  /**
   * This process's node name: when given, `save`, `advance` and `delete` of (count, shard) do nothing
   * unless the shard's lease key holds it (checked in the same script), so a stale owner cannot replace
   * the session its successor resumed. Without it every write goes through (one process, or tests).
   */
  node?: string;
}

export class RedisSessionStore implements SessionStore {
  readonly keys: ClusterKeys;
  readonly #client: SessionClient;
  readonly #node: string;
  /** Writes refused because another node (or none) holds the shard's lease (with `node` only). */
  refused = 0;

  constructor(options: RedisSessionStoreOptions) {
    this.keys = clusterKeys(options.prefix);
    if (options.node === "") throw new Error("cluster node name must not be empty");
    this.#node = options.node ?? "";
    this.#client = options.client as SessionClient;
    this.#client.defineCommand("gatehouseSessionSave", { numberOfKeys: 3, lua: SAVE_SCRIPT });
    this.#client.defineCommand("gatehouseSessionAdvance", { numberOfKeys: 2, lua: ADVANCE_SCRIPT });
    this.#client.defineCommand("gatehouseSessionDelete", { numberOfKeys: 3, lua: DELETE_SCRIPT });
  }

  async load(): Promise<StoredSession[]> {
    const members = await this.#client.smembers(this.keys.sessions);
    const parsed = members.map((m) => m.split(":").map(Number)).filter(([c, s]) => c > 0 && s >= 0);
    const pipeline = this.#client.pipeline();
    for (const [count, shard] of parsed) pipeline.hgetall(this.keys.session(count, shard));
    const results = parsed.length === 0 ? [] : (await pipeline.exec()) ?? [];
    const sessions: StoredSession[] = [];
    results.forEach(([error, value], i) => {
      if (error !== null) throw new Error(`redis: ${error.message}`);
      const h = value as Record<string, string>;
      // A member whose hash is gone (deleted between the two reads) is no session.
      if (h.session_id === undefined) return;
      const [shardCount, shard] = parsed[i];
      sessions.push({
        shardCount,
        shard,
        sessionId: h.session_id,
        seq: Number(h.seq),
        resumeUrl: h.resume_url,
        updatedAt: Number(h.updated_at),
      });
    });
    return sessions.sort((a, b) => a.shardCount - b.shardCount || a.shard - b.shard);
  }

  /** The session of (shardCount, shard), or null: one read, for a member taking one shard. */
  async get(shardCount: number, shard: number): Promise<StoredSession | null> {
    const h = await this.#client.hgetall(this.keys.session(shardCount, shard));
    if (h.session_id === undefined) return null;
    return {
      shardCount,
      shard,
      sessionId: h.session_id,
      seq: Number(h.seq),
      resumeUrl: h.resume_url,
      updatedAt: Number(h.updated_at),
    };
  }

  async save(s: StoredSession): Promise<void> {
    this.#count(
      await this.#client.gatehouseSessionSave(
        this.keys.lease(s.shardCount, s.shard),
        this.keys.session(s.shardCount, s.shard),
        this.keys.sessions,
        this.#node,
        `${s.shardCount}:${s.shard}`,
        s.sessionId,
        s.seq,
        s.resumeUrl,
        s.updatedAt,
      ),
    );
  }

  async advance(
    shardCount: number,
    shard: number,
    sessionId: string,
    seq: number,
    at: number,
  ): Promise<void> {
    this.#count(
      await this.#client.gatehouseSessionAdvance(
        this.keys.lease(shardCount, shard),
        this.keys.session(shardCount, shard),
        this.#node,
        sessionId,
        seq,
        at,
      ),
    );
  }

  async delete(shardCount: number, shard: number): Promise<void> {
    this.#count(
      await this.#client.gatehouseSessionDelete(
        this.keys.lease(shardCount, shard),
        this.keys.session(shardCount, shard),
        this.keys.sessions,
        this.#node,
        `${shardCount}:${shard}`,
      ),
    );
  }

  #count(result: number): void {
    if (result === -1) this.refused++;
  }
}
