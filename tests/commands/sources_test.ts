/** The command sources `gatehouse run` starts: stdin per config here (the brokers' have their own tests). */
import assert from "node:assert/strict";
import type { GatehouseConfig } from "../../src/config/load.ts";
import { CommandRouter, type CommandTarget, shardDirectory } from "../../src/commands/router.ts";
import { startCommandSources } from "../../src/commands/sources.ts";
import { logger, setupLogging } from "../../src/util/log.ts";
import { PRESENCE } from "./commands_helpers.ts";

Deno.test("command sources: stdin lines reach the shards; take() serves other sources; no broker without its sink", async () => {
  const written: string[] = [];
  setupLogging({ level: "info", format: "json", write: (line) => written.push(line) });
  const sent: unknown[] = [];
  const target: CommandTarget = {
    id: 0,
    send: (op, d, onSent) => (sent.push({ op, d }), onSent?.(), null),
  };
  const counted: string[] = [];
  let twoCounted!: () => void;
  const two = new Promise<void>((resolve) => (twoCounted = resolve));
  const events: string[] = [];
  const config = { broker: { types: ["stdout"] } } as unknown as GatehouseConfig;
  let close!: () => void;
  const stdin = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode(`${JSON.stringify({ op: 3, d: PRESENCE })}\nnot json\n`));
      close = () => controller.close();
    },
  });
  const sources = await startCommandSources(config, new CommandRouter(shardDirectory(() => [target]), 1), {
    counter: {
      command: (source, accepted) => {
        if (counted.push(`${source} ${accepted}`) === 2) twoCounted();
      },
    },
    events: { internal: (shard, t) => events.push(`${shard} ${t}`) },
    logger: logger("commands"),
    stdin,
  });
  await two;
  assert.deepEqual(counted, ["stdin true", "stdin false"]);
  assert.deepEqual(sent, [{ op: 3, d: PRESENCE }]);
  assert.deepEqual(events, ["0 GATEHOUSE_COMMAND_REJECTED"]);
  assert.equal(sources.take(JSON.stringify({ op: 3, d: PRESENCE }), "control"), null);
  assert.deepEqual(counted.at(-1), "control true");
  close();
  await sources.stop();
  const messages = written.map((line) => JSON.parse(line).message as string);
  assert.equal(messages.filter((m) => m.startsWith("command rejected:")).length, 1);
});
