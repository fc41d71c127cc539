/**
 * The Redis session store passes the session store contract against the real Redis on 127.0.0.1, one
 * random prefix per test, its keys deleted afterwards; and it keeps nothing but what a RESUME needs.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { RedisSessionStore } from "../../src/cluster/redis_sessions.ts";
import { sessionStoreContract } from "../journal/session_store_contract.ts";

const REDIS_URL = Deno.env.get("GATEHOUSE_TEST_REDIS") ?? "redis://127.0.0.1:6379";

function open() {
  const client = new Redis(REDIS_URL);
  const prefix = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
  const store = new RedisSessionStore({ client, prefix });
  const cleanup = async () => {
    const keys = await client.keys(`{${prefix}}:*`);
    if (keys.length > 0) await client.del(...keys);
    await client.quit();
  };
  return { store, client, prefix, cleanup };
}

sessionStoreContract("redis", () => Promise.resolve(open()));

Deno.test("redis session store: one hash per (count, shard) under the hash-tagged prefix, and an index", async () => {
  const { store, client, prefix, cleanup } = open();
  try {
    await store.save({
      shardCount: 4,
      shard: 2,
      sessionId: "abc",
      seq: 7,
      resumeUrl: "wss://resume.example",
      updatedAt: 1234,
    });
    assert.deepEqual((await client.keys(`{${prefix}}:*`)).sort(), [
      `{${prefix}}:session:4:2`,
      `{${prefix}}:sessions`,
    ]);
    assert.deepEqual(await client.hgetall(`{${prefix}}:session:4:2`), {
      session_id: "abc",
      seq: "7",
      resume_url: "wss://resume.example",
      updated_at: "1234",
    });
    await store.delete(4, 2);
    assert.deepEqual(await client.keys(`{${prefix}}:*`), [], "deleting the last session leaves no key");
    assert.throws(() => new RedisSessionStore({ client, prefix: "a{b}" }), /without braces/);
  } finally {
    await cleanup();
  }
});
