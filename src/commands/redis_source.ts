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
 * - The shards a process runs change while it runs (cluster mode: the pool takes and loses shards).
 *   The source follows the router's `shardIds` every read round (at most BLOCK_MS late), and at once
 *   when told (`shardsChanged`). A shard new here: its stream's group is created (at 0), what is
 *   claimable there is claimed (handed back by the shard's last owner, or left by a dead one), then the
 *   stream is read. A shard gone, or started again as a new object: its stream is no longer read, and
 *   what was queued on the old shard and not written (a stopped shard never writes it) is handed back
 *   at once, never acknowledged (`redis_held.ts`). An entry read for a shard not run here is handed
 *   back too.
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
 * group's commands are in `redis_group.ts`, the bookkeeping of what this process holds in `redis_held.ts`.
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
import { HeldCommands, type Sending } from "./redis_held.ts";
import type { Buffer } from "node:buffer";
import type { WireFormat } from "../config/wire_formats.ts";
import { wireCommand } from "./wire_commands.ts";
import type { CommandRouter, Refusal } from "./router.ts";

export interface RedisCommandSourceOptions {
  url: string;
  /** The inbox: `{prefix}:commands`, or a drop-in format's (`SEND`, `gateway_send`). */
  stream: string;
  /** The inbox entries' format (wire_commands.ts); default `gatehouse`, JSON text. */
  format?: WireFormat;
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

/** The field a drop-in format's unreadable inbox entry carries its reason in (never a real field name). */
const PROBLEM = "\u0000gatehouse:problem";

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
  /** How often the claim loop runs; entries this process holds are refreshed when idle this long. */
  readonly #claimEvery: number;
  readonly #maxInFlight: number;
  /** Streams read, key → the shard it is for (null: the inbox); a shard's once its group exists. */
  readonly #streams = new Map<string, number | null>();
  /** Shards whose stream is being set up (group, first claim). */
  readonly #adding = new Set<number>();
  /** Entries this process holds (read or claimed, not acknowledged yet). */
  readonly #held: HeldCommands;
  readonly #stopping = new AbortController();
  #loops: Promise<unknown> | null = null;

  constructor(options: RedisCommandSourceOptions) {
    this.#o = options;
    this.#claimIdleMs = options.claimIdleMs ?? DEFAULT_CLAIM_IDLE_MS;
    this.#claimEvery = Math.max(50, Math.floor(this.#claimIdleMs / 3));
    this.#maxInFlight = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    this.#streams.set(options.stream, null);
    this.#client = connectCommands(options.url, options.tlsCa ?? null, options.logger);
    this.#reader = connectCommands(options.url, options.tlsCa ?? null, options.logger);
    const format = options.format ?? "gatehouse";
    this.#group = new CommandGroup(
      this.#client,
      options.group,
      consumerName(),
      this.#claimIdleMs,
      format === "gatehouse" ? undefined : (key, fields) => this.#decode(format, key, fields),
    );
    this.#held = new HeldCommands(this.#group, options.stream, this.#maxInFlight, options.logger);
  }

  /**
   * A drop-in format's inbox entry as gatehouse's command text in `data`; one that cannot be read keeps
   * a head of its bytes in `data` and says why in `problem`. The shards' streams hold gatehouse's text.
   */
  #decode(format: WireFormat, key: string, fields: Buffer[]): string[] {
    if (key !== this.#o.stream) return fields.map((field) => field.toString());
    const at = fields.findIndex((field, i) => i % 2 === 0 && field.toString() === "data");
    if (at < 0 || at + 1 >= fields.length) return [PROBLEM, "the entry has no data field", "data", ""];
    const count = fields.filter((field, i) => i % 2 === 0 && field.toString() === "data").length;
    if (count > 1) {
      // Which one the bot meant is unknown: none is sent rather than one dropped unsaid.
      const head = wireCommand(format, fields[at + 1], this.#o.router.shardCount);
      return [
        PROBLEM,
        `the entry has ${count} data fields, not one`,
        "data",
        head.ok ? head.text : head.head,
      ];
    }
    const command = wireCommand(format, fields[at + 1], this.#o.router.shardCount);
    return command.ok ? ["data", command.text] : [PROBLEM, command.reason, "data", command.head];
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

  /**
   * The router's shards changed (optional: each read round looks too, at most BLOCK_MS later). Hands
   * back at once what shards gone from here held; resolves once new shards' streams are set up. Never
   * rejects (a failure is logged and retried on the next read round).
   */
  shardsChanged(): Promise<void> {
    if (this.#stopped || this.#loops === null) return Promise.resolve();
    return this.#followShards();
  }

  #followShards(): Promise<void> {
    const { router, stream: inbox } = this.#o;
    const wanted = new Set(router.shardIds);
    for (const [key, shard] of this.#streams) {
      if (shard !== null && !wanted.has(shard)) this.#streams.delete(key);
    }
    const work: Promise<void>[] = [];
    for (const [key, ids] of this.#held.orphans((shard) => router.target(shard))) {
      const handing = this.#held.giveBack(key, ids, "the shard object they were queued on is gone");
      // Still run here (started again): taken back at once, for the new object.
      work.push(handing.then(() => this.#claimAgain(key)));
    }
    for (const shard of wanted) {
      const key = shardStreamKey(inbox, shard);
      if (!this.#streams.has(key) && !this.#adding.has(shard)) work.push(this.#addShard(shard, key));
    }
    return Promise.all(work).then(() => {});
  }

  /** What is claimable now in a shard's stream read here (none other). */
  async #claimAgain(key: string): Promise<void> {
    const shard = this.#streams.get(key);
    if (shard === undefined || shard === null || this.#stopped) return;
    await this.#claimStream(key, shard).catch((error) => {
      this.#o.logger?.debug("claiming {stream} failed: {error}", {
        stream: key,
        error: (error as Error).message,
      });
    });
  }

  /** A shard new here: its stream's group (from 0), then it is read and what is claimable is claimed. */
  async #addShard(shard: number, key: string): Promise<void> {
    this.#adding.add(shard);
    try {
      await this.#group.create([[key, "0"]]);
      if (!this.#stopped && this.#o.router.runs(shard)) this.#streams.set(key, shard);
    } catch (error) {
      this.#o.logger?.debug("setting up {stream} failed: {error}; retried next round", {
        stream: key,
        error: (error as Error).message,
      });
    } finally {
      this.#adding.delete(shard);
    }
    await this.#claimAgain(key);
  }

  async #readLoop(): Promise<void> {
    const inbox = this.#o.stream;
    while (!this.#stopped) {
      try {
        // Again after a failure: a Redis that restarted without its data lost the groups.
        await this.#group.create(
          [...this.#streams].map(([key, shard]) => [key, shard === null ? "$" : "0"] as [string, "$" | "0"]),
        );
        while (!this.#stopped) {
          await this.#followShards();
          const keys = [inbox];
          let count = this.#maxInFlight;
          for (const [key, shard] of this.#streams) {
            if (shard === null || this.#held.paused.has(shard)) continue;
            keys.push(key);
            count = Math.min(count, this.#held.room(shard));
          }
          const block = this.#held.paused.size > 0 ? BLOCK_PAUSED_MS : BLOCK_MS;
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
    const held = this.#held.ids(key);
    if (held.has(id)) return Promise.resolve();
    if (fields === null) {
      // Deleted while pending (XDEL, trimming): nothing to send.
      return this.#held.ack(key, id, false);
    }
    held.add(id);
    const text = entryText(fields);
    if (key === this.#o.stream) {
      const problem = fields.indexOf(PROBLEM);
      if (problem >= 0 && problem % 2 === 0) return this.#refuse(id, text, fields[problem + 1]);
      return this.#forward(id, text);
    }
    const shard = Number(key.slice(key.lastIndexOf(":") + 1));
    this.#send(shard, key, id, text);
    return Promise.resolve();
  }

  /** An inbox entry that cannot be read in its format: reported and acknowledged, never sent. */
  async #refuse(id: string, head: string, reason: string): Promise<void> {
    const inbox = this.#o.stream;
    try {
      this.#o.report(head, { reason, shard: null });
      await this.#client.xack(inbox, this.#o.group, id);
    } catch (error) {
      this.#o.logger?.warn("acknowledging command {id} failed: {error}", {
        id,
        error: (error as Error).message,
      });
    } finally {
      this.#held.ids(inbox).delete(id);
    }
  }

  /** An inbox entry: refused, or passed on to the stream of each shard that sends it. */
  async #forward(id: string, text: string): Promise<void> {
    const { stream: inbox, router } = this.#o;
    const parsed = router.parse(text);
    try {
      if (!parsed.ok) {
        this.#o.report(text, parsed);
        await this.#client.xack(inbox, this.#o.group, id);
        return;
      }
      await this.#group.passOn(
        inbox,
        id,
        parsed.parts.map((part) => [
          shardStreamKey(inbox, part.shard),
          JSON.stringify({ op: parsed.op, shard: part.shard, d: part.d }),
        ]),
      );
      this.#o.report(text, null);
    } catch (error) {
      // Still pending in the inbox: claimed and passed on again after claimIdleMs.
      this.#o.logger?.warn("passing command {id} on to its shard stream(s) failed: {error}", {
        id,
        error: (error as Error).message,
      });
    } finally {
      this.#held.ids(inbox).delete(id);
    }
  }

  /**
   * An entry of a shard's stream: queued on the shard and acknowledged once written (or refused), unless
   * the shard went from its object first (then it was handed back). Not run here: handed back.
   */
  #send(shard: number, key: string, id: string, text: string): void {
    const router = this.#o.router;
    const target = router.target(shard);
    if (target === undefined) {
      void this.#held.giveBack(key, [id], "its shard is not run here (any more)");
      return;
    }
    const sending: Sending = this.#held.add(key, id, shard, target);
    const done = () => {
      if (this.#held.finish(sending)) void this.#held.ack(key, id, true);
    };
    const taken = router.sendOwn(text, shard, key);
    if ("sent" in taken) {
      taken.sent.then(done);
      return;
    }
    this.#o.report(text, taken.refusal);
    done();
  }

  async #claimLoop(): Promise<void> {
    while (!this.#stopped) {
      try {
        await sleep(systemClock, this.#claimEvery, this.#stopping.signal);
      } catch {
        return;
      }
      try {
        await this.#claimRound();
      } catch (error) {
        if (this.#stopped) return;
        this.#o.logger?.debug("claiming idle commands failed: {error}", { error: (error as Error).message });
      }
    }
  }

  /** Acknowledgements that failed, then each stream read. */
  async #claimRound(): Promise<void> {
    await this.#held.retryAcks();
    for (const [key, shard] of this.#streams) {
      if (this.#stopped) return;
      await this.#claimStream(key, shard);
    }
  }

  /** One stream: refresh what this process holds, claim what others left idle, remove dead consumers. */
  async #claimStream(key: string, shard: number | null): Promise<void> {
    const held = this.#held.ids(key);
    await this.#group.refresh(key, held, this.#claimEvery);
    const room = shard === null ? this.#maxInFlight : this.#held.room(shard);
    const taken = await this.#group.claimAll(key, held, room, (id, fields) => this.#take(key, id, fields));
    if (taken > 0) {
      this.#o.logger?.info("took over {n} command(s) of {stream}, handed back or left by another consumer", {
        n: taken,
        stream: key,
      });
    }
    await this.#group.removeDeadConsumers(key);
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
      await this.#group.leave(this.#held.byStream);
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
