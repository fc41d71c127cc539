/**
 * The lease store and both lease ownerships against the real Redis (127.0.0.1:6379 unless
 * GATEHOUSE_TEST_REDIS says otherwise), in real time with short leases; every test has its own key
 * prefix and deletes its keys afterwards.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { ClusterOwnership, leaseName, nodesKey } from "../../src/cluster/cluster_ownership.ts";
import { RedisMembers } from "../../src/cluster/members.ts";
import { RedisLeaseStore } from "../../src/cluster/redis_leases.ts";
import { LeaseOwnership, type LeaseStore, type ShardOwnership } from "../../src/pool/ownership.ts";
import { leaseStoreContract, ownershipContract, type OwnershipHarness } from "../pool/ownership_contract.ts";
import { Link } from "./links.ts";
import { deleteKeys, REDIS_URL, sleep, testPrefix } from "./redis_helpers.ts";

leaseStoreContract("RedisLeaseStore", async () => {
  const client = new Redis(REDIS_URL);
  await client.ping();
  const prefix = testPrefix();
  const inner = new RedisLeaseStore(client);
  // The contract names its leases; each test's keys get the test's prefix.
  const store: LeaseStore = {
    acquire: (name, owner, ttlMs) => inner.acquire(`${prefix}:${name}`, owner, ttlMs),
    renew: (name, owner, ttlMs) => inner.renew(`${prefix}:${name}`, owner, ttlMs),
    release: (name, owner) => inner.release(`${prefix}:${name}`, owner),
    holder: (name) => inner.holder(`${prefix}:${name}`),
  };
  return {
    store,
    wait: sleep,
    ttlMs: 200,
    close: async () => {
      await deleteKeys(client, prefix);
      await client.quit();
    },
  };
});

Deno.test("RedisLeaseStore: a lease is one key under its name, the owner as value, expiring in Redis", async () => {
  const client = new Redis(REDIS_URL);
  const prefix = testPrefix();
  try {
    const store = new RedisLeaseStore(client);
    const name = leaseName(prefix, { id: 3, count: 16 });
    assert.equal(name, `{${prefix}}:lease:16:3`, "the prefix is the hash tag the sink's fencing reads");
    assert.equal(await store.acquire(name, "host-1:42", 5000), true);
    assert.equal(await client.get(name), "host-1:42");
    const ttl = await client.pttl(name);
    assert.ok(ttl > 4000 && ttl <= 5000, `PX set: ${ttl}`);
    assert.equal(await store.acquire(name, "host-1:42", 60_000), true, "the owner's again: extended");
    assert.ok((await client.pttl(name)) > 50_000);
    assert.equal(await store.renew(name, "host-1:42", 2000), true);
    assert.ok((await client.pttl(name)) <= 2000, "renewal sets the term from now");
  } finally {
    await deleteKeys(client, prefix);
    await client.quit();
  }
});

/** An ownership harness over the real Redis; `make` builds one process's ownership over its own link. */
async function redisOwnership(
  leaseMs: number,
  build: (
    link: Link,
    store: LeaseStore,
    client: Redis,
    prefix: string,
  ) => (node: string, wanted: never[]) => ShardOwnership,
): Promise<OwnershipHarness> {
  const client = new Redis(REDIS_URL);
  await client.ping();
  const prefix = testPrefix();
  const store = new RedisLeaseStore(client);
  const links = new Map<ShardOwnership, Link>();
  return {
    make: (node, wanted) => {
      const link = new Link();
      const own = build(link, store, client, prefix)(node, wanted as never[]);
      links.set(own, link);
      return own;
    },
    wait: sleep,
    competing: true,
    leaseMs,
    cut: (own, how) => (links.get(own)!.how = how),
    close: async () => {
      for (const link of links.values()) link.how = "ok";
      await Promise.all([...links.keys()].map((own) => own.stop()));
      await deleteKeys(client, prefix);
      await client.quit();
    },
  };
}

const LEASE_MS = 1200;

ownershipContract(
  "LeaseOwnership over RedisLeaseStore",
  () =>
    redisOwnership(LEASE_MS, (link, store, _client, prefix) => (node, wanted) =>
      new LeaseOwnership({
        store: link.store(store),
        node,
        wanted,
        leaseMs: LEASE_MS,
        prefix: `${prefix}:lease:`,
      })),
);

ownershipContract(
  "ClusterOwnership over Redis",
  () =>
    redisOwnership(LEASE_MS, (link, store, client, prefix) => (node, wanted) =>
      new ClusterOwnership({
        store: link.store(store),
        members: link.members(new RedisMembers(client, nodesKey(prefix))),
        node,
        keys: wanted,
        leaseMs: LEASE_MS,
        prefix,
        handOff: () => Promise.resolve(),
      })),
);

Deno.test("RedisMembers: registered nodes are live, sorted, until their registration ends or they leave", async () => {
  const client = new Redis(REDIS_URL);
  const prefix = testPrefix();
  try {
    const members = new RedisMembers(client, nodesKey(prefix));
    assert.deepEqual(await members.live(), []);
    assert.deepEqual(await members.beat("b:2", 300), ["b:2"]);
    assert.deepEqual(await members.beat("a:1", 5000), ["a:1", "b:2"]);
    assert.deepEqual(await members.live(), ["a:1", "b:2"]);
    assert.equal(await client.zscore(nodesKey(prefix), "c:3"), null);
    await sleep(450);
    assert.deepEqual(await members.live(), ["a:1"], "b's registration ended");
    assert.deepEqual(await members.beat("c:3", 200), ["a:1", "c:3"], "and it is gone from the set");
    assert.equal(await client.zcard(nodesKey(prefix)), 2);
    await members.leave("a:1");
    assert.deepEqual(await members.live(), ["c:3"]);
    assert.deepEqual(await members.beat("c:3", 200), ["c:3"]);
    await sleep(350);
    assert.equal(await client.exists(nodesKey(prefix)), 0, "the set expires with its last registration");
  } finally {
    await deleteKeys(client, prefix);
    await client.quit();
  }
});
