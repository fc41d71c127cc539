/**
 * Cluster mode's ownership in real time against real Redis: members come and go while a sampler reads
 * every lease from Redis every few ms and checks that no shard is ever held by two members; and a
 * member whose Redis dies gives its shards up before their leases can expire.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { ClusterOwnership, leaseName, nodesKey } from "../../src/cluster/cluster_ownership.ts";
import { RedisMembers } from "../../src/cluster/members.ts";
import { connectLeaseRedis, RedisLeaseStore } from "../../src/cluster/redis_leases.ts";
import type { LeaseStore, ShardKey } from "../../src/pool/ownership.ts";
import { RedisServer } from "../helpers/redis_server.ts";
import { deleteKeys, REDIS_URL, sleep, testPrefix } from "./redis_helpers.ts";

const shards = (count: number): ShardKey[] => Array.from({ length: count }, (_, id) => ({ id, count }));

async function waitUntil(what: string, check: () => boolean, timeoutMs: number): Promise<number> {
  const started = Date.now();
  while (!check()) {
    assert.ok(Date.now() - started < timeoutMs, `${what} within ${timeoutMs} ms`);
    await sleep(5);
  }
  return Date.now() - started;
}

Deno.test("cluster over Redis: 3 members own 4 of 12 each; one stops, 6 each; two join, 3 each; never two holders; hand-off before release", async () => {
  const LEASE_MS = 600;
  const client = new Redis(REDIS_URL);
  const prefix = testPrefix();
  const keys = shards(12);
  const inner = new RedisLeaseStore(client);
  const log: string[] = [];
  const problems: string[] = [];
  const store: LeaseStore = {
    acquire: (name, owner, ttlMs) => inner.acquire(name, owner, ttlMs),
    renew: (name, owner, ttlMs) => inner.renew(name, owner, ttlMs),
    release: (name, owner) => {
      log.push(`release ${owner} ${name}`);
      return inner.release(name, owner);
    },
    holder: (name) => inner.holder(name),
  };
  const nodes = new Map<string, ClusterOwnership>();
  const add = async (node: string) => {
    const own: ClusterOwnership = new ClusterOwnership({
      store,
      members: new RedisMembers(client, nodesKey(prefix)),
      node,
      keys,
      leaseMs: LEASE_MS,
      prefix,
      handOff: async (key) => {
        const name = leaseName(prefix, key);
        log.push(`hand-off ${node} ${name}`);
        await sleep(20);
        const holder = await client.get(name);
        if (holder !== node || !own.holds(key)) {
          problems.push(`${name} not ${node}'s at the end of its hand-off`);
        }
        log.push(`handed ${node} ${name}`);
      },
      onError: (error) => problems.push(`${node}: ${error.message}`),
    });
    nodes.set(node, own);
    await own.start();
  };
  const counts = () => [...nodes.values()].map((own) => own.owned().length);
  const holdersNow = () =>
    keys.map((k) => [...nodes].filter(([, own]) => own.holds(k)).map(([node]) => node));

  // Every few ms: who holds each shard (all members live in this thread: one instant), what Redis says,
  // who holds it after Redis answered.
  let sampling = true, samples = 0;
  const sampler = (async () => {
    while (sampling) {
      const before = holdersNow();
      const leases = await Promise.all(keys.map((k) => client.get(leaseName(prefix, k))));
      const after = holdersNow();
      for (const [i, key] of keys.entries()) {
        for (const held of [before[i], after[i]]) {
          if (held.length > 1) problems.push(`shard ${key.id} held by ${held} at once`);
        }
        if (before[i].length === 1 && after[i][0] === before[i][0] && leases[i] !== before[i][0]) {
          problems.push(`shard ${key.id} held by ${before[i][0]} but its lease is ${leases[i]}'s`);
        }
      }
      samples++;
      await sleep(3);
    }
  })();
  /** Releases from `from` on by members still running, each after its hand-off ended. */
  const handOffs = (from: number, stopped: string[] = []) => {
    const releases = log.slice(from).filter((l) =>
      l.startsWith("release") && !stopped.includes(l.split(" ")[1])
    );
    for (const line of releases) {
      const [, node, name] = line.split(" ");
      const handed = log.indexOf(`handed ${node} ${name}`, from), at = log.indexOf(line, from);
      assert.ok(handed >= 0 && handed < at, `${line}: after its hand-off`);
    }
    return releases.length;
  };

  try {
    for (const node of ["a", "b", "c"]) await add(node);
    await waitUntil("4 shards each", () => counts().join() === "4,4,4", LEASE_MS * 4);
    assert.ok(handOffs(0) >= 8, "shards moved to the members that joined, each handed off first");

    const stopAt = log.length;
    await nodes.get("b")!.stop();
    const stopMs = await waitUntil("6 shards each", () => counts().join() === "6,0,6", LEASE_MS * 2);
    assert.ok(stopMs <= LEASE_MS, `taken over within a lease: ${stopMs} ms`);
    handOffs(stopAt, ["b"]);

    const joinAt = log.length;
    await add("d");
    await add("e");
    const joinMs = await waitUntil("3 shards each", () => counts().join() === "3,0,3,3,3", LEASE_MS * 4);
    assert.ok(joinMs <= LEASE_MS * 2, `spread within two leases: ${joinMs} ms`);
    assert.ok(handOffs(joinAt) >= 6);
    await sleep(LEASE_MS);
    assert.equal(counts().join(), "3,0,3,3,3", "and it stays so");
    const leases = await Promise.all(keys.map((k) => client.get(leaseName(prefix, k))));
    assert.deepEqual(leases, holdersNow().map((h) => h[0]), "each lease is its holder's");
    assert.deepEqual(await new RedisMembers(client, nodesKey(prefix)).live(), ["a", "c", "d", "e"]);
    sampling = false;
    await sampler;
    assert.ok(samples > 100, `sampled ${samples} times`);
    assert.deepEqual(problems, []);
    console.log(
      `taken over after a stop in ${stopMs} ms, spread after two joins in ${joinMs} ms, ${samples} samples`,
    );
  } finally {
    sampling = false;
    await sampler;
    for (const own of nodes.values()) await own.stop();
    await deleteKeys(client, prefix);
    await client.quit();
  }
});

Deno.test("cluster over Redis: when Redis dies, holds() turns false before the lease could expire; back when Redis is", async () => {
  const LEASE_MS = 900;
  const server = await RedisServer.start({ durable: false });
  const client = connectLeaseRedis(server.url, LEASE_MS);
  client.on("error", () => {});
  const prefix = testPrefix();
  const errors: string[] = [];
  const key = { id: 0, count: 1 };
  const own = new ClusterOwnership({
    store: new RedisLeaseStore(client),
    members: new RedisMembers(client, nodesKey(prefix)),
    node: "a",
    keys: [key],
    leaseMs: LEASE_MS,
    prefix,
    handOff: () => Promise.resolve(),
    onError: (error) => errors.push(error.message),
  });
  const probe = new Redis(server.url);
  try {
    await own.start();
    assert.equal(own.holds(key), true);
    await sleep(LEASE_MS / 2);
    // The lease ends no earlier than this (a renewal after the PTTL only moves it later).
    const asked = Date.now();
    const expiresAt = asked + await probe.pttl(leaseName(prefix, key));
    probe.disconnect();
    await server.kill();
    assert.equal(own.holds(key), true, "held until the deadline");
    await waitUntil("holds() false", () => !own.holds(key), LEASE_MS);
    const givenUp = Date.now();
    assert.ok(givenUp < expiresAt, `given up ${expiresAt - givenUp} ms before the lease could expire`);
    assert.deepEqual(own.owned(), []);
    await sleep(LEASE_MS / 3);
    assert.ok(errors.length >= 1, "the failures are reported");
    await server.restart();
    const backMs = await waitUntil("held again", () => own.holds(key), LEASE_MS * 4);
    console.log(
      `given up ${expiresAt - givenUp} ms before expiry; held again ${backMs} ms after Redis was back`,
    );
  } finally {
    await own.stop();
    probe.disconnect();
    client.disconnect();
    await server.stop();
  }
});
