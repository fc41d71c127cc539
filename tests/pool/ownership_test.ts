import assert from "node:assert/strict";
import {
  LeaseOwnership,
  type LeaseStore,
  LocalLeaseStore,
  type ShardOwnership,
  StaticOwnership,
} from "../../src/pool/ownership.ts";
import { ManualClock } from "../../src/util/clock.ts";
import { leaseStoreContract, ownershipContract } from "./ownership_contract.ts";

leaseStoreContract("LocalLeaseStore", () => {
  const clock = new ManualClock();
  return Promise.resolve({
    store: new LocalLeaseStore(clock),
    wait: (ms) => clock.advance(ms),
    ttlMs: 1000,
    close: () => Promise.resolve(),
  });
});

ownershipContract("StaticOwnership", () =>
  Promise.resolve({
    make: (_node, wanted) => new StaticOwnership(wanted),
    wait: () => Promise.resolve(),
    competing: false,
    leaseMs: 0,
    close: () => Promise.resolve(),
  }));

/** One process's way to the shared store, which a test can cut. */
class Link implements LeaseStore {
  how: "ok" | "hang" | "fail" = "ok";
  constructor(readonly inner: LeaseStore) {}
  #call<T>(op: () => Promise<T>): Promise<T> {
    if (this.how === "hang") return new Promise<T>(() => {});
    if (this.how === "fail") return Promise.reject(new Error("connection refused"));
    return op();
  }
  acquire(name: string, owner: string, ttlMs: number) {
    return this.#call(() => this.inner.acquire(name, owner, ttlMs));
  }
  renew(name: string, owner: string, ttlMs: number) {
    return this.#call(() => this.inner.renew(name, owner, ttlMs));
  }
  release(name: string, owner: string) {
    return this.#call(() => this.inner.release(name, owner));
  }
  holder(name: string) {
    return this.#call(() => this.inner.holder(name));
  }
}

ownershipContract("LeaseOwnership over LocalLeaseStore", () => {
  const clock = new ManualClock();
  const shared = new LocalLeaseStore(clock);
  const links = new Map<ShardOwnership, Link>();
  const made: ShardOwnership[] = [];
  return Promise.resolve({
    make: (node, wanted) => {
      const link = new Link(shared);
      const own = new LeaseOwnership({ store: link, node, wanted, leaseMs: 3000, clock, prefix: "test:" });
      links.set(own, link);
      made.push(own);
      return own;
    },
    wait: (ms) => clock.advance(ms),
    competing: true,
    leaseMs: 3000,
    cut: (own, how) => (links.get(own)!.how = how),
    close: async () => {
      for (const link of links.values()) link.how = "ok";
      await Promise.all(made.map((own) => own.stop()));
      assert.equal(clock.pending, 0, "every timer cleared at stop");
    },
  });
});

Deno.test("LeaseOwnership: lease names carry the prefix, the shard count and the id", async () => {
  const clock = new ManualClock();
  const store = new LocalLeaseStore(clock);
  const own = new LeaseOwnership({
    store,
    node: "host-1:42",
    wanted: [{ id: 3, count: 8 }],
    leaseMs: 900,
    clock,
    prefix: "bot:lease:",
  });
  await own.start();
  assert.equal(await store.holder("bot:lease:8:3"), "host-1:42");
  await clock.advance(5000);
  assert.equal(await store.holder("bot:lease:8:3"), "host-1:42", "renewed every third of the lease");
  await own.stop();
  assert.equal(await store.holder("bot:lease:8:3"), null, "released at stop");
});

Deno.test("LeaseOwnership: a store that fails is reported and ownership comes back when it answers again", async () => {
  const clock = new ManualClock();
  const link = new Link(new LocalLeaseStore(clock));
  const errors: string[] = [];
  const own = new LeaseOwnership({
    store: link,
    node: "a",
    wanted: [{ id: 0, count: 1 }],
    leaseMs: 3000,
    clock,
    onError: (error) => errors.push(error.message),
  });
  await own.start();
  link.how = "fail";
  await clock.advance(2100);
  assert.equal(own.holds({ id: 0, count: 1 }), false);
  assert.ok(errors.length >= 1 && errors.every((e) => e === "connection refused"), errors.join());
  link.how = "ok";
  await clock.advance(1000);
  assert.equal(own.holds({ id: 0, count: 1 }), true, "re-acquired once the store answers");
  await own.stop();
});
