/**
 * Commands from a RabbitMQ queue (`{exchange}.commands`, durable, declared when missing): each message
 * body is one command as JSON; it is acknowledged once the command was sent to Discord or rejected. Reconnects after a lost connection; unacknowledged messages are redelivered by the broker.
 */
import { AMQPClient } from "@cloudamqp/amqp-client";
import type { Logger } from "../util/log.ts";

export interface AmqpCommandSourceOptions {
  url: string;
  queue: string;
  /** Resolves once the command was sent to Discord (or rejected): the message is acknowledged then. */
  onCommand: (text: string) => Promise<void>;
  logger?: Logger;
}

export class AmqpCommandSource {
  readonly #o: AmqpCommandSourceOptions;
  #client: AMQPClient | null = null;
  #stopped = false;
  #loop: Promise<void> | null = null;
  handled = 0;

  constructor(options: AmqpCommandSourceOptions) {
    this.#o = options;
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      try {
        const client = new AMQPClient(this.#o.url);
        this.#client = client;
        await client.connect();
        const channel = await client.channel();
        await channel.queueDeclare(this.#o.queue, { durable: true });
        await channel.basicQos(100);
        const consumer = await channel.basicConsume(this.#o.queue, { noAck: false }, async (message) => {
          await this.#o.onCommand(message.bodyToString() ?? "");
          await message.ack();
          this.handled++;
        });
        await consumer.wait();
      } catch (error) {
        if (this.#stopped) return;
        this.#o.logger?.warn("reading commands from RabbitMQ failed: {error}; retrying in 1 s", {
          error: (error as Error).message,
        });
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    const client = this.#client;
    this.#client = null;
    if (client && !client.closed) await client.close().catch(() => {});
    // A command still waiting for its shard would hold the loop: do not wait for it.
    await Promise.race([this.#loop?.catch(() => {}), new Promise((resolve) => setTimeout(resolve, 1000))]);
  }
}
