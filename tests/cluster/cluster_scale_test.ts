/**
 * The scale run of cluster mode, in the suite: 2500 idle shards over 5 `gatehouse run` processes on this
 * machine against the fake Discord (bench/cluster_scale.ts does the run; `deno task bench --only scale`
 * prints the same). A max_concurrency of 500 keeps Discord's 5 s per bucket and lets 2500 shards identify
 * in 5 rounds. Every shard must be READY, owned by exactly one process, with no bucket seeing two
 * IDENTIFYs within 5 s across the processes; memory per process and the identify timeline are printed.
 */
import assert from "node:assert/strict";
import { clusterScale, printScale } from "../../bench/cluster_scale.ts";

Deno.test("cluster at scale: 2500 idle shards over 5 processes, all READY, each shard owned once, no identify violation", async () => {
  const result = await clusterScale(2500, 5, 500);
  printScale(result);
  console.log(`identify timeline: ${result.timeline.map((t) => `${t.s} s: ${t.identified}`).join(", ")}`);
  assert.equal(result.identifies, 2500, "one IDENTIFY per shard: nobody identified twice");
  assert.equal(result.violations, 0, "no bucket saw two IDENTIFYs within 5 s");
  assert.equal(result.perProcess.reduce((n, p) => n + p.shards, 0), 2500, "every shard owned");
  for (const p of result.perProcess) {
    assert.equal(p.shards, 500, `${p.node} runs its even share`);
    assert.ok(p.rssMb < 400, `${p.node}: ${p.rssMb} MB for 500 idle shards`);
  }
});
