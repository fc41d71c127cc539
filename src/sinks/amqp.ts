/**
 * The RabbitMQ (AMQP 0-9-1) sink: a durable topic exchange, one persistent message per event with the
 * event name as routing key and the event's identity (`uid`) as `message_id`; the body is the event's
 * NDJSON line.
 * In the `spectacles` format (src/config/wire_formats.ts) the exchange is Spectacles': the direct
 * exchange named after the group (used as it is when it exists: Spectacles' libraries declare it with
 * differing flags, and a declaration with other flags than the existing one's closes the channel), the
 * body the event's `d` as msgpack binary, and each event's durable queue `<group>:<EVENT>` is declared
 * and bound before its first message — RabbitMQ drops a message no queue is bound for, so events are not
 * lost before a consumer first starts.
 * Publisher confirms are the acknowledgement: a batch is acknowledged once the broker confirmed every
 * message of it. When the connection drops, what was not confirmed fails the delivery and is published
 * again from the journal on a new connection — repeats carry the same `message_id`, whichever process
 * or store they come from.
 */
import { AMQPClient } from "@cloudamqp/amqp-client";
import type { AMQPChannel } from "@cloudamqp/amqp-client";
import type { EventBatch } from "../journal/journal.ts";
import type { Logger } from "../util/log.ts";
import { LineBuffer } from "./ndjson.ts";
import type { Sink } from "./sink.ts";
import { eventUid } from "../journal/identity.ts";
import { spectaclesExchange } from "../amqp/spectacles_exchange.ts";
import { type EventWire, eventWire } from "./wire_format.ts";
import { spectaclesEventQueue, type WireFormat } from "../config/wire_formats.ts";

export interface AmqpSinkOptions {
  /** `amqp://user:pass@host:5672/vhost` (or `amqps://`). */
  url: string;
  /** The topic exchange (declared durable when missing). Default `gatehouse`. */
  exchange?: string;
  /** The bodies and the exchange (wire_format.ts); default `gatehouse`. */
  format?: WireFormat;
  /** `[broker] group`: the exchange (and queue names) of the `spectacles` format. Default `gatehouse`. */
  group?: string;
  logger?: Logger;
  /** The cursor's name in the store (default `amqp`). */
  name?: string;
  /** A batch not confirmed within this time fails (and is published again). Default 30 s. */
  confirmTimeoutMs?: number;
}

export class AmqpSink implements Sink {
  readonly name: string;
  /** Repeats after a crash carry the same message_id. */
  readonly runsAheadOfStoredCursor = true;
  readonly #url: string;
  readonly #exchange: string;
  readonly #wire: EventWire;
  /** Spectacles: the group, whose event queues are declared and bound before their first message. */
  readonly #queuesOf: string | null;
  /** Event queues declared and bound on the current connection. */
  #bound = new Map<string, Promise<void>>();
  readonly #log?: Logger;
  readonly #confirmTimeoutMs: number;
  readonly #line = new LineBuffer(4096);
  #client: AMQPClient | null = null;
  #channel: AMQPChannel | null = null;
  #closed = false;

  constructor(options: AmqpSinkOptions) {
    this.name = options.name ?? "amqp";
    this.#url = options.url;
    const format = options.format ?? "gatehouse";
    this.#wire = eventWire(format);
    this.#queuesOf = format === "spectacles" ? options.group ?? "gatehouse" : null;
    this.#exchange = this.#queuesOf ?? options.exchange ?? "gatehouse";
    this.#log = options.logger;
    this.#confirmTimeoutMs = options.confirmTimeoutMs ?? 30_000;
  }

  get exchange(): string {
    return this.#exchange;
  }

  async #ready(): Promise<AMQPChannel> {
    if (this.#channel && !this.#channel.closed && this.#client && !this.#client.closed) return this.#channel;
    this.#drop();
    const client = new AMQPClient(this.#url);
    // The check below closes its channel when the exchange is missing: not a lost connection.
    let checking: AMQPChannel | null = null;
    client.onerror = (error) => {
      if (checking !== null && checking.closed && /NOT_FOUND/.test(error.message)) return;
      this.#log?.warn("amqp: connection lost: {error}", { error: error.message });
    };
    await client.connect();
    if (this.#queuesOf !== null) {
      await spectaclesExchange(client, this.#exchange, (check) => (checking = check));
    }
    const channel = await client.channel();
    if (this.#queuesOf === null) await channel.exchangeDeclare(this.#exchange, "topic", { durable: true });
    await channel.confirmSelect();
    this.#bound = new Map();
    this.#client = client;
    this.#channel = channel;
    return channel;
  }

  #drop(): void {
    const client = this.#client;
    this.#client = null;
    this.#channel = null;
    if (client && !client.closed) client.close().catch(() => {});
  }

  async deliver(batch: EventBatch): Promise<void> {
    if (this.#closed) throw new Error("amqp: the sink is closed");
    let channel: AMQPChannel;
    try {
      channel = await this.#ready();
    } catch (error) {
      this.#drop();
      throw new Error(`amqp: cannot connect: ${(error as Error).message}`);
    }
    const wire = this.#wire;
    if (this.#queuesOf !== null) {
      try {
        await this.#bindQueues(channel, batch);
      } catch (error) {
        this.#drop();
        throw new Error(`amqp: cannot declare the event queues: ${(error as Error).message}`);
      }
    }
    const confirms: Promise<number>[] = [];
    for (let i = 0; i < batch.count; i++) {
      const t = batch.t(i);
      if (!wire.publishes(t)) continue;
      const unwritable = wire.append(this.#line, batch, i);
      if (unwritable !== null) {
        this.#log?.warn("amqp: event {id} ({t}) left out of the {format} messages: {reason}", {
          id: batch.id(i),
          t,
          format: wire.format,
          reason: unwritable,
        });
        continue;
      }
      const line = this.#line.take();
      confirms.push(
        channel.basicPublish(this.#exchange, t, line.slice(0, line.length - 1), {
          // The event's identity, the same from every process and store (journal/identity.ts).
          messageId: eventUid(batch.scope(i), batch.position(i)),
          deliveryMode: 2,
          contentType: wire.contentType,
        }),
      );
    }
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`amqp: not confirmed within ${this.#confirmTimeoutMs} ms`)),
        this.#confirmTimeoutMs,
      );
    });
    try {
      await Promise.race([Promise.all(confirms), timeout]);
    } catch (error) {
      // Whatever was not confirmed is published again on a new connection.
      this.#drop();
      for (const confirm of confirms) confirm.catch(() => {});
      throw error instanceof Error ? error : new Error(String(error));
    } finally {
      clearTimeout(timer);
    }
  }

  /** Spectacles: the durable queue `<group>:<EVENT>` of each event name of the batch, bound */
  async #bindQueues(channel: AMQPChannel, batch: EventBatch): Promise<void> {
    const group = this.#queuesOf!;
    const waits: Promise<void>[] = [];
    for (let i = 0; i < batch.count; i++) {
      const t = batch.t(i);
      if (!this.#wire.publishes(t)) continue;
      let bound = this.#bound.get(t);
      if (bound === undefined) {
        const queue = spectaclesEventQueue(group, t);
        bound = channel.queueDeclare(queue, { durable: true })
          .then(() => channel.queueBind(queue, this.#exchange, t));
        // A failure is tried again with the next delivery (on a new channel).
        bound.catch(() => this.#bound.delete(t));
        this.#bound.set(t, bound);
      }
      waits.push(bound);
    }
    await Promise.all(waits);
  }

  async close(): Promise<void> {
    this.#closed = true;
    const client = this.#client;
    this.#client = null;
    this.#channel = null;
    if (client && !client.closed) await client.close().catch(() => {});
  }
}
