import { deepStrictEqual as assertEquals } from "node:assert/strict";
import { backoffDelay } from "../../src/util/backoff.ts";

Deno.test("backoff: doubles from the base up to the cap", () => {
  const policy = { baseMs: 100, maxMs: 5_000 };
  assertEquals([0, 1, 2, 3, 4, 5, 6, 7, 100].map((n) => backoffDelay(policy, n)), [
    0,
    100,
    200,
    400,
    800,
    1600,
    3200,
    5000,
    5000,
  ]);
});

Deno.test("backoff: jitter takes a random part of the delay, never more than the delay", () => {
  const policy = { baseMs: 1000, maxMs: 60_000, jitter: 0.5 };
  assertEquals(backoffDelay(policy, 1, 0), 500);
  assertEquals(backoffDelay(policy, 1, 0.5), 750);
  assertEquals(backoffDelay(policy, 1, 0.999999), 1000);
  assertEquals(backoffDelay(policy, 30, 0), 30_000);
  // A huge failure count stays finite and capped.
  assertEquals(backoffDelay(policy, 1e9, 0.999999), 60_000);
});
