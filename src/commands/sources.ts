/**
 * The command sources `gatehouse run` starts, per its configuration: stdin when it is a pipe (one
 * NDJSON command per line); with Redis as a sink, the `{prefix}:commands` stream (consumer group),
 * passed on to the shards' streams, which the processes running them read; with RabbitMQ as a sink, the
 * durable queue `{exchange}.commands`, passed on to the shards' queues `{exchange}.commands.{shard}`.
 * In a drop-in format (`[broker] format`) the inbox is that format's: `SEND` or `gateway_send` on Redis,
 * Spectacles' `<group>:SEND` queue on RabbitMQ (config/wire_formats.ts, wire_commands.ts).
 * A broker's source (and its client library) is imported only when that broker is a sink.
 */
import type { GatehouseConfig } from "../config/load.ts";
import { type Logger, logger as namedLogger } from "../util/log.ts";
import { type CommandCounter, CommandIntake, type RejectionEvents } from "./intake.ts";
import type { CommandRouter } from "./router.ts";
import { commandInbox, spectaclesCommandQueue } from "../config/wire_formats.ts";

export interface CommandSourceParts {
  counter: CommandCounter;
  events: RejectionEvents;
  logger?: Logger;
  /** Commands on stdin: the default reads `Deno.stdin` unless it is a terminal; null reads none. */
  stdin?: ReadableStream<Uint8Array> | null;
}

export interface CommandSources {
  readonly intake: CommandIntake;
  /** One command from elsewhere (POST /commands): null when routed, else why it was refused. */
  take(line: string, source: string): string | null;
  /**
   * The pool's shards changed (cluster mode): the broker sources hand back at once what shards gone from
   * here held and read new ones' streams or queues. Optional (Redis looks every read round, at most
   * 500 ms late; RabbitMQ every 250 ms).
   */
  shardsChanged(): void;
  /** Stops the broker sources (what they hold goes back to the broker), then the rejection log. */
  stop(): Promise<void>;
}

export async function startCommandSources(
  config: GatehouseConfig,
  router: CommandRouter,
  parts: CommandSourceParts,
): Promise<CommandSources> {
  const log = parts.logger ?? namedLogger("commands");
  const intake = new CommandIntake({ router, counter: parts.counter, events: parts.events, logger: log });
  const stdin = parts.stdin !== undefined
    ? parts.stdin
    : Deno.stdin.isTerminal()
    ? null
    : Deno.stdin.readable;
  if (stdin !== null) {
    intake.readLines(stdin, "stdin").catch((error) => {
      log.warn("stopped reading commands from stdin: {error}", { error: (error as Error).message });
    });
  }
  const redis = config.broker.types.includes("redis")
    ? new (await import("./redis_source.ts")).RedisCommandSource({
      url: config.redis.url.reveal(),
      stream: commandInbox(config.broker.format, config.redis.prefix, config.redis.streamPrefix),
      format: config.broker.format,
      group: config.broker.group,
      router,
      report: intake.report("redis"),
      logger: log,
      tlsCa: config.redis.tlsCaPem,
      claimIdleMs: config.redis.commandClaimIdleMs,
    })
    : null;
  redis?.start();
  const amqp = config.broker.types.includes("amqp")
    ? new (await import("./amqp_source.ts")).AmqpCommandSource({
      url: config.amqp.url.reveal(),
      ...(config.broker.format === "spectacles"
        ? {
          // Spectacles' SEND: published to the group's exchange with routing key SEND.
          queue: spectaclesCommandQueue(config.broker.group),
          bind: { exchange: config.broker.group, routingKey: "SEND" },
          format: config.broker.format,
        }
        : { queue: `${config.amqp.exchange}.commands` }),
      router,
      report: intake.report("amqp"),
      logger: log,
    })
    : null;
  amqp?.start();
  return {
    intake,
    take: (line, source) => intake.take(line, source),
    shardsChanged: () => {
      void redis?.shardsChanged();
      void amqp?.shardsChanged();
    },
    stop: async () => {
      await redis?.stop();
      await amqp?.stop();
      intake.close();
    },
  };
}
