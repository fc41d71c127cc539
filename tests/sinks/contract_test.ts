/**
 * The sink contract, one suite run against every sink: events are delivered in id order as NDJSON
 * lines; a batch delivered again (a crash before its cursor was stored) is acknowledged and its repeats
 * carry the same ids (an idempotent sink holds each event once); a destination that cannot take events
 * fails the delivery instead of acknowledging it. The Redis sink runs against a real Redis on 127.0.0.1.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import type { EventBatch } from "../../src/journal/journal.ts";
import { AMQPClient } from "@cloudamqp/amqp-client";
import { AmqpSink } from "../../src/sinks/amqp.ts";
import { withRabbitMq } from "../helpers/rabbitmq_lock.ts";
import { HttpSink } from "../../src/sinks/http.ts";
import { Secret } from "../../src/util/secret.ts";
import { RedisSink } from "../../src/sinks/redis.ts";
import type { Sink } from "../../src/sinks/sink.ts";
import { StdoutSink } from "../../src/sinks/stdout.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);
const REDIS_URL = Deno.env.get("GATEHOUSE_TEST_REDIS") ?? "redis://127.0.0.1:6379";
const AMQP_URL = Deno.env.get("GATEHOUSE_TEST_AMQP") ?? "amqp://guest:guest@127.0.0.1:5672";

interface Event {
  id: number;
  shard: number;
  t: string;
  payload: string;
  /** The event's identity: a session of its shard, and its seq there. */
  scope: string;
  position: number;
}

function batchOf(events: Event[]): EventBatch {
  const payloads = events.map((e) => enc(e.payload));
  return {
    count: events.length,
    firstId: events[0].id,
    lastId: events[events.length - 1].id,
    size: payloads.reduce((n, p) => n + p.length, 0),
    id: (i) => events[i].id,
    shard: (i) => events[i].shard,
    t: (i) => events[i].t,
    payload: (i) => payloads[i],
    scope: (i) => events[i].scope,
    position: (i) => events[i].position,
  };
}

/**
 * Event `id` of a store; its identity is session `session` of its shard with seq = id (positions grow
 * with ids inside each shard's session, as they do in a journal).
 */
function event(id: number, t = id % 3 === 0 ? "GUILD_CREATE" : "MESSAGE_CREATE", session = "a"): Event {
  const shard = id % 4;
  return {
    id,
    shard,
    t,
    payload: `{"t":"${t}","s":${id},"op":0,"d":{"n":${id},"big":123456789012345678901}}`,
    scope: `${shard}:${session}${shard}`,
    position: id,
  };
}

/** The line a sink must hold for an event: id, uid, shard, then Discord's bytes untouched. */
const lineOf = (e: Event) =>
  `{"id":${e.id},"uid":"${e.scope}:${e.position}","shard":${e.shard},${e.payload.slice(1)}`;

interface Subject {
  sink: Sink;
  /** Every line the destination holds, in the order a consumer reads them (per sink: by id). */
  read(): Promise<string[]>;
  /** Whether a repeated delivery is stored once (true) or appears again with the same ids (false). */
  idempotent: boolean;
  cleanup(): Promise<void>;
}

interface Kind {
  name: string;
  make(): Promise<Subject>;
  /** A sink whose destination cannot take events. */
  broken(): Promise<{ sink: Sink; cleanup(): Promise<void> }>;
}

const KINDS: Kind[] = [
  {
    name: "stdout",
    make() {
      const chunks: Uint8Array[] = [];
      const sink = new StdoutSink({
        write: (bytes) => (chunks.push(bytes.slice()), Promise.resolve(bytes.length)),
      });
      return Promise.resolve({
        sink,
        idempotent: false,
        read: () => Promise.resolve(chunks.map(dec).join("").split("\n").filter((l) => l !== "")),
        cleanup: () => Promise.resolve(),
      });
    },
    broken() {
      const sink = new StdoutSink({ write: () => Promise.reject(new Error("Broken pipe (os error 32)")) });
      return Promise.resolve({ sink, cleanup: () => Promise.resolve() });
    },
  },
  ...(["per-event", "single"] as const).map((layout): Kind => ({
    name: `redis (${layout} streams)`,
    make() {
      const prefix = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
      const sink = new RedisSink({ url: REDIS_URL, prefix, layout, group: "bots" });
      const client = new Redis(REDIS_URL);
      const keys = async () => (await client.keys(`${prefix}:*`)).sort();
      return Promise.resolve({
        sink,
        idempotent: true,
        async read() {
          // Per stream in entry order; streams merged by the order the events were given (line ids).
          const lines: Array<[number, string]> = [];
          for (const key of await keys()) {
            let previous = 0;
            for (const [, fields] of await client.xrange(key, "-", "+")) {
              assert.equal(fields[0], "data");
              const id = JSON.parse(fields[1]).id;
              assert.ok(id > previous || lines.some(([other]) => other === id), "in order within a stream");
              previous = id;
              lines.push([id, fields[1]]);
            }
          }
          return lines.sort((a, b) => a[0] - b[0]).map(([, line]) => line);
        },
        async cleanup() {
          const all = [...await keys(), ...await client.keys(`{${prefix}:*`)];
          if (all.length > 0) await client.del(...all);
          await sink.close?.();
          client.disconnect();
        },
      });
    },
    broken() {
      // A port nothing listens on.
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = listener.addr.port;
      listener.close();
      const sink = new RedisSink({ url: `redis://127.0.0.1:${port}`, layout });
      return Promise.resolve({ sink, cleanup: async () => await sink.close?.() });
    },
  })),
  {
    name: "amqp",
    async make() {
      const exchange = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
      const sink = new AmqpSink({ url: AMQP_URL, exchange });
      // A queue bound to every routing key, declared before anything is published.
      const client = new AMQPClient(AMQP_URL);
      await client.connect();
      const channel = await client.channel();
      await channel.exchangeDeclare(exchange, "topic", { durable: true });
      const queue = await channel.queueDeclare("", { exclusive: true });
      await channel.queueBind(queue.name, exchange, "#");
      return {
        sink,
        idempotent: false,
        async read() {
          const got: Array<[string, string]> = [];
          for (;;) {
            const message = await channel.basicGet(queue.name, { noAck: true });
            if (!message) break;
            assert.equal(message.properties.deliveryMode, 2, "persistent");
            got.push([message.properties.messageId!, message.bodyToString()!]);
          }
          for (const [uid, line] of got) {
            assert.equal(JSON.parse(line).uid, uid, "message_id is the event's uid");
          }
          return got.map(([, line]) => line);
        },
        async cleanup() {
          await channel.exchangeDelete(exchange);
          await client.close();
          await sink.close();
        },
      };
    },
    broken() {
      const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const port = listener.addr.port;
      listener.close();
      const sink = new AmqpSink({ url: `amqp://guest:guest@127.0.0.1:${port}` });
      return Promise.resolve({ sink, cleanup: async () => await sink.close() });
    },
  },
  {
    name: "http",
    make() {
      const bodies: string[] = [];
      const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (request) => {
        assert.equal(request.headers.get("authorization"), "Bearer test-secret");
        assert.equal(request.headers.get("content-type"), "application/x-ndjson");
        const body = await request.text();
        const lines = body.split("\n").filter((l) => l !== "");
        assert.equal(request.headers.get("x-gatehouse-first-id"), String(JSON.parse(lines[0]).id));
        assert.equal(request.headers.get("x-gatehouse-last-id"), String(JSON.parse(lines.at(-1)!).id));
        assert.equal(request.headers.get("x-gatehouse-producer"), "store-1");
        bodies.push(body);
        return new Response(null, { status: 204 });
      });
      const sink = new HttpSink({
        url: `http://127.0.0.1:${server.addr.port}/events`,
        authorization: new Secret("Bearer test-secret"),
        producer: "store-1",
      });
      return Promise.resolve({
        sink,
        idempotent: false,
        read: () => Promise.resolve(bodies.join("").split("\n").filter((l) => l !== "")),
        cleanup: () => server.shutdown(),
      });
    },
    broken() {
      const server = Deno.serve(
        { hostname: "127.0.0.1", port: 0, onListen: () => {} },
        () => new Response("busy", { status: 503 }),
      );
      const sink = new HttpSink({ url: `http://127.0.0.1:${server.addr.port}/events?token=hidden` });
      return Promise.resolve({ sink, cleanup: () => server.shutdown() });
    },
  },
];

/** RabbitMQ tests hold the shared broker lock (see rabbitmq_lock.ts). */
const guarded = (kind: Kind, fn: () => Promise<void>) => () =>
  kind.name === "amqp" ? withRabbitMq(false, fn) : fn();

for (const kind of KINDS) {
  Deno.test(
    `sink contract, ${kind.name}: delivers in id order, Discord's bytes untouched`,
    guarded(kind, async () => {
      const s = await kind.make();
      try {
        const events = Array.from({ length: 30 }, (_, i) => event(i + 1));
        await s.sink.deliver(batchOf(events.slice(0, 10)));
        await s.sink.deliver(batchOf(events.slice(10, 11)));
        await s.sink.deliver(batchOf(events.slice(11)));
        assert.deepEqual(await s.read(), events.map(lineOf));
        for (const line of await s.read()) JSON.parse(line);
      } finally {
        await s.cleanup();
      }
    }),
  );

  Deno.test(
    `sink contract, ${kind.name}: a batch delivered again is acknowledged; repeats keep their ids`,
    guarded(kind, async () => {
      const s = await kind.make();
      try {
        const first = Array.from({ length: 5 }, (_, i) => event(i + 1));
        const second = Array.from({ length: 5 }, (_, i) => event(i + 6));
        await s.sink.deliver(batchOf(first));
        await s.sink.deliver(batchOf(second));
        // The process died before the cursor after `second` was stored: it is delivered again.
        await s.sink.deliver(batchOf(second));
        const lines = await s.read();
        if (s.idempotent) {
          assert.deepEqual(lines, [...first, ...second].map(lineOf), "each event once");
        } else {
          assert.deepEqual(
            lines,
            [...first, ...second, ...second].map(lineOf),
            "the repeats are the same lines",
          );
        }
      } finally {
        await s.cleanup();
      }
    }),
  );

  Deno.test(
    `sink contract, ${kind.name}: two producers (two stores numbering from 1) lose nothing; ` +
      "the same event from both is held once where the sink de-duplicates",
    guarded(kind, async () => {
      const s = await kind.make();
      try {
        // Store A: its shards' sessions "a…", ids 1–8. Store B (a fresh container, other shards'
        // sessions "b…"): ids 1–8 again.
        const a = Array.from({ length: 8 }, (_, i) => event(i + 1, "MESSAGE_CREATE", "a"));
        const b = Array.from({ length: 8 }, (_, i) => event(i + 1, "MESSAGE_CREATE", "b"));
        await s.sink.deliver(batchOf(a));
        await s.sink.deliver(batchOf(b));
        // B also holds two of A's events (the same sessions and seqs) under ids of its own.
        const shared = [{ ...a[6], id: 9 }, { ...a[7], id: 10 }];
        await s.sink.deliver(batchOf(shared));
        const lines = (await s.read()).map((line) => JSON.parse(line));
        const uids = lines.map((line) => line.uid);
        for (const e of [...a, ...b]) {
          assert.ok(uids.includes(`${e.scope}:${e.position}`), `${e.scope}:${e.position} delivered`);
        }
        if (s.idempotent) {
          assert.equal(lines.length, 16, "each event once, whichever store it came from");
        } else {
          assert.equal(lines.length, 18, "repeats carry the same uid");
          assert.equal(new Set(uids).size, 16);
        }
      } finally {
        await s.cleanup();
      }
    }),
  );

  Deno.test(
    `sink contract, ${kind.name}: a destination that cannot take events fails the delivery`,
    guarded(kind, async () => {
      const b = await kind.broken();
      try {
        await assert.rejects(async () => await b.sink.deliver(batchOf([event(1)])));
      } finally {
        await b.cleanup();
      }
    }),
  );
}

Deno.test("redis sink: per-event layout uses {prefix}:{EVENT} streams, Redis's entry ids, and creates the group", async () => {
  const prefix = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
  const sink = new RedisSink({ url: REDIS_URL, prefix, group: "bots", maxLen: 1000 });
  const client = new Redis(REDIS_URL);
  try {
    // An older stream top (explicit ids from an earlier version, or another producer) is no obstacle.
    await client.xadd(`${prefix}:MESSAGE_CREATE`, "99999999999-0", "data", "{}");
    await client.del(`${prefix}:MESSAGE_CREATE`);
    await client.xadd(`${prefix}:MESSAGE_CREATE`, "5-0", "data", '{"id":5}');
    await sink.deliver(
      batchOf([event(1, "MESSAGE_CREATE"), event(2, "GUILD_CREATE"), event(3, "MESSAGE_CREATE")]),
    );
    assert.deepEqual((await client.keys(`${prefix}:*`)).sort(), [
      `${prefix}:GUILD_CREATE`,
      `${prefix}:MESSAGE_CREATE`,
    ]);
    const entries = await client.xrange(`${prefix}:MESSAGE_CREATE`, "-", "+");
    assert.deepEqual(entries.map(([, fields]) => JSON.parse(fields[1]).id), [5, 1, 3]);
    const groups = (await client.xinfo("GROUPS", `${prefix}:MESSAGE_CREATE`)) as unknown[][];
    assert.equal(groups.length, 1);
    assert.equal(groups[0][1], "bots");
    // Delivered again: skipped by the marks, and that is an acknowledgement.
    await sink.deliver(batchOf([event(2, "GUILD_CREATE"), event(3, "MESSAGE_CREATE")]));
    assert.equal(sink.duplicates, 2);
    assert.equal(await client.xlen(`${prefix}:MESSAGE_CREATE`), 3);
    const [seen] = RedisSink.markKeys(`${prefix}:MESSAGE_CREATE`);
    assert.deepEqual(await client.hgetall(seen), { "1:a1": "1", "3:a3": "3" });
    // An event name with characters that would move its key to another Cluster slot.
    assert.equal(sink.stream("ODD{NAME} x"), `${prefix}:ODD_NAME__x`);
  } finally {
    const keys = [...await client.keys(`${prefix}:*`), ...await client.keys(`{${prefix}:*`)];
    if (keys.length > 0) await client.del(...keys);
    await sink.close();
    client.disconnect();
  }
});

Deno.test("http sink: an unreachable endpoint fails without showing the URL's token", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const sink = new HttpSink({ url: `http://127.0.0.1:${port}/events?token=hidden-value`, timeoutMs: 2000 });
  await assert.rejects(
    async () => await sink.deliver(batchOf([event(1)])),
    (error: Error) =>
      !error.message.includes("hidden-value") &&
      /POST to http:\/\/127\.0\.0\.1:\d+ failed/.test(error.message),
  );
});
