/**
 * Proxy mode end to end: `gatehouse run` with `[proxy] listen` against the fake Discord, and bots built
 * on real client libraries from npm (test-only) connecting to it as if it were Discord, in processes of
 * their own that are killed and restarted.
 */
import assert from "node:assert/strict";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, type Gatehouse, proxyAddress, spawnGatehouse } from "../helpers/gatehouse.ts";

const TOKEN = "proxy-test-token";
const WS_CLIENT = new URL("./ws_client_child.ts", import.meta.url).pathname;
const DJS_CLIENT = new URL("./djs_client_child.ts", import.meta.url).pathname;
const OCEANIC_CLIENT = new URL("./oceanic_client_child.ts", import.meta.url).pathname;
/** The bench's bot: IDENTIFYs every shard, counts dispatches, reports progress and its closes. */
const LEAN_CLIENT = new URL("../../bench/proxy_reader.ts", import.meta.url).pathname;

interface ClientLine {
  shard: number;
  t: string;
  s: number;
  // deno-lint-ignore no-explicit-any
  d: any;
}

function clientLines(c: Gatehouse): ClientLine[] {
  return c.lines as unknown as ClientLine[];
}

function spawnClient(script: string, api: string, sessionFile: string, extra: string[] = []): Gatehouse {
  return spawnGatehouse({ script, args: [api, TOKEN, sessionFile, ...extra] });
}

/** gatehouse with the proxy on, against a fake with 2 shards of 3 guilds, once every guild is in. */
async function proxiedGatehouse(env: Record<string, string> = {}) {
  const fake = await FakeDiscord.start({ token: TOKEN, shards: 2, guildsPerShard: 3 });
  const dir = await Deno.makeTempDir();
  const g = spawnGatehouse({
    env: {
      ...fakeEnv(fake.apiHost, TOKEN),
      GATEHOUSE_STORE: `${dir}/gatehouse.db`,
      GATEHOUSE_PROXY_LISTEN: "127.0.0.1:0",
      GATEHOUSE_LOG_LEVEL: "info",
      ...env,
    },
  });
  const clients: Gatehouse[] = [];
  const stop = async () => {
    for (const c of clients) {
      c.kill("SIGKILL");
      await c.status;
    }
    g.kill("SIGTERM");
    await g.status;
    await fake.stop();
    await Deno.remove(dir, { recursive: true });
  };
  try {
    const api = `http://${await proxyAddress(g)}`;
    await g.waitFor(() => g.lines.filter((l) => l.t === "GUILD_CREATE").length === 6, 20_000, "guilds");
    return { fake, g, dir, api, clients, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * The bot (`script`) runs, is killed with SIGKILL while events flow and started again: it must RESUME
 * both shards and, across both runs, have every one of the test double's events. Returns both runs.
 */
async function killAndRestart(
  p: Awaited<ReturnType<typeof proxiedGatehouse>>,
  script: string,
  startedUp: (c: Gatehouse) => boolean,
): Promise<[Gatehouse, Gatehouse]> {
  const { fake, api, dir, clients } = p;
  const sessionFile = `${dir}/bot-session.json`;
  const first = spawnClient(script, api, sessionFile);
  clients.push(first);
  await first.waitFor(() => startedUp(first), 60_000, "the bot's start-up");
  const total = 600;
  let sent = 0;
  const send = (n: number) => {
    for (let i = 0; i < n; i++, sent++) {
      fake.dispatch(sent % 2, "MESSAGE_CREATE", messageOf(sent));
    }
  };
  send(200);
  await first.waitFor(() => clientLines(first).some((l) => l.d?.marker === 150), 20_000, "events");
  first.kill("SIGKILL");
  await first.status;
  send(200);
  const second = spawnClient(script, api, sessionFile);
  clients.push(second);
  try {
    await second.waitFor(
      () => clientLines(second).filter((l) => l.t === "RESUMED").length === 2,
      60_000,
      "both shards resumed",
    );
  } catch (error) {
    const proxyLog = p.g.stderr().split("\n").filter((l) => l.includes("proxy")).slice(-20).join("\n");
    const seen = clientLines(second).map((l) => `${l.shard}:${l.t}:${l.s}`).slice(0, 20).join(" ");
    throw new Error(`${(error as Error).message}\ngatehouse's proxy log:\n${proxyLog}\nsecond run: ${seen}`);
  }
  send(total - 400);
  const markers = () =>
    [...clientLines(first), ...clientLines(second)].filter((l) => l.t === "MESSAGE_CREATE");
  await second.waitFor(() => new Set(markers().map((l) => l.d.marker)).size === total, 30_000, "every event");

  // Resumed, not started afresh: no READY in the second run, and every event of the test double there
  // once across both runs (a kill between printing and storing the seq may repeat one per shard).
  assert.equal(clientLines(second).filter((l) => l.t === "READY").length, 0);
  const seen = markers().map((l) => l.d.marker as number);
  assert.deepEqual([...new Set(seen)].sort((a, b) => a - b), Array.from({ length: total }, (_, i) => i));
  assert.ok(seen.length - total <= 2, `repeats across the kill: ${seen.length - total}`);
  for (const shard of [0, 1]) {
    const got = markers().filter((l) => l.shard === shard).map((l) => l.d.marker as number);
    assert.ok(got.every((m) => m % 2 === shard), "each event on its guild's shard");
    const unique = [...new Set(got)];
    assert.deepEqual(unique, [...unique].sort((a, b) => a - b), `shard ${shard} in order`);
    // The second run's seqs go on from where the first left off.
    const seqs = clientLines(second).filter((l) => l.shard === shard).map((l) => l.s);
    assert.deepEqual(seqs, seqs.map((_, i) => seqs[0] + i));
  }
  assert.ok(p.g.stderr().includes("proxy: a client resumed session"));
  return [first, second];
}

/** A MESSAGE_CREATE as discord.js can take it (a guild channel and an author), numbered by `marker`. */
function messageOf(n: number) {
  return {
    id: String(2_000_000_000_000_000 + n),
    channel_id: "1",
    content: `m${n}`,
    marker: n,
    author: { id: "42", username: "someone", discriminator: "0", avatar: null, global_name: null },
    timestamp: "2026-12-03T00:00:00.000000+00:00",
    edited_timestamp: null,
    tts: false,
    mention_everyone: false,
    mentions: [],
    mention_roles: [],
    attachments: [],
    embeds: [],
    pinned: false,
    type: 0,
  };
}

/** The guild as a library sees it after a GUILD_CREATE, less what the proxy leaves out by design. */
// deno-lint-ignore no-explicit-any
function comparable(d: any): unknown {
  const { unavailable: _u, ...rest } = d;
  return {
    ...rest,
    // deno-lint-ignore no-explicit-any
    voice_states: (d.voice_states ?? []).map(({ member: _m, ...v }: any) => v),
    presences: [],
  };
}

Deno.test("proxy: @discordjs/ws gets READY and every cached guild, then live events; killed with SIGKILL and restarted, it RESUMEs and gets every event", async () => {
  const p = await proxiedGatehouse();
  try {
    const [first] = await killAndRestart(
      p,
      WS_CLIENT,
      (c) => clientLines(c).filter((l) => l.t === "GUILD_CREATE").length === 6,
    );
    const { g } = p;
    for (const shard of [0, 1]) {
      const mine = clientLines(first).filter((l) => l.shard === shard);
      assert.equal(mine[0].t, "READY");
      const upstream = g.lines.find((l) => l.t === "READY" && l.shard === shard)!;
      // The real user and application; the shard's guilds, as unavailable until their GUILD_CREATE.
      assert.deepEqual(mine[0].d.user, upstream.d.user);
      assert.deepEqual(mine[0].d.application, upstream.d.application);
      assert.deepEqual(mine[0].d.shard, [shard, 2]);
      assert.deepEqual(
        mine[0].d.guilds,
        upstream.d.guilds.map((x: { id: string }) => ({ id: x.id, unavailable: true })),
      );
      assert.match(mine[0].d.resume_gateway_url, /^ws:\/\/127\.0\.0\.1:\d+$/);
      assert.notEqual(mine[0].d.session_id, upstream.d.session_id, "a proxy session of its own");
      // Each GUILD_CREATE as Discord sent it (from the cache), available, with the client's own seqs.
      const creates = mine.filter((l) => l.t === "GUILD_CREATE");
      assert.deepEqual(
        creates.map((l) => comparable(l.d)),
        g.lines.filter((l) => l.t === "GUILD_CREATE" && l.shard === shard).map((l) => comparable(l.d)),
      );
      assert.ok(creates.every((l) => l.d.unavailable === false));
      const firstRun = mine.filter((l) => l.t !== "MESSAGE_CREATE");
      assert.deepEqual(firstRun.map((l) => l.s), firstRun.map((_, i) => i + 1));
    }
    assert.deepEqual(g.badLines, []);
  } finally {
    await p.stop();
  }
});

Deno.test("proxy: the full discord.js v14 Client logs in through it (REST pointed at it) with every guild available; killed and restarted, it RESUMEs and gets every event", async () => {
  const p = await proxiedGatehouse();
  try {
    const [first] = await killAndRestart(
      p,
      DJS_CLIENT,
      (c) => clientLines(c).some((l) => l.t === "CLIENT_READY"),
    );
    const ready = clientLines(first).find((l) => l.t === "CLIENT_READY")!;
    const expected = p.g.lines.filter((l) => l.t === "GUILD_CREATE");
    assert.deepEqual(
      ready.d.guilds.map((x: { id: string }) => x.id).sort(),
      expected.map((l) => l.d.id).sort(),
    );
    for (const guild of ready.d.guilds) {
      const source = expected.find((l) => l.d.id === guild.id)!.d;
      assert.equal(guild.available, true);
      assert.equal(guild.name, source.name);
      assert.equal(guild.channels, source.channels.length + source.threads.length);
      assert.equal(guild.members, source.members.length);
    }
  } finally {
    await p.stop();
  }
});

for (const compress of ["zlib-stream", "zstd-stream"]) {
  Deno.test(`proxy: Oceanic.js (${compress} to the client) starts with every guild from the cache and gets the live events in order`, async () => {
    const p = await proxiedGatehouse();
    try {
      const bot = spawnClient(OCEANIC_CLIENT, p.api, "-", [compress]);
      p.clients.push(bot);
      await bot.waitFor(() => clientLines(bot).some((l) => l.t === "CLIENT_READY"), 60_000, "Oceanic ready");
      assert.ok(p.g.stderr().includes(`compression ${compress})`), "the client asked for it");
      const ready = clientLines(bot).find((l) => l.t === "CLIENT_READY")!;
      const expected = p.g.lines.filter((l) => l.t === "GUILD_CREATE");
      assert.deepEqual(
        ready.d.guilds.map((x: { id: string; name: string }) => [x.id, x.name]).sort(),
        expected.map((l) => [l.d.id, l.d.name]).sort(),
      );
      for (const guild of ready.d.guilds) {
        const source = expected.find((l) => l.d.id === guild.id)!.d;
        assert.equal(guild.channels, source.channels.length);
        assert.equal(guild.members, source.members.length);
      }
      for (let n = 0; n < 300; n++) p.fake.dispatch(n % 2, "MESSAGE_CREATE", messageOf(n));
      const got = () => clientLines(bot).filter((l) => l.t === "MESSAGE_CREATE");
      await bot.waitFor(() => got().length === 300, 20_000, "every event");
      for (const shard of [0, 1]) {
        assert.deepEqual(
          got().filter((l) => l.shard === shard).map((l) => l.d.marker),
          Array.from({ length: 150 }, (_, i) => 2 * i + shard),
        );
      }
      // gatehouse shards shows the proxy, its cache and the client on each shard.
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", "main.ts", "shards", "--store", `${p.dir}/gatehouse.db`],
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(out.stdout);
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.match(
        text,
        /proxy ws:\/\/127\.0\.0\.1:\d+: 2 client\(s\), 2 session\(s\) kept; cache 6 guild\(s\) \(0 unavailable\)/,
      );
      assert.match(text, /^\S{8}\s+0\/2\s+live\s+\d+/m);
      assert.match(text, /^\S{8}\s+1\/2\s+live\s+\d+/m);
    } finally {
      await p.stop();
    }
  });
}

Deno.test("proxy: a client that stops reading is closed resumably past [proxy] max_buffer and catches up from the journal; the other client and the shards never wait", async () => {
  const p = await proxiedGatehouse({ GATEHOUSE_PROXY_MAX_BUFFER: "256KiB" });
  try {
    const started = (c: Gatehouse) => clientLines(c).filter((l) => l.t === "GUILD_CREATE").length === 6;
    const slow = spawnClient(WS_CLIENT, p.api, `${p.dir}/slow.json`);
    const other = spawnClient(WS_CLIENT, p.api, `${p.dir}/other.json`);
    p.clients.push(slow, other);
    await slow.waitFor(() => started(slow), 30_000, "slow start-up");
    await other.waitFor(() => started(other), 30_000, "other start-up");
    // The slow bot's process stops: nothing reads its socket.
    Deno.kill(slow.pid, "SIGSTOP");
    const perShard = 12_000;
    p.fake.burst(0, perShard);
    p.fake.burst(1, perShard);
    const live = (lines: ClientLine[], shard: number) =>
      lines.filter((l) => l.shard === shard && l.t !== "READY" && l.t !== "GUILD_CREATE" && l.t !== "RESUMED")
        .map((l) => JSON.stringify([l.t, l.d]));
    const upstream = (shard: number) =>
      (p.g.lines as unknown as ClientLine[]).filter((l) =>
        l.shard === shard && !["READY", "GUILD_CREATE", "RESUMED"].includes(l.t) &&
        !l.t.startsWith("GATEHOUSE_")
      ).map((l) => JSON.stringify([l.t, l.d]));
    // The other bot gets everything while the slow one is stopped.
    await other.waitFor(
      () =>
        live(clientLines(other), 0).length === perShard && live(clientLines(other), 1).length === perShard,
      60_000,
      "the other bot's events",
    );
    // Closed by its session (the other bot, reading a burst this big on a busy machine, may fall 2 s behind
    // and be closed too; it resumes like any other).
    const slowSessions = clientLines(slow).filter((l) => l.t === "READY").map((l) =>
      l.d.session_id as string
    );
    const closedAsSlow = () =>
      p.g.stderr().split("\n").filter((l) => l.includes("reads too slowly")).map((l) =>
        JSON.parse(l).session
      );
    await p.g.waitFor(
      () => slowSessions.some((id) => closedAsSlow().includes(id.slice(0, 8))),
      20_000,
      "the slow bot closed",
    );
    for (const shard of [0, 1]) assert.deepEqual(live(clientLines(other), shard), upstream(shard));
    // It wakes up, sees the close (4000), RESUMEs, and gets every event, in order, once.
    Deno.kill(slow.pid, "SIGCONT");
    await slow.waitFor(
      () => live(clientLines(slow), 0).length >= perShard && live(clientLines(slow), 1).length >= perShard,
      60_000,
      "the slow bot caught up",
    );
    assert.ok(clientLines(slow).some((l) => l.t === "RESUMED"), "it resumed");
    assert.equal(clientLines(slow).filter((l) => l.t === "READY").length, 2, "no new session");
    for (const shard of [0, 1]) assert.deepEqual(live(clientLines(slow), shard), upstream(shard));
    const metrics = await (await fetch(`${await controlUrlOf(p.dir)}/metrics`)).text();
    assert.match(metrics, /gatehouse_proxy_slow_closed_total [1-9]/);
    assert.match(metrics, /gatehouse_proxy_sessions_total\{how="resumed"\} [1-9]/);
  } finally {
    await p.stop();
  }
});

Deno.test("proxy: a bot that reads as fast as events come is not taken for a slow reader when gatehouse's own busy loop holds more than [proxy] max_buffer back from its socket", async () => {
  // 64 KiB: one journal batch of the burst is more than that, handed to the socket in one turn.
  const p = await proxiedGatehouse({ GATEHOUSE_PROXY_MAX_BUFFER: "64KiB" });
  try {
    // A lean bot (Deno's WebSocket, JSON.parse per message, no printing per event): it reads far faster
    // than gatehouse ingests, journals and fans the burst out.
    const bot = spawnGatehouse({ script: LEAN_CLIENT, args: [p.api.replace(/^http/, "ws"), "2", TOKEN] });
    p.clients.push(bot);
    const reports = () => bot.lines as unknown as Array<{ type: string; dispatches: number }>;
    await bot.waitFor(() => reports().filter((r) => r.type === "ready").length === 2, 30_000, "bot ready");
    const before = reports().filter((r) => r.type === "progress").at(-1)?.dispatches ?? 0;
    const perShard = 15_000;
    p.fake.burst(0, perShard);
    p.fake.burst(1, perShard);
    await bot.waitFor(
      () => (reports().filter((r) => r.type === "progress").at(-1)?.dispatches ?? 0) >= before + 2 * perShard,
      60_000,
      "the burst",
    );
    bot.kill("SIGTERM");
    await bot.status;
    const end = (bot.lines as unknown as Array<{ type: string; closes: object; reconnects: number }>)
      .find((r) => r.type === "end")!;
    assert.deepEqual([end.closes, end.reconnects], [{}, 0], bot.stderr());
    assert.ok(!p.g.stderr().includes("reads too slowly"), "no client closed as too slow");
    const metrics = await (await fetch(`${await controlUrlOf(p.dir)}/metrics`)).text();
    assert.match(metrics, /gatehouse_proxy_slow_closed_total 0\b/);
  } finally {
    await p.stop();
  }
});

async function controlUrlOf(dir: string): Promise<string> {
  return JSON.parse(await Deno.readTextFile(`${dir}/gatehouse.db.control`)).url;
}
