/**
 * The Redis session store passes the session store contract against the real Redis on 127.0.0.1, one
 * random prefix per test, its keys deleted afterwards; and it keeps nothing but what a RESUME needs.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { RedisSessionStore } from "../../src/cluster/redis_sessions.ts";
import { sessionStoreContract } from "../journal/session_store_contract.ts";

const REDIS_URL = Deno.env.get("GATEHOUSE_TEST_REDIS") ?? "redis://127.0.0.1:6379";

function open(node?: string) {
  const client = new Redis(REDIS_URL);
  const prefix = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
  const store = new RedisSessionStore({ client, prefix, node });
  const cleanup = async () => {
    const keys = await client.keys(`{${prefix}}:*`);
    if (keys.length > 0) await client.del(...keys);
    await client.quit();
  };
  return { store, client, prefix, cleanup };
}

sessionStoreContract("redis", () => Promise.resolve(open()));

// With a node name, and that node holding every lease the suite's (count, shard)s use.
sessionStoreContract("redis, fenced by lease", async () => {
  const env = open("n1");
  for (const [count, shard] of [[1, 0], [2, 0], [2, 1], [4, 1], [4, 3], [8, 1], [16, 0]]) {
    await env.client.set(`{${env.prefix}}:lease:${count}:${shard}`, "n1");
  }
  return env;
});

Deno.test("redis session store: one hash per (count, shard) under the hash-tagged prefix, an index, and get of one", async () => {
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
    assert.deepEqual(await store.get(4, 2), {
      shardCount: 4,
      shard: 2,
      sessionId: "abc",
      seq: 7,
      resumeUrl: "wss://resume.example",
      updatedAt: 1234,
    }, "one shard's session, read alone (a member taking that shard)");
    assert.equal(await store.get(4, 3), null);
    assert.equal(await store.get(8, 2), null, "another count's shard 2 is another session");
    await store.delete(4, 2);
    assert.equal(await store.get(4, 2), null);
    assert.deepEqual(await client.keys(`{${prefix}}:*`), [], "deleting the last session leaves no key");
    assert.throws(() => new RedisSessionStore({ client, prefix: "a{b}" }), /without braces/);
  } finally {
    await cleanup();
  }
});

Deno.test("redis session store with a node name: no save, advance or delete while another node holds the lease", async () => {
  const { store, client, prefix, cleanup } = open("a");
  const lease = `{${prefix}}:lease:4:2`;
  const session = {
    shardCount: 4,
    shard: 2,
    sessionId: "mine",
    seq: 7,
    resumeUrl: "wss://resume.example",
    updatedAt: 1,
  };
  try {
    await store.save(session);
    assert.deepEqual(await store.load(), [], "no lease at all: not saved");
    await client.set(lease, "a");
    await store.save(session);
    await client.set(lease, "b");
    await store.save({ ...session, sessionId: "stale", seq: 1 });
    await store.advance(4, 2, "mine", 50, 2);
    await store.delete(4, 2);
    assert.deepEqual(await store.load(), [session], "b holds it: a's writes changed nothing");
    assert.equal(store.refused, 4);
    await client.set(lease, "a");
    await store.advance(4, 2, "mine", 50, 2);
    assert.equal((await store.load())[0].seq, 50);
  } finally {
    await cleanup();
  }
});
