/**
 * The drop-in wire formats (`[broker] format`) against consumers gatehouse did not write: the real
 * `PubSubRedisBroker` of @discordjs/brokers (npm), and a Spectacles consumer written from Spectacles'
 * protocol (spec-tacles/spec and spec-tacles/go's Redis and AMQP brokers: a stream or a queue per event
 * name, msgpack bodies, commands on `SEND`) on Redis and on RabbitMQ. `gatehouse run` is the real program
 * against the fake Discord; each Redis test has a redis-server of its own (the streams have bare names).
 */
import assert from "node:assert/strict";
import { AMQPClient } from "@cloudamqp/amqp-client";
import { decode, encode } from "@msgpack/msgpack";
import { PubSubRedisBroker } from "npm:@discordjs/brokers@1.0.0";
import { Buffer } from "node:buffer";
import { Redis } from "ioredis";
import { guildIdFor } from "../fake_discord/events.ts";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, type Gatehouse, spawnGatehouse } from "../helpers/gatehouse.ts";
import { withRabbitMq } from "../helpers/rabbitmq_lock.ts";
import { RedisServer } from "../helpers/redis_server.ts";

const TOKEN = "wire-format-token";
const SHARDS = 2;
const decoder = new TextDecoder();
/** The fake's guilds of a shard (2 per shard). */
const guilds = (shard: number) => [guildIdFor(shard, SHARDS, 0), guildIdFor(shard, SHARDS, 1)];

async function until(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 20_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}

/** A MESSAGE_CREATE the fake sends, numbered by `marker`. */
function message(n: number, guildId: string) {
  return {
    id: String(3_000_000_000_000_000 + n),
    channel_id: "7",
    guild_id: guildId,
    content: `m${n}`,
    marker: n,
  };
}

async function gatehouseOn(fake: FakeDiscord, env: Record<string, string>): Promise<Gatehouse> {
  const g = spawnGatehouse({
    env: { ...fakeEnv(fake.apiHost, TOKEN), DISCORD_SHARD_COUNT: String(SHARDS), ...env },
  });
  await g.waitFor(() => g.lines.filter((l) => l.t === "READY").length === SHARDS, 20_000, "both shards");
  return g;
}

/** The d of each event gatehouse printed (stdout is a sink too), by seq per shard: the bytes Discord sent. */
function printedD(g: Gatehouse, t: string): Array<{ shard: number; d: unknown }> {
  return g.lines.filter((l) => l.t === t).map((l) => ({ shard: l.shard as number, d: l.d }));
}

/**
 * A redis-server of the test's own, the fake with 2 shards of 2 guilds, and gatehouse delivering to
 * Redis and stdout in `format`; `fn` gets them and a client of that Redis. Everything stopped after.
 */
async function onRedis(
  format: "spectacles" | "discordjs",
  env: Record<string, string>,
  fn: (p: { g: Gatehouse; fake: FakeDiscord; client: Redis; url: string }) => Promise<void>,
): Promise<void> {
  const redis = await RedisServer.start({ durable: false });
  const fake = await FakeDiscord.start({ token: TOKEN, shards: SHARDS, guildsPerShard: 2 });
  let g: Gatehouse | null = null;
  const client = new Redis(redis.url);
  try {
    g = await gatehouseOn(fake, {
      BROKER_TYPE: "redis,stdout",
      REDIS_URL: redis.url,
      GATEHOUSE_BROKER_FORMAT: format,
      ...env,
    });
    await fn({ g, fake, client, url: redis.url });
  } finally {
    client.disconnect();
    g?.kill("SIGTERM");
    await g?.status;
    await fake.stop();
    await redis.stop();
  }
}

Deno.test("wire format discordjs: @discordjs/brokers' PubSubRedisBroker gets every event as {shardId, payload: d}, also those sent before it subscribed; its gateway_send commands reach the shard", async () => {
  await onRedis("discordjs", {}, async ({ g, fake, client: redisClient }) => {
    // Before any consumer exists: its group starts at 0, so it still gets these.
    for (let n = 0; n < 10; n++) {
      fake.dispatch(n % SHARDS, "MESSAGE_CREATE", message(n, guilds(n % SHARDS)[0]));
    }
    const gate = g;
    await gate.waitFor(() => printedD(gate, "MESSAGE_CREATE").length === 10, 20_000, "the first events");

    const broker = new PubSubRedisBroker(redisClient, { group: "bot", name: "bot-1", blockTimeout: 200 });
    // Its read loop reports a closed connection (at the end) as an error event.
    broker.on("error", () => {});
    const got: Array<{ event: string; shardId: number; payload: Record<string, unknown> }> = [];
    for (const event of ["MESSAGE_CREATE", "GUILD_CREATE"]) {
      broker.on(
        event,
        async (
          { data, ack }: {
            data: { shardId: number; payload: Record<string, unknown> };
            ack: () => Promise<void>;
          },
        ) => {
          got.push({ event, shardId: data.shardId, payload: data.payload });
          await ack();
        },
      );
    }
    await broker.subscribe(["MESSAGE_CREATE", "GUILD_CREATE"]);
    for (let n = 10; n < 30; n++) {
      fake.dispatch(n % SHARDS, "MESSAGE_CREATE", message(n, guilds(n % SHARDS)[0]));
    }
    await until(() => got.filter((x) => x.event === "MESSAGE_CREATE").length === 30, "30 MESSAGE_CREATE");
    await until(
      () => got.filter((x) => x.event === "GUILD_CREATE").length === SHARDS * 2,
      "the GUILD_CREATEs",
    );

    // Each as gatehouse's stdout has it (Discord's d), on its shard, once, in order per shard.
    const messages = got.filter((x) => x.event === "MESSAGE_CREATE");
    for (const shard of [0, 1]) {
      assert.deepEqual(
        messages.filter((x) => x.shardId === shard).map((x) => x.payload),
        printedD(g, "MESSAGE_CREATE").filter((x) => x.shard === shard).map((x) => x.d),
      );
    }
    assert.deepEqual(
      messages.map((x) => x.payload.marker).sort((a, b) => Number(a) - Number(b)),
      Array.from({ length: 30 }, (_, i) => i),
    );
    const creates = got.filter((x) => x.event === "GUILD_CREATE");
    assert.deepEqual(
      creates.map((x) => [x.shardId, x.payload.id]).sort(),
      printedD(g, "GUILD_CREATE").map((x) => [x.shard, (x.d as { id: string }).id]).sort(),
    );
    // Only Discord's events have streams; no group of gatehouse's on them; the entries are msgpack.
    const keys = await redisClient.keys("*");
    assert.ok(!keys.some((k) => k.includes("GATEHOUSE_")), keys.join(" "));
    const groups = await redisClient.call("XINFO", "GROUPS", "MESSAGE_CREATE") as unknown[][];
    assert.deepEqual(groups.map((info) => info[1]), ["bot"]);
    const [[, fields]] = await redisClient.xrangeBuffer("MESSAGE_CREATE", "-", "+", "COUNT", 1);
    assert.equal(fields[0].toString(), "data");
    assert.deepEqual(decode(fields[1]), {
      shardId: messages[0].shardId,
      payload: printedD(g, "MESSAGE_CREATE")[0].d,
    });

    // Commands as RedisGateway.send publishes them: {payload, shardId} on gateway_send.
    const guild = guilds(1)[0];
    await broker.publish("gateway_send", {
      payload: { op: 8, d: { guild_id: guild, query: "", limit: 0, nonce: "from-djs" } },
      shardId: 1,
    });
    await broker.publish("gateway_send", {
      payload: { op: 3, d: { since: null, activities: [], status: "idle", afk: false } },
      shardId: 0,
    });
    await until(() => fake.commands.length === 2, "both commands at the double");
    assert.deepEqual(
      fake.commands.map((c) => [c.shard, c.op, c.d]).sort((a, b) => Number(a[1]) - Number(b[1])),
      [
        [0, 3, { since: null, activities: [], status: "idle", afk: false }],
        [1, 8, { guild_id: guild, query: "", limit: 0, nonce: "from-djs" }],
      ],
    );
    // A command that names the wrong shard, and one that is not {payload, shardId}: refused, named.
    await broker.publish("gateway_send", {
      payload: { op: 8, d: { guild_id: guild, query: "", limit: 0 } },
      shardId: 0,
    });
    await redisClient.xaddBuffer("gateway_send", "*", "data", Buffer.from(encode({ shard: 1 })));
    await gate.waitFor(
      () => gate.lines.filter((l) => l.t === "GATEHOUSE_COMMAND_REJECTED").length === 2,
      20_000,
      "two rejections",
    );
    const reasons = gate.lines.filter((l) => l.t === "GATEHOUSE_COMMAND_REJECTED").map((l) =>
      l.d.reason as string
    );
    assert.match(reasons.join("\n"), new RegExp(`guild ${guild} belongs to shard 1, not 0`));
    assert.match(reasons.join("\n"), /a gateway_send command needs payload: \{op, d\}/);
    assert.equal(fake.commands.length, 2);
    await broker.destroy().catch(() => {});
  });
});

/** A Spectacles consumer of one event stream, as spec-tacles/go's Redis broker reads it. */
async function spectaclesRead(
  redis: Redis,
  group: string,
  event: string,
  consumer: string,
): Promise<Uint8Array[]> {
  await redis.call("XGROUP", "CREATE", event, group, "0", "MKSTREAM").catch((error: Error) => {
    if (!/BUSYGROUP/.test(error.message)) throw error;
  });
  const bodies: Uint8Array[] = [];
  for (;;) {
    const reply = await redis.callBuffer(
      "XREADGROUP",
      "GROUP",
      group,
      consumer,
      "COUNT",
      100,
      "BLOCK",
      100,
      "STREAMS",
      event,
      ">",
    ) as Array<[Buffer, Array<[Buffer, Buffer[]]>]> | null;
    if (reply === null) return bodies;
    for (const [, entries] of reply) {
      for (const [id, fields] of entries) {
        for (let i = 0; i < fields.length; i += 2) {
          if (fields[i].toString() === "data") bodies.push(decode(fields[i + 1]) as Uint8Array);
        }
        await redis.xack(event, group, id.toString());
      }
    }
  }
}

Deno.test("wire format spectacles on Redis: a stream per event name holding d as msgpack binary, Discord's bytes exactly; SEND commands {guild_id, packet} are routed by guild", async () => {
  await onRedis("spectacles", { BROKER_GROUP: "gateway" }, async ({ g, fake, client }) => {
    for (let n = 0; n < 20; n++) {
      fake.dispatch(n % SHARDS, "MESSAGE_CREATE", message(n, guilds(n % SHARDS)[1]));
    }
    const gate = g;
    await gate.waitFor(() => printedD(gate, "MESSAGE_CREATE").length === 20, 20_000, "the events");
    let bodies: Uint8Array[] = [];
    await until(
      async () =>
        (bodies = bodies.concat(await spectaclesRead(client, "gateway", "MESSAGE_CREATE", "c1"))).length ===
          20,
      "20 entries",
    );
    // Binary holding d as Discord sent it (the stdout line's d, byte for byte once parsed).
    assert.ok(bodies.every((b) => b instanceof Uint8Array));
    const ds = bodies.map((b) => JSON.parse(decoder.decode(b)));
    assert.deepEqual(
      ds.map((d) => d.marker).sort((a, b) => a - b),
      Array.from({ length: 20 }, (_, i) => i),
    );
    assert.deepEqual(
      new Set(ds.map((d) => JSON.stringify(d))),
      new Set(printedD(g, "MESSAGE_CREATE").map((x) => JSON.stringify(x.d))),
    );
    const ready = await spectaclesRead(client, "gateway", "READY", "c1");
    assert.equal(ready.length, SHARDS);
    assert.ok(!(await client.keys("*")).some((k) => k.includes("GATEHOUSE_")));

    // SEND as Spectacles' clients publish it: msgpack {guild_id, packet: {op, d}}, also as JSON in binary.
    const guild = guilds(1)[0];
    const otherShardGuild = guilds(0)[1];
    await client.xaddBuffer(
      "SEND",
      "*",
      "data",
      Buffer.from(encode({
        guild_id: guild,
        packet: { op: 4, d: { guild_id: guild, channel_id: null, self_mute: false, self_deaf: false } },
      })),
    );
    // A presence goes to the shard of guild_id (Spectacles' routing), here shard 0's.
    await client.xaddBuffer(
      "SEND",
      "*",
      "data",
      Buffer.from(encode(new TextEncoder().encode(JSON.stringify({
        guild_id: otherShardGuild,
        packet: { op: 3, d: { since: null, activities: [], status: "dnd", afk: false } },
      })))),
    );
    // Not msgpack at all, and a SEND without packet: refused, named, never sent.
    await client.xadd("SEND", "*", "data", "\xc1 not msgpack");
    await client.xaddBuffer("SEND", "*", "data", Buffer.from(encode({ guild_id: guild })));
    await until(() => fake.commands.length === 2, "both commands at the double");
    assert.deepEqual(fake.commands.map((c) => [c.shard, c.op]).sort(), [[0, 3], [1, 4]]);
    await gate.waitFor(
      () => gate.lines.filter((l) => l.t === "GATEHOUSE_COMMAND_REJECTED").length === 2,
      20_000,
      "two rejections",
    );
    const reasons = gate.lines.filter((l) => l.t === "GATEHOUSE_COMMAND_REJECTED").map((l) => l.d.reason);
    assert.ok(reasons.some((r) => /^not msgpack/.test(r)), reasons.join(" | "));
    assert.ok(reasons.includes("a SEND command needs packet: {op, d}"), reasons.join(" | "));
  });
});

Deno.test("wire format spectacles on RabbitMQ: the group's direct exchange, queues <group>:<EVENT> that hold events sent before any consumer, msgpack bodies; SEND commands from <group>:SEND", async () => {
  await withRabbitMq(false, async () => {
    const group = `gw-${crypto.randomUUID().slice(0, 8)}`;
    const fake = await FakeDiscord.start({ token: TOKEN, shards: SHARDS, guildsPerShard: 2 });
    let g: Gatehouse | null = null;
    const amqp = new AMQPClient("amqp://guest:guest@127.0.0.1:5672");
    await amqp.connect();
    const channel = await amqp.channel();
    try {
      g = await gatehouseOn(fake, {
        BROKER_TYPE: "amqp,stdout",
        AMQP_URL: "amqp://guest:guest@127.0.0.1:5672",
        GATEHOUSE_BROKER_FORMAT: "spectacles",
        BROKER_GROUP: group,
        DISCORD_EVENTS: "READY,GUILD_CREATE,MESSAGE_CREATE",
      });
      // Sent before the consumer exists: its queue was declared and bound by gatehouse.
      for (let n = 0; n < 10; n++) {
        fake.dispatch(n % SHARDS, "MESSAGE_CREATE", message(n, guilds(n % SHARDS)[0]));
      }
      const gate = g;
      await gate.waitFor(() => printedD(gate, "MESSAGE_CREATE").length === 10, 20_000, "the events");
      // The consumer, as @spectacles/brokers' Amqp: assertExchange(group, "direct"), queue, bind, consume.
      await channel.exchangeDeclare(group, "direct", { durable: true });
      const queue = `${group}:MESSAGE_CREATE`;
      await channel.queueDeclare(queue, { durable: true });
      await channel.queueBind(queue, group, "MESSAGE_CREATE");
      const got: unknown[] = [];
      const contentTypes = new Set<string | undefined>();
      await channel.basicConsume(queue, { noAck: false }, (msg) => {
        const body = decode(msg.body!) as Uint8Array;
        got.push(JSON.parse(decoder.decode(body)));
        contentTypes.add(msg.properties.contentType);
        void msg.ack();
      });
      for (let n = 10; n < 20; n++) {
        fake.dispatch(n % SHARDS, "MESSAGE_CREATE", message(n, guilds(n % SHARDS)[0]));
      }
      await until(() => got.length === 20, "20 messages");
      assert.deepEqual(
        (got as Array<{ marker: number }>).map((d) => d.marker).sort((a, b) => a - b),
        Array.from({ length: 20 }, (_, i) => i),
      );
      assert.deepEqual(
        new Set(got.map((d) => JSON.stringify(d))),
        new Set(printedD(g, "MESSAGE_CREATE").map((x) => JSON.stringify(x.d))),
      );
      assert.deepEqual([...contentTypes], ["application/msgpack"]);

      // SEND, as a Spectacles client publishes it: to the group's exchange, routing key SEND. First two
      // that JSON cannot hold as they are: refused by name, acknowledged, never sent.
      const guild = guilds(1)[1];
      const deep = "[".repeat(100_000) + "]".repeat(100_000);
      await channel.basicPublish(
        group,
        "SEND",
        encode(`{"guild_id":"${guild}","packet":{"op":3,"d":${deep}}}`),
      );
      await channel.basicPublish(
        group,
        "SEND",
        encode({
          guild_id: guild,
          packet: { op: 3, d: { since: Infinity, activities: [], status: "idle", afk: false } },
        }),
      );
      await channel.basicPublish(
        group,
        "SEND",
        encode({
          guild_id: guild,
          packet: { op: 8, d: { guild_id: guild, query: "", limit: 0, nonce: "spectacles" } },
        }),
      );
      await until(() => fake.commands.length === 1, "the command at the double");
      assert.deepEqual(fake.commands.map((c) => [c.shard, c.op, c.d]), [
        [1, 8, { guild_id: guild, query: "", limit: 0, nonce: "spectacles" }],
      ]);
      // (DISCORD_EVENTS leaves GATEHOUSE_COMMAND_REJECTED off stdout: the log lines say it.)
      const rejected = () =>
        gate.stderr().split("\n").filter((l) => l.includes('"command rejected: ')).map((l) =>
          JSON.parse(l).reason as string
        );
      await gate.waitFor(() => rejected().length === 2, 20_000, "two rejections");
      assert.deepEqual(rejected().sort(), [
        "Infinity is not a number JSON can hold",
        "nested deeper than 64 levels",
      ]);
      const inbox = await channel.queueDeclare(`${group}:SEND`, { passive: true });
      assert.equal(inbox.messageCount, 0);
      assert.equal(fake.commands.length, 1);
    } finally {
      g?.kill("SIGTERM");
      await g?.status;
      for (const q of ["MESSAGE_CREATE", "READY", "GUILD_CREATE", "SEND"]) {
        await channel.queueDelete(`${group}:${q}`).catch(() => {});
      }
      for (let shard = 0; shard < SHARDS; shard++) {
        await channel.queueDelete(`${group}:SEND.${shard}`).catch(() => {});
      }
      await channel.exchangeDelete(group).catch(() => {});
      await amqp.close().catch(() => {});
      await fake.stop();
    }
  });
});

Deno.test("wire formats on Redis: hostile SEND and gateway_send entries (no data, two data fields, NaN, a timestamp, a few MB, nested 100 000 deep) are refused by name and acknowledged; the good command behind them is sent, nothing else", async () => {
  for (const format of ["discordjs", "spectacles"] as const) {
    await onRedis(format, { GATEHOUSE_COMMAND_CLAIM_IDLE_MS: "500" }, async ({ g, fake, client }) => {
      const inbox = format === "discordjs" ? "gateway_send" : "SEND";
      const presence = (d: Record<string, unknown>) => ({
        op: 3,
        d: { since: null, activities: [], status: "idle", afk: false, ...d },
      });
      const wrap = (packet: unknown) =>
        Buffer.from(
          encode(
            format === "discordjs" ? { payload: packet, shardId: 0 } : { guild_id: guilds(0)[0], packet },
          ),
        );
      const depth = 100_000;
      const nested = new Uint8Array(depth + 1).fill(0x91); // fixarray of 1, 100 000 times, then 1
      nested[depth] = 0x01;
      const shell = wrap({ op: 3, d: null });
      const deep = Buffer.concat([shell.subarray(0, shell.length - 1), nested]);
      const hostile: Array<[RegExp, Array<string | Buffer>]> = [
        [/the entry has no data field/, ["x", "1"]],
        [/the entry has 2 data fields, not one/, ["data", wrap(presence({})), "data", wrap(presence({}))]],
        [/NaN is not a number JSON can hold/, ["data", wrap(presence({ since: NaN }))]],
        [/a msgpack timestamp has no JSON form/, ["data", wrap(presence({ since: new Date(1) }))]],
        [/command is \d+ bytes; Discord accepts at most 4096/, [
          "data",
          wrap(presence({ x: "y".repeat(3e6) })),
        ]],
        [/nested deeper than 64 levels/, ["data", deep]],
      ];
      for (const [, fields] of hostile) await client.xadd(inbox, "*", ...fields);
      await client.xadd(inbox, "*", "data", wrap(presence({ status: "dnd" })));
      const gate = g;
      await gate.waitFor(
        () => gate.lines.filter((l) => l.t === "GATEHOUSE_COMMAND_REJECTED").length >= hostile.length,
        20_000,
        `${format}: the rejections`,
      );
      const reasons = gate.lines.filter((l) => l.t === "GATEHOUSE_COMMAND_REJECTED").map((l) =>
        String(l.d.reason)
      );
      for (const [reason] of hostile) {
        assert.ok(reasons.some((r) => reason.test(r)), `${reason} in ${reasons}`);
      }
      await until(() => fake.commands.length === 1, `${format}: the good command at the double`);
      assert.deepEqual(fake.commands.map((c) => [c.shard, c.op, (c.d as { status: string }).status]), [
        [0, 3, "dnd"],
      ]);
      // Every inbox entry acknowledged; gatehouse still up.
      await until(async () => {
        const [pending] = await client.call("XPENDING", inbox, "gatehouse") as [number];
        return pending === 0;
      }, `${format}: nothing pending in ${inbox}`);
      assert.equal(fake.commands.length, 1);
    });
  }
});
