/**
 * Commands from Redis, for one or several gatehouse processes sharing a Redis (each running some of
 * the bot's shards):
 *
 * - The bot XADDs commands (field `data`, one command as JSON) to the inbox `{prefix}:commands`. Any
 *   process reads it through the consumer group `[broker] group`, validates each entry (a bad one is
 *   reported and acknowledged) and passes a good one on to the stream of every shard that must send it
 *   — `{<prefix>:commands}:<shard>`, in the inbox's Redis Cluster hash slot — in one MULTI with the
 *   inbox's XACK, so a command is passed on exactly once however the process ends.
 * - Each process reads the streams of the shards it runs (same group) and queues the commands on
 *   them. An entry is acknowledged (and deleted) once its command was written to Discord, each on its
 *   own: a shard in backoff does not hold up the others. At most `maxInFlight` per shard wait; at the
 *   bound that shard's stream is not read until half of them went out.
 * - A command for a shard no process runs yet waits in its stream (the group starts at 0).
 * - Consumers are named per process (host, pid, a random part). Entries another consumer read but did
 *   not acknowledge for `claimIdleMs` (a process that crashed) are claimed (XAUTOCLAIM) and handled;
 *   entries this process holds are refreshed meanwhile so nobody claims them from a live process. A
 *   clean stop hands what it holds back (claimable at once) and removes its consumer when it has
 *   nothing pending; consumers that left nothing pending and were idle for twice `claimIdleMs` are
 *   removed too.
 *
 * One XREADGROUP reads the inbox and the shard streams together (one slot, so on a cluster too); a
 * second connection does everything else, so acknowledgements never wait behind a blocking read. The
 * group's commands are in `redis_group.ts`.
 */
import type { RedisClient } from "../redis/client.ts";
import { sleep, systemClock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import {
  CommandGroup,
  connectCommands,
  consumerName,
  entryText,
  type Fields,
  shardStreamKey,
} from "./redis_group.ts";
import type { CommandRouter, Refusal } from "./router.ts";

export interface RedisCommandSourceOptions {
  url: string;
  /** The inbox, `{prefix}:commands`. */
  stream: string;
  group: string;
  router: CommandRouter;
  /**
   * Called for every inbox entry (`refusal` null when it was passed on) and for every command a shard
   * refused: the caller counts it and reports refusals (log line, GATEHOUSE_COMMAND_REJECTED).
   */
  report: (text: string, refusal: Refusal | null) => void;
  logger?: Logger;
  /** PEM CA certificates for TLS URLs. */
  tlsCa?: string | null;
  /** Pending entries idle this long are claimed from their consumer; default 30 s. */
  claimIdleMs?: number;
  /** Per shard: commands read but not sent yet; default 50. */
  maxInFlight?: number;
}

/** Default: entries a consumer has not acknowledged for this long are taken over. */
export const DEFAULT_CLAIM_IDLE_MS = 30_000;
const DEFAULT_MAX_IN_FLIGHT = 50;

/** Blocking read timeout; shorter while a shard is paused, so it is read again soon after it drains. */
const BLOCK_MS = 500;
const BLOCK_PAUSED_MS = 100;

export class RedisCommandSource {
  readonly #o: RedisCommandSourceOptions;
  /** Acknowledgements, passing on, claims; never blocks. */
  readonly #client: RedisClient;
  /** Only the blocking XREADGROUP. */
  readonly #reader: RedisClient;
  readonly #group: CommandGroup;
  readonly #claimIdleMs: number;
  readonly #maxInFlight: number;
  /** Stream key → the shard it is for (null: the inbox). */
  readonly #streams = new Map<string, number | null>();
  /** Entries this process holds (read or claimed, not acknowledged yet), by stream. */
  readonly #held = new Map<string, Set<string>>();
  readonly #inFlight = new Map<number, number>();
  readonly #paused = new Set<number>();
  /** Acknowledgements that failed (connection lost): retried on the next claim round. */
  #failedAcks: Array<{ key: string; id: string }> = [];
  readonly #stopping = new AbortController();
  #loops: Promise<unknown> | null = null;

  constructor(options: RedisCommandSourceOptions) {
    this.#o = options;
    this.#claimIdleMs = options.claimIdleMs ?? DEFAULT_CLAIM_IDLE_MS;
    this.#maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    this.#streams.set(options.stream, null);
    for (const shard of options.router.shardIds) {
      this.#streams.set(shardStreamKey(options.stream, shard), shard);
    }
    for (const key of this.#streams.keys()) this.#held.set(key, new Set());
    this.#client = connectCommands(options.url, options.tlsCa ?? null, options.logger);
    this.#reader = connectCommands(options.url, options.tlsCa ?? null, options.logger);
    this.#group = new CommandGroup(this.#client, options.group, consumerName(), this.#claimIdleMs);
  }

  /** This process's consumer name in the group (for tests and logs). */
  get consumer(): string {
    return this.#group.consumer;
  }

  start(): void {
    this.#loops ??= Promise.all([this.#readLoop(), this.#claimLoop()]);
  }

  get #stopped(): boolean {
    return this.#stopping.signal.aborted;
  }

  async #readLoop(): Promise<void> {
    const inbox = this.#o.stream;
    while (!this.#stopped) {
      try {
        await this.#group.create(
          [...this.#streams].map(([key, shard]) => [key, shard === null ? "$" : "0"] as [string, "$" | "0"]),
        );
        while (!this.#stopped) {
          const keys = [inbox];
          let count = this.#maxInFlight;
          for (const [key, shard] of this.#streams) {
            if (shard === null || this.#paused.has(shard)) continue;
            keys.push(key);
            count = Math.min(count, this.#maxInFlight - (this.#inFlight.get(shard) ?? 0));
          }
          const block = this.#paused.size > 0 ? BLOCK_PAUSED_MS : BLOCK_MS;
          const reply = await this.#group.read(this.#reader, keys, count, block);
          const forwarding: Promise<void>[] = [];
          for (const [key, entries] of reply ?? []) {
            for (const [id, fields] of entries) forwarding.push(this.#take(key, id, fields));
          }
          // Only passing inbox entries on is awaited (a write to Redis); shards send in their own time.
          await Promise.all(forwarding);
        }
      } catch (error) {
        if (this.#stopped) return;
        this.#o.logger?.warn("reading commands from Redis failed: {error}; retrying in 1 s", {
          error: (error as Error).message,
        });
        await sleep(systemClock, 1000, this.#stopping.signal).catch(() => {});
      }
    }
  }

  /** One entry read or claimed by this process. Resolves once an inbox entry was passed on. */
  #take(key: string, id: string, fields: Fields): Promise<void> {
    const held = this.#held.get(key)!;
    if (held.has(id)) return Promise.resolve();
    if (fields === null) {
      // Deleted while pending (XDEL, trimming): nothing to send.
      return this.#ack(key, id, false);
    }
    held.add(id);
    const text = entryText(fields);
    const shard = this.#streams.get(key)!;
    if (shard === null) return this.#forward(id, text);
    this.#send(shard, key, id, text);
    return Promise.resolve();
  }

  /** An inbox entry: refused, or passed on to the stream of each shard that sends it. */
  async #forward(id: string, text: string): Promise<void> {
    const { stream: inbox, group, router } = this.#o;
    const parsed = router.parse(text);
    try {
      if (!parsed.ok) {
        this.#o.report(text, parsed);
        await this.#client.xack(inbox, group, id);
        return;
      }
      const multi = this.#client.multi();
      for (const part of parsed.parts) {
        const data = JSON.stringify({ op: parsed.op, shard: part.shard, d: part.d });
        multi.xadd(shardStreamKey(inbox, part.shard), "*", "data", data);
      }
      multi.xack(inbox, group, id);
      const results = await multi.exec();
      const failed = results?.find(([error]) => error !== null)?.[0];
      if (!results || failed) throw failed ?? new Error("MULTI was aborted");
      this.#o.report(text, null);
    } catch (error) {
      // Still pending in the inbox: claimed and passed on again after claimIdleMs.
      this.#o.logger?.warn("passing command {id} on to its shard stream(s) failed: {error}", {
        id,
        error: (error as Error).message,
      });
    } finally {
      this.#held.get(inbox)!.delete(id);
    }
  }

  /** An entry of a local shard's stream: queued on the shard; acknowledged once written (or refused). */
  #send(shard: number, key: string, id: string, text: string): void {
    const inFlight = (this.#inFlight.get(shard) ?? 0) + 1;
    this.#inFlight.set(shard, inFlight);
    if (inFlight >= this.#maxInFlight) this.#paused.add(shard);
    const done = () => {
      void this.#ack(key, id, true).finally(() => {
        const left = (this.#inFlight.get(shard) ?? 1) - 1;
        this.#inFlight.set(shard, left);
        if (left <= this.#maxInFlight / 2) this.#paused.delete(shard);
      });
    };
    const taken = this.#o.router.sendOwn(text, shard, key);
    if ("sent" in taken) {
      taken.sent.then(done);
      return;
    }
    this.#o.report(text, taken.refusal);
    done();
  }

  /** XACK (and, for a shard's stream, XDEL: nobody else reads it); the entry is no longer held after. */
  async #ack(key: string, id: string, remove: boolean): Promise<void> {
    try {
      await this.#group.ack(key, id, remove && key !== this.#o.stream);
      this.#held.get(key)!.delete(id);
    } catch (error) {
      if (this.#stopped) return;
      // Still held, so a claim round does not hand it out again; acknowledged on the next round.
      this.#failedAcks.push({ key, id });
      this.#o.logger?.debug("acknowledging command {id} failed: {error}", {
        id,
        error: (error as Error).message,
      });
    }
  }

  async #claimLoop(): Promise<void> {
    const every = Math.max(50, Math.floor(this.#claimIdleMs / 3));
    while (!this.#stopped) {
      try {
        await sleep(systemClock, every, this.#stopping.signal);
      } catch {
        return;
      }
      try {
        await this.#claimRound(every);
      } catch (error) {
        if (this.#stopped) return;
        this.#o.logger?.debug("claiming idle commands failed: {error}", { error: (error as Error).message });
      }
    }
  }

  /** Acknowledgements that failed, then for each stream: refresh, claim, remove dead consumers. */
  async #claimRound(every: number): Promise<void> {
    const retry = this.#failedAcks;
    this.#failedAcks = [];
    for (const { key, id } of retry) await this.#ack(key, id, true);
    for (const [key, shard] of this.#streams) {
      if (this.#stopped) return;
      const held = this.#held.get(key)!;
      await this.#group.refresh(key, held, every);
      let room = shard === null ? this.#maxInFlight : this.#maxInFlight - (this.#inFlight.get(shard) ?? 0);
      let cursor = "0-0";
      while (room > 0 && !this.#stopped) {
        const [next, entries] = await this.#group.claim(key, cursor, room);
        const taking: Promise<void>[] = [];
        for (const entry of entries) {
          if (entry === null) continue;
          const [id, fields] = entry;
          if (held.has(id)) continue;
          room--;
          taking.push(this.#take(key, id, fields));
        }
        if (taking.length > 0) {
          this.#o.logger?.info(
            "took over {n} command(s) of {stream} left unacknowledged by another consumer",
            { n: taking.length, stream: key },
          );
        }
        await Promise.all(taking);
        if (next === "0-0") break;
        cursor = next;
      }
      await this.#group.removeDeadConsumers(key);
    }
  }

  /**
   * Stops reading; what this process still holds (commands its shards have not sent) is handed back,
   * claimable by another process at once, and the consumer is removed from every stream where it has
   * nothing pending. Bounded: a Redis that does not answer does not hold up the shutdown.
   */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopping.abort();
    const finish = async () => {
      await this.#loops?.catch(() => {});
      await this.#group.leave(this.#held);
    };
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      finish().catch((error) => {
        this.#o.logger?.debug("leaving the command streams' group failed: {error}", {
          error: (error as Error).message,
        });
      }),
      new Promise((resolve) => (timer = setTimeout(resolve, 3000))),
    ]);
    clearTimeout(timer);
    this.#reader.disconnect();
    this.#client.disconnect();
  }
}
