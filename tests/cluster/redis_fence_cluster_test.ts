/**
 * The cluster-mode sink's scenarios (fence_scenarios.ts) on a Redis Cluster of three nodes of the test's
 * own: the streams lie in other slots than the leases and sessions, so the leases are read before the
 * appends and the advance runs in the prefix's slot. The same guarantees hold in these scenarios.
 */
import { RedisCluster } from "../helpers/redis_topologies.ts";
import * as scenarios from "./fence_scenarios.ts";
import { withEnv } from "./fence_env.ts";

Deno.test("redis fence on Redis Cluster: every scenario, both layouts", async (t) => {
  const cluster = await RedisCluster.start(3);
  try {
    for (const layout of ["per-event", "single"] as const) {
      const run = (name: string, scenario: scenarios.Scenario) =>
        t.step(
          `${layout}: ${name}`,
          () => withEnv((env) => scenario(env, layout), cluster.url, cluster.ports),
        );
      await run("the lease holder's batch is appended, the seq advances", scenarios.holderAppends);
      await run("a node without the lease appends nothing", scenarios.nonHolderAppendsNothing);
      await run("the same batch twice is appended once", scenarios.twiceAppendsOnce);
      await run("two nodes racing on one shard", scenarios.race(300, layout === "single" ? 3 : 5));
      await run("a delivery under way while retaking the lease", scenarios.inFlightWhileRetaking);
      await run("a dead host returning", scenarios.returningHost);
      await run("a returning host's old session", scenarios.returningHostNewSession);
    }
  } finally {
    await cluster.stop();
  }
});
