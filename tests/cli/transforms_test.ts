/**
 * `[transforms]` end to end: `gatehouse run` against the fake Discord with all three on. stdout shows
 * the READY guilds' GUILD_CREATEs as "loading", a guild that goes down (its GUILD_DELETE dropped) and
 * comes back as "available", a new guild as "joined", a MESSAGE_UPDATE that changes no content dropped
 * and an edit kept; /metrics counts them; the journal keeps every original and a proxy client gets them
 * untransformed. After a clean restart (RESUME) the state is rebuilt from the journal: a guild of the
 * first run's READY is still "loading", an update of a message seen before the restart still dropped.
 */
import assert from "node:assert/strict";
import { guildCreatePayload, guildIdFor } from "../fake_discord/events.ts";
import { FakeDiscord } from "../fake_discord/server.ts";
import { controlUrl, fakeEnv, type Line, spawnGatehouse } from "../helpers/gatehouse.ts";
import { Store } from "../../src/journal/store.ts";

/** A guild of the READY whose GUILD_CREATE the fake holds back until the second run. */
const LATE = guildIdFor(0, 1, 7);
/** A guild the bot is added to. */
const NEW = guildIdFor(0, 1, 9);

interface ProxyDispatch {
  t: string;
  s: number;
  // deno-lint-ignore no-explicit-any
  d: any;
  [key: string]: unknown;
}

/** A bare gateway client of the proxy: IDENTIFYs as shard [0, 1] and keeps every dispatch as it came. */
function proxyClient(url: string, token: string) {
  const ws = new WebSocket(`${url}/?v=10&encoding=json`);
  const dispatches: ProxyDispatch[] = [];
  ws.onmessage = (event) => {
    const payload = JSON.parse(event.data as string);
    if (payload.op === 10) {
      ws.send(JSON.stringify({
        op: 2,
        d: {
          token,
          intents: 513,
          shard: [0, 1],
          properties: { os: "linux", browser: "test", device: "test" },
        },
      }));
    } else if (payload.op === 0) dispatches.push(payload);
  };
  const closed = new Promise<void>((resolve) => (ws.onclose = () => resolve()));
  return {
    dispatches,
    close: async () => {
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(4000);
      await closed;
    },
  };
}

async function metricsText(store: string): Promise<string> {
  return await (await fetch(`${await controlUrl(store)}/metrics`)).text();
}

function sample(text: string, series: string): number | null {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `));
  return line === undefined ? null : Number(line.slice(series.length + 1));
}

const message = (id: string, guildId: string, extra: Record<string, unknown>) => ({
  id,
  channel_id: String(BigInt(guildId) + 4096n * 2n),
  guild_id: guildId,
  author: { id: "900000000000000001", username: "someone" },
  ...extra,
});

const marker = (n: number, guildId: string) => ({
  channel_id: String(BigInt(guildId) + 4096n * 2n),
  guild_id: guildId,
  user_id: "900000000000000001",
  timestamp: n,
});

const annotated = (lines: Line[]) =>
  lines.filter((l) => l.t === "GUILD_CREATE").map((
    l,
  ) => [l.d.id, (l as Record<string, unknown>).guild_create]);

Deno.test("transforms end to end: loading / available / joined on stdout, outages and unfurls dropped, originals in the journal and the proxy, rebuilt after a restart", async () => {
  const fake = await FakeDiscord.start({ shards: 1, guildsPerShard: 2 });
  fake.nextReadyPatches.push((ready) => ({
    ...ready,
    guilds: [...(ready.guilds as unknown[]), { id: LATE, unavailable: true }],
  }));
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-transforms-" });
  const store = `${dir}/gatehouse.db`;
  const env = {
    ...fakeEnv(fake.apiHost),
    GATEHOUSE_STORE: store,
    GATEHOUSE_LOG_LEVEL: "info",
    GATEHOUSE_PROXY_LISTEN: "127.0.0.1:0",
    GATEHOUSE_TRANSFORMS_GUILD_CREATE: "annotate",
    GATEHOUSE_TRANSFORMS_GUILD_DELETE: "drop_unavailable",
    GATEHOUSE_TRANSFORMS_MESSAGE_UPDATE: "drop_unchanged",
    // Longer than a restart on a slow machine: the update after it is still within the window.
    GATEHOUSE_TRANSFORMS_MESSAGE_WINDOW: "2m",
  };
  const [g0, g1] = [guildIdFor(0, 1, 0), guildIdFor(0, 1, 1)];
  let g = spawnGatehouse({ env });
  let client: ReturnType<typeof proxyClient> | null = null;
  try {
    await g.waitFor(
      () => g.lines.filter((l) => l.t === "GUILD_CREATE").length === 2,
      30_000,
      "the READY's guilds",
    );
    assert.deepEqual(annotated(g.lines), [[g0, "loading"], [g1, "loading"]]);
    await g.waitFor(() => /proxy: listening on ws:\/\//.test(g.stderr()), 30_000, "the proxy");
    const proxy = /proxy: listening on (ws:\/\/[\d.]+:\d+)/.exec(g.stderr())![1];
    client = proxyClient(proxy, "fake-token");
    await g.waitFor(
      () => client!.dispatches.some((p) => p.t === "READY"),
      30_000,
      "the proxy client's READY",
    );

    fake.dispatch(0, "GUILD_DELETE", { id: g0, unavailable: true });
    fake.dispatch(0, "GUILD_CREATE", guildCreatePayload(g0, 0, 3));
    fake.dispatch(0, "GUILD_CREATE", guildCreatePayload(NEW, 9, 3));
    fake.dispatch(
      0,
      "MESSAGE_CREATE",
      message("3100000000000000001", g1, { content: "look: https://example.com" }),
    );
    // The embed unfurls: the full message again, and a partial update without content.
    fake.dispatch(
      0,
      "MESSAGE_UPDATE",
      message("3100000000000000001", g1, {
        content: "look: https://example.com",
        embeds: [{ type: "link" }],
      }),
    );
    fake.dispatch(0, "MESSAGE_UPDATE", message("3100000000000000001", g1, { embeds: [{ type: "link" }] }));
    fake.dispatch(0, "MESSAGE_UPDATE", message("3100000000000000001", g1, { content: "look: an edit" }));
    fake.dispatch(0, "TYPING_START", marker(1, g1));
    await g.waitFor(() => g.lines.some((l) => l.t === "TYPING_START"), 30_000, "the marker");

    const live = g.lines.slice(g.lines.findIndex((l) => l.t === "GUILD_CREATE" && l.d.id === g1) + 1);
    assert.deepEqual(
      live.map((l) => [l.t, (l as Record<string, unknown>).guild_create ?? null, l.d.id ?? null]),
      [
        ["GUILD_CREATE", "available", g0],
        ["GUILD_CREATE", "joined", NEW],
        ["MESSAGE_CREATE", null, "3100000000000000001"],
        ["MESSAGE_UPDATE", null, "3100000000000000001"],
        ["TYPING_START", null, null],
      ],
    );
    assert.equal(live[3].d.content, "look: an edit", "the edit is kept");
    assert.ok(!g.lines.some((l) => l.t === "GUILD_DELETE"), "the outage's GUILD_DELETE is not on stdout");
    // Ids leave gaps where events were dropped; the cursor went past them (the next start repeats none).
    const ids = live.map((l) => l.id);
    assert.deepEqual(ids.map((id) => id - ids[0]), [0, 1, 2, 5, 6]);
    assert.deepEqual(g.badLines, []);

    const metrics = await metricsText(store);
    const stdout = 'sink="stdout"';
    assert.equal(
      sample(metrics, `gatehouse_transform_dropped_total{${stdout},transform="unavailable_guild_delete"}`),
      1,
    );
    assert.equal(
      sample(metrics, `gatehouse_transform_dropped_total{${stdout},transform="unchanged_message_update"}`),
      2,
    );
    assert.equal(sample(metrics, `gatehouse_transform_guild_create_total{${stdout},kind="loading"}`), 2);
    assert.equal(sample(metrics, `gatehouse_transform_guild_create_total{${stdout},kind="available"}`), 1);
    assert.equal(sample(metrics, `gatehouse_transform_guild_create_total{${stdout},kind="joined"}`), 1);

    // Proxy mode serves Discord's events as they came: every one, no annotation, names unchanged.
    await g.waitFor(
      () => client!.dispatches.some((p) => p.t === "TYPING_START"),
      30_000,
      "the proxy's marker",
    );
    const proxied = client.dispatches.slice(client.dispatches.findIndex((p) => p.t === "GUILD_DELETE"));
    assert.deepEqual(proxied.map((p) => p.t), [
      "GUILD_DELETE",
      "GUILD_CREATE",
      "GUILD_CREATE",
      "MESSAGE_CREATE",
      "MESSAGE_UPDATE",
      "MESSAGE_UPDATE",
      "MESSAGE_UPDATE",
      "TYPING_START",
    ]);
    assert.deepEqual(proxied[0].d, { id: g0, unavailable: true });
    assert.ok(client.dispatches.every((p) => !("guild_create" in p)));
    await client.close();
    client = null;

    g.kill("SIGTERM");
    assert.equal((await g.status).code, 0);
    // The journal has every event as Discord sent it.
    const journal = Store.open(store, { readOnly: true });
    try {
      const counts = Object.fromEntries(journal.events.counts().perType.map((r) => [r.t, r.count]));
      assert.equal(counts.GUILD_DELETE, 1);
      assert.equal(counts.MESSAGE_UPDATE, 3);
      assert.equal(counts.GUILD_CREATE, 4);
      assert.equal(counts.GUILD_LOADED_DD, undefined);
      const stored = journal.events.read(0, 1000).find((e) => e.t === "GUILD_DELETE")!;
      assert.equal(JSON.parse(new TextDecoder().decode(stored.payload)).d.unavailable, true);
    } finally {
      journal.close();
    }

    // A restart: the shard RESUMEs; the state is rebuilt from the journal before stdout delivers.
    g = spawnGatehouse({ env });
    await g.waitFor(() => g.lines.some((l) => l.t === "RESUMED"), 30_000, "RESUMED");
    fake.dispatch(0, "GUILD_CREATE", guildCreatePayload(LATE, 7, 3));
    fake.dispatch(0, "MESSAGE_UPDATE", message("3100000000000000001", g1, { content: "look: an edit" }));
    fake.dispatch(0, "TYPING_START", marker(2, g1));
    await g.waitFor(() => g.lines.some((l) => l.t === "TYPING_START"), 30_000, "the second marker");
    assert.deepEqual(g.lines.map((l) => l.t), ["RESUMED", "GUILD_CREATE", "TYPING_START"]);
    assert.deepEqual(annotated(g.lines), [[LATE, "loading"]], "its READY was in the first run");
    assert.match(g.stderr(), /transforms: state rebuilt from \d+ event\(s\) of the journal/);
    g.kill("SIGTERM");
    assert.equal((await g.status).code, 0);
  } finally {
    await client?.close();
    g.kill("SIGKILL");
    await g.status;
    await fake.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
