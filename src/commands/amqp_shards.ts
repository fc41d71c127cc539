/**
 * The shard queues an AMQP command source consumes on its channel, following the router's shards: the
 * shards a process runs change while it runs (cluster mode: the pool takes and loses shards).
 *
 * - A shard new here: its queue `{exchange}.commands.{shard}` is declared and consumed (what waited in
 *   it is delivered at once).
 * - A shard gone: its consumer is cancelled first (so the broker delivers nothing more of it here), then
 *   what was queued on its object and not written to Discord is nacked with requeue: back at the head
 *   of its queue for the new owner at once. A stopped shard keeps its send queue and never calls onSent,
 *   so such a message is never acknowledged.
 * - A shard started again as a new object: what was queued on the old one goes back the same way (and
 *   comes back to this consumer, for the new object).
 * - A message delivered for a shard not run here (any more) goes back too.
 */
import type { AMQPChannel, AMQPConsumer, AMQPMessage } from "@cloudamqp/amqp-client";
import type { Logger } from "../util/log.ts";
import type { CommandRouter, CommandTarget, Refusal } from "./router.ts";

/** A shard's own queue. */
export function shardQueueName(inbox: string, shard: number): string {
  return `${inbox}.${shard}`;
}

export interface ShardConsumersOptions {
  channel: AMQPChannel;
  inbox: string;
  router: CommandRouter;
  /** Declares a queue once per channel. */
  declare: (queue: string) => Promise<unknown>;
  report: (text: string, refusal: Refusal | null) => void;
  /** A consumer ended without being cancelled here (the channel closed, its queue deleted). */
  onEnded: (error: Error) => void;
  logger?: Logger;
}

export class ShardConsumers {
  readonly #o: ShardConsumersOptions;
  readonly #consumers = new Map<number, AMQPConsumer>();
  /** Messages queued on a shard and not seen written yet, with the object they were queued on. */
  readonly #sending = new Map<AMQPMessage, { shard: number; target: CommandTarget }>();
  #following: Promise<void> = Promise.resolve();
  #closed = false;

  constructor(options: ShardConsumersOptions) {
    this.#o = options;
  }

  /** The shards whose queues are consumed now. */
  get shards(): number[] {
    return [...this.#consumers.keys()].sort((a, b) => a - b);
  }

  /** Follows the router's shards now (after any follow under way). Never rejects: failures are logged. */
  follow(): Promise<void> {
    this.#following = this.#following.then(() => this.#follow()).catch((error) => {
      if (this.#closed || this.#o.channel.closed) return;
      this.#o.logger?.warn("following the shards' command queues failed: {error}", {
        error: (error as Error).message,
      });
    });
    return this.#following;
  }

  /** No more following (the channel is being closed: what it holds goes back to the broker). */
  close(): void {
    this.#closed = true;
  }

  async #follow(): Promise<void> {
    if (this.#closed) return;
    const { router, channel, inbox } = this.#o;
    const wanted = new Set(router.shardIds);
    const gone = [...this.#consumers].filter(([shard]) => !wanted.has(shard));
    for (const [shard] of gone) this.#consumers.delete(shard);
    // Cancelled before anything is requeued, so the broker does not deliver it here again.
    await Promise.all(gone.map(([, consumer]) => consumer.cancel()));
    let handedBack = 0;
    for (const [message, { shard, target }] of [...this.#sending]) {
      if (router.target(shard) === target) continue;
      this.#sending.delete(message);
      this.#giveBack(message);
      handedBack++;
    }
    if (handedBack > 0) {
      this.#o.logger?.info(
        "handed {n} unsent command(s) back: their shard is not run here (as that object)",
        {
          n: handedBack,
        },
      );
    }
    for (const shard of wanted) {
      if (this.#consumers.has(shard) || this.#closed) continue;
      const queue = shardQueueName(inbox, shard);
      await this.#o.declare(queue);
      const consumer = await channel.basicConsume(queue, { noAck: false }, (m) => this.#send(shard, m));
      if (this.#closed || !router.runs(shard)) {
        await consumer.cancel();
        continue;
      }
      this.#consumers.set(shard, consumer);
      consumer.wait().then(
        () => this.#ended(shard, consumer, new Error(`the consumer of ${queue} was cancelled`)),
        (error) => this.#ended(shard, consumer, error as Error),
      );
    }
  }

  #ended(shard: number, consumer: AMQPConsumer, error: Error): void {
    if (this.#closed || this.#consumers.get(shard) !== consumer) return; // cancelled here
    this.#o.onEnded(error);
  }

  /** Back at the head of its queue, for whoever consumes it (a closed channel: the broker does it). */
  #giveBack(message: AMQPMessage): void {
    void message.nack(true).catch(() => {});
  }

  /** A message of a shard's queue: queued on the shard, acked once written or refused; else back. */
  #send(shard: number, message: AMQPMessage): void {
    const { router, inbox } = this.#o;
    const target = router.target(shard);
    if (target === undefined || this.#closed) {
      this.#giveBack(message);
      return;
    }
    const text = message.bodyToString() ?? "";
    this.#sending.set(message, { shard, target });
    const done = () => {
      // Not held any more: handed back, never acknowledged.
      if (this.#sending.delete(message)) void message.ack().catch(() => {});
    };
    const taken = router.sendOwn(text, shard, shardQueueName(inbox, shard));
    if ("sent" in taken) {
      taken.sent.then(done);
      return;
    }
    this.#o.report(text, taken.refusal);
    done();
  }
}
