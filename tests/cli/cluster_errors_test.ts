/**
 * `run` in cluster mode refuses what cannot work, before touching a shard, with the reason: Redis that
 * does not answer (exit 1, no password in the message), shard ids given by hand, no Redis sink (exit 2).
 */
import assert from "node:assert/strict";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, runGatehouse } from "../helpers/gatehouse.ts";

Deno.test("cluster mode: Redis unreachable, [shards] ids set, or no redis sink: a clear error, no shard started", async () => {
  const fake = await FakeDiscord.start({ shards: 2 });
  try {
    const cases: Array<[Record<string, string>, number, RegExp]> = [
      [
        { REDIS_URL: "redis://:hunter2secret@127.0.0.1:1" },
        1,
        /cannot reach Redis \(\[redis\] url\): connect ECONNREFUSED/,
      ],
      [{ DISCORD_SHARD_IDS: "0" }, 2, /leave \[shards\] ids \(DISCORD_SHARD_IDS\) unset/],
      [{ BROKER_TYPE: "stdout" }, 2, /\[broker\] type must include "redis"/],
    ];
    for (const [env, code, message] of cases) {
      const r = await runGatehouse({
        env: {
          ...fakeEnv(fake.apiHost),
          GATEHOUSE_CLUSTER: "redis",
          BROKER_TYPE: "redis",
          REDIS_URL: "redis://127.0.0.1:6379",
          GATEHOUSE_REDIS_PREFIX: `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`,
          ...env,
        },
        timeoutMs: 20_000,
      });
      assert.equal(r.code, code, `${JSON.stringify(env)}: ${r.stderr.slice(-500)}`);
      assert.match(r.stderr, message);
      assert.doesNotMatch(r.stderr, /hunter2secret/, "the Redis password is never printed");
    }
    assert.equal(fake.identifies.length, 0, "no shard identified");
  } finally {
    await fake.stop();
  }
});
