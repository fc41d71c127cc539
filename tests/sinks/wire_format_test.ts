/**
 * The drop-in wire formats' bytes (src/sinks/wire_format.ts, src/commands/wire_commands.ts), decoded
 * by @msgpack/msgpack — the decoder @discordjs/brokers uses — and hostile command bytes (fast-check).
 */
import assert from "node:assert/strict";
import { decode, encode, ExtData } from "@msgpack/msgpack";
import fc from "npm:fast-check@4.11.0";
import { wireCommand } from "../../src/commands/wire_commands.ts";
import { parseCommand } from "../../src/commands/validate.ts";
import { Pending } from "../../src/journal/batch.ts";
import { LineBuffer } from "../../src/sinks/ndjson.ts";
import { binHeader, eventWire } from "../../src/sinks/wire_format.ts";
import { commandInbox } from "../../src/config/wire_formats.ts";
import { RedisSink } from "../../src/sinks/redis.ts";
import type { Logger } from "../../src/util/log.ts";
import { Redis } from "ioredis";
import { AMQPClient } from "@cloudamqp/amqp-client";
import { AmqpSink } from "../../src/sinks/amqp.ts";
import { withRabbitMq } from "../helpers/rabbitmq_lock.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A batch of Discord payloads (op 0) on `shard`, as the journal hands them to sinks. */
function batchOf(events: Array<{ t: string; d: string }>, shard = 3): Pending {
  const batch = new Pending("store-a", 1024);
  events.forEach((e, i) => {
    const bytes = encoder.encode(`{"t":${JSON.stringify(e.t)},"s":${i + 1},"op":0,"d":${e.d}}`);
    batch.add(bytes, 0, bytes.length);
    batch.ids.push(i + 1);
    batch.shards.push(shard);
    batch.sessions.push("session-a");
    batch.seqs.push(i + 1);
    batch.names.push(e.t);
    batch.receivedAt.push(0);
  });
  return batch;
}

/** The entries a format appends for a batch (each entry's bytes, its separator dropped). */
function entries(format: "gatehouse" | "spectacles" | "discordjs", batch: Pending): Uint8Array[] {
  const wire = eventWire(format);
  const out: Uint8Array[] = [];
  const line = new LineBuffer(16);
  for (let i = 0; i < batch.count; i++) {
    if (!wire.publishes(batch.t(i))) continue;
    wire.append(line, batch, i);
    const bytes = line.take();
    assert.equal(bytes.at(-1), 0x0a, "each entry ends in the separator");
    out.push(bytes.slice(0, -1));
  }
  return out;
}

Deno.test("wire format spectacles: d's bytes exactly, as msgpack bin 8, 16 and 32 (header sizes at every boundary)", () => {
  for (const size of [2, 3, 255, 256, 65_535, 65_536, 70_000]) {
    // A JSON string d of exactly `size` bytes.
    const d = `"${"y".repeat(size - 2)}"`;
    const [entry] = entries("spectacles", batchOf([{ t: "MESSAGE_CREATE", d }]));
    const decoded = decode(entry) as Uint8Array;
    assert.ok(decoded instanceof Uint8Array, `size ${size}: binary`);
    assert.equal(decoder.decode(decoded), d, `size ${size}`);
    const header = binHeader(size);
    assert.equal(header.length, size < 256 ? 2 : size < 65_536 ? 3 : 5);
    assert.deepEqual(entry.subarray(0, header.length), header);
  }
});

Deno.test("wire format discordjs: {shardId, payload: d} as @discordjs/brokers decodes it; gatehouse's own events are not published in either drop-in format", () => {
  const batch = batchOf([
    { t: "MESSAGE_CREATE", d: '{"id":"1","content":"hé ✓","nested":{"n":[1,2.5,null,true]}}' },
    { t: "GATEHOUSE_COMMAND_REJECTED", d: '{"reason":"x"}' },
    { t: "PRESENCE_UPDATE", d: '{"user":{"id":"9"}}' },
  ]);
  const djs = entries("discordjs", batch).map((e) => decode(e));
  assert.deepEqual(djs, [
    { shardId: 3, payload: { id: "1", content: "hé ✓", nested: { n: [1, 2.5, null, true] } } },
    { shardId: 3, payload: { user: { id: "9" } } },
  ]);
  assert.equal(entries("spectacles", batch).length, 2);
  // gatehouse's format: the NDJSON line of every event, its own included.
  const lines = entries("gatehouse", batch).map((e) => JSON.parse(decoder.decode(e)));
  assert.deepEqual(lines.map((l) => l.t), [
    "MESSAGE_CREATE",
    "GATEHOUSE_COMMAND_REJECTED",
    "PRESENCE_UPDATE",
  ]);
});

Deno.test("wire commands: discordjs {payload, shardId} and spectacles {guild_id, packet} become gatehouse commands routed as their gateways route them", () => {
  const guild = "81384788765712384";
  const count = 4;
  const owner = Number((BigInt(guild) >> 22n) % BigInt(count));
  const djs = wireCommand(
    "discordjs",
    encode({ payload: { op: 8, d: { guild_id: guild, query: "", limit: 0 } }, shardId: owner }),
    count,
  );
  assert.deepEqual(djs, {
    ok: true,
    text: JSON.stringify({ op: 8, d: { guild_id: guild, query: "", limit: 0 }, shard: owner }),
  });

  // Spectacles: a guild command by its d; a presence to the shard of guild_id; a snowflake sent as a
  // 64-bit integer keeps every digit; JSON inside binary or a string is read too.
  const voice = { op: 4, d: { guild_id: guild, channel_id: null, self_mute: false, self_deaf: false } };
  const spectaclesVoice = wireCommand(
    "spectacles",
    encode({ guild_id: BigInt(guild), packet: voice }, { useBigInt64: true }),
    count,
  );
  assert.deepEqual(spectaclesVoice, { ok: true, text: JSON.stringify(voice) });
  const presence = { op: 3, d: { since: null, activities: [], status: "idle", afk: false } };
  for (
    const bytes of [
      encode({ guild_id: guild, packet: presence }),
      encode(encoder.encode(JSON.stringify({ guild_id: guild, packet: presence }))),
      encode(JSON.stringify({ guild_id: guild, packet: presence })),
    ]
  ) {
    const read = wireCommand("spectacles", bytes, count);
    assert.deepEqual(read, { ok: true, text: JSON.stringify({ ...presence, shard: owner }) });
    const parsed = parseCommand((read as { text: string }).text, count);
    assert.ok(parsed.ok && parsed.parts.length === 1 && parsed.parts[0].shard === owner);
  }
  const snowflakeD = wireCommand(
    "spectacles",
    encode({ guild_id: guild, packet: { op: 8, d: { guild_id: BigInt(guild), query: "", limit: 0 } } }, {
      useBigInt64: true,
    }),
    count,
  );
  assert.deepEqual(JSON.parse((snowflakeD as { text: string }).text).d.guild_id, guild);
});

Deno.test("wire commands: what is not a command of the format is refused with a reason that names the problem", () => {
  const cases: Array<[format: "spectacles" | "discordjs", bytes: Uint8Array, reason: RegExp]> = [
    ["discordjs", new Uint8Array([0xc1]), /^not msgpack/],
    ["discordjs", encode([1, 2]), /a discordjs command is a map, not an array/],
    ["discordjs", encode({ payload: { op: 8, d: {} } }), /needs shardId, an integer/],
    ["discordjs", encode({ shardId: 1 }), /needs payload: \{op, d\}/],
    ["spectacles", encode({ packet: { op: 3, d: {} } }), /needs guild_id, a snowflake/],
    ["spectacles", encode({ guild_id: "x1", packet: { op: 3, d: {} } }), /needs guild_id, a snowflake/],
    ["spectacles", encode({ guild_id: "1" }), /needs packet: \{op, d\}/],
    ["spectacles", encode(encoder.encode("{not json")), /msgpack binary that is not JSON/],
    ["spectacles", encode(null), /a spectacles command is a map, not nil/],
  ];
  for (const [format, bytes, reason] of cases) {
    const read = wireCommand(format, bytes, 2);
    assert.equal(read.ok, false, `${format} ${reason}`);
    if (!read.ok) {
      assert.match(read.reason, reason);
      assert.match(read.head, /^msgpack [0-9a-f]*/);
    }
  }
});

Deno.test("wire commands: what JSON cannot hold as it is (deep nesting, NaN, Infinity, timestamps, ext types, binary that is not UTF-8, a float guild_id) is refused, never sent changed", () => {
  const presence = (d: Record<string, unknown>) => ({
    op: 3,
    d: { since: null, activities: [], status: "idle", afk: false, ...d },
  });
  const djs = (d: Record<string, unknown>) => encode({ payload: presence(d), shardId: 0 });
  const spec = (d: Record<string, unknown>) => encode({ guild_id: "1", packet: presence(d) });
  // 100 000 nested arrays: msgpack decodes them without recursing; reading them as JSON did not.
  const depth = 100_000;
  const nested = new Uint8Array(depth + 1).fill(0x91);
  nested[depth] = 0x01;
  const head = encode({ shardId: 0, payload: { op: 3, d: null } });
  const deep = new Uint8Array([...head.subarray(0, head.length - 1), ...nested]);
  const deepJson = encode(`{"guild_id":"1","packet":{"op":3,"d":${"[".repeat(depth)}${"]".repeat(depth)}}}`);
  const cases: Array<[format: "spectacles" | "discordjs", bytes: Uint8Array, reason: RegExp]> = [
    ["discordjs", deep, /nested deeper than 64 levels/],
    ["spectacles", deepJson, /nested deeper than 64 levels/],
    ["discordjs", djs({ since: NaN }), /NaN is not a number JSON can hold/],
    ["spectacles", spec({ since: Infinity }), /Infinity is not a number JSON can hold/],
    ["discordjs", djs({ since: new Date(5) }), /a msgpack timestamp has no JSON form/],
    ["spectacles", spec({ activities: [{ name: new ExtData(5, new Uint8Array([65])) }] }), /ext type 5/],
    ["discordjs", djs({ status: new Uint8Array([0xff, 0xfe]) }), /binary of 2 bytes that is not UTF-8/],
    ["spectacles", encode({ guild_id: 1e19, packet: presence({}) }), /needs guild_id, a snowflake/],
  ];
  for (const [format, bytes, reason] of cases) {
    const read = wireCommand(format, bytes, 2);
    assert.equal(read.ok, false, `${format} ${reason}: ${read.ok ? read.text.slice(0, 200) : ""}`);
    if (!read.ok) assert.match(read.reason, reason);
  }
  // What stays: UTF-8 binary as its text, a float with an integer value, nesting as deep as allowed.
  const ok = wireCommand("discordjs", djs({ status: encoder.encode("idle") }), 2);
  assert.deepEqual(ok.ok && JSON.parse(ok.text).d.status, "idle");
  let d: unknown = 1;
  for (let i = 0; i < 60; i++) d = [d];
  assert.equal(wireCommand("discordjs", encode({ payload: { op: 3, d }, shardId: 0 }), 2).ok, true);
});

Deno.test("wire commands: arbitrary bytes and arbitrary msgpack values never throw; what is read is JSON text (fast-check)", () => {
  const value = fc.letrec((tie) => ({
    v: fc.oneof(
      { depthSize: "small" },
      fc.constant(null),
      fc.boolean(),
      fc.integer(),
      fc.bigInt({ min: -(2n ** 63n), max: 2n ** 64n - 1n }),
      fc.double(),
      fc.string(),
      fc.uint8Array({ maxLength: 20 }),
      fc.date({ noInvalidDate: true }),
      fc.record({ type: fc.integer({ min: 0, max: 127 }), data: fc.uint8Array({ maxLength: 8 }) })
        .map(({ type, data }) => new ExtData(type, data)),
      fc.integer({ min: 1, max: 5_000 }).map((n) => {
        let deep: unknown = null;
        for (let i = 0; i < n; i++) deep = [deep];
        return deep;
      }),
      fc.array(tie("v"), { maxLength: 4 }),
      fc.dictionary(fc.constantFrom("guild_id", "packet", "op", "d", "payload", "shardId", "x"), tie("v"), {
        maxKeys: 4,
      }),
    ),
  })).v;
  const bytes = fc.oneof(
    fc.uint8Array({ maxLength: 64 }),
    value.map((v) => {
      try {
        return encode(v, { useBigInt64: true, maxDepth: 10_000 });
      } catch {
        return new Uint8Array([0xc0]);
      }
    }),
  );
  fc.assert(
    fc.property(
      fc.constantFrom("spectacles" as const, "discordjs" as const),
      bytes,
      fc.integer({ min: 1, max: 64 }),
      (format, b, count) => {
        const read = wireCommand(format, b, count);
        if (read.ok) {
          const command = JSON.parse(read.text);
          assert.equal(typeof command, "object");
          // And the command check takes it without throwing, whatever it says.
          parseCommand(read.text, count);
        } else assert.ok(read.reason.length > 0);
      },
    ),
    { numRuns: 2_000 },
  );
});

Deno.test("wire names: the command inbox of each format", () => {
  assert.equal(commandInbox("gatehouse", "gh", "gh:"), "gh:commands");
  assert.equal(commandInbox("spectacles", "gatehouse", ""), "SEND");
  assert.equal(commandInbox("discordjs", "gatehouse", ""), "gateway_send");
  assert.equal(commandInbox("discordjs", "bot1", "bot1:"), "bot1:gateway_send");
});

Deno.test("wire format discordjs: a d that msgpack cannot hold (nested past its depth) is left out of the streams with a warning; the batch's other events go on", async () => {
  const deep = "[".repeat(150) + "]".repeat(150);
  const batch = batchOf([
    { t: "MESSAGE_CREATE", d: `{"id":"1","deep":${deep}}` },
    { t: "MESSAGE_CREATE", d: '{"id":"2"}' },
  ]);
  const line = new LineBuffer(16);
  const wire = eventWire("discordjs");
  assert.match(wire.append(line, batch, 0)!, /^msgpack cannot encode its d: /);
  assert.equal(line.length, 0, "nothing appended");
  assert.equal(eventWire("spectacles").append(line, batch, 0), null, "Spectacles' binary holds any d");

  // Through the Redis sink: the delivery succeeds, the other event is in its stream.
  const prefix = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
  const warnings: string[] = [];
  const sink = new RedisSink({
    url: "redis://127.0.0.1:6379",
    prefix,
    format: "discordjs",
    logger: {
      debug: () => {},
      info: () => {},
      warn: (message: string, props: Record<string, unknown>) =>
        warnings.push(`${message} ${JSON.stringify(props)}`),
    } as unknown as Logger,
  });
  const client = new Redis("redis://127.0.0.1:6379");
  try {
    await sink.deliver(batch);
    const entries = await client.xrangeBuffer(`${prefix}:MESSAGE_CREATE`, "-", "+");
    assert.deepEqual(entries.map(([, fields]) => decode(fields[1])), [{ shardId: 3, payload: { id: "2" } }]);
    assert.equal(warnings.length, 1);
    assert.match(
      warnings[0],
      /left out of the \{format\} streams.*"id":1,"t":"MESSAGE_CREATE","format":"discordjs"/,
    );
  } finally {
    for await (const keys of client.scanStream({ match: `*${prefix}*` })) {
      if ((keys as string[]).length > 0) await client.del(...(keys as string[]));
    }
    client.disconnect();
    await sink.close();
  }
});

Deno.test("wire format spectacles on RabbitMQ: a group exchange missing at start is declared without a 'connection lost' warning (the failed check only closed its channel)", async () => {
  await withRabbitMq(false, async () => {
    const group = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
    const warnings: string[] = [];
    const sink = new AmqpSink({
      url: "amqp://guest:guest@127.0.0.1:5672",
      format: "spectacles",
      group,
      logger: {
        debug: () => {},
        info: () => {},
        warn: (message: string, props: Record<string, unknown>) =>
          warnings.push(`${message} ${JSON.stringify(props)}`),
      } as unknown as Logger,
    });
    const amqp = new AMQPClient("amqp://guest:guest@127.0.0.1:5672");
    await amqp.connect();
    const channel = await amqp.channel();
    try {
      await sink.deliver(batchOf([{ t: "MESSAGE_CREATE", d: '{"id":"1"}' }]));
      const queue = await channel.queueDeclare(`${group}:MESSAGE_CREATE`, { passive: true });
      assert.equal(queue.messageCount, 1);
      assert.deepEqual(warnings, []);
    } finally {
      await sink.close();
      await channel.queueDelete(`${group}:MESSAGE_CREATE`).catch(() => {});
      await channel.exchangeDelete(group).catch(() => {});
      await amqp.close().catch(() => {});
    }
  });
});
