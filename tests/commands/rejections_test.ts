/** Rejection log lines are rate-limited: 10 per 10 s, then one summary line; nothing else is lost. */
import assert from "node:assert/strict";
import { RejectionLog } from "../../src/commands/rejections.ts";
import { ManualClock } from "../../src/util/clock.ts";
import { logger, setupLogging } from "../../src/util/log.ts";

Deno.test("rejection log: at most 10 lines per 10 s, then 'N more command(s) rejected in the last 10 s'", async () => {
  const written: string[] = [];
  setupLogging({ level: "info", format: "json", write: (line) => written.push(line) });
  const clock = new ManualClock();
  const log = new RejectionLog({ logger: logger("commands"), clock });
  for (let i = 0; i < 1000; i++) log.rejected(`bad ${i}`, "stdin");
  const messages = () => written.map((line) => JSON.parse(line).message as string);
  assert.equal(written.length, 10);
  assert.equal(messages()[0], "command rejected: bad 0 (from stdin)");
  await clock.advance(10_000);
  assert.equal(written.length, 11);
  assert.equal(messages()[10], "990 more command(s) rejected in the last 10 s");
  // A new window: lines again, and a quiet window writes no summary.
  log.rejected("late", "redis");
  await clock.advance(10_000);
  assert.deepEqual(messages().slice(11), ["command rejected: late (from redis)"]);
  for (let i = 0; i < 12; i++) log.rejected("x", "amqp");
  log.close();
  assert.equal(messages().at(-1), "2 more command(s) rejected in the last 10 s");
  assert.equal(written.length, 23);
});
