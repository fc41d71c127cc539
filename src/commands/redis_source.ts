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
 * second connection does everything else, so acknowledgements never wait behind a blocking read.
 */
import { hostname } from "node:os";
import { connectRedis, type RedisClient } from "../redis/client.ts";
import { sleep, systemClock } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
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

/**
 * The stream of one shard: the inbox key as a Redis Cluster hash tag, so both hash to one slot (a key
 * without a tag hashes whole, a tagged key by its tag). An inbox key that has a tag already keeps it.
 */
export function shardStreamKey(inbox: string, shard: number): string {
  const open = inbox.indexOf("{");
  const close = open === -1 ? -1 : inbox.indexOf("}", open + 1);
  const tagged = close > open + 1;
  return tagged ? `${inbox}:${shard}` : `{${inbox}}:${shard}`;
}

type Fields = string[] | null;

/** KEYS[1] stream, ARGV group, own consumer (kept), min idle ms: removes idle consumers with nothing pending. */
const REMOVE_IDLE_CONSUMERS = `
local removed = 0
for _, fields in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local info = {}
  for i = 1, #fields, 2 do info[fields[i]] = fields[i + 1] end
  if info['name'] ~= ARGV[2] and info['pending'] == 0 and info['idle'] >= tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info['name'])
    removed = removed + 1
  end
end
return removed
`;
type StreamReply = Array<[string, Array<[string, Fields]>]> | null;

export class RedisCommandSource {
  readonly #o: RedisCommandSourceOptions;
  /** Acknowledgements, passing on, claims; never blocks. */
  readonly #client: RedisClient;
  /** Only the blocking XREADGROUP. */
  readonly #reader: RedisClient;
  readonly #consumer = consumerName();
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
    const connect = () => {
      const client = connectRedis(options.url, {
        retryStrategy: (times) => Math.min(100 * 2 ** Math.min(times, 6), 5_000),
        maxRetriesPerRequest: null,
      }, options.tlsCa ?? null);
      client.on(
        "error",
        (error: Error) => options.logger?.debug("redis commands: {error}", { error: error.message }),
      );
      return client;
    };
    this.#client = connect();
    this.#reader = connect();
  }

  /** This process's consumer name in the group (for tests and logs). */
  get consumer(): string {
    return this.#consumer;
  }

  start(): void {
    this.#loops ??= Promise.all([this.#readLoop(), this.#claimLoop()]);
  }

  get #stopped(): boolean {
    return this.#stopping.signal.aborted;
  }

  async #readLoop(): Promise<void> {
    const { stream: inbox, group } = this.#o;
    while (!this.#stopped) {
      try {
        await this.#createGroups();
        while (!this.#stopped) {
          const keys = [inbox];
          let count = this.#maxInFlight;
          for (const [key, shard] of this.#streams) {
            if (shard === null || this.#paused.has(shard)) continue;
            keys.push(key);
            count = Math.min(count, this.#maxInFlight - (this.#inFlight.get(shard) ?? 0));
          }
          const reply = await this.#reader.call(
            "XREADGROUP",
            "GROUP",
            group,
            this.#consumer,
            "COUNT",
            Math.max(1, count),
            "BLOCK",
            this.#paused.size > 0 ? BLOCK_PAUSED_MS : BLOCK_MS,
            "STREAMS",
            ...keys,
            ...keys.map(() => ">"),
          ) as StreamReply;
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

  async #createGroups(): Promise<void> {
    for (const [key, shard] of this.#streams) {
      // The inbox starts at new entries (as before); a shard's stream at 0: what was passed on to a
      // shard before any process ran it is sent once one does.
      await this.#client.call("XGROUP", "CREATE", key, this.#o.group, shard === null ? "$" : "0", "MKSTREAM")
        .catch((error: Error) => {
          if (!/BUSYGROUP/.test(error.message)) throw error;
        });
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
    const { group } = this.#o;
    try {
      const pipeline = this.#client.pipeline().xack(key, group, id);
      if (remove && key !== this.#o.stream) pipeline.xdel(key, id);
      const results = await pipeline.exec();
      const failed = results?.find(([error]) => error !== null)?.[0];
      if (failed) throw failed;
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
    const { group } = this.#o;
    const retry = this.#failedAcks;
    this.#failedAcks = [];
    for (const { key, id } of retry) await this.#ack(key, id, true);
    for (const [key, shard] of this.#streams) {
      if (this.#stopped) return;
      await this.#refresh(key, every);
      let room = shard === null ? this.#maxInFlight : this.#maxInFlight - (this.#inFlight.get(shard) ?? 0);
      let cursor = "0-0";
      while (room > 0 && !this.#stopped) {
        const [next, entries] = await this.#client.call(
          "XAUTOCLAIM",
          key,
          group,
          this.#consumer,
          this.#claimIdleMs,
          cursor,
          "COUNT",
          room,
        ) as [string, Array<[string, Fields] | null>];
        const taking: Promise<void>[] = [];
        for (const entry of entries) {
          if (entry === null) continue;
          const [id, fields] = entry;
          if (this.#held.get(key)!.has(id)) continue;
          room--;
          taking.push(this.#take(key, id, fields));
        }
        if (taking.length > 0) {
          this.#o.logger?.info(
            "took over {n} command(s) of {stream} left unacknowledged by another consumer",
            {
              n: taking.length,
              stream: key,
            },
          );
        }
        await Promise.all(taking);
        if (next === "0-0") break;
        cursor = next;
      }
      await this.#removeDeadConsumers(key);
    }
  }

  /** Resets the idle time of entries this process holds (still its own), so nobody claims them. */
  async #refresh(key: string, every: number): Promise<void> {
    const held = this.#held.get(key)!;
    if (held.size === 0) return;
    const pending = await this.#client.call(
      "XPENDING",
      key,
      this.#o.group,
      "IDLE",
      every,
      "-",
      "+",
      held.size + 100,
      this.#consumer,
    ) as Array<[string, string, number, number]>;
    const ids = pending.map(([id]) => id).filter((id) => held.has(id));
    if (ids.length > 0) {
      await this.#client.call("XCLAIM", key, this.#o.group, this.#consumer, 0, ...ids, "JUSTID");
    }
  }

  /**
   * Consumers with nothing pending that have not read for twice claimIdleMs: gone processes. Checked and
   * removed in one script, so a consumer that reads in between keeps what it read.
   */
  async #removeDeadConsumers(key: string): Promise<void> {
    await this.#client.eval(
      REMOVE_IDLE_CONSUMERS,
      1,
      key,
      this.#o.group,
      this.#consumer,
      2 * this.#claimIdleMs,
    );
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
      const { group } = this.#o;
      for (const [key, held] of this.#held) {
        const ids = [...held];
        if (ids.length > 0) {
          await this.#client.call(
            "XCLAIM",
            key,
            group,
            this.#consumer,
            0,
            ...ids,
            "IDLE",
            this.#claimIdleMs,
            "JUSTID",
          );
        }
        const mine = await this.#client.call(
          "XPENDING",
          key,
          group,
          "-",
          "+",
          1,
          this.#consumer,
        ) as unknown[];
        if (mine.length === 0) await this.#client.call("XGROUP", "DELCONSUMER", key, group, this.#consumer);
      }
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

function entryText(fields: string[]): string {
  const at = fields.indexOf("data");
  return at >= 0 && at % 2 === 0 ? fields[at + 1] : JSON.stringify(Object.fromEntries(pairs(fields)));
}

function pairs(fields: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < fields.length; i += 2) out.push([fields[i], fields[i + 1]]);
  return out;
}

/** Unique per process, also across hosts and pid reuse (containers all run as pid 1). */
function consumerName(): string {
  let host = "host";
  try {
    host = hostname();
  } catch {
    // no hostname permission or none set
  }
  const random = crypto.getRandomValues(new Uint8Array(4)).reduce(
    (s, b) => s + b.toString(16).padStart(2, "0"),
    "",
  );
  return `gatehouse-${host}-${Deno.pid}-${random}`;
}
