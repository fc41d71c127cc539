/**
 * Proxy mode end to end: `gatehouse run` with `[proxy] listen` against the fake Discord, and bots built
 * on real client libraries from npm (test-only) connecting to it as if it were Discord, in processes of
 * their own that are killed and restarted.
 */
import assert from "node:assert/strict";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, type Gatehouse, spawnGatehouse } from "../helpers/gatehouse.ts";

const TOKEN = "proxy-test-token";
const WS_CLIENT = new URL("./ws_client_child.ts", import.meta.url).pathname;

interface ClientLine {
  shard: number;
  t: string;
  s: number;
  // deno-lint-ignore no-explicit-any
  d: any;
}

/** The proxy's address, from its start-up log line. */
async function proxyUrl(g: Gatehouse): Promise<string> {
  await g.waitFor(() => /proxy: listening on ws:\/\/[\d.]+:\d+/.test(g.stderr()), 20_000, "the proxy");
  return "http://" + /proxy: listening on ws:\/\/([\d.]+:\d+)/.exec(g.stderr())![1];
}

function clientLines(c: Gatehouse): ClientLine[] {
  return c.lines as unknown as ClientLine[];
}

function spawnClient(api: string, sessionFile: string, extra: string[] = []): Gatehouse {
  return spawnGatehouse({ script: WS_CLIENT, args: [api, TOKEN, sessionFile, ...extra] });
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
  const fake = await FakeDiscord.start({ token: TOKEN, shards: 2, guildsPerShard: 3 });
  const dir = await Deno.makeTempDir();
  const g = spawnGatehouse({
    env: {
      ...fakeEnv(fake.apiHost, TOKEN),
      GATEHOUSE_STORE: `${dir}/gatehouse.db`,
      GATEHOUSE_PROXY_LISTEN: "127.0.0.1:0",
      GATEHOUSE_LOG_LEVEL: "info",
    },
  });
  const clients: Gatehouse[] = [];
  try {
    const api = await proxyUrl(g);
    await g.waitFor(() => g.lines.filter((l) => l.t === "GUILD_CREATE").length === 6, 20_000, "guilds");
    const sessionFile = `${dir}/bot-session.json`;
    const first = spawnClient(api, sessionFile);
    clients.push(first);
    await first.waitFor(
      () => clientLines(first).filter((l) => l.t === "GUILD_CREATE").length === 6,
      30_000,
      "the bot's start-up",
    );
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
      assert.deepEqual(mine.map((l) => l.s), mine.map((_, i) => i + 1));
    }

    // Live events while the bot is killed (kill -9) and started again.
    const total = 600;
    let sent = 0;
    const send = (n: number) => {
      for (let i = 0; i < n; i++, sent++) {
        fake.dispatch(sent % 2, "MESSAGE_CREATE", {
          id: String(10_000 + sent),
          content: `m${sent}`,
          marker: sent,
        });
      }
    };
    send(200);
    await first.waitFor(() => clientLines(first).some((l) => l.d?.marker === 150), 20_000, "events");
    first.kill("SIGKILL");
    await first.status;
    send(200);
    const second = spawnClient(api, sessionFile);
    clients.push(second);
    await second.waitFor(
      () => clientLines(second).filter((l) => l.t === "RESUMED").length === 2,
      30_000,
      "both shards resumed",
    );
    send(total - 400);
    const markers = () =>
      [...clientLines(first), ...clientLines(second)].filter((l) => l.t === "MESSAGE_CREATE");
    await second.waitFor(
      () => clientLines(second).some((l) => l.d?.marker === total - 1),
      30_000,
      "the last",
    );
    await second.waitFor(
      () => new Set(markers().map((l) => l.d.marker)).size === total,
      10_000,
      "every event",
    );

    // Resumed, not started afresh: no READY in the second run, and every event of the test double there
    // exactly once across both runs (a kill between printing and storing the seq may repeat one per shard).
    assert.equal(clientLines(second).filter((l) => l.t === "READY").length, 0);
    const seen = markers().map((l) => l.d.marker as number);
    assert.deepEqual([...new Set(seen)].sort((a, b) => a - b), Array.from({ length: total }, (_, i) => i));
    assert.ok(seen.length - total <= 2, `repeats across the kill: ${seen.length - total}`);
    for (const shard of [0, 1]) {
      const got = markers().filter((l) => l.shard === shard).map((l) => l.d.marker as number);
      const unique = [...new Set(got)];
      assert.deepEqual(unique, [...unique].sort((a, b) => a - b), `shard ${shard} in order`);
      // The second run's seqs go on from where the first left off.
      const seqs = clientLines(second).filter((l) => l.shard === shard).map((l) => l.s);
      assert.deepEqual(seqs, seqs.map((_, i) => seqs[0] + i));
    }
    assert.ok(g.stderr().includes("proxy: a client resumed session"));
    assert.deepEqual(g.badLines, []);
  } finally {
    for (const c of clients) {
      c.kill("SIGKILL");
      await c.status;
    }
    g.kill("SIGTERM");
    await g.status;
    await fake.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
