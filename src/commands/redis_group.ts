/**
 * The Redis side of the command streams: their keys, the consumer group every process reads them
 * through, and the group's bookkeeping (creating it, passing inbox entries on, acknowledging, claiming
 * what a gone consumer left or handed back, keeping what this process holds its own, handing entries
 * back, removing consumers of gone processes, leaving at a stop).
 * What is read and when is `redis_source.ts`'s; this holds the commands it sends.
 */
import type { Buffer } from "node:buffer";
import { hostname } from "node:os";
import { connectRedis, type RedisClient } from "../redis/client.ts";
import { backoffDelay } from "../util/backoff.ts";
import type { Logger } from "../util/log.ts";

/** An entry's fields (`null`: deleted while pending). */
export type Fields = string[] | null;
export type StreamReply = Array<[string, Array<[string, Fields]>]> | null;

/** Reconnects of the command connections: 200 ms doubling to 5 s. */
const RECONNECT = { baseMs: 200, maxMs: 5_000 };

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

/** A connection for the command streams: retried for ever, requests kept while it reconnects. */
export function connectCommands(url: string, tlsCa: string | null, logger?: Logger): RedisClient {
  const client = connectRedis(url, {
    retryStrategy: (times) => backoffDelay(RECONNECT, times),
    maxRetriesPerRequest: null,
  }, tlsCa);
  client.on("error", (error: Error) => logger?.debug("redis commands: {error}", { error: error.message }));
  return client;
}

/**
 * Reads entries' fields from their bytes (a drop-in format's inbox holds msgpack, which a UTF-8 reply
 * would mangle): `key` is the stream, `fields` name, value, name, value…
 */
export type FieldDecoder = (key: string, fields: Buffer[]) => string[];

function utf8Fields(_key: string, fields: Buffer[]): string[] {
  return fields.map((field) => field.toString());
}

/** This process's consumer in the group, on the connection that never blocks. */
export class CommandGroup {
  constructor(
    readonly client: RedisClient,
    readonly group: string,
    readonly consumer: string,
    readonly claimIdleMs: number,
    /** By default every field as UTF-8 text. */
    readonly decode: FieldDecoder = utf8Fields,
  ) {}

  /**
   * Creates the group on every stream (and the stream). The inbox (`start` "$") starts at new entries;
   * a shard's stream at 0: what was passed on to a shard before any process ran it is sent once one does.
   */
  async create(streams: Iterable<[string, "$" | "0"]>): Promise<void> {
    for (const [key, start] of streams) {
      await this.client.call("XGROUP", "CREATE", key, this.group, start, "MKSTREAM").catch((error: Error) => {
        if (!/BUSYGROUP/.test(error.message)) throw error;
      });
    }
  }

  /** New entries of `keys` for this consumer (on the blocking connection `reader`). */
  async read(reader: RedisClient, keys: string[], count: number, blockMs: number): Promise<StreamReply> {
    const reply = await reader.callBuffer(
      "XREADGROUP",
      "GROUP",
      this.group,
      this.consumer,
      "COUNT",
      Math.max(1, count),
      "BLOCK",
      blockMs,
      "STREAMS",
      ...keys,
      ...keys.map(() => ">"),
    ) as Array<[Buffer, Array<[Buffer, Buffer[] | null]>]> | null;
    return reply?.map(([key, entries]) => {
      const name = key.toString();
      return [name, entries.map(([id, fields]) => [id.toString(), this.#fields(name, fields)])];
    }) ?? null;
  }

  /** In one MULTI: `data` XADDed to each stream of `to`, and the inbox entry `id` acknowledged. */
  async passOn(inbox: string, id: string, to: Array<[string, string]>): Promise<void> {
    const multi = this.client.multi();
    for (const [key, data] of to) multi.xadd(key, "*", "data", data);
    multi.xack(inbox, this.group, id);
    const results = await multi.exec();
    const failed = results?.find(([error]) => error !== null)?.[0];
    if (!results || failed) throw failed ?? new Error("MULTI was aborted");
  }

  /** XACK, and with `remove` XDEL too (for a shard's stream: nobody else reads it). Throws when it failed. */
  async ack(key: string, id: string, remove: boolean): Promise<void> {
    const pipeline = this.client.pipeline().xack(key, this.group, id);
    if (remove) pipeline.xdel(key, id);
    const results = await pipeline.exec();
    const failed = results?.find(([error]) => error !== null)?.[0];
    if (failed) throw failed;
  }

  /** Up to `count` entries idle for claimIdleMs, from `cursor` on; the next cursor ("0-0": done). */
  async claim(key: string, cursor: string, count: number): Promise<[string, Array<[string, Fields] | null>]> {
    const [next, entries] = await this.client.callBuffer(
      "XAUTOCLAIM",
      key,
      this.group,
      this.consumer,
      this.claimIdleMs,
      cursor,
      "COUNT",
      count,
    ) as [Buffer, Array<[Buffer, Buffer[] | null] | null>];
    return [
      next.toString(),
      entries.map((entry) => entry === null ? null : [entry[0].toString(), this.#fields(key, entry[1])]),
    ];
  }

  /**
   * Claims up to `room` entries idle for claimIdleMs (none `held` already) and hands each to `take`,
   * awaiting them batch by batch. Returns how many it took.
   */
  async claimAll(
    key: string,
    held: ReadonlySet<string>,
    room: number,
    take: (id: string, fields: Fields) => Promise<void>,
  ): Promise<number> {
    let taken = 0;
    let cursor = "0-0";
    while (taken < room) {
      const [next, entries] = await this.claim(key, cursor, room - taken);
      const taking: Promise<void>[] = [];
      for (const entry of entries) {
        if (entry === null || held.has(entry[0])) continue;
        taking.push(take(entry[0], entry[1]));
      }
      taken += taking.length;
      await Promise.all(taking);
      if (next === "0-0") break;
      cursor = next;
    }
    return taken;
  }

  #fields(key: string, fields: Buffer[] | null): Fields {
    return fields === null ? null : this.decode(key, fields);
  }

  /** Resets the idle time of entries this process holds (still its own), so nobody claims them. */
  async refresh(key: string, held: ReadonlySet<string>, idleMs: number): Promise<void> {
    if (held.size === 0) return;
    const pending = await this.client.call(
      "XPENDING",
      key,
      this.group,
      "IDLE",
      idleMs,
      "-",
      "+",
      held.size + 100,
      this.consumer,
    ) as Array<[string, string, number, number]>;
    const ids = pending.map(([id]) => id).filter((id) => held.has(id));
    if (ids.length > 0) {
      await this.client.call("XCLAIM", key, this.group, this.consumer, 0, ...ids, "JUSTID");
    }
  }

  /**
   * Consumers with nothing pending that have not read for twice claimIdleMs: gone processes. Checked and
   * removed in one script, so a consumer that reads in between keeps what it read.
   */
  async removeDeadConsumers(key: string): Promise<void> {
    await this.client.eval(REMOVE_IDLE_CONSUMERS, 1, key, this.group, this.consumer, 2 * this.claimIdleMs);
  }

  /**
   * Hands entries back: still pending for this consumer, but idle for claimIdleMs already, so the next
   * XAUTOCLAIM of any process takes them (a shard that moved: its new owner's, at once).
   */
  async giveBack(key: string, ids: string[]): Promise<void> {
    if (ids.length === 0) return;
    await this.client.call(
      "XCLAIM",
      key,
      this.group,
      this.consumer,
      0,
      ...ids,
      "IDLE",
      this.claimIdleMs,
      "JUSTID",
    );
  }

  /**
   * Hands back what this process holds (claimable by another process at once) and removes the consumer
   * from every stream where it has nothing pending.
   */
  async leave(held: Iterable<[string, Iterable<string>]>): Promise<void> {
    const { group, consumer } = this;
    for (const [key, entries] of held) {
      await this.giveBack(key, [...entries]);
      const mine = await this.client.call("XPENDING", key, group, "-", "+", 1, consumer) as unknown[];
      if (mine.length === 0) await this.client.call("XGROUP", "DELCONSUMER", key, group, consumer);
    }
  }
}

/** An entry's command text: its `data` field, else all its fields as one JSON object. */
export function entryText(fields: string[]): string {
  const at = fields.indexOf("data");
  return at >= 0 && at % 2 === 0 ? fields[at + 1] : JSON.stringify(Object.fromEntries(pairs(fields)));
}

function pairs(fields: string[]): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  for (let i = 0; i + 1 < fields.length; i += 2) out.push([fields[i], fields[i + 1]]);
  return out;
}

/** Unique per process, also across hosts and pid reuse (containers all run as pid 1). */
export function consumerName(): string {
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
