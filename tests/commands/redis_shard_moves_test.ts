/**
 * Redis command sources whose shards change while they run (cluster mode), against a real Redis: a shard
 * gained later sends what waited for it; with shards moving between two processes every command is sent
 * once, by the process running its shard then; a process that loses a shard hands back what it had not
 * written (the new owner sends it at once); a process killed with commands read and unsent has them
 * claimed by another after claimIdleMs.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import type { RedisCommandSource } from "../../src/commands/redis_source.ts";
import { shardForGuild } from "../../src/gateway/protocol.ts";
import {
  cleanUp,
  commandSource,
  FakeProcess,
  groupExists,
  pending,
  REDIS_URL,
  requestFor,
  shardKey,
  until,
  type Written,
} from "./redis_moves_helpers.ts";

interface Setup {
  prefix: string;
  inbox: string;
  client: Redis;
  written: Written[];
  refusals: string[];
  sources: RedisCommandSource[];
}

/** A random prefix; stops the sources and deletes the keys afterwards. */
async function withRedis(run: (s: Setup) => Promise<void>): Promise<void> {
  const prefix = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
  const s: Setup = {
    prefix,
    inbox: `${prefix}:commands`,
    client: new Redis(REDIS_URL),
    written: [],
    refusals: [],
    sources: [],
  };
  try {
    await run(s);
    assert.deepEqual(s.refusals, [], "no command refused");
  } finally {
    await Promise.all(s.sources.map((source) => source.stop()));
    await cleanUp(s.client, prefix);
  }
}

function nonces(written: Written[]): string[] {
  return written.map((w) => w.nonce).sort();
}

Deno.test("redis shard moves: a source that starts with no shards and gains shard 2 sends what waited in its stream", async () => {
  await withRedis(async (s) => {
    const p = new FakeProcess("a", s.written);
    const source = commandSource(p, s.inbox, 4, 3000, s.refusals);
    s.sources.push(source);
    source.start();
    await until(() => groupExists(s.client, s.inbox), "the inbox group");
    await s.client.xadd(s.inbox, "*", "data", requestFor(2, 4, "w1"));
    // Passed on to shard 2's stream, where it waits: nobody runs shard 2.
    await until(
      async () => (await s.client.xlen(shardKey(s.inbox, 2))) === 1,
      "the command in shard 2's stream",
    );
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.deepEqual(s.written, [], "not sent while shard 2 runs nowhere");
    // The pool takes shard 2; the source notices on its own (no shardsChanged).
    p.add(2);
    await until(() => s.written.length === 1, "the waiting command sent", 3000);
    assert.deepEqual(s.written, [{ by: "a", shard: 2, nonce: "w1" }]);
    await until(
      async () =>
        (await s.client.xlen(shardKey(s.inbox, 2))) === 0 &&
        (await pending(s.client, shardKey(s.inbox, 2))) === 0,
      "acknowledged and deleted",
    );
  });
});

Deno.test("redis shard moves: shards moving between two processes: every command sent once, by its shard's owner then", async () => {
  await withRedis(async (s) => {
    const COUNT = 4;
    const owner = new Map<number, string>([[0, "a"], [1, "a"], [2, "b"], [3, "b"]]);
    const a = new FakeProcess("a", s.written, 40);
    const b = new FakeProcess("b", s.written, 40);
    const wrongOwner: string[] = [];
    for (const p of [a, b]) {
      p.onWrite = (by, shard) => {
        if (owner.get(shard) !== by) {
          wrongOwner.push(`${by} wrote on shard ${shard}, run by ${owner.get(shard)}`);
        }
      };
    }
    for (const [shard, name] of owner) (name === "a" ? a : b).add(shard);
    const sa = commandSource(a, s.inbox, COUNT, 2000, s.refusals);
    const sb = commandSource(b, s.inbox, COUNT, 2000, s.refusals);
    s.sources.push(sa, sb);
    sa.start();
    sb.start();
    await until(() => groupExists(s.client, s.inbox), "the inbox group");

    const N = 300;
    const sentNonces: string[] = [];
    let moves = 0;
    const move = async () => {
      // A hand-off as the cluster does it: the old owner stops the shard, then the new one starts it.
      const shard = moves % COUNT;
      const from = owner.get(shard) === "a" ? a : b;
      const to = from === a ? b : a;
      from.remove(shard);
      owner.set(shard, "nobody");
      // Half the time the sources are told, half the time they notice on their own.
      if (moves % 2 === 0) await (from === a ? sa : sb).shardsChanged();
      await new Promise((resolve) => setTimeout(resolve, 20));
      owner.set(shard, to.name);
      to.add(shard);
      if (moves % 2 === 0) await (to === a ? sa : sb).shardsChanged();
      moves++;
    };
    for (let i = 0; i < N; i++) {
      const shard = i % COUNT;
      const nonce = `n${i}`;
      sentNonces.push(nonce);
      const text = requestFor(shard, COUNT, nonce);
      assert.equal(shardForGuild(JSON.parse(text).d.guild_id, COUNT), shard);
      await s.client.xadd(s.inbox, "*", "data", text);
      if (i % 15 === 14) await move();
      else await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await until(() => s.written.length >= N, `${N} commands written`, 20_000);
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.ok(moves >= 19, `${moves} moves`);
    assert.deepEqual(nonces(s.written), sentNonces.sort(), "each command written exactly once");
    assert.deepEqual(wrongOwner, [], "written only by the process running the shard then");
    const byBoth = new Set(s.written.map((w) => w.by));
    assert.deepEqual([...byBoth].sort(), ["a", "b"]);
    for (let shard = 0; shard < COUNT; shard++) {
      const key = shardKey(s.inbox, shard);
      await until(
        async () => (await pending(s.client, key)) === 0 && (await s.client.xlen(key)) === 0,
        `nothing left in ${key}`,
      );
    }
    assert.equal(await pending(s.client, s.inbox), 0);
  });
});

Deno.test("redis shard moves: a process that loses a shard hands back its unsent commands; the new owner sends them at once", async () => {
  await withRedis(async (s) => {
    const CLAIM_IDLE_MS = 4000;
    const a = new FakeProcess("a", s.written);
    const b = new FakeProcess("b", s.written);
    const held = a.add(1, true);
    b.add(0);
    const sa = commandSource(a, s.inbox, 2, CLAIM_IDLE_MS, s.refusals);
    const sb = commandSource(b, s.inbox, 2, CLAIM_IDLE_MS, s.refusals);
    s.sources.push(sa, sb);
    sa.start();
    sb.start();
    await until(() => groupExists(s.client, s.inbox), "the inbox group");
    for (let i = 0; i < 5; i++) await s.client.xadd(s.inbox, "*", "data", requestFor(1, 2, `h${i}`));
    await until(() => held.queued === 5, "5 commands queued on a's shard 1");
    assert.equal(await pending(s.client, shardKey(s.inbox, 1)), 5);
    // Shard 1 moves: a's pool stops it (what it queued is never written), b's starts it.
    const moved = Date.now();
    a.remove(1);
    await sa.shardsChanged();
    b.add(1);
    await sb.shardsChanged();
    await until(() => s.written.length === 5, "b wrote the 5 commands", CLAIM_IDLE_MS);
    const took = Date.now() - moved;
    assert.ok(took < CLAIM_IDLE_MS / 4, `sent ${took} ms after the move, well before claimIdleMs`);
    assert.deepEqual(s.written.map((w) => [w.by, w.shard]), Array(5).fill(["b", 1]));
    assert.deepEqual(nonces(s.written), ["h0", "h1", "h2", "h3", "h4"]);
    await until(async () => (await pending(s.client, shardKey(s.inbox, 1))) === 0, "all acknowledged");
    assert.equal(held.queued, 5, "a's stopped shard never wrote them");
  });
});

Deno.test("redis shard moves: a process killed with read but unsent commands: another claims and sends them after claimIdleMs", async () => {
  await withRedis(async (s) => {
    const CLAIM_IDLE_MS = 1500;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        new URL("./redis_source_child.ts", import.meta.url).pathname,
        s.inbox,
        "2",
        String(CLAIM_IDLE_MS),
        "1",
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines: string[] = [];
    const reading = (async () => {
      let rest = "";
      for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
        rest += chunk;
        const parts = rest.split("\n");
        rest = parts.pop()!;
        lines.push(...parts);
      }
    })();
    try {
      await until(() => groupExists(s.client, s.inbox), "the inbox group", 20_000);
      for (let i = 0; i < 5; i++) await s.client.xadd(s.inbox, "*", "data", requestFor(1, 2, `k${i}`));
      await until(() => lines.filter((l) => l.startsWith("queued 1 ")).length === 5, "5 queued in the child");
      assert.equal(await pending(s.client, shardKey(s.inbox, 1)), 5);
      // Long enough for the child to have refreshed them once (they are its own while it lives).
      await new Promise((resolve) => setTimeout(resolve, CLAIM_IDLE_MS));
      child.kill("SIGKILL");
      await child.status;
      const killed = Date.now();
      // How long they have been idle: claimable once that reaches claimIdleMs, not before.
      const entries = await s.client.xpending(shardKey(s.inbox, 1), "gw", "-", "+", 10) as Array<
        [string, string, number, number]
      >;
      const idle = Math.max(...entries.map(([, , ms]) => ms));
      assert.ok(idle < CLAIM_IDLE_MS, `idle ${idle} ms: refreshed while the child lived`);
      // Its lease lapses: the other process takes shard 1.
      const b = new FakeProcess("b", s.written);
      b.add(1);
      const sb = commandSource(b, s.inbox, 2, CLAIM_IDLE_MS, s.refusals);
      s.sources.push(sb);
      sb.start();
      await until(() => s.written.length === 5, "b wrote the 5 commands", 4 * CLAIM_IDLE_MS);
      const took = Date.now() - killed;
      assert.ok(
        took >= CLAIM_IDLE_MS - idle - 50,
        `claimed ${took} ms after the kill (idle ${idle} ms then)`,
      );
      assert.deepEqual(nonces(s.written), ["k0", "k1", "k2", "k3", "k4"]);
      assert.deepEqual(s.written.map((w) => w.by), Array(5).fill("b"));
      await until(async () => (await pending(s.client, shardKey(s.inbox, 1))) === 0, "all acknowledged");
      await new Promise((resolve) => setTimeout(resolve, CLAIM_IDLE_MS / 2));
      assert.equal(s.written.length, 5, "nothing sent twice");
    } finally {
      try {
        child.kill("SIGKILL");
      } catch {
        // exited already
      }
      await child.status;
      await reading;
    }
  });
});

Deno.test("redis shard moves: a shard lost and taken again (a new shard object) sends what the old one had queued", async () => {
  await withRedis(async (s) => {
    const CLAIM_IDLE_MS = 4000;
    const a = new FakeProcess("a", s.written);
    const old = a.add(1, true);
    const source = commandSource(a, s.inbox, 2, CLAIM_IDLE_MS, s.refusals);
    s.sources.push(source);
    source.start();
    await until(() => groupExists(s.client, s.inbox), "the inbox group");
    for (let i = 0; i < 3; i++) await s.client.xadd(s.inbox, "*", "data", requestFor(1, 2, `r${i}`));
    await until(() => old.queued === 3, "3 commands queued on shard 1");
    // Between two read rounds, unannounced: the stream stays read, only the object changed.
    const again = Date.now();
    a.remove(1);
    a.add(1);
    await until(() => s.written.length === 3, "the new shard 1 wrote the 3 commands", CLAIM_IDLE_MS);
    const took = Date.now() - again;
    assert.ok(took < CLAIM_IDLE_MS / 4, `sent ${took} ms after, well before claimIdleMs`);
    assert.deepEqual(nonces(s.written), ["r0", "r1", "r2"]);
    await until(async () => (await pending(s.client, shardKey(s.inbox, 1))) === 0, "all acknowledged");
  });
});
