/**
 * ClusterOwnership on virtual time, over the in-memory lease store and membership: the ownership
 * contract, shares as members come and go, and the hand-off before each release.
 */
import assert from "node:assert/strict";
import { ClusterOwnership, leaseName } from "../../src/cluster/cluster_ownership.ts";
import { LocalMembers } from "../../src/cluster/members.ts";
import { LocalLeaseStore, type ShardKey, type ShardOwnership } from "../../src/pool/ownership.ts";
import { ManualClock } from "../../src/util/clock.ts";
import { ownershipContract } from "../pool/ownership_contract.ts";
import { Link } from "./links.ts";

const LEASE_MS = 3000;

ownershipContract("ClusterOwnership over the local store", () => {
  const clock = new ManualClock();
  const store = new LocalLeaseStore(clock);
  const members = new LocalMembers(clock);
  const links = new Map<ShardOwnership, Link>();
  return Promise.resolve({
    make: (node, wanted) => {
      const link = new Link();
      const own = new ClusterOwnership({
        store: link.store(store),
        members: link.members(members),
        node,
        keys: wanted,
        leaseMs: LEASE_MS,
        prefix: "test",
        handOff: () => Promise.resolve(),
        clock,
      });
      links.set(own, link);
      return own;
    },
    wait: (ms) => clock.advance(ms),
    competing: true,
    leaseMs: LEASE_MS,
    cut: (own, how) => (links.get(own)!.how = how),
    close: async () => {
      for (const link of links.values()) link.how = "ok";
      await Promise.all([...links.keys()].map((own) => own.stop()));
      assert.equal(clock.pending, 0, "every timer cleared at stop");
    },
  });
});

const shards = (count: number): ShardKey[] => Array.from({ length: count }, (_, id) => ({ id, count }));

/** Members of one bot on one virtual clock, each with its own (cuttable) link to the shared store. */
class Cluster {
  readonly clock = new ManualClock();
  readonly store = new LocalLeaseStore(this.clock);
  readonly members = new LocalMembers(this.clock);
  readonly log: string[] = [];
  /** Failures reported by members (a failed assertion in a hand-off lands here too). */
  readonly errors: string[] = [];
  readonly nodes = new Map<string, ClusterOwnership>();
  readonly links = new Map<string, Link>();
  constructor(readonly keys: ShardKey[], readonly handOffMs = 100, readonly settleMs = 0) {}

  add(node: string): ClusterOwnership {
    const link = new Link();
    const own: ClusterOwnership = new ClusterOwnership({
      store: link.store(this.store, (name, owner) => this.log.push(`release ${owner} ${name}`)),
      members: link.members(this.members),
      node,
      keys: this.keys,
      leaseMs: LEASE_MS,
      prefix: "bot",
      clock: this.clock,
      settleMs: this.settleMs,
      onError: (error) => this.errors.push(`${node}: ${error.message}`),
      handOff: async (key) => {
        const name = leaseName("bot", key);
        this.log.push(`hand-off ${node} ${name}`);
        assert.equal(own.holds(key), true, "held while handed off");
        assert.equal(
          own.owned().some((k) => k.id === key.id && k.count === key.count),
          false,
          "no longer owned: not started again",
        );
        await new Promise<void>((resolve) => this.clock.setTimeout(resolve, this.handOffMs));
        assert.equal(await this.store.holder(name), node, "the lease is still ours until the hand-off ends");
        assert.equal(own.holds(key), true, "renewed while handed off");
        this.log.push(`handed ${node} ${name}`);
      },
    });
    this.nodes.set(node, own);
    this.links.set(node, link);
    return own;
  }

  counts(): Record<string, number> {
    return Object.fromEntries([...this.nodes].map(([node, own]) => [node, own.owned().length]));
  }

  /** Lets `ms` pass, checking at every step that no shard is held by two members. */
  async run(ms: number, step = 50): Promise<void> {
    for (let t = 0; t < ms; t += step) {
      await this.clock.advance(step);
      for (const key of this.keys) {
        const holders = [...this.nodes].filter(([, own]) => own.holds(key)).map(([node]) => node);
        assert.ok(holders.length <= 1, `${key.id} held by ${holders}`);
      }
    }
  }

  /** Every release from `from` on by a running member came after the end of its hand-off. */
  checkHandOffs(from: number, stopped: string[] = []): number {
    let checked = 0;
    for (const [i, line] of this.log.entries()) {
      const [what, node, name] = line.split(" ");
      if (i < from || what !== "release" || stopped.includes(node)) continue;
      const handed = this.log.indexOf(`handed ${node} ${name}`, from);
      assert.ok(handed >= 0 && handed < i, `${line}: after its hand-off\n${this.log.join("\n")}`);
      checked++;
    }
    return checked;
  }

  async stop(): Promise<void> {
    for (const link of this.links.values()) link.how = "ok";
    for (const own of this.nodes.values()) await own.stop();
    assert.equal(this.clock.pending, 0, "every timer cleared at stop");
    assert.deepEqual(this.errors.filter((e) => !e.endsWith("connection refused")), [], "nothing else failed");
  }
}

Deno.test("ClusterOwnership: 3 members own 4 of 12 each; one stops, 6 each; two more, 3 each; hand-off before release", async () => {
  const c = new Cluster(shards(12));
  for (const node of ["a", "b", "c"]) await c.add(node).start();
  await c.run(LEASE_MS * 2);
  assert.deepEqual(c.counts(), { a: 4, b: 4, c: 4 });
  assert.ok(c.checkHandOffs(0) >= 8, "shards moved as members joined, each handed off");
  const stopAt = c.log.length;
  await c.nodes.get("b")!.stop();
  c.nodes.delete("b");
  await c.run(LEASE_MS);
  assert.deepEqual(c.counts(), { a: 6, c: 6 });
  c.checkHandOffs(stopAt, ["b"]);
  const joinAt = c.log.length;
  await c.add("d").start();
  await c.add("e").start();
  await c.run(LEASE_MS * 2);
  assert.deepEqual(c.counts(), { a: 3, c: 3, d: 3, e: 3 });
  assert.ok(c.checkHandOffs(joinAt) >= 6);
  for (const key of c.keys) {
    const holder = await c.store.holder(leaseName("bot", key));
    assert.equal(c.nodes.get(holder!)?.holds(key), true, `${key.id}: its lease's holder holds it`);
  }
  await c.stop();
});

Deno.test("ClusterOwnership: a hand-off longer than the lease keeps the lease renewed until it ends", async () => {
  const c = new Cluster(shards(2), LEASE_MS * 2);
  await c.add("a").start();
  await c.add("b").start();
  await c.run(LEASE_MS * 4);
  assert.deepEqual(c.counts(), { a: 1, b: 1 });
  assert.equal(c.checkHandOffs(0), 1, "the hand-off ended, then the lease was released");
  await c.stop();
});

Deno.test("ClusterOwnership: members started together with settleMs see each other first: nothing is handed off", async () => {
  const c = new Cluster(shards(12), 100, LEASE_MS);
  const starts: Promise<void>[] = [];
  for (const node of ["a", "b", "c"]) {
    starts.push(c.add(node).start());
    await c.clock.advance(200);
  }
  await c.run(LEASE_MS * 2);
  await Promise.all(starts);
  assert.deepEqual(c.counts(), { a: 4, b: 4, c: 4 });
  assert.deepEqual(c.log.filter((l) => l.startsWith("hand-off")), [], "each took its own share only");
  await c.stop();
  const d = new Cluster(shards(12), 0, LEASE_MS);
  const pending = d.add("a").start();
  await d.clock.advance(LEASE_MS / 2);
  await d.stop();
  await pending;
  assert.deepEqual(await d.members.live(), [], "a stop while settling ends the wait and leaves");
});

Deno.test("ClusterOwnership: a member that dies drops out when its registration ends; its shards are taken as its leases expire", async () => {
  const c = new Cluster(shards(6), 0);
  await c.add("a").start();
  await c.add("b").start();
  await c.run(LEASE_MS * 2);
  assert.deepEqual(c.counts(), { a: 3, b: 3 });
  const b = c.nodes.get("b")!;
  const bKeys = b.owned();
  c.links.get("b")!.how = "hang";
  const a = c.nodes.get("a")!;
  await c.run(LEASE_MS / 2);
  assert.deepEqual(a.members(), ["a", "b"], "still registered");
  assert.equal(a.owned().length, 3);
  await c.run(LEASE_MS);
  assert.deepEqual(a.members(), ["a"]);
  for (const key of bKeys) assert.equal(b.holds(key), false, "b fenced itself off");
  await c.run(LEASE_MS / 2);
  assert.equal(a.owned().length, 6, "b's leases expired and were taken");
  await c.stop();
});

Deno.test("ClusterOwnership: a member cut off from the store gives up its shards, the others take them, it gets its share back", async () => {
  const c = new Cluster(shards(4), 0);
  await c.add("a").start();
  await c.add("b").start();
  await c.run(LEASE_MS * 2);
  assert.deepEqual(c.counts(), { a: 2, b: 2 });
  c.links.get("a")!.how = "fail";
  await c.run(Math.ceil(LEASE_MS * 0.7));
  assert.equal(c.counts().a, 0, "a cannot renew: it gives up within two thirds of a lease");
  assert.deepEqual(c.nodes.get("a")!.members(), ["a", "b"], "and plans with the members last seen");
  await c.run(LEASE_MS);
  assert.deepEqual(c.counts(), { a: 0, b: 4 }, "b took them once a's registration and leases ended");
  assert.ok(c.errors.includes("a: connection refused"), "the failures are reported");
  c.links.get("a")!.how = "ok";
  await c.run(LEASE_MS);
  assert.deepEqual(c.counts(), { a: 2, b: 2 });
  await c.stop();
});

Deno.test("ClusterOwnership: a hand-off that fails is reported and the lease released all the same", async () => {
  const clock = new ManualClock();
  const store = new LocalLeaseStore(clock);
  const members = new LocalMembers(clock);
  const errors: string[] = [];
  const make = (node: string) =>
    new ClusterOwnership({
      store,
      members,
      node,
      keys: shards(2),
      leaseMs: LEASE_MS,
      prefix: "bot",
      clock,
      handOff: () => Promise.reject(new Error(`${node} could not flush`)),
      onError: (error) => errors.push(error.message),
    });
  const a = make("a"), b = make("b");
  await a.start();
  await b.start();
  await clock.advance(LEASE_MS * 2);
  assert.equal(a.owned().length + b.owned().length, 2);
  assert.equal(a.owned().length, 1);
  assert.deepEqual(errors, ["a could not flush"]);
  await a.stop();
  await b.stop();
  assert.equal(clock.pending, 0);
});

Deno.test("ClusterOwnership: a reshard's pinned keys are held beside the share; setKeys hands the old ones off at once; unpinned, the shares even out", async () => {
  const c = new Cluster(shards(4));
  const a = c.add("a"), b = c.add("b");
  await a.start();
  await b.start();
  await c.run(LEASE_MS * 2);
  assert.deepEqual(c.counts(), { a: 2, b: 2 });
  // The new set (8) runs where it overlaps the old one: new shard j beside old shard j % 4.
  const overlap = (own: ClusterOwnership) => {
    const old = new Set(own.owned().map((k) => k.id));
    return shards(8).filter((k) => old.has(k.id % 4));
  };
  const pinnedA = overlap(a), pinnedB = overlap(b);
  a.pin(pinnedA);
  b.pin(pinnedB);
  await c.run(LEASE_MS);
  const names = (own: ClusterOwnership, count: number) =>
    own.owned().filter((k) => k.count === count).map((k) => k.id).sort((x, y) => x - y);
  assert.deepEqual(names(a, 8), pinnedA.map((k) => k.id));
  assert.deepEqual(names(b, 8), pinnedB.map((k) => k.id));
  assert.deepEqual([names(a, 4).length, names(b, 4).length], [2, 2], "the old shards stay");
  const before = c.log.length;

  // The switch: the old keys are handed off at once (not owned from this call on), the pinned ones stay.
  a.setKeys(shards(8));
  b.setKeys(shards(8));
  assert.deepEqual([names(a, 4), names(b, 4)], [[], []]);
  assert.deepEqual(names(a, 8), pinnedA.map((k) => k.id));
  await c.run(LEASE_MS);
  assert.equal(c.checkHandOffs(before), 4, "each old lease released after its hand-off");
  for (const id of [0, 1, 2, 3]) assert.equal(await c.store.holder(leaseName("bot", { id, count: 4 })), null);

  // Unpinned: the even split of 8 between two members.
  a.pin([]);
  b.pin([]);
  await c.run(LEASE_MS * 3);
  assert.deepEqual([names(a, 8).length, names(b, 8).length], [4, 4]);
  for (const key of shards(8)) {
    const holders = [a, b].filter((own) => own.holds(key)).length;
    assert.equal(holders, 1, `shard ${key.id} of 8 held once`);
  }
  await c.stop();
});

Deno.test("ClusterOwnership: beforeAcquire runs before each lease is taken; false skips the attempt until a later round", async () => {
  const clock = new ManualClock();
  const store = new LocalLeaseStore(clock);
  const members = new LocalMembers(clock);
  const asked: string[] = [];
  let ready = false;
  const own = new ClusterOwnership({
    store,
    members,
    node: "a",
    keys: shards(2),
    leaseMs: LEASE_MS,
    prefix: "bot",
    clock,
    handOff: () => Promise.resolve(),
    beforeAcquire: async (key) => {
      asked.push(`${key.id} ${await store.holder(leaseName("bot", key)) ?? "nobody"}`);
      return ready;
    },
  });
  await own.start();
  await clock.advance(LEASE_MS);
  assert.deepEqual(own.owned(), [], "not ready: nothing taken");
  assert.ok(asked.length >= 4, "asked again at every round");
  assert.deepEqual(new Set(asked), new Set(["0 nobody", "1 nobody"]), "asked before the lease was taken");
  ready = true;
  asked.length = 0;
  await clock.advance(LEASE_MS);
  assert.deepEqual(own.owned().map((k) => k.id), [0, 1]);
  assert.deepEqual(asked.sort(), ["0 nobody", "1 nobody"], "once per lease taken; not before renewals");
  await own.stop();
  assert.equal(clock.pending, 0);
});
