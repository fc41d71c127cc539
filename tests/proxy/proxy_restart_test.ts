/**
 * Proxy mode across a restart of gatehouse itself: a bot on @discordjs/ws (npm, test-only, its own
 * process) stays up while gatehouse is stopped with SIGTERM and started again on the same store and
 * proxy address. gatehouse RESUMEs its own shards on the test double; the bot's client sessions, stored
 * in the store, are resumable too: the bot RESUMEs both shards and gets every event exactly once, the
 * ones sent while gatehouse was down among them.
 */
import assert from "node:assert/strict";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, type Gatehouse, spawnGatehouse } from "../helpers/gatehouse.ts";

const TOKEN = "proxy-restart-token";
const WS_CLIENT = new URL("./ws_client_child.ts", import.meta.url).pathname;

interface ClientLine {
  shard: number;
  t: string;
  s: number;
  d: { marker?: number };
}

/** A port free now (the restarted gatehouse must listen where the bot's resume_gateway_url points). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

Deno.test("proxy: gatehouse stopped with SIGTERM and started again while a bot is attached: it RESUMEs its shards, the bot RESUMEs its sessions and gets every event once", async () => {
  const fake = await FakeDiscord.start({ token: TOKEN, shards: 2, guildsPerShard: 3 });
  const dir = await Deno.makeTempDir();
  const port = freePort();
  const env = {
    ...fakeEnv(fake.apiHost, TOKEN),
    GATEHOUSE_STORE: `${dir}/gatehouse.db`,
    GATEHOUSE_PROXY_LISTEN: `127.0.0.1:${port}`,
    GATEHOUSE_LOG_LEVEL: "info",
  };
  const runs: Gatehouse[] = [];
  let bot: Gatehouse | null = null;
  const start = async () => {
    const g = spawnGatehouse({ env });
    runs.push(g);
    await g.waitFor(() => g.stderr().includes(`proxy: listening on ws://127.0.0.1:${port}`), 20_000, "proxy");
    return g;
  };
  try {
    const first = await start();
    await first.waitFor(
      () => first.lines.filter((l) => l.t === "GUILD_CREATE").length === 6,
      20_000,
      "guilds",
    );
    bot = spawnGatehouse({
      script: WS_CLIENT,
      args: [`http://127.0.0.1:${port}`, TOKEN, `${dir}/bot-session.json`],
    });
    const lines = () => bot!.lines as unknown as ClientLine[];
    const markers = () => lines().filter((l) => l.t === "MESSAGE_CREATE").map((l) => l.d.marker!);
    await bot.waitFor(() => lines().filter((l) => l.t === "GUILD_CREATE").length === 6, 60_000, "start-up");
    let sent = 0;
    const send = (n: number) => {
      for (let i = 0; i < n; i++, sent++) fake.dispatch(sent % 2, "MESSAGE_CREATE", { marker: sent });
    };
    send(300);
    await bot.waitFor(() => markers().length === 300, 20_000, "the first events");

    // gatehouse stops (its clients are closed with 4000, their sessions stored); events go on meanwhile.
    first.kill("SIGTERM");
    assert.equal((await first.status).code, 0);
    send(200);
    const second = await start();
    await bot.waitFor(
      () => lines().filter((l) => l.t === "RESUMED").length === 2,
      60_000,
      "the bot resumed both shards",
    );
    send(100);
    await bot.waitFor(() => markers().length >= 600, 30_000, "every event");
    await new Promise((resolve) => setTimeout(resolve, 300)); // a repeat would arrive now

    // gatehouse itself resumed: no new READY from the double in its second run.
    assert.equal(second.lines.filter((l) => l.t === "READY").length, 0);
    assert.equal(second.lines.filter((l) => l.t === "RESUMED").length, 2);
    assert.ok(second.stderr().includes("proxy: a client resumed session"));
    // The bot: one READY per shard in all, each event once, in order per shard, its seqs unbroken.
    assert.equal(lines().filter((l) => l.t === "READY").length, 2);
    assert.deepEqual(markers().sort((a, b) => a - b), Array.from({ length: 600 }, (_, i) => i));
    for (const shard of [0, 1]) {
      const mine = lines().filter((l) => l.shard === shard);
      const got = mine.filter((l) => l.t === "MESSAGE_CREATE").map((l) => l.d.marker!);
      assert.deepEqual(got, Array.from({ length: 300 }, (_, i) => 2 * i + shard), `shard ${shard} in order`);
      const seqs = mine.map((l) => l.s);
      assert.deepEqual(seqs, seqs.map((_, i) => i + 1), `shard ${shard}: seqs 1, 2, 3, … across the restart`);
    }
    assert.deepEqual(second.badLines, []);
  } finally {
    if (bot) {
      bot.kill("SIGKILL");
      await bot.status;
    }
    for (const g of runs) {
      try {
        g.kill("SIGKILL");
      } catch { /* exited */ }
      await g.status;
    }
    await fake.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
