/**
 * Tests of the fake's resharding model (guilds.ts): one fixed guild set owned by `(guild_id >> 22) %
 * count` under each session's count, two counts accepted during an overlap, and each guild event
 * generated once and sent to every session that owns its guild. Ownership is checked with gatehouse's
 * own `shardForGuild`, an implementation independent of the fake's.
 */
import assert from "node:assert/strict";
import { shardForGuild } from "../../src/gateway/protocol.ts";
import { FakeDiscord, type FakeDiscordOptions } from "./server.ts";
import { type Client, type Compression, connect, identified, identify } from "./test_client.ts";

async function withFake(options: FakeDiscordOptions, fn: (fake: FakeDiscord) => Promise<void>) {
  const fake = await FakeDiscord.start({ identifyIntervalMs: 0, closeTimeoutMs: 200, ...options });
  try {
    await fn(fake);
  } finally {
    await fake.stop();
  }
}

const GUILDS = 16;
const DISPATCH_PREFIX = /^\{"t":"[A-Z_]+","s":\d+,"op":0,"d":/;

/** Connects as `shard` of `count` and waits for READY and a GUILD_CREATE per guild it owns. */
function join(fake: FakeDiscord, shard: number, count: number, compression: Compression = "none") {
  return identified(fake.gatewayUrl, compression, [shard, count], GUILDS / count);
}

/** Traffic dispatches (after READY and the GUILD_CREATEs), keyed by `s`, with the exact text of `d`. */
function traffic(c: Client): Map<number, { t: string; guildId: string; d: string }> {
  const out = new Map<number, { t: string; guildId: string; d: string }>();
  c.messages.forEach((m, i) => {
    if (m.op !== 0 || m.t === "READY" || m.t === "GUILD_CREATE") return;
    const text = c.texts[i];
    const prefix = DISPATCH_PREFIX.exec(text)!;
    out.set(m.s!, { t: m.t!, guildId: m.d.guild_id, d: text.slice(prefix[0].length, -1) });
  });
  return out;
}

async function bot(fake: FakeDiscord): Promise<number> {
  const response = await fetch(`http://${fake.apiHost}/api/v10/gateway/bot`, {
    headers: { Authorization: "Bot fake-token" },
  });
  return (await response.json()).shards;
}

async function closeAll(clients: Client[]) {
  await Promise.all(clients.map((c) => c.close(1000)));
}

Deno.test("resharding: with 4 and 8 accepted, 4:1, 8:1 and 8:5 own the guilds (id >> 22) % count names, and get exactly their events", async () => {
  await withFake({ guilds: GUILDS, shards: 4 }, async (fake) => {
    fake.acceptCounts([4, 8]);
    const sessions = [[1, 4], [1, 8], [5, 8]] as const;
    const clients: Client[] = [];
    for (const [shard, count] of sessions) clients.push(await join(fake, shard, count));
    const all = fake.burstGuilds(64);
    assert.deepEqual(all.map((e) => e.n), Array.from({ length: 64 }, (_, i) => i + 1));
    assert.equal(new Set(all.map((e) => e.guildId)).size, GUILDS, "round robin over every guild");
    for (const [k, [shard, count]] of sessions.entries()) {
      const c = clients[k];
      const [ready, ...creates] = c.dispatches().slice(0, 1 + GUILDS / count);
      const owned: string[] = creates.map((g) => g.d.id);
      assert.equal(new Set(owned).size, GUILDS / count);
      for (const id of owned) assert.equal(shardForGuild(id, count), shard, `${id} on ${shard}:${count}`);
      assert.deepEqual(ready.d.guilds.map((g: { id: string }) => g.id), owned);
      assert.deepEqual(ready.d.shard, [shard, count]);
      const mine = all.filter((e) => shardForGuild(e.guildId, count) === shard);
      assert.equal(mine.length, 64 / count);
      await c.waitFor(() => traffic(c).size === mine.length, `${shard}:${count}'s events`);
      await new Promise((resolve) => setTimeout(resolve, 50));
      const got = traffic(c);
      assert.equal(got.size, mine.length, "nothing beyond the events of its guilds");
      // Each event the fake says it sent there is there, under the `s` it recorded, about that guild.
      for (const event of mine) {
        const delivery = event.deliveries.find((d) => d.shard === shard && d.count === count)!;
        assert.ok(delivery, `event ${event.n} reached ${shard}:${count}`);
        assert.deepEqual([got.get(delivery.s)?.t, got.get(delivery.s)?.guildId], [event.t, event.guildId]);
      }
      assert.deepEqual(
        [...got.keys()],
        mine.map((_, i) => 2 + GUILDS / count + i),
        "s counts on per session",
      );
    }
    await closeAll(clients);
  });
});

Deno.test("resharding: an event's d is byte-identical on every session that owns its guild (zlib-stream and plain)", async () => {
  await withFake({ guilds: GUILDS, shards: 4 }, async (fake) => {
    fake.acceptCounts([4, 8]);
    const old = await join(fake, 1, 4, "zlib-stream");
    const next = await join(fake, 1, 8, "none");
    const events = fake.burstGuilds(48);
    const shared = events.filter((e) => shardForGuild(e.guildId, 8) === 1);
    assert.equal(shared.length, 6);
    await old.waitFor(() => traffic(old).size === 12, "4:1's events");
    await next.waitFor(() => traffic(next).size === 6, "8:1's events");
    const [a, b] = [traffic(old), traffic(next)];
    for (const event of shared) {
      assert.equal(event.deliveries.length, 2);
      const [onOld, onNext] = [4, 8].map((count) => event.deliveries.find((d) => d.count === count)!.s);
      assert.notEqual(onOld, onNext, "each session numbers the event itself");
      assert.equal(a.get(onOld)!.d, b.get(onNext)!.d, `event ${event.n}'s d, byte for byte`);
      assert.match(a.get(onOld)!.d, new RegExp(`"guild_id":"${event.guildId}"`));
    }
    await closeAll([old, next]);
  });
});

Deno.test("resharding: full 4- and 8-shard sets each get every event exactly once (paced traffic too)", async () => {
  await withFake({ guilds: GUILDS, shards: 4 }, async (fake) => {
    fake.acceptCounts([4, 8]);
    const clients: Array<{ c: Client; shard: number; count: number }> = [];
    for (const count of [4, 8]) {
      for (let shard = 0; shard < count; shard++) {
        clients.push({ c: await join(fake, shard, count), shard, count });
      }
    }
    fake.burstGuilds(40);
    fake.startTraffic(50);
    await fake.waitFor(() => fake.guildEvents.length >= 100, 5000, "100 guild events");
    fake.stopTraffic();
    const total = fake.guildEvents.length;
    for (const event of fake.guildEvents) {
      assert.deepEqual(event.deliveries.map((d) => d.count).sort(), [4, 8], `event ${event.n}: once per set`);
      for (const d of event.deliveries) assert.equal(shardForGuild(event.guildId, d.count), d.shard);
    }
    for (const count of [4, 8]) {
      const set = clients.filter((x) => x.count === count);
      await Promise.all(set.map((x) => {
        const want = fake.guildEvents.filter((e) => shardForGuild(e.guildId, count) === x.shard).length;
        return x.c.waitFor(() => traffic(x.c).size === want, `${x.shard}:${count}'s events`);
      }));
      // Downstream de-duplication by (guild, body): the set as a whole saw each event exactly once.
      const seen = new Set<string>();
      for (const x of set) for (const e of traffic(x.c).values()) seen.add(`${e.guildId} ${e.d}`);
      assert.equal(seen.size, total);
      assert.equal(set.reduce((sum, x) => sum + traffic(x.c).size, 0), total);
    }
    await closeAll(clients.map((x) => x.c));
  });
});

Deno.test("resharding: /gateway/bot follows setRecommendedShards; a count outside the accepted set → 4011", async () => {
  await withFake({ guilds: GUILDS, shards: 4 }, async (fake) => {
    const attempt = async (shard: number, count: number) => {
      const c = connect(fake.gatewayUrl);
      await c.waitFor(() => c.messages.length >= 1, "HELLO");
      c.send(identify([shard, count]));
      await c.waitFor(
        () => c.closed !== null || c.dispatches().length >= 1 + GUILDS / count,
        "READY or close",
      );
      const closed = c.closed?.code ?? null;
      await c.close(1000);
      return closed;
    };
    assert.equal(await bot(fake), 4);
    assert.deepEqual(fake.acceptedCounts, [4]);
    assert.equal(await attempt(0, 8), 4011, "8 before the overlap");
    assert.equal(await attempt(0, 4), null);
    fake.setRecommendedShards(8);
    assert.equal(await bot(fake), 8);
    assert.deepEqual(fake.acceptedCounts, [8]);
    assert.equal(await attempt(0, 4), 4011, "4 once 8 is recommended and no overlap was set");
    fake.acceptCounts([4, 8]);
    assert.equal(await bot(fake), 8, "the overlap does not change the recommendation");
    assert.equal(await attempt(3, 4), null);
    assert.equal(await attempt(7, 8), null);
    assert.equal(await attempt(0, 2), 4011, "2 is in no set");
    fake.acceptCounts(null);
    assert.equal(await attempt(2, 4), 4011, "the overlap is over");
    assert.deepEqual(fake.identifies.map((i) => [i.shard, i.count]), [[0, 4], [3, 4], [7, 8]]);
    assert.throws(() => fake.setRecommendedShards(0), RangeError);
  });
});

Deno.test("resharding: a session of a count no longer accepted gets no more guild events", async () => {
  await withFake({ guilds: GUILDS, shards: 4 }, async (fake) => {
    fake.acceptCounts([4, 8]);
    const old = await join(fake, 0, 4);
    const next = await join(fake, 0, 8);
    fake.burstGuilds(16);
    fake.setRecommendedShards(8);
    fake.acceptCounts([8]);
    const after = fake.burstGuilds(16);
    assert.deepEqual(after.flatMap((e) => e.deliveries.map((d) => d.count)), [8, 8]);
    await next.waitFor(() => traffic(next).size === 4, "8:0's events");
    await old.waitFor(() => traffic(old).size === 4, "4:0's events from before");
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(traffic(old).size, 4);
    await closeAll([old, next]);
  });
});

Deno.test("without guilds, acceptCounts still limits IDENTIFY; by default any count is accepted (guildsPerShard)", async () => {
  await withFake({ shards: 2, guildsPerShard: 3 }, async (fake) => {
    const c = await identified(fake.gatewayUrl, "none", [2, 5], 3);
    for (const g of c.dispatches().slice(1, 4)) assert.equal(shardForGuild(g.d.id, 5), 2);
    await c.close(1000);
    assert.throws(() => fake.burstGuilds(1), /without the guilds option/);
    fake.acceptCounts([2]);
    const refused = connect(fake.gatewayUrl);
    await refused.waitFor(() => refused.messages.length >= 1, "HELLO");
    refused.send(identify([0, 3]));
    await refused.waitFor(() => refused.closed !== null, "close");
    assert.equal(refused.closed!.code, 4011);
    await refused.done();
  });
});
