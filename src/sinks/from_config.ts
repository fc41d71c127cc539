/**
 * The sinks a configuration names (`[broker] type`), in its order, each built from its own section.
 * Building one opens nothing yet: connections are made by the first delivery.
 *
 * A broker's module (and its client library: ioredis, @cloudamqp/amqp-client) is imported only when the
 * configuration names it, so a run without it does not carry it in memory (ioredis alone is ~10 MB of
 * RSS). The specifiers are static strings, which `deno compile` follows into the binary.
 */
import type { GatehouseConfig } from "../config/load.ts";
import type { SinkType } from "../config/schema.ts";
import { logger } from "../util/log.ts";
import type { ClusterFencing } from "./redis_fence.ts";
import type { Sink } from "./sink.ts";
import { StdoutSink } from "./stdout.ts";

export interface SinkContext {
  /** The store's name (`Store.producer`): the HTTP sink sends it so receivers can tell stores apart. */
  producer: string;
  /** Called once when the reader of stdout went away. */
  onOutputClosed: (error: Error) => void;
  /** Cluster mode: the Redis sink fences a stale owner's appends and moves the shared seqs. */
  cluster?: ClusterFencing;
}

export async function createSinks(config: GatehouseConfig, context: SinkContext): Promise<Sink[]> {
  const sinks: Sink[] = [];
  for (const type of config.broker.types) sinks.push(await createSink(type, config, context));
  return sinks;
}

async function createSink(
  type: SinkType,
  config: GatehouseConfig,
  context: SinkContext,
): Promise<Sink> {
  switch (type) {
    case "stdout":
      return new StdoutSink({ onClosed: context.onOutputClosed });
    case "redis": {
      const { RedisSink } = await import("./redis.ts");
      return new RedisSink({
        url: config.redis.url.reveal(),
        prefix: config.redis.prefix,
        streamPrefix: config.redis.streamPrefix,
        format: config.broker.format,
        layout: config.redis.streams,
        maxLen: config.redis.maxLen,
        // @discordjs/brokers' consumers each create their own group (from 0): none of gatehouse's there.
        group: config.broker.format === "discordjs" ? null : config.broker.group,
        logger: logger("redis"),
        tlsCa: config.redis.tlsCaPem,
        cluster: context.cluster,
      });
    }
    case "http": {
      const { HttpSink } = await import("./http.ts");
      return new HttpSink({
        url: config.http.url!.reveal(),
        authorization: config.http.authorization,
        producer: context.producer,
      });
    }
    case "amqp": {
      const { AmqpSink } = await import("./amqp.ts");
      return new AmqpSink({
        url: config.amqp.url.reveal(),
        exchange: config.amqp.exchange,
        format: config.broker.format,
        group: config.broker.group,
        logger: logger("amqp"),
      });
    }
  }
}
