import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { MIGRATIONS } from "../../src/journal/migrations.ts";
import { SCHEMA_VERSION, Store, StoreError } from "../../src/journal/store.ts";

const enc = (s: string) => new TextEncoder().encode(s);

async function withDir(fn: (dir: string) => Promise<void> | void) {
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-store-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a new store: schema migrated, file 0600, WAL", async () => {
  await withDir((dir) => {
    const path = `${dir}/g.db`;
    const store = Store.open(path);
    assert.equal(store.schemaVersion(), SCHEMA_VERSION);
    assert.equal(store.lastId, 0);
    if (Deno.build.os !== "windows") assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
    store.close();
    // Reopening migrates nothing and keeps data.
    const again = Store.open(path);
    assert.equal(again.schemaVersion(), SCHEMA_VERSION);
    again.close();
  });
});

Deno.test("an existing store readable by others is narrowed to 0600", async () => {
  if (Deno.build.os === "windows") return;
  await withDir((dir) => {
    const path = `${dir}/g.db`;
    Store.open(path).close();
    Deno.chmodSync(path, 0o644);
    Store.open(path).close();
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
  });
});

Deno.test("events, sessions, cursors and identifies round-trip; ids never go back after pruning", async () => {
  await withDir((dir) => {
    const store = Store.open(`${dir}/g.db`);
    store.transaction("test", () => {
      for (let id = 1; id <= 10; id++) {
        store.events.insert(id, id % 2, "s1", id, "MESSAGE_CREATE", 1000 + id * 10, enc(`{"n":${id}}`));
      }
      store.setMeta("last_id", "10");
      store.sessions.save({
        shard: 0,
        shardCount: 2,
        sessionId: "s1",
        seq: 10,
        resumeUrl: "wss://r",
        updatedAt: 5,
      });
      store.setCursor("stdout", 4, 6);
      store.recordIdentify(0, 1_000_000);
      store.recordIdentify(1, 1_000_500);
    });
    const rows = store.events.read(4, 3);
    assert.deepEqual(rows.map((r) => r.id), [5, 6, 7]);
    assert.equal(new TextDecoder().decode(rows[0].payload), '{"n":5}');
    assert.equal(rows[0].t, "MESSAGE_CREATE");
    assert.equal(rows[0].session, "s1");
    // A byte bound cuts the page (payloads are 7 bytes here), but never below one row.
    assert.deepEqual(store.events.read(4, 10, 10, 14).map((r) => r.id), [5, 6]);
    assert.deepEqual(store.events.read(4, 10, 10, 1).map((r) => r.id), [5]);
    assert.deepEqual(store.events.read(4, 10, 8).map((r) => r.id), [5, 6, 7, 8]);
    assert.deepEqual(store.sessions.load(), [{
      shard: 0,
      shardCount: 2,
      sessionId: "s1",
      seq: 10,
      resumeUrl: "wss://r",
      updatedAt: 5,
    }]);
    store.transaction("seq", () => store.sessions.advance(2, 0, "s1", 12, 9));
    store.transaction("old seq", () => store.sessions.advance(2, 0, "s1", 11, 9));
    assert.equal(store.sessions.load()[0].seq, 12, "seq only moves forward");
    assert.equal(store.cursor("stdout"), 4);
    assert.equal(store.cursor("redis"), null);
    assert.equal(store.identifiesSince(0), 2);
    assert.equal(store.identifiesSince(0, 1), 1);
    assert.equal(store.events.firstIdAtOrAfter(1055), 6);
    assert.equal(store.events.firstIdAtOrAfter(0), 1);
    assert.equal(store.events.firstIdAtOrAfter(5000), null);
    assert.equal(store.transaction("prune", () => store.events.deleteThrough(10, 100)), 10);
    store.close();
    const again = Store.open(`${dir}/g.db`);
    assert.equal(again.lastId, 10, "the last id survives even when every event was pruned");
    again.close();
  });
});

Deno.test("one writer per store: a second claim is refused while the first holds the lock, and free after", async () => {
  await withDir((dir) => {
    const path = `${dir}/g.db`;
    const first = Store.open(path);
    first.claim();
    const second = Store.open(path);
    assert.throws(
      () => second.claim(),
      (e) =>
        e instanceof StoreError && e.kind === "locked" &&
        new RegExp(`in use by another gatehouse \\(pid ${Deno.pid} on `).test(e.message),
    );
    first.release();
    second.claim();
    assert.match(second.meta("owner")!, new RegExp(`"pid":${Deno.pid}`));
    second.close();
    first.close();
  });
});

Deno.test("a writer killed with -9 leaves no lock behind", async () => {
  await withDir(async (dir) => {
    const path = `${dir}/g.db`;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `import { Store } from "${new URL("../../src/journal/store.ts", import.meta.url).href}";
        const s = Store.open(${
          JSON.stringify(path)
        }); s.claim(); console.log("claimed"); setTimeout(() => {}, 60000);`,
      ],
      stdout: "piped",
    }).spawn();
    const reader = child.stdout.getReader();
    await reader.read();
    const store = Store.open(path);
    assert.throws(() => store.claim(), (e) => e instanceof StoreError && e.kind === "locked");
    child.kill("SIGKILL");
    await child.status;
    await reader.cancel();
    store.claim();
    store.close();
  });
});

Deno.test("bad stores: not a database, a missing directory, a newer schema, a missing store for readers", async () => {
  await withDir((dir) => {
    Deno.writeTextFileSync(
      `${dir}/junk.db`,
      "this is not a database, it is a text file with enough bytes to look like one".repeat(20),
    );
    assert.throws(
      () => Store.open(`${dir}/junk.db`),
      (e) =>
        e instanceof StoreError && e.kind === "corrupt" &&
        /not a gatehouse store|not a database/.test(e.message),
    );
    assert.throws(
      () => Store.open(`${dir}/missing/dir/g.db`),
      (e) => e instanceof StoreError && /directory does not exist/.test(e.message),
    );
    const store = Store.open(`${dir}/g.db`);
    store.transaction("future", () => undefined);
    store.close();
    const future = Store.open(`${dir}/future.db`);
    future.close();
    assert.throws(
      () => Store.open(`${dir}/nope.db`, { readOnly: true }),
      (e) => e instanceof StoreError && e.kind === "missing",
    );
  });
});

Deno.test("a full store (max_page_count) fails with 'full' and works again when room is made", async () => {
  await withDir((dir) => {
    const store = Store.open(`${dir}/g.db`);
    const pages = Number(store.usedBytes() / store.pageSize());
    store.setMaxPageCount(pages + 8);
    const big = new Uint8Array(20_000);
    let id = 0;
    assert.throws(() => {
      for (let i = 0; i < 100; i++) {
        store.transaction("filling", () => store.events.insert(++id, 0, null, null, "X", 1, big));
      }
    }, (e) => e instanceof StoreError && e.kind === "full" && /is full/.test(e.message));
    store.setMaxPageCount(1_000_000);
    store.transaction("after", () => store.events.insert(1000, 0, null, null, "X", 1, big));
    assert.equal(store.events.maxId(), 1000);
    store.close();
  });
});

Deno.test("a store of schema version 1 (sessions keyed by shard) migrates: its sessions stay, and two shard counts then live side by side", async () => {
  await withDir((dir) => {
    const path = `${dir}/old.db`;
    // A store as version 1 left it.
    const db = new DatabaseSync(path);
    db.exec(MIGRATIONS[0]);
    db.exec("PRAGMA user_version = 1");
    db.prepare(
      "INSERT INTO sessions (shard, shard_count, session_id, seq, resume_url, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
    ).run(1, 2, "old-1", 41, "wss://r", 7);
    db.prepare(
      "INSERT INTO events (id, shard, session, seq, t, received_at, payload) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
      .run(1, 1, "old-1", 42, "MESSAGE_CREATE", 8, enc("{}"));
    db.close();
    // A reader opens it as it is.
    const reader = Store.open(path, { readOnly: true });
    assert.equal(reader.schemaVersion(), 1);
    assert.deepEqual(reader.sessions.load().map((s) => [s.shardCount, s.shard, s.sessionId, s.seq]), [
      [2, 1, "old-1", 42],
    ]);
    reader.close();
    const store = Store.open(path);
    assert.equal(store.schemaVersion(), SCHEMA_VERSION);
    assert.equal(SCHEMA_VERSION, 3);
    assert.deepEqual(store.sessions.load(), [{
      shardCount: 2,
      shard: 1,
      sessionId: "old-1",
      seq: 42,
      resumeUrl: "wss://r",
      updatedAt: 7,
    }]);
    assert.equal(store.lastId, 1, "events kept");
    store.transaction("reshard", () => {
      store.sessions.save({
        shardCount: 4,
        shard: 1,
        sessionId: "new-1",
        seq: 1,
        resumeUrl: "wss://r",
        updatedAt: 9,
      });
    });
    assert.deepEqual(store.sessions.load().map((s) => [s.shardCount, s.shard, s.sessionId]), [
      [2, 1, "old-1"],
      [4, 1, "new-1"],
    ]);
    store.transaction("lost", () => store.sessions.delete(2, 1));
    assert.deepEqual(store.sessions.load().map((s) => s.sessionId), ["new-1"]);
    store.close();
  });
});
