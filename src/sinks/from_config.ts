/**
 * The sinks a configuration names (`[broker] type`), in its order, each built from its own section.
 * Building one opens nothing yet: connections are made by the first delivery.
 */
import type { GatehouseConfig } from "../config/load.ts";
import { logger } from "../util/log.ts";
import { AmqpSink } from "./amqp.ts";
import { HttpSink } from "./http.ts";
import { RedisSink } from "./redis.ts";
import type { Sink } from "./sink.ts";
import { StdoutSink } from "./stdout.ts";

export interface SinkContext {
  /** The store's name (`Store.producer`): the HTTP sink sends it so receivers can tell stores apart. */
  producer: string;
  /** Called once when the reader of stdout went away. */
  onOutputClosed: (error: Error) => void;
}

export function createSinks(config: GatehouseConfig, context: SinkContext): Sink[] {
  return config.broker.types.map((type): Sink => {
    switch (type) {
      case "stdout":
        return new StdoutSink({ onClosed: context.onOutputClosed });
      case "redis":
        return new RedisSink({
          url: config.redis.url.reveal(),
          prefix: config.redis.prefix,
          layout: config.redis.streams,
          maxLen: config.redis.maxLen,
          group: config.broker.group,
          logger: logger("redis"),
          tlsCa: config.redis.tlsCaPem,
        });
      case "http":
        return new HttpSink({
          url: config.http.url!.reveal(),
          authorization: config.http.authorization,
          producer: context.producer,
        });
      case "amqp":
        return new AmqpSink({
          url: config.amqp.url.reveal(),
          exchange: config.amqp.exchange,
          logger: logger("amqp"),
        });
    }
  });
}
