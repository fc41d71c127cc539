/** Small helpers shared by the command tests. */
import { shardForGuild } from "../../src/gateway/protocol.ts";

/** A guild id (a snowflake) that `shard` of `count` owns: the n-th one counting up from 1 << 22. */
export function guildOf(shard: number, count: number, n = 0): string {
  let found = -1;
  for (let i = 1n;; i++) {
    const id = String(i << 22n);
    if (shardForGuild(id, count) === shard && ++found === n) return id;
  }
}

/** One series of gatehouse's /metrics (0 when absent), e.g. `gatehouse_commands_total{source="stdin",result="rejected"}`. */
export async function metric(url: string, series: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

export const PRESENCE = { since: null, activities: [], status: "idle", afk: false };
