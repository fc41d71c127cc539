/**
 * RabbitMQ, end to end: `gatehouse run` with `[broker] type = "amqp"` against the fake Discord and the
 * local RabbitMQ. While events flow, `rabbitmqctl close_all_connections` cuts gatehouse's connections
 * twice: a queue bound to the exchange holds every event; repeats carry the same `message_id` (the event's
 * uid). The test holds the RabbitMQ lock exclusively, so no other test's connection is open meanwhile.
 */
import assert from "node:assert/strict";
import { AMQPClient } from "@cloudamqp/amqp-client";
import { withRabbitMq } from "../helpers/rabbitmq_lock.ts";
import { FakeDiscord } from "../fake_discord/server.ts";
import { assertExactlyOnce, CatchUp } from "../helpers/delivery.ts";
import { fakeEnv, type Line, spawnGatehouse } from "../helpers/gatehouse.ts";

const AMQP_URL = Deno.env.get("GATEHOUSE_TEST_AMQP") ?? "amqp://guest:guest@127.0.0.1:5672";
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function rabbitmqctl(...args: string[]): Promise<string> {
  // rabbitmqctl needs the broker's Erlang cookie: root's, where the broker came from the distribution.
  const [command, ...rest] = Deno.uid() === 0
    ? ["rabbitmqctl", ...args]
    : ["sudo", "-n", "rabbitmqctl", ...args];
  const out = await new Deno.Command(command, { args: rest, stdout: "piped", stderr: "piped" }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  return new TextDecoder().decode(out.stdout);
}

/** How many connections named `name` the broker has now. */
async function connectionsNamed(name: string): Promise<number> {
  // One line per connection: its client properties, which hold connection_name.
  return (await rabbitmqctl("list_connections", "-q", "--no-table-headers", "client_properties"))
    .split("\n").filter((line) => line.includes(`{"connection_name","${name}"}`)).length;
}

/** Closes every connection on the broker (gatehouse's are the only ones open: see the lock). */
async function closeAllConnections(): Promise<void> {
  await rabbitmqctl("close_all_connections", "gatehouse test: broker connections cut");
}

Deno.test("amqp: rabbitmqctl close_all_connections mid-flow, twice: every event in the bound queue, repeats with the same message_id", () =>
  withRabbitMq(true, async () => {
    const exchange = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
    const connectionName = exchange;
    // The test's queue, bound before gatehouse publishes anything.
    const setup = new AMQPClient(AMQP_URL);
    await setup.connect();
    const setupChannel = await setup.channel();
    await setupChannel.exchangeDeclare(exchange, "topic", { durable: true });
    const queueName = `${exchange}-all`;
    await setupChannel.queueDeclare(queueName, { durable: true });
    await setupChannel.queueBind(queueName, exchange, "#");
    await setup.close();

    const fake = await FakeDiscord.start({ shards: 4, maxConcurrency: 4, guildsPerShard: 2 });
    const g = spawnGatehouse({
      env: {
        ...fakeEnv(fake.apiHost),
        BROKER_TYPE: "amqp",
        AMQP_URL: `${AMQP_URL}?name=${connectionName}`,
        GATEHOUSE_AMQP_EXCHANGE: exchange,
        GATEHOUSE_LOG_LEVEL: "info",
      },
    });
    let reader: AMQPClient | null = null;
    try {
      await fake.waitFor(() => fake.identifies.length === 4, 15_000, "4 shards identified");
      fake.startTraffic(500);
      await sleep(1500);
      assert.ok(await connectionsNamed(connectionName) >= 1, "gatehouse is connected");
      await closeAllConnections();
      await sleep(1500);
      assert.ok(await connectionsNamed(connectionName) >= 1, "it reconnected");
      await closeAllConnections();
      await sleep(1500);
      fake.stopTraffic();

      reader = new AMQPClient(AMQP_URL);
      await reader.connect();
      const channel = await reader.channel();
      const byUid = new Map<string, string>();
      let repeats = 0;
      const lines: Line[] = [];
      const catchUp = new CatchUp();
      const until = Date.now() + 60_000;
      for (;;) {
        for (;;) {
          const message = await channel.basicGet(queueName, { noAck: true });
          if (!message) break;
          const uid = message.properties.messageId;
          const body = message.bodyToString()!;
          const line = JSON.parse(body) as Line;
          assert.equal(line.uid, uid, "message_id is the event's uid");
          assert.equal(message.routingKey, line.t, "routing key = event name");
          const before = byUid.get(uid!);
          if (before !== undefined) {
            assert.equal(body, before, `message ${uid} repeated with different content`);
            repeats++;
            continue;
          }
          byUid.set(uid!, body);
          lines.push(line);
        }
        if (catchUp.check(fake, lines)) break;
        assert.ok(Date.now() < until, `caught up: ${lines.length} so far\n${g.stderr().slice(-2000)}`);
        await sleep(200);
      }
      lines.sort((a, b) => a.id - b.id);
      const report = assertExactlyOnce(fake, lines);
      assert.deepEqual(fake.violations, []);
      assert.match(g.stderr(), /amqp: connection lost|sink amqp did not take events/, "the cut was seen");
      console.log(`amqp outage: ${report.lines} events in the queue, ${repeats} repeats (same message_id)`);
      g.kill("SIGTERM");
      assert.equal((await g.status).code, 0, g.stderr());
      await channel.queueDelete(queueName);
      await channel.exchangeDelete(exchange);
    } finally {
      await reader?.close().catch(() => {});
      g.kill("SIGKILL");
      await g.status;
      fake.stopTraffic();
      await fake.stop();
    }
  }));
