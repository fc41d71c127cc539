import assert from "node:assert/strict";
import { shareOf } from "../../src/cluster/members.ts";
import type { ShardKey } from "../../src/pool/ownership.ts";

const shards = (count: number): ShardKey[] => Array.from({ length: count }, (_, id) => ({ id, count }));
const nodeNames = (n: number, seed: number) =>
  Array.from({ length: n }, (_, i) => `host-${seed}-${i}:${4000 + i}`);

/** Shard name → node, from every node's own share. */
function assignment(nodes: string[], keys: ShardKey[]): Map<string, string> {
  const owner = new Map<string, string>();
  for (const node of nodes) {
    for (const k of shareOf(nodes, node, keys)) {
      const name = `${k.count}:${k.id}`;
      assert.equal(owner.has(name), false, `${name} given to ${owner.get(name)} and ${node}`);
      owner.set(name, node);
    }
  }
  return owner;
}

const moved = (a: Map<string, string>, b: Map<string, string>) =>
  [...a].filter(([name, node]) => b.get(name) !== node).length;

Deno.test("shareOf: every shard to exactly one node, each node ⌊m/n⌋ or ⌈m/n⌉, for many sizes", () => {
  for (const [m, n] of [[12, 3], [12, 4], [13, 4], [1, 3], [16, 1], [100, 7], [5, 5], [3, 5]]) {
    for (let seed = 0; seed < 20; seed++) {
      const nodes = nodeNames(n, seed);
      const owner = assignment(nodes, shards(m));
      assert.equal(owner.size, m, `${m} shards on ${n} nodes: all assigned`);
      for (const node of nodes) {
        const mine = [...owner.values()].filter((o) => o === node).length;
        assert.ok(mine === Math.floor(m / n) || mine === Math.ceil(m / n), `${node}: ${mine} of ${m}/${n}`);
      }
    }
  }
});

Deno.test("shareOf: the same answer whatever the order of the list; sorted; nothing for a node not listed", () => {
  const nodes = nodeNames(3, 1);
  const keys = [...shards(12), ...shards(24)];
  const share = shareOf(nodes, nodes[1], keys);
  assert.deepEqual(shareOf([...nodes].reverse(), nodes[1], [...keys].reverse()), share);
  assert.deepEqual(share, [...share].sort((a, b) => a.count - b.count || a.id - b.id));
  assert.equal(share.filter((k) => k.count === 12).length, 4, "each shard count is spread on its own");
  assert.equal(share.filter((k) => k.count === 24).length, 8);
  assert.deepEqual(shareOf(nodes, "elsewhere:1", keys), []);
  assert.deepEqual(shareOf([nodes[0]], nodes[0], shards(5)), shards(5), "alone: everything");
});

Deno.test("shareOf: a join or a leave moves about m/n shards (i % n would move nearly all)", () => {
  for (const [m, n] of [[12, 3], [64, 5], [1000, 9]]) {
    let joins = 0, leaves = 0, worstJoin = 0, worstLeave = 0;
    const trials = m > 100 ? 5 : 100;
    for (let seed = 0; seed < trials; seed++) {
      const nodes = nodeNames(n, seed);
      const before = assignment(nodes, shards(m));
      const joined = moved(before, assignment([...nodes, `new-${seed}:1`], shards(m)));
      const left = moved(before, assignment(nodes.slice(1), shards(m)));
      joins += joined;
      leaves += left;
      worstJoin = Math.max(worstJoin, joined);
      worstLeave = Math.max(worstLeave, left);
    }
    // The least a join can move is what the newcomer takes (⌊m/(n+1)⌋); a leave, what the leaver had.
    const joinMin = Math.floor(m / (n + 1)), leaveMin = Math.floor(m / n);
    const report = `${m} shards, ${n} nodes: join avg ${joins / trials} worst ${worstJoin}, ` +
      `leave avg ${leaves / trials} worst ${worstLeave}`;
    assert.ok(joins / trials <= 1.4 * joinMin, report);
    assert.ok(leaves / trials <= 1.4 * leaveMin, report);
    assert.ok(worstJoin <= 2 * joinMin && worstLeave <= 2 * leaveMin, report);
    assert.ok(joins / trials >= joinMin, report);
  }
});
