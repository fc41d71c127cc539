/**
 * The router for this process's own shards (stdin, POST /commands) and the stdin line reader, with
 * real shard-like targets that record what they were given.
 */
import assert from "node:assert/strict";
import { shardForGuild } from "../../src/gateway/protocol.ts";
import {
  CommandRouter,
  type CommandTarget,
  readLines,
  type ShardDirectory,
  shardDirectory,
} from "../../src/commands/router.ts";

class Target implements CommandTarget {
  readonly sent: Array<{ op: number; d: unknown }> = [];
  refuse: string | null = null;
  constructor(readonly id: number) {}
  send(op: number, d: unknown, onSent?: () => void): string | null {
    if (this.refuse !== null) return this.refuse;
    this.sent.push({ op, d });
    onSent?.();
    return null;
  }
}

function guildOf(shard: number, count: number, n = 0): string {
  let found = -1;
  for (let i = 1n;; i++) {
    const id = String(i << 22n);
    if (shardForGuild(id, count) === shard && ++found === n) return id;
  }
}

Deno.test("router: op 31 split over local shards; a guild of another process's shard refuses the command", async () => {
  const targets = [new Target(0), new Target(1)];
  const router = new CommandRouter(shardDirectory(() => targets), 4);
  const [a, b] = [guildOf(0, 4), guildOf(1, 4)];
  const result = router.handle(JSON.stringify({ op: 31, d: { guild_ids: [a, b] } }));
  assert.ok(result.ok);
  await result.sent;
  assert.deepEqual(targets.map((t) => t.sent), [[{ op: 31, d: { guild_ids: [a] } }], [{
    op: 31,
    d: { guild_ids: [b] },
  }]]);
  const foreign = guildOf(3, 4);
  const refused = router.handle(JSON.stringify({ op: 31, d: { guild_ids: [a, foreign] } }));
  assert.ok(!refused.ok);
  assert.match(
    refused.reason,
    new RegExp(`guild ${foreign} belongs to shard 3, which this process does not run`),
  );
  assert.equal(targets[0].sent.length, 1, "nothing sent for a refused command");
});

Deno.test("router: presence to every local shard; a shard's refusal is the command's", () => {
  const targets = [new Target(2), new Target(3)];
  const router = new CommandRouter(shardDirectory(() => targets), 4);
  const d = { since: null, activities: [], status: "idle", afk: false };
  const result = router.handle(JSON.stringify({ op: 3, d }));
  assert.ok(result.ok);
  assert.deepEqual(result.shards, [2, 3]);
  const other = router.handle(JSON.stringify({ op: 3, shard: 0, d }));
  assert.ok(!other.ok);
  assert.match(other.reason, /shard 0 is not run by this process \(it runs 2, 3\)/);
  targets[1].refuse = "queue full";
  const refused = router.handle(JSON.stringify({ op: 3, shard: 3, d }));
  assert.deepEqual(refused, { ok: false, reason: "queue full", shard: 3 });
});

/** A directory the test adds shards to and removes them from, as a pool would while running. */
class Directory implements ShardDirectory {
  readonly #targets = new Map<number, Target>();
  add(target: Target): void {
    this.#targets.set(target.id, target);
  }
  remove(id: number): void {
    this.#targets.delete(id);
  }
  get(id: number): Target | undefined {
    return this.#targets.get(id);
  }
  ids(): Iterable<number> {
    return this.#targets.keys();
  }
}

Deno.test("router: a shard added after the router was built gets its commands; a removed one no longer does", async () => {
  const directory = new Directory();
  const first = new Target(0);
  directory.add(first);
  const router = new CommandRouter(directory, 4);
  const guild = guildOf(2, 4);
  const command = JSON.stringify({ op: 8, d: { guild_id: guild, limit: 0, query: "" } });
  const before = router.handle(command);
  assert.ok(!before.ok);
  assert.match(
    before.reason,
    new RegExp(`guild ${guild} belongs to shard 2, which this process does not run`),
  );

  const added = new Target(2);
  directory.add(added);
  assert.deepEqual(router.shardIds, [0, 2]);
  assert.ok(router.runs(2));
  const after = router.handle(command);
  assert.ok(after.ok);
  assert.deepEqual(after.shards, [2]);
  await after.sent;
  assert.deepEqual(added.sent, [{ op: 8, d: { guild_id: guild, limit: 0, query: "" } }]);
  const d = { since: null, activities: [], status: "idle", afk: false };
  const presence = router.handle(JSON.stringify({ op: 3, d }));
  assert.ok(presence.ok);
  assert.deepEqual(presence.shards, [0, 2], "presence goes to the added shard too");

  directory.remove(2);
  assert.deepEqual(router.shardIds, [0]);
  const removed = router.handle(command);
  assert.ok(!removed.ok);
  assert.match(removed.reason, /belongs to shard 2, which this process does not run/);
  assert.equal(added.sent.length, 2, "nothing more reached the removed shard");
  const own = router.sendOwn(command, 2, "its stream");
  assert.ok("refusal" in own);
  assert.match(own.refusal.reason, /shard 2 is not run by this process \(it runs 0\)/);
});

Deno.test("shardDirectory: follows a list changed in place or replaced", () => {
  let list = [new Target(0), new Target(1)];
  const directory = shardDirectory(() => list);
  assert.equal(directory.get(1)?.id, 1);
  assert.equal(directory.get(2), undefined);
  list.push(new Target(2));
  assert.equal(directory.get(2)?.id, 2, "pushed after the first lookups");
  list.splice(0, 1);
  assert.equal(directory.get(0), undefined, "removed");
  assert.equal(directory.get(1), list[0], "indices moved");
  assert.deepEqual([...directory.ids()], [1, 2]);
  list = [new Target(5)];
  assert.equal(directory.get(2), undefined);
  assert.equal(directory.get(5), list[0]);
  assert.deepEqual([...directory.ids()], [5]);
});

function streamOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return new ReadableStream({
    pull(controller) {
      const next = chunks.shift();
      if (next) controller.enqueue(next);
      else controller.close();
    },
  });
}

Deno.test("readLines: a 10 MB line is one too-long report with its size, not 160 chunks; lines around it are read", async () => {
  const encoder = new TextEncoder();
  const big = new Uint8Array(10 * 1024 * 1024).fill(0x61);
  const chunks: Uint8Array[] = [encoder.encode('{"a":1}\n{"b"')];
  for (let i = 0; i < big.length; i += 65536) chunks.push(big.subarray(i, i + 65536));
  chunks.push(encoder.encode('\n  {"c":3}  \r\n\n{"d":'), encoder.encode("4}"));
  const lines: string[] = [];
  const tooLong: Array<[number, string]> = [];
  await readLines(streamOf(chunks), {
    onLine: (line) => lines.push(line),
    onTooLong: (bytes, head) => tooLong.push([bytes, head]),
  });
  assert.deepEqual(lines, ['{"a":1}', '{"c":3}', '{"d":4}']);
  assert.equal(tooLong.length, 1);
  assert.equal(tooLong[0][0], 4 + 10 * 1024 * 1024);
  assert.equal(tooLong[0][1], '{"b"' + "a".repeat(196));
});

Deno.test("readLines: a line of exactly the limit is a line; one byte more is too long; multi-byte text intact", async () => {
  const encoder = new TextEncoder();
  const text = "é".repeat(8); // 16 bytes
  const lines: string[] = [];
  const tooLong: number[] = [];
  const handlers = { onLine: (l: string) => lines.push(l), onTooLong: (n: number) => tooLong.push(n) };
  const bytes = encoder.encode(`${text}\n${text}x\n`);
  // Split inside a two-byte character.
  await readLines(streamOf([bytes.subarray(0, 3), bytes.subarray(3)]), handlers, 16);
  assert.deepEqual(lines, [text]);
  assert.deepEqual(tooLong, [17]);
});
