/**
 * Commands from a Redis stream (`{prefix}:commands`): read through a consumer group, so several
 * gatehouse processes can share one stream and a command is handled once; each entry (field `data`,
 * one command as JSON) is acknowledged (XACK) once it was sent to Discord — or rejected. Reconnects with backoff like the sink.
 */
import { hostname } from "node:os";
import { connectRedis, type RedisClient } from "../sinks/redis_client.ts";
import type { Logger } from "../util/log.ts";

export interface RedisCommandSourceOptions {
  url: string;
  stream: string;
  group: string;
  /** Resolves once the command was sent to Discord (or rejected): the entry is acknowledged then. */
  onCommand: (text: string) => Promise<void>;
  logger?: Logger;
  /** PEM CA certificates for TLS URLs. */
  tlsCa?: string | null;
}

export class RedisCommandSource {
  readonly #client: RedisClient;
  readonly #o: RedisCommandSourceOptions;
  readonly #consumer = `gatehouse-${safeHostname()}-${Deno.pid}`;
  #stopped = false;
  #loop: Promise<void> | null = null;
  /** Entries handled (for tests and metrics). */
  handled = 0;

  constructor(options: RedisCommandSourceOptions) {
    this.#o = options;
    this.#client = connectRedis(options.url, {
      retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 5_000),
      maxRetriesPerRequest: null,
    }, options.tlsCa ?? null);
    this.#client.on(
      "error",
      (error: Error) => options.logger?.debug("redis commands: {error}", { error: error.message }),
    );
  }

  start(): void {
    this.#loop ??= this.#run();
  }

  async #run(): Promise<void> {
    const { stream, group } = this.#o;
    while (!this.#stopped) {
      try {
        await this.#client.xgroup("CREATE", stream, group, "$", "MKSTREAM").catch((error: Error) => {
          if (!/BUSYGROUP/.test(error.message)) throw error;
        });
        // First what this consumer read but did not acknowledge before (a crash), then new entries.
        let pending = true;
        while (!this.#stopped) {
          const reply = await this.#client.xreadgroup(
            "GROUP",
            group,
            this.#consumer,
            "COUNT",
            100,
            "BLOCK",
            1000,
            "STREAMS",
            stream,
            pending ? "0" : ">",
          ) as Array<[string, Array<[string, string[]]>]> | null;
          const entries = reply?.[0]?.[1] ?? [];
          if (pending && entries.length === 0) {
            pending = false;
            continue;
          }
          for (const [id, fields] of entries) {
            const at = fields.indexOf("data");
            await this.#o.onCommand(
              at >= 0 && at % 2 === 0 ? fields[at + 1] : JSON.stringify(Object.fromEntries(pairs(fields))),
            );
            await this.#client.xack(stream, group, id);
            this.handled++;
          }
        }
      } catch (error) {
        if (this.#stopped) return;
        this.#o.logger?.warn("reading commands from Redis failed: {error}; retrying in 1 s", {
          error: (error as Error).message,
        });
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    this.#client.disconnect();
    // A command still waiting for its shard would hold the loop: do not wait for it.
    await Promise.race([this.#loop?.catch(() => {}), new Promise((resolve) => setTimeout(resolve, 1000))]);
  }
}

function pairs(fields: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < fields.length; i += 2) out.push([fields[i], fields[i + 1]]);
  return out;
}

function safeHostname(): string {
  try {
    return hostname();
  } catch {
    return "host";
  }
}
