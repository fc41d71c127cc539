/**
 * Commands from the RabbitMQ queue `{exchange}.commands`: they reach the fake Discord on the owning
 * shard, bad ones are reported as GATEHOUSE_COMMAND_REJECTED, and every message is acknowledged.
 */
import assert from "node:assert/strict";
import { AMQPClient } from "@cloudamqp/amqp-client";
import { withRabbitMq } from "../helpers/rabbitmq_lock.ts";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, spawnGatehouse } from "../helpers/gatehouse.ts";

const AMQP_URL = Deno.env.get("GATEHOUSE_TEST_AMQP") ?? "amqp://guest:guest@127.0.0.1:5672";

Deno.test("amqp commands: from {exchange}.commands to the owning shard; rejected ones reported; all acknowledged", () =>
  withRabbitMq(false, async () => {
    const exchange = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
    const queue = `${exchange}.commands`;
    const fake = await FakeDiscord.start({ shards: 2, maxConcurrency: 2, guildsPerShard: 2 });
    const g = spawnGatehouse({
      env: {
        ...fakeEnv(fake.apiHost),
        BROKER_TYPE: "stdout,amqp",
        AMQP_URL,
        GATEHOUSE_AMQP_EXCHANGE: exchange,
      },
    });
    const client = new AMQPClient(AMQP_URL);
    await client.connect();
    const channel = await client.channel();
    try {
      await g.waitFor(() => g.lines.filter((l) => l.t === "READY").length === 2, 15_000, "2 READY");
      const guild = g.lines.find((l) => l.t === "GUILD_CREATE" && l.shard === 0)!.d.id;
      await channel.queueDeclare(queue, { durable: true });
      await channel.basicPublish(
        "",
        queue,
        JSON.stringify({ op: 8, d: { guild_id: guild, query: "", limit: 0 } }),
      );
      await channel.basicPublish("", queue, "{not json");
      await fake.waitFor(() => fake.commands.length === 1, 10_000, "the command at Discord");
      assert.deepEqual(fake.commands.map((c) => [c.op, c.shard]), [[8, 0]]);
      await g.waitFor(() => g.lines.some((l) => l.t === "GATEHOUSE_COMMAND_REJECTED"), 5000, "the rejection");
      assert.match(g.lines.find((l) => l.t === "GATEHOUSE_COMMAND_REJECTED")!.d.reason, /not JSON/);
      g.kill("SIGTERM");
      assert.equal((await g.status).code, 0, g.stderr());
      // Unacknowledged messages would be back in the queue now that gatehouse's connection is gone.
      const { messageCount } = await channel.queueDeclare(queue, { passive: true });
      assert.equal(messageCount, 0, "every command acknowledged");
    } finally {
      g.kill("SIGKILL");
      await g.status;
      await fake.stop();
      await channel.queueDelete(queue).catch(() => {});
      await channel.exchangeDelete(exchange).catch(() => {});
      await client.close();
    }
  }));
