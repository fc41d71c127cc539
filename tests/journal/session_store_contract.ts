/**
 * The session store contract, one suite run against every SessionStore (session_store_test.ts): what
 * the journal writes and a start reads back. A store elsewhere (Redis, for cluster mode) must pass it
 * too.
 */
import assert from "node:assert/strict";
import type { SessionStore, StoredSession } from "../../src/journal/sessions.ts";

export interface SessionStoreSubject {
  store: SessionStore;
  cleanup(): Promise<void> | void;
}

const session = (shardCount: number, shard: number, sessionId: string, seq = 1): StoredSession => ({
  shardCount,
  shard,
  sessionId,
  seq,
  resumeUrl: `wss://resume.example/${sessionId}`,
  updatedAt: 1000 + seq,
});

export function sessionStoreContract(name: string, open: () => Promise<SessionStoreSubject>): void {
  const test = (what: string, fn: (store: SessionStore) => Promise<void>) =>
    Deno.test(`session store (${name}): ${what}`, async () => {
      const subject = await open();
      try {
        await fn(subject.store);
      } finally {
        await subject.cleanup();
      }
    });

  test("an empty store has no sessions", async (store) => {
    assert.deepEqual(await store.load(), []);
  });

  test("a saved session loads back as it was saved", async (store) => {
    await store.save(session(1, 0, "a", 5));
    assert.deepEqual(await store.load(), [session(1, 0, "a", 5)]);
  });

  test("saving (count, shard) again replaces its session", async (store) => {
    await store.save(session(2, 1, "a", 5));
    await store.save(session(2, 1, "b", 1));
    assert.deepEqual(await store.load(), [session(2, 1, "b", 1)]);
  });

  test("two shard counts are kept side by side, loaded by count, then shard", async (store) => {
    await store.save(session(4, 3, "new-3"));
    await store.save(session(2, 1, "old-1"));
    await store.save(session(4, 1, "new-1"));
    await store.save(session(2, 0, "old-0"));
    assert.deepEqual((await store.load()).map((s) => [s.shardCount, s.shard, s.sessionId]), [
      [2, 0, "old-0"],
      [2, 1, "old-1"],
      [4, 1, "new-1"],
      [4, 3, "new-3"],
    ]);
  });

  test("advance moves a session's seq forward only, for that session of that (count, shard)", async (store) => {
    await store.save(session(2, 1, "old-1", 10));
    await store.save(session(4, 1, "new-1", 10));
    await store.advance(2, 1, "old-1", 12, 5000);
    await store.advance(2, 1, "old-1", 11, 6000); // backwards: ignored
    await store.advance(2, 1, "someone-else", 99, 7000); // not the stored session: ignored
    const [old, fresh] = await store.load();
    assert.deepEqual([old.seq, old.updatedAt], [12, 5000]);
    assert.deepEqual([fresh.seq, fresh.updatedAt], [10, 1010], "the other count's shard 1 is untouched");
    await store.advance(8, 1, "old-1", 50, 8000); // no session there: nothing created
    assert.equal((await store.load()).length, 2);
  });

  test("delete forgets only the session of that (count, shard); deleting nothing is no error", async (store) => {
    await store.save(session(2, 1, "old-1"));
    await store.save(session(4, 1, "new-1"));
    await store.delete(2, 1);
    await store.delete(2, 1);
    await store.delete(16, 0);
    assert.deepEqual((await store.load()).map((s) => s.sessionId), ["new-1"]);
  });

  test("what load returns is a copy: changing it changes nothing stored", async (store) => {
    await store.save(session(1, 0, "a", 5));
    const [loaded] = await store.load();
    loaded.seq = 999;
    loaded.sessionId = "changed";
    assert.deepEqual(await store.load(), [session(1, 0, "a", 5)]);
  });
}
