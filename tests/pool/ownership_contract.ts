/**
 * The contract every `LeaseStore` and every `ShardOwnership` keeps. Each implementation runs these
 * suites (the local ones in ownership_test.ts; cluster mode's Redis ones against a real Redis), with a
 * `wait` that moves its time: a manual clock for the local store, real time for Redis.
 */
import assert from "node:assert/strict";
import type { LeaseStore, ShardKey, ShardOwnership } from "../../src/pool/ownership.ts";

export interface LeaseStoreHarness {
  store: LeaseStore;
  /** Lets `ms` pass for the store's leases. */
  wait(ms: number): Promise<void>;
  /** A lease length long enough for a few operations, short enough to wait out. */
  ttlMs: number;
  close(): Promise<void>;
}

export function leaseStoreContract(name: string, setup: () => Promise<LeaseStoreHarness>): void {
  const test = (title: string, body: (h: LeaseStoreHarness, lease: string) => Promise<void>) =>
    Deno.test(`${name}: ${title}`, async () => {
      const h = await setup();
      try {
        await body(h, `lease-${crypto.randomUUID().slice(0, 8)}`);
      } finally {
        await h.close();
      }
    });

  test("a free lease is taken; then only its owner holds it", async ({ store, ttlMs }, lease) => {
    assert.equal(await store.holder(lease), null);
    assert.equal(await store.acquire(lease, "a", ttlMs), true);
    assert.equal(await store.holder(lease), "a");
    assert.equal(await store.acquire(lease, "b", ttlMs), false, "taken by another");
    assert.equal(await store.acquire(lease, "a", ttlMs), true, "the owner again");
    assert.equal(await store.renew(lease, "b", ttlMs), false, "another cannot renew");
    assert.equal(await store.renew(lease, "a", ttlMs), true);
  });

  test(
    "a lease not renewed expires and another may take it; the old owner cannot renew it",
    async (h, lease) => {
      const { store, ttlMs } = h;
      assert.equal(await store.acquire(lease, "a", ttlMs), true);
      await h.wait(ttlMs + Math.ceil(ttlMs / 2));
      assert.equal(await store.holder(lease), null);
      assert.equal(await store.renew(lease, "a", ttlMs), false, "an expired lease is not renewed");
      assert.equal(await store.acquire(lease, "b", ttlMs), true);
      assert.equal(await store.holder(lease), "b");
    },
  );

  test("a renewed lease outlives its first term", async (h, lease) => {
    const { store, ttlMs } = h;
    assert.equal(await store.acquire(lease, "a", ttlMs), true);
    for (let i = 0; i < 3; i++) {
      await h.wait(Math.floor(ttlMs / 2));
      assert.equal(await store.renew(lease, "a", ttlMs), true, `renewal ${i}`);
    }
    assert.equal(await store.acquire(lease, "b", ttlMs), false);
  });

  test("release is compare-and-delete: only the owner frees the lease", async ({ store, ttlMs }, lease) => {
    assert.equal(await store.release(lease, "a"), false, "nothing to release");
    assert.equal(await store.acquire(lease, "a", ttlMs), true);
    assert.equal(await store.release(lease, "b"), false);
    assert.equal(await store.holder(lease), "a");
    assert.equal(await store.release(lease, "a"), true);
    assert.equal(await store.holder(lease), null);
    assert.equal(await store.acquire(lease, "b", ttlMs), true, "free at once, no expiry to wait for");
  });
}

export interface OwnershipHarness {
  /** An ownership of `wanted` for a process called `node`; every ownership of one harness competes. */
  make(node: string, wanted: ShardKey[]): ShardOwnership;
  wait(ms: number): Promise<void>;
  /** Whether two processes can compete (a static split has nothing to compete for). */
  competing: boolean;
  /** Lease length, for the tests that let a process die. */
  leaseMs: number;
  /**
   * Cuts one process off the store: "hang" = its requests are never answered (a killed process, as far
   * as its leases go: it renews nothing and releases nothing); "fail" = they fail (Redis unreachable).
   */
  cut?(own: ShardOwnership, how: "hang" | "fail"): void;
  close(): Promise<void>;
}

const key = (id: number, count = 4): ShardKey => ({ id, count });
const names = (keys: ShardKey[]) => keys.map((k) => `${k.count}:${k.id}`);

export function ownershipContract(name: string, setup: () => Promise<OwnershipHarness>): void {
  const test = (title: string, body: (h: OwnershipHarness) => Promise<void>) =>
    Deno.test(`${name}: ${title}`, async () => {
      const h = await setup();
      try {
        await body(h);
      } finally {
        await h.close();
      }
    });

  test("owns nothing before start; what it owns after start is what it holds, sorted", async (h) => {
    const wanted = [key(2), key(0), key(1, 8), key(1)];
    const own = h.make("a", wanted);
    assert.deepEqual(own.owned(), []);
    assert.equal(own.holds(key(0)), false);
    await own.start();
    assert.deepEqual(names(own.owned()), ["4:0", "4:1", "4:2", "8:1"], "alone, it owns every wanted shard");
    for (const k of wanted) assert.equal(own.holds(k), true);
    assert.equal(own.holds(key(3)), false, "a shard it never wanted");
    assert.equal(own.holds(key(0, 8)), false, "same id, other count");
    await own.stop();
  });

  test("after stop it owns and holds nothing", async (h) => {
    const own = h.make("a", [key(0), key(1)]);
    await own.start();
    await own.stop();
    assert.deepEqual(own.owned(), []);
    assert.equal(own.holds(key(0)), false);
  });

  test("two processes never both hold one shard; a clean stop hands it over", async (h) => {
    if (!h.competing) return;
    const wanted = [key(0), key(1), key(2)];
    const a = h.make("a", wanted);
    const b = h.make("b", wanted);
    await a.start();
    await b.start();
    for (const k of wanted) assert.equal(a.holds(k) && b.holds(k), false, `shard ${k.id} held twice`);
    assert.deepEqual(names(a.owned()), ["4:0", "4:1", "4:2"], "the first owns what was free");
    assert.deepEqual(b.owned(), []);
    const seen: string[][] = [];
    b.subscribe((owned) => seen.push(names(owned)));
    await a.stop();
    await h.wait(h.leaseMs / 2);
    assert.deepEqual(names(b.owned()), ["4:0", "4:1", "4:2"], "released leases are taken within a renewal");
    assert.deepEqual(seen.at(-1), ["4:0", "4:1", "4:2"], "and subscribers are told");
    await b.stop();
  });

  test("a process that dies without releasing loses its shards once its leases expire", async (h) => {
    if (!h.competing || !h.cut) return;
    const dead = h.make("dead", [key(0)]);
    await dead.start();
    // A process that dies stops renewing and never releases: stop its timers, keep its leases.
    const survivor = h.make("survivor", [key(0)]);
    await survivor.start();
    assert.equal(survivor.holds(key(0)), false);
    h.cut(dead, "hang");
    await h.wait(h.leaseMs * 2);
    assert.equal(survivor.holds(key(0)), true);
    await survivor.stop();
  });

  test("a process that cannot renew stops holding before its lease can expire elsewhere", async (h) => {
    if (!h.competing || !h.cut) return;
    const own = h.make("a", [key(0)]);
    await own.start();
    const told: string[][] = [];
    own.subscribe((owned) => told.push(names(owned)));
    h.cut(own, "fail");
    await h.wait(Math.ceil(h.leaseMs * 0.7));
    assert.equal(own.holds(key(0)), false, "given up within two thirds of the lease");
    assert.deepEqual(told, [[]], "subscribers are told without a working store");
    await own.stop();
  });
}
