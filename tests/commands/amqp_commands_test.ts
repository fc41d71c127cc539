/**
 * Commands from the RabbitMQ queue `{exchange}.commands`: they reach the fake Discord on the owning
 * shard, bad ones are reported as GATEHOUSE_COMMAND_REJECTED, and every message is acknowledged.
 */
import assert from "node:assert/strict";
import { AMQPClient } from "@cloudamqp/amqp-client";
import { withRabbitMq } from "../helpers/rabbitmq_lock.ts";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, spawnGatehouse } from "../helpers/gatehouse.ts";
import { guildOf, PRESENCE } from "./commands_helpers.ts";

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
      for (const q of [queue, `${queue}.0`, `${queue}.1`]) await channel.queueDelete(q).catch(() => {});
      await channel.exchangeDelete(exchange).catch(() => {});
      await client.close();
    }
  }));

Deno.test("amqp commands: two processes (shards 0-1 and 2-3 of 4) share the inbox; each command reaches its shard; a stalled shard holds up no other", () =>
  withRabbitMq(false, async () => {
    const exchange = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
    const inbox = `${exchange}.commands`;
    const fake = await FakeDiscord.start({
      shards: 4,
      maxConcurrency: 4,
      guildsPerShard: 1,
      heartbeatIntervalMs: 2000,
    });
    // Discord does not answer shard 3 (no READY) until the end.
    fake.stallShard(3, true);
    const env = {
      ...fakeEnv(fake.apiHost),
      BROKER_TYPE: "stdout,amqp",
      AMQP_URL,
      GATEHOUSE_AMQP_EXCHANGE: exchange,
      DISCORD_SHARD_COUNT: "4",
    };
    const a = spawnGatehouse({ env: { ...env, DISCORD_SHARD_IDS: "0-1" } });
    const b = spawnGatehouse({ env: { ...env, DISCORD_SHARD_IDS: "2-3" } });
    const client = new AMQPClient(AMQP_URL);
    await client.connect();
    const channel = await client.channel();
    const queues = [inbox, ...[0, 1, 2, 3].map((s) => `${inbox}.${s}`)];
    try {
      await a.waitFor(
        () => a.lines.filter((l) => l.t === "GUILD_CREATE").length === 2,
        20_000,
        "a: 2 guilds",
      );
      await b.waitFor(() => b.lines.some((l) => l.t === "GUILD_CREATE"), 20_000, "b: shard 2's guild");
      const guilds = [...a.lines, ...b.lines].filter((l) => l.t === "GUILD_CREATE").map((
        l,
      ) => [l.shard, l.d.id]);
      // Both processes consume the inbox (each after its shards' queues).
      const deadline = Date.now() + 10_000;
      while ((await channel.queueDeclare(inbox, { durable: true })).consumerCount !== 2) {
        assert.ok(Date.now() < deadline, "two consumers on the inbox");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const stalled = guildOf(3, 4);
      for (let i = 0; i < 110; i++) {
        await channel.basicPublish(
          "",
          inbox,
          JSON.stringify({ op: 8, d: { guild_id: stalled, query: "", limit: i } }),
        );
      }
      for (const [, id] of guilds) {
        await channel.basicPublish(
          "",
          inbox,
          JSON.stringify({ op: 8, d: { guild_id: id, query: "", limit: 0 } }),
        );
      }
      await channel.basicPublish("", inbox, JSON.stringify({ op: 3, d: PRESENCE }));
      await fake.waitFor(() => fake.commands.length === 6, 10_000, "3 op 8 and 3 op 3 at Discord");
      assert.deepEqual(
        fake.commands.map((c) => [c.shard, c.op, c.op === 8 ? (c.d as { guild_id: string }).guild_id : null])
          .sort(),
        [...guilds.map(([shard, id]) => [shard, 8, id]), [0, 3, null], [1, 3, null], [2, 3, null]].sort(),
      );
      assert.deepEqual([...a.lines, ...b.lines].filter((l) => l.t === "GATEHOUSE_COMMAND_REJECTED"), []);
      // Shard 3 holds 50 (its consumer's prefetch); the rest and the presence wait in its queue.
      const waiting = async () => (await channel.queueDeclare(`${inbox}.3`, { durable: true })).messageCount;
      for (let i = 0; i < 100 && (await waiting()) !== 110 + 1 - 50; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.equal(await waiting(), 110 + 1 - 50);

      fake.stallShard(3, false);
      await fake.waitFor(
        () => fake.commands.filter((c) => c.shard === 3).length >= 60,
        20_000,
        "shard 3's commands, more than one prefetch",
      );
      for (const g of [a, b]) g.kill("SIGTERM");
      assert.equal((await a.status).code, 0, a.stderr());
      assert.equal((await b.status).code, 0, b.stderr());
      const left = await Promise.all(
        queues.map((q) => channel.queueDeclare(q, { durable: true }).then((ok) => ok.messageCount)),
      );
      assert.deepEqual(left.slice(0, 4), [0, 0, 0, 0], "the inbox and shards 0-2: all acknowledged");
    } finally {
      for (const g of [a, b]) g.kill("SIGKILL");
      await Promise.all([a.status, b.status]);
      await fake.stop();
      for (const q of queues) await channel.queueDelete(q).catch(() => {});
      await channel.exchangeDelete(exchange).catch(() => {});
      await client.close();
    }
  }));
