/** The cores scenario's split of shards between processes, as gatehouse's own config reads it. */
import assert from "node:assert/strict";
import { shardRange } from "../../bench/cores.ts";
import { shardIds } from "../../src/config/parsers.ts";

const parsed = (text: string) => {
  const result = shardIds.parse(text);
  assert.ok(result.ok, `DISCORD_SHARD_IDS=${text} is accepted`);
  return result.value;
};

Deno.test("shardRange: 16 shards in halves are 0-7 and 8-15, one process runs 0-15", () => {
  assert.deepEqual([0, 1].map((i) => shardRange(16, 2, i)), ["0-7", "8-15"]);
  assert.equal(shardRange(16, 1, 0), "0-15");
  assert.equal(shardRange(3, 3, 1), "1");
});

Deno.test("shardRange: the processes' ids, as DISCORD_SHARD_IDS parses them, cover every shard once", () => {
  for (const shards of [1, 7, 16]) {
    for (let processes = 1; processes <= shards; processes++) {
      const ids = Array.from({ length: processes }, (_, i) => parsed(shardRange(shards, processes, i)))
        .flat();
      assert.deepEqual(
        ids,
        Array.from({ length: shards }, (_, i) => i),
        `${shards} shards, ${processes} processes`,
      );
    }
  }
});
