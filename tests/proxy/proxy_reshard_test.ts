/**
 * Proxy mode across a reshard (4 → 8, the real binary against the fake Discord's guild mode): a client
 * of the old count is told to reconnect (op 7) at the switch; its RESUME is answered with op 9, an
 * IDENTIFY with the old count is refused with 4011 naming the new count, `/gateway/bot` answers the new
 * count, and an IDENTIFY with it gets the new shard's guilds from the cache, then live events.
 */
import assert from "node:assert/strict";
import { FakeDiscord } from "../fake_discord/server.ts";
import { connect, identify } from "../fake_discord/test_client.ts";
import { controlUrl, fakeEnv, proxyAddress, spawnGatehouse } from "../helpers/gatehouse.ts";

const CONTROL_TOKEN = "proxy-reshard-control";

/** A guild's shard under `count` shards, as Discord computes it. */
const shardOf = (id: string, count: number) => Number((BigInt(id) >> 22n) % BigInt(count));

Deno.test("proxy: at a reshard's switch the clients of the old count get op 7; they go on only with the new count (op 9 on RESUME, 4011 on the old count)", async () => {
  const fake = await FakeDiscord.start({ guilds: 64, shards: 4, maxConcurrency: 4 });
  const dir = await Deno.makeTempDir();
  const store = `${dir}/gatehouse.db`;
  const g = spawnGatehouse({
    env: {
      ...fakeEnv(fake.apiHost),
      GATEHOUSE_STORE: store,
      GATEHOUSE_CONTROL_TOKEN: CONTROL_TOKEN,
      GATEHOUSE_RESHARD_INTERVAL: "0",
      GATEHOUSE_PROXY_LISTEN: "127.0.0.1:0",
      GATEHOUSE_LOG_LEVEL: "info",
    },
  });
  const clients: Array<ReturnType<typeof connect>> = [];
  try {
    const ws = `ws://${await proxyAddress(g)}`;
    await g.waitFor(() => g.lines.filter((l) => l.t === "GUILD_CREATE").length === 64, 20_000, "guilds");
    const open = () => {
      const c = connect(ws);
      clients.push(c);
      return c;
    };

    const old = open();
    await old.waitFor(() => old.messages.length >= 1, "HELLO");
    old.send(identify([1, 4]));
    await old.waitFor(() => old.dispatches().length >= 1, "READY");
    const oldReady = old.dispatches()[0];
    assert.deepEqual(oldReady.d.shard, [1, 4]);
    const oldGuilds = oldReady.d.guilds.length;
    await old.waitFor(() => old.dispatches().length === 1 + oldGuilds, "the old shard's GUILD_CREATEs");

    fake.acceptCounts([4, 8]);
    fake.setRecommendedShards(8);
    const control = await controlUrl(store);
    const response = await fetch(`${control}/reshard`, {
      method: "POST",
      headers: { authorization: `Bearer ${CONTROL_TOKEN}` },
      body: JSON.stringify({ count: 8 }),
    });
    assert.equal(response.status, 202, await response.text());
    await g.waitFor(() => g.lines.some((l) => l.t === "GATEHOUSE_RESHARDED"), 40_000, "the switch");
    await old.waitFor(() => old.messages.some((m) => m.op === 7), "op 7 after the switch", 10_000);
    assert.deepEqual(old.messages.filter((m) => m.op === 0 && m.d?.shard?.[1] === 8), [], "nothing of 8");
    assert.match(
      g.stderr(),
      /proxy: the bot was resharded 4 → 8: 1 client\(s\) of 4 shards told to reconnect/,
    );
    const lastSeq = Math.max(...old.dispatches().map((m) => m.s ?? 0));
    await old.close(4000);

    // Its RESUME: op 9 (the session cannot go on); an IDENTIFY with the old count: 4011, naming 8.
    const back = open();
    await back.waitFor(() => back.messages.length >= 1, "HELLO");
    back.send({ op: 6, d: { token: "fake-token", session_id: oldReady.d.session_id, seq: lastSeq } });
    await back.waitFor(() => back.messages.some((m) => m.op === 9), "op 9");
    assert.equal(back.messages.find((m) => m.op === 9)!.d, false);
    back.send(identify([1, 4]));
    await back.done();
    assert.equal(back.closed?.code, 4011);
    assert.match(back.closed!.reason, /8 shards/);

    // REST tells the library the new count.
    const api = ws.replace(/^ws/, "http");
    const info = await (await fetch(`${api}/api/v10/gateway/bot`, {
      headers: { authorization: "Bot fake-token" },
    })).json();
    assert.equal(info.shards, 8);

    // With the new count: the new shard's guilds, from the cache, then live events.
    const fresh = open();
    await fresh.waitFor(() => fresh.messages.length >= 1, "HELLO");
    fresh.send(identify([1, 8]));
    await fresh.waitFor(() => fresh.dispatches().length >= 1, "READY");
    const ready = fresh.dispatches()[0];
    assert.equal(ready.t, "READY");
    assert.deepEqual(ready.d.shard, [1, 8]);
    const upstream = g.lines.find((l) => l.t === "READY" && l.d.shard?.[0] === 1 && l.d.shard?.[1] === 8)!;
    const ids = ready.d.guilds.map((x: { id: string }) => x.id).sort();
    assert.deepEqual(ids, upstream.d.guilds.map((x: { id: string }) => x.id).sort());
    assert.ok(ids.length > 0 && ids.every((id: string) => shardOf(id, 8) === 1));
    await fresh.waitFor(() => fresh.dispatches().length === 1 + ids.length, "the new shard's GUILD_CREATEs");
    assert.ok(fresh.dispatches().slice(1).every((m) => m.t === "GUILD_CREATE" && m.d.unavailable === false));
    fake.dispatch(1, "MESSAGE_CREATE", { marker: "after the reshard" });
    await fresh.waitFor(() => fresh.dispatches().some((m) => m.d?.marker === "after the reshard"), "live");

    const metrics = await (await fetch(`${control}/metrics`, {
      headers: { authorization: `Bearer ${CONTROL_TOKEN}` },
    })).text();
    assert.match(metrics, /^gatehouse_proxy_reshard_reconnects_total 1$/m);
  } finally {
    for (const c of clients) await c.close().catch(() => {});
    g.kill("SIGKILL");
    await g.status;
    await fake.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
