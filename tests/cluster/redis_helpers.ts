/** The shared Redis of the tests, a key prefix per test, and cleaning up after it. */
import type { Redis } from "ioredis";

export const REDIS_URL = Deno.env.get("GATEHOUSE_TEST_REDIS") ?? "redis://127.0.0.1:6379";

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function testPrefix(): string {
  return `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
}

/** Deletes every key under `prefix`. */
export async function deleteKeys(client: Redis, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", `${prefix}:*`, "COUNT", 1000);
    if (keys.length > 0) await client.del(...keys);
    cursor = next;
  } while (cursor !== "0");
}
