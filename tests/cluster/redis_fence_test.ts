/**
 * The cluster-mode sink's scenarios (fence_scenarios.ts) on the shared Redis on 127.0.0.1, both stream
 * layouts: the fences and the advance run inside each stream's append script.
 */
import * as scenarios from "./fence_scenarios.ts";
import { withEnv } from "./fence_env.ts";

for (const layout of ["per-event", "single"] as const) {
  const run = (name: string, scenario: scenarios.Scenario) =>
    Deno.test(`redis fence (${layout}): ${name}`, () => withEnv((env) => scenario(env, layout)));
  run(
    "the lease holder's batch is appended and the session seq moves to its highest seq",
    scenarios.holderAppends,
  );
  run(
    "a node without the lease appends nothing of that shard and leaves its seq",
    scenarios.nonHolderAppendsNothing,
  );
  run("the same batch delivered twice is appended once and the seq stays", scenarios.twiceAppendsOnce);
  run(
    "two nodes racing on one shard, its lease moving between them: every event once, the seq never past the streams",
    scenarios.race(400, layout === "single" ? 7 : 11),
  );
  run(
    "a dead host returning with undelivered events appends nothing twice and loses nothing",
    scenarios.returningHost,
  );
  run(
    "a returning host's old session stays out when the new owner started another",
    scenarios.returningHostNewSession,
  );
}
