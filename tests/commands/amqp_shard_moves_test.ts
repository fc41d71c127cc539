/**
 * RabbitMQ command sources whose shards change while they run (cluster mode), against the real broker:
 * a shard gained later sends what waited in its queue; with shards moving between two processes every
 * command is sent once, by the process running its shard then; a process that loses a shard requeues
 * what it had not written (the new owner sends it at once); a shard started again as a new object gets
 * what was queued on the old one.
 */
import assert from "node:assert/strict";
import { type AMQPChannel, AMQPClient } from "@cloudamqp/amqp-client";
import { AmqpCommandSource, shardQueueName } from "../../src/commands/amqp_source.ts";
import { CommandRouter } from "../../src/commands/router.ts";
import { shardForGuild } from "../../src/gateway/protocol.ts";
import { withRabbitMq } from "../helpers/rabbitmq_lock.ts";
import { FakeProcess, requestFor, until, type Written } from "./redis_moves_helpers.ts";

const AMQP_URL = Deno.env.get("GATEHOUSE_TEST_AMQP") ?? "amqp://guest:guest@127.0.0.1:5672";

interface Setup {
  inbox: string;
  channel: AMQPChannel;
  written: Written[];
  refusals: string[];
  source(process: FakeProcess, count: number): AmqpCommandSource;
  publish(text: string): Promise<void>;
  /** Messages ready (not delivered) in a queue. */
  ready(queue: string): Promise<number>;
}

/** A unique exchange name; stops the sources and deletes the queues afterwards. */
function withBroker(shards: number, run: (s: Setup) => Promise<void>): Promise<void> {
  return withRabbitMq(false, async () => {
    const inbox = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}.commands`;
    const client = new AMQPClient(AMQP_URL);
    await client.connect();
    const channel = await client.channel();
    await channel.queueDeclare(inbox, { durable: true });
    const sources: AmqpCommandSource[] = [];
    const s: Setup = {
      inbox,
      channel,
      written: [],
      refusals: [],
      source: (process, count) => {
        const source = new AmqpCommandSource({
          url: AMQP_URL,
          queue: inbox,
          router: new CommandRouter(process, count),
          report: (text, refusal) => {
            if (refusal) s.refusals.push(`${refusal.reason}: ${text}`);
          },
        });
        sources.push(source);
        source.start();
        return source;
      },
      publish: async (text) => void await channel.basicPublish("", inbox, text),
      ready: async (queue) => (await channel.queueDeclare(queue, { durable: true })).messageCount,
    };
    try {
      await run(s);
      assert.deepEqual(s.refusals, [], "no command refused");
    } finally {
      await Promise.all(sources.map((source) => source.stop()));
      for (const q of [inbox, ...Array.from({ length: shards }, (_, i) => shardQueueName(inbox, i))]) {
        await channel.queueDelete(q).catch(() => {});
      }
      await client.close();
    }
  });
}

/** Until `n` consumers read `queue`. */
async function consumers(channel: AMQPChannel, queue: string, n: number): Promise<void> {
  await until(
    async () => (await channel.queueDeclare(queue, { durable: true })).consumerCount === n,
    `${n} consumer(s) on ${queue}`,
  );
}

function nonces(written: Written[]): string[] {
  return written.map((w) => w.nonce).sort();
}

Deno.test("amqp shard moves: a source that starts with no shards and gains shard 2 sends what waited in its queue", () =>
  withBroker(4, async (s) => {
    const p = new FakeProcess("a", s.written);
    s.source(p, 4);
    await consumers(s.channel, s.inbox, 1);
    await s.publish(requestFor(2, 4, "w1"));
    // Passed on to shard 2's queue, where it waits: nobody runs shard 2.
    const queue = shardQueueName(s.inbox, 2);
    await until(async () => (await s.ready(queue)) === 1, "the command in shard 2's queue");
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.deepEqual(s.written, [], "not sent while shard 2 runs nowhere");
    // The pool takes shard 2; the source notices on its own (no shardsChanged).
    p.add(2);
    await until(() => s.written.length === 1, "the waiting command sent", 3000);
    assert.deepEqual(s.written, [{ by: "a", shard: 2, nonce: "w1" }]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(await s.ready(queue), 0, "acknowledged");
  }));

Deno.test("amqp shard moves: shards moving between two processes: every command sent once, by its shard's owner then", () =>
  withBroker(4, async (s) => {
    const COUNT = 4;
    const owner = new Map<number, string>([[0, "a"], [1, "a"], [2, "b"], [3, "b"]]);
    const a = new FakeProcess("a", s.written, 40);
    const b = new FakeProcess("b", s.written, 40);
    const wrongOwner: string[] = [];
    for (const p of [a, b]) {
      p.onWrite = (by, shard) => {
        if (owner.get(shard) !== by) {
          wrongOwner.push(`${by} wrote on shard ${shard}, run by ${owner.get(shard)}`);
        }
      };
    }
    for (const [shard, name] of owner) (name === "a" ? a : b).add(shard);
    const sa = s.source(a, COUNT);
    const sb = s.source(b, COUNT);
    await consumers(s.channel, s.inbox, 2);

    const N = 300;
    const sent: string[] = [];
    let moves = 0;
    const move = async () => {
      // A hand-off as the cluster does it: the old owner stops the shard, then the new one starts it.
      const shard = moves % COUNT;
      const from = owner.get(shard) === "a" ? a : b;
      const to = from === a ? b : a;
      from.remove(shard);
      owner.set(shard, "nobody");
      // Half the time the sources are told, half the time they notice on their own.
      if (moves % 2 === 0) await (from === a ? sa : sb).shardsChanged();
      await new Promise((resolve) => setTimeout(resolve, 20));
      owner.set(shard, to.name);
      to.add(shard);
      if (moves % 2 === 0) await (to === a ? sa : sb).shardsChanged();
      moves++;
    };
    for (let i = 0; i < N; i++) {
      const shard = i % COUNT;
      const nonce = `n${i}`;
      sent.push(nonce);
      const text = requestFor(shard, COUNT, nonce);
      assert.equal(shardForGuild(JSON.parse(text).d.guild_id, COUNT), shard);
      await s.publish(text);
      if (i % 15 === 14) await move();
      else await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await until(() => s.written.length >= N, `${N} commands written`, 20_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.ok(moves >= 19, `${moves} moves`);
    assert.deepEqual(nonces(s.written), sent.sort(), "each command written exactly once");
    assert.deepEqual(wrongOwner, [], "written only by the process running the shard then");
    assert.deepEqual([...new Set(s.written.map((w) => w.by))].sort(), ["a", "b"]);
    for (let shard = 0; shard < COUNT; shard++) {
      assert.equal(await s.ready(shardQueueName(s.inbox, shard)), 0, `nothing left for shard ${shard}`);
    }
  }));

Deno.test("amqp shard moves: a process that loses a shard requeues its unsent commands; the new owner sends them at once", () =>
  withBroker(2, async (s) => {
    const a = new FakeProcess("a", s.written);
    const b = new FakeProcess("b", s.written);
    const held = a.add(1, true);
    b.add(0);
    const sa = s.source(a, 2);
    const sb = s.source(b, 2);
    await consumers(s.channel, s.inbox, 2);
    for (let i = 0; i < 5; i++) await s.publish(requestFor(1, 2, `h${i}`));
    await until(() => held.queued === 5, "5 commands queued on a's shard 1");
    // Shard 1 moves: a's pool stops it (what it queued is never written), b's starts it.
    const moved = Date.now();
    a.remove(1);
    await sa.shardsChanged();
    b.add(1);
    await sb.shardsChanged();
    await until(() => s.written.length === 5, "b wrote the 5 commands", 3000);
    const took = Date.now() - moved;
    assert.ok(took < 1000, `sent ${took} ms after the move`);
    assert.deepEqual(s.written.map((w) => [w.by, w.shard]), Array(5).fill(["b", 1]));
    assert.deepEqual(nonces(s.written), ["h0", "h1", "h2", "h3", "h4"]);
    assert.equal(held.queued, 5, "a's stopped shard never wrote them");
    // a consumes shard 1's queue no more: b's consumer only.
    await consumers(s.channel, shardQueueName(s.inbox, 1), 1);
  }));

Deno.test("amqp shard moves: a shard started again as a new object gets what was queued on the old one", () =>
  withBroker(2, async (s) => {
    const a = new FakeProcess("a", s.written);
    const old = a.add(0, true);
    const source = s.source(a, 2);
    await consumers(s.channel, s.inbox, 1);
    for (let i = 0; i < 3; i++) await s.publish(requestFor(0, 2, `r${i}`));
    await until(() => old.queued === 3, "3 commands queued on shard 0");
    // The pool restarts shard 0: the old object is stopped, a new one runs it.
    a.remove(0);
    a.add(0);
    await source.shardsChanged();
    await until(() => s.written.length === 3, "the new shard 0 wrote them", 3000);
    assert.deepEqual(nonces(s.written), ["r0", "r1", "r2"]);
    assert.equal(old.queued, 3, "the old object never wrote them");
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(await s.ready(shardQueueName(s.inbox, 0)), 0);
  }));
