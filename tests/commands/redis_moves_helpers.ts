/**
 * For the tests of Redis command sources whose shards move: fake shards in a directory that changes as
 * the pool's does, commands tagged by nonce, and the source built on them.
 */
import { Redis } from "ioredis";
import { RedisCommandSource } from "../../src/commands/redis_source.ts";
import { CommandRouter, type CommandTarget, type ShardDirectory } from "../../src/commands/router.ts";
import { guildOf } from "./commands_helpers.ts";

export const REDIS_URL = Deno.env.get("GATEHOUSE_TEST_REDIS") ?? "redis://127.0.0.1:6379";

/** A command written to "Discord": by which process, on which shard, its nonce. */
export interface Written {
  by: string;
  shard: number;
  nonce: string;
}

/**
 * A shard as the source sees it: queues a command and writes it `delayMs` later, or, while `holding`,
 * not until `release`. Once stopped (removed from its process) it writes nothing any more and calls
 * nothing, as a stopped gateway shard keeps its queue.
 */
export class FakeShard implements CommandTarget {
  #queue: Array<{ d: { nonce: string }; onSent?: () => void }> = [];
  stopped = false;

  constructor(readonly id: number, readonly process: FakeProcess, public holding: boolean) {}

  get queued(): number {
    return this.#queue.length;
  }

  send(_op: number, d: unknown, onSent?: () => void): string | null {
    if (this.stopped) return `shard ${this.id} is stopped: it sends nothing any more`;
    this.#queue.push({ d: d as { nonce: string }, onSent });
    if (!this.holding) setTimeout(() => this.release(), this.process.delayMs);
    return null;
  }

  /** Writes what is queued (nothing once stopped). */
  release(): void {
    if (this.stopped) return;
    for (const { d, onSent } of this.#queue.splice(0)) {
      this.process.written.push({ by: this.process.name, shard: this.id, nonce: d.nonce });
      this.process.onWrite?.(this.process.name, this.id);
      onSent?.();
    }
  }
}

/** One "process": the shards it runs now (the pool, as the router's directory). */
export class FakeProcess implements ShardDirectory {
  readonly shards = new Map<number, FakeShard>();
  onWrite?: (by: string, shard: number) => void;

  constructor(readonly name: string, readonly written: Written[], readonly delayMs = 5) {}

  get(id: number): FakeShard | undefined {
    return this.shards.get(id);
  }

  ids(): Iterable<number> {
    return this.shards.keys();
  }

  add(id: number, holding = false): FakeShard {
    const shard = new FakeShard(id, this, holding);
    this.shards.set(id, shard);
    return shard;
  }

  /** As the pool removes a shard: forgotten and stopped. */
  remove(id: number): void {
    const shard = this.shards.get(id);
    this.shards.delete(id);
    if (shard) shard.stopped = true;
  }
}

export function commandSource(
  process: FakeProcess,
  inbox: string,
  count: number,
  claimIdleMs: number,
  refusals: string[],
): RedisCommandSource {
  return new RedisCommandSource({
    url: REDIS_URL,
    stream: inbox,
    group: "gw",
    router: new CommandRouter(process, count),
    report: (text, refusal) => {
      if (refusal) refusals.push(`${refusal.reason}: ${text}`);
    },
    claimIdleMs,
  });
}

/** An op 8 for a guild of `shard` of `count`, tagged `nonce`. */
export function requestFor(shard: number, count: number, nonce: string): string {
  return JSON.stringify({ op: 8, d: { guild_id: guildOf(shard, count, 3), query: "", limit: 0, nonce } });
}

/** Waits until `check` holds. */
export async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

export function shardKey(inbox: string, shard: number): string {
  return `{${inbox}}:${shard}`;
}

export async function pending(client: Redis, key: string): Promise<number> {
  if (!(await client.exists(key))) return 0;
  return ((await client.xpending(key, "gw")) as [number])[0];
}

export async function groupExists(client: Redis, key: string): Promise<boolean> {
  if (!(await client.exists(key))) return false;
  return (await client.xinfo("GROUPS", key) as string[][]).some((fields) => fields.includes("gw"));
}

export async function cleanUp(client: Redis, prefix: string): Promise<void> {
  const keys = [...await client.keys(`${prefix}:*`), ...await client.keys(`{${prefix}:*`)];
  if (keys.length > 0) await client.del(...keys);
  client.disconnect();
}
