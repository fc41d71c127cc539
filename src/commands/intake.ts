/**
 * What every command source shares (stdin, the Redis and RabbitMQ inboxes, POST /commands): a line or
 * entry becomes a validated command for the router; each is counted by source and result, and a refused
 * one is logged (rate-limited) and reported as a GATEHOUSE_COMMAND_REJECTED event.
 */
import type { Clock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { RejectionLog } from "./rejections.ts";
import { type CommandRouter, readLines, type Refusal } from "./router.ts";

/** Counts commands by source and result (the metrics' `gatehouse_commands_total`). */
export interface CommandCounter {
  command(source: string, accepted: boolean): void;
}

/** Where a refused command is reported as gatehouse's own event (the dispatcher). */
export interface RejectionEvents {
  internal(shard: number, t: string, d: Record<string, unknown>): void;
}

/** A source's report of one command: `refusal` null when it was taken. */
export type CommandReport = (text: string, refusal: Refusal | null) => void;

export interface CommandIntakeOptions {
  router: CommandRouter;
  counter: CommandCounter;
  events: RejectionEvents;
  logger: Logger;
  clock?: Clock;
}

/** The rejection event carries at most this much of the command. */
const COMMAND_HEAD = 200;

export class CommandIntake {
  readonly router: CommandRouter;
  readonly #o: CommandIntakeOptions;
  readonly #rejections: RejectionLog;

  constructor(options: CommandIntakeOptions) {
    this.#o = options;
    this.router = options.router;
    this.#rejections = new RejectionLog({ logger: options.logger, clock: options.clock });
  }

  /** Counts a command from `source`; a refused one is logged (rate-limited) and reported as an event. */
  report(source: string): CommandReport {
    return (text, refusal) => {
      this.#o.counter.command(source, refusal === null);
      if (refusal === null) return;
      this.#rejections.rejected(refusal.reason, source);
      // A refusal that concerns none of this process's shards is reported on its lowest one.
      const shard = refusal.shard !== null && this.router.runs(refusal.shard)
        ? refusal.shard
        : Math.min(...this.router.shardIds);
      this.#o.events.internal(shard, "GATEHOUSE_COMMAND_REJECTED", {
        reason: refusal.reason,
        command: text.length > COMMAND_HEAD ? `${text.slice(0, COMMAND_HEAD)}…` : text,
      });
    };
  }

  /** Routes one command to this process's shards; the reason when it is refused. */
  take(line: string, source: string): string | null {
    const result = this.router.handle(line);
    this.report(source)(line, result.ok ? null : result);
    return result.ok ? null : result.reason;
  }

  /** Takes every line of an NDJSON stream (stdin in a pipe) until it ends. */
  readLines(stream: ReadableStream<Uint8Array>, source: string): Promise<void> {
    return readLines(stream, {
      onLine: (line) => void this.take(line, source),
      onTooLong: (bytes, head) =>
        this.report(source)(head, { reason: `line of ${bytes} bytes is longer than 64 KB`, shard: null }),
    });
  }

  /** Writes the rate-limited log's last summary line (at shutdown). */
  close(): void {
    this.#rejections.close();
  }
}
