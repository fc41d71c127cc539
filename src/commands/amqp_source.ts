/**
 * Commands from RabbitMQ, for one or several gatehouse processes on one broker (each running some of
 * the bot's shards):
 *
 * - The bot publishes commands (one JSON command per message body) to the durable inbox queue
 *   `{exchange}.commands`. Any process consumes it, validates each message (a bad one is reported and
 *   acknowledged) and publishes a good one, persistent and with publisher confirms, to the durable
 *   queue of every shard that must send it, `{exchange}.commands.{shard}` — declared first, since the
 *   broker drops a message for a queue that does not exist — then acknowledges the inbox message.
 * - Each process consumes the queues of the shards it runs and acknowledges a message once its
 *   command was written to Discord (or refused), each on its own. One channel, a per-consumer prefetch
 *   (basic.qos, global = false) of `maxInFlight`: a shard in backoff holds that many of its own
 *   commands and the broker keeps delivering the other shards'.
 * - The shards a process runs change while it runs (cluster mode). The source follows the router's
 *   `shardIds` every FOLLOW_MS, and at once when told (`shardsChanged`): a shard new here has its queue
 *   consumed; one gone has its consumer cancelled and what it held unsent requeued at once, for the new
 *   owner; what was queued on a shard object that was replaced goes back too (`amqp_shards.ts`).
 * - A command for a shard no process runs yet waits in its queue until one does; what a process had
 *   not acknowledged when it died is delivered again by the broker.
 */
import { type AMQPChannel, AMQPClient, type AMQPConsumer, type AMQPMessage } from "@cloudamqp/amqp-client";
import { sleep, systemClock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { ShardConsumers, shardQueueName } from "./amqp_shards.ts";
import type { CommandRouter, Refusal } from "./router.ts";
import type { WireFormat } from "../config/wire_formats.ts";
import { wireCommand } from "./wire_commands.ts";
import { spectaclesExchange } from "../amqp/spectacles_exchange.ts";

export { shardQueueName } from "./amqp_shards.ts";

/** How often the router's shards are looked at (besides `shardsChanged`). */
const FOLLOW_MS = 250;

export interface AmqpCommandSourceOptions {
  url: string;
  /** The inbox, `{exchange}.commands`; a shard's queue is `<inbox>.<shard>`. */
  queue: string;
  /** Also bind the inbox to this exchange (the sink's) with this routing key (Spectacles' SEND). */
  bind?: { exchange: string; routingKey: string };
  /** The inbox messages' format (wire_commands.ts); default `gatehouse`, JSON text. */
  format?: WireFormat;
  router: CommandRouter;
  /** As in RedisCommandSourceOptions: every inbox message, and every command a shard refused. */
  report: (text: string, refusal: Refusal | null) => void;
  logger?: Logger;
  /** Unacknowledged messages per consumer (per shard); default 50. */
  maxInFlight?: number;
}

export class AmqpCommandSource {
  readonly #o: AmqpCommandSourceOptions;
  #client: AMQPClient | null = null;
  readonly #stopping = new AbortController();
  #loop: Promise<void> | null = null;
  #inbox: AMQPConsumer | null = null;
  /** The shard queues consumed on the current channel. */
  #shards: ShardConsumers | null = null;
  /** Inbox messages being passed on (awaited by a stop). */
  readonly #forwarding = new Set<Promise<void>>();

  constructor(options: AmqpCommandSourceOptions) {
    this.#o = options;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  /**
   * The router's shards changed (optional: the source looks every FOLLOW_MS too). Resolves once gone
   * shards' unsent commands were handed back and new shards' queues are consumed. Never rejects.
   */
  shardsChanged(): Promise<void> {
    return this.#shards?.follow() ?? Promise.resolve();
  }

  get #stopped(): boolean {
    return this.#stopping.signal.aborted;
  }

  async #run(): Promise<void> {
    const { queue: inbox, router } = this.#o;
    while (!this.#stopped) {
      try {
        const client = new AMQPClient(this.#o.url);
        this.#client = client;
        await client.connect();
        const channel = await client.channel();
        await channel.confirmSelect();
        const declared = new Map<string, Promise<unknown>>();
        const declare = (queue: string) => {
          let done = declared.get(queue);
          if (!done) {
            done = channel.queueDeclare(queue, { durable: true });
            declared.set(queue, done);
          }
          return done;
        };
        await declare(inbox);
        if (this.#o.bind) await this.#bindInbox(client, channel);
        // Applies to each consumer started after it on this channel.
        await channel.basicQos(this.#o.maxInFlight ?? 50, 0, false);
        // Any consumer ending (the channel or the connection closed, a queue deleted) starts over.
        let ended!: (error: Error) => void;
        const ending = new Promise<never>((_, reject) => (ended = reject));
        ending.catch(() => {}); // raced below; may end before the first race
        const shards = new ShardConsumers({
          channel,
          inbox,
          router,
          declare,
          report: this.#o.report,
          onEnded: (error) => ended(error),
          logger: this.#o.logger,
        });
        this.#shards = shards;
        try {
          await shards.follow();
          const consumer = await channel.basicConsume(inbox, { noAck: false }, (message) => {
            const forwarding = this.#forward(channel, declare, message);
            this.#forwarding.add(forwarding);
            forwarding.finally(() => this.#forwarding.delete(forwarding));
          });
          this.#inbox = consumer;
          consumer.wait().then(
            () => ended(new Error("the inbox's consumer was cancelled")),
            (error) => ended(error as Error),
          );
          while (!this.#stopped) {
            await Promise.race([ending, sleep(systemClock, FOLLOW_MS, this.#stopping.signal)]);
            await shards.follow();
          }
          return;
        } finally {
          shards.close();
        }
      } catch (error) {
        if (this.#stopped) return;
        this.#o.logger?.warn("reading commands from RabbitMQ failed: {error}; retrying in 1 s", {
          error: (error as Error).message,
        });
        const client = this.#client;
        if (client && !client.closed) await client.close().catch(() => {});
        await sleep(systemClock, 1000, this.#stopping.signal).catch(() => {});
      }
    }
  }

  /** Binds the inbox to the exchange a drop-in format's bot publishes its commands to (the sink's). */
  async #bindInbox(client: AMQPClient, channel: AMQPChannel): Promise<void> {
    const { exchange, routingKey } = this.#o.bind!;
    await spectaclesExchange(client, exchange);
    await channel.queueBind(this.#o.queue, exchange, routingKey);
  }

  /** An inbox message: refused, or published to each of its shards' queues (confirmed) and then acked. */
  async #forward(
    channel: AMQPChannel,
    declare: (queue: string) => Promise<unknown>,
    message: AMQPMessage,
  ): Promise<void> {
    const read = wireCommand(
      this.#o.format ?? "gatehouse",
      message.body ?? new Uint8Array(),
      this.#o.router.shardCount,
    );
    const text = read.ok ? read.text : read.head;
    const parsed = read.ok
      ? this.#o.router.parse(text)
      : { ok: false as const, reason: read.reason, shard: null };
    try {
      if (!parsed.ok) {
        this.#o.report(text, parsed);
        await message.ack();
        return;
      }
      await Promise.all(parsed.parts.map(async (part) => {
        const queue = shardQueueName(this.#o.queue, part.shard);
        await declare(queue);
        const body = JSON.stringify({ op: parsed.op, shard: part.shard, d: part.d });
        // Resolves once the broker confirmed it (the channel is in confirm mode).
        await channel.basicPublish("", queue, body, { deliveryMode: 2, contentType: "application/json" });
      }));
      await message.ack();
      this.#o.report(text, null);
    } catch (error) {
      if (this.#stopped || channel.closed) return; // redelivered by the broker
      this.#o.logger?.warn("passing a command on to its shard queue(s) failed: {error}; retrying in 1 s", {
        error: (error as Error).message,
      });
      await sleep(systemClock, 1000, this.#stopping.signal).catch(() => {});
      await message.nack(true).catch(() => {});
    }
  }

  /**
   * Stops taking inbox messages and lets those being passed on finish (bounded), then closes the
   * connection: what this process had not acknowledged goes back to its queue.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopping.abort();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const bounded = (work: Promise<unknown>, ms: number) =>
      Promise.race([work.catch(() => {}), new Promise((resolve) => (timer = setTimeout(resolve, ms)))])
        .finally(() => clearTimeout(timer));
    await bounded(
      (async () => {
        await this.#inbox?.cancel();
        await Promise.all(this.#forwarding);
      })(),
      1000,
    );
    const client = this.#client;
    this.#client = null;
    if (client && !client.closed) await bounded(client.close(), 1000);
    await bounded(this.#loop ?? Promise.resolve(), 1000);
  }
}
