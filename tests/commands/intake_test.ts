/**
 * What every command source shares: commands counted by source and result, a refusal reported as a
 * GATEHOUSE_COMMAND_REJECTED event on the shard it concerns (else the lowest local one) and logged.
 */
import assert from "node:assert/strict";
import { CommandIntake } from "../../src/commands/intake.ts";
import { CommandRouter, type CommandTarget, shardDirectory } from "../../src/commands/router.ts";
import { ManualClock } from "../../src/util/clock.ts";
import { logger, setupLogging } from "../../src/util/log.ts";
import { guildOf, PRESENCE } from "./commands_helpers.ts";

class Target implements CommandTarget {
  readonly sent: Array<{ op: number; d: unknown }> = [];
  refuse: string | null = null;
  constructor(readonly id: number) {}
  send(op: number, d: unknown, onSent?: () => void): string | null {
    if (this.refuse !== null) return this.refuse;
    this.sent.push({ op, d });
    onSent?.();
    return null;
  }
}

function intakeFor(targets: Target[], count: number) {
  const written: string[] = [];
  setupLogging({ level: "info", format: "json", write: (line) => written.push(line) });
  const counted: string[] = [];
  const events: Array<{ shard: number; t: string; d: Record<string, unknown> }> = [];
  const intake = new CommandIntake({
    router: new CommandRouter(shardDirectory(() => targets), count),
    counter: {
      command: (source, accepted) => counted.push(`${source} ${accepted ? "accepted" : "rejected"}`),
    },
    events: { internal: (shard, t, d) => events.push({ shard, t, d }) },
    logger: logger("commands"),
    clock: new ManualClock(),
  });
  const messages = () => written.map((line) => JSON.parse(line).message as string);
  return { intake, counted, events, messages };
}

Deno.test("intake: a taken command is counted; a refused one is counted, logged and reported on its shard", () => {
  const targets = [new Target(2), new Target(3)];
  const { intake, counted, events, messages } = intakeFor(targets, 4);
  assert.equal(intake.take(JSON.stringify({ op: 3, d: PRESENCE }), "control"), null);
  assert.equal(targets[0].sent.length, 1);
  targets[1].refuse = "queue full";
  const line = JSON.stringify({ op: 3, shard: 3, d: PRESENCE });
  assert.equal(intake.take(line, "stdin"), "queue full");
  assert.deepEqual(counted, ["control accepted", "stdin rejected"]);
  assert.deepEqual(events, [{
    shard: 3,
    t: "GATEHOUSE_COMMAND_REJECTED",
    d: { reason: "queue full", command: line },
  }]);
  assert.deepEqual(messages(), ["command rejected: queue full (from stdin)"]);
});

Deno.test("intake: a refusal for no local shard goes on the lowest local one; the command is cut to 200 characters", () => {
  const { intake, events } = intakeFor([new Target(3), new Target(1)], 4);
  const foreign = guildOf(0, 4);
  const line = JSON.stringify({ op: 8, d: { guild_id: foreign, limit: 0, query: "x".repeat(300) } });
  const reason = intake.take(line, "control");
  assert.match(reason ?? "", new RegExp(`guild ${foreign} belongs to shard 0`));
  assert.equal(events.length, 1);
  assert.equal(events[0].shard, 1);
  assert.equal(events[0].d.command, `${line.slice(0, 200)}…`);
  intake.report("redis")("not json", { reason: "not JSON", shard: 2 });
  assert.equal(events[1].shard, 1, "shard 2 is not run here: the lowest local shard");
});

Deno.test("intake: lines of a stream are taken, a too-long one is reported once with its size", async () => {
  const targets = [new Target(0)];
  const { intake, counted, events } = intakeFor(targets, 1);
  const text = `${JSON.stringify({ op: 3, d: PRESENCE })}\n${"a".repeat(70_000)}\n`;
  await intake.readLines(ReadableStream.from([new TextEncoder().encode(text)]), "stdin");
  assert.deepEqual(counted, ["stdin accepted", "stdin rejected"]);
  assert.equal(targets[0].sent.length, 1);
  assert.equal(events[0].d.reason, "line of 70000 bytes is longer than 64 KB");
  assert.equal(events[0].d.command, "a".repeat(200));
  intake.close();
});
