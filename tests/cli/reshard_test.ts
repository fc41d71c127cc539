/**
 * Resharding in one process, the real binary against the fake Discord in its guild mode (one fixed guild
 * set owned by `(guild_id >> 22) % count` under each session's count; each guild event generated once
 * and sent to every session that owns its guild): 4 → 8 under traffic with every event delivered once,
 * the 4011 and threshold triggers, a refusal for the identify budget, and a new set that never becomes
 * READY being given up while the old one keeps delivering.
 */
import assert from "node:assert/strict";
import { FakeDiscord } from "../fake_discord/server.ts";
import type { GuildEvent } from "../fake_discord/guilds.ts";
import { controlUrl, fakeEnv, type Gatehouse, type Line, spawnGatehouse } from "../helpers/gatehouse.ts";

const TOKEN = "reshard-control-token";
const GUILDS = 64;

async function withRun(
  fakeOptions: Parameters<typeof FakeDiscord.start>[0],
  env: Record<string, string>,
  fn: (
    fake: FakeDiscord,
    g: Gatehouse,
    url: () => Promise<string>,
    env: Record<string, string>,
  ) => Promise<void>,
) {
  const fake = await FakeDiscord.start({ guilds: GUILDS, shards: 4, maxConcurrency: 4, ...fakeOptions });
  const dir = Deno.makeTempDirSync({ prefix: "gatehouse-reshard-" });
  const store = `${dir}/gatehouse.db`;
  const runEnv = {
    ...fakeEnv(fake.apiHost),
    GATEHOUSE_STORE: store,
    GATEHOUSE_CONTROL_TOKEN: TOKEN,
    GATEHOUSE_RESHARD_INTERVAL: "0",
    ...env,
  };
  const g = spawnGatehouse({ env: runEnv });
  try {
    await fn(fake, g, () => controlUrl(store), runEnv);
  } finally {
    g.kill("SIGKILL");
    await g.status;
    await fake.stop();
    Deno.removeSync(dir, { recursive: true });
  }
}

/** `<shard>:<session>:<seq>` → the guild event the fake sent there. */
function sentBySession(events: GuildEvent[]): Map<string, GuildEvent> {
  const out = new Map<string, GuildEvent>();
  for (const event of events) {
    for (const d of event.deliveries) out.set(`${d.shard}:${d.sessionId}:${d.s}`, event);
  }
  return out;
}

/** How many times each guild event reached stdout (by the uid of the line: its session and seq). */
function deliveredCounts(events: GuildEvent[], lines: Line[]): Map<number, number> {
  const where = sentBySession(events);
  const counts = new Map<number, number>();
  for (const line of lines) {
    const event = where.get(line.uid);
    if (event) counts.set(event.n, (counts.get(event.n) ?? 0) + 1);
  }
  return counts;
}

function readyLines(g: Gatehouse, count: number): Line[] {
  return g.lines.filter((l) => l.t === "READY" && l.d.shard?.[1] === count);
}

async function shardsCli(args: string[], env: Record<string, string> = {}) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", "main.ts", "shards", ...args],
    env: { NO_COLOR: "1", GATEHOUSE_CONTROL_TOKEN: TOKEN, ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: output.code, stdout: text.decode(output.stdout), stderr: text.decode(output.stderr) };
}

async function metric(url: string, name: string, labels = ""): Promise<number | null> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name}${labels} `) || l === `${name}${labels}`);
  return line === undefined ? null : Number(line.split(" ").at(-1));
}

/** Guild traffic every 10 ms until stopped: `perTick` events, each generated once for one guild. */
function traffic(fake: FakeDiscord, perTick: number) {
  const timer = setInterval(() => fake.burstGuilds(perTick), 10);
  return () => clearInterval(timer);
}

Deno.test("reshard 4 → 8 under traffic (gatehouse shards --reshard): every guild event delivered once, repeats removed, no identify violation", async () => {
  await withRun({}, {}, async (fake, g, url, env) => {
    await g.waitFor(() => readyLines(g, 4).length === 4, 20_000, "4 READY lines");
    await g.waitFor(() => g.lines.filter((l) => l.t === "GUILD_CREATE").length === GUILDS, 10_000, "guilds");
    fake.acceptCounts([4, 8]);
    fake.setRecommendedShards(8);
    const stop = traffic(fake, 4);
    try {
      await g.waitFor(() => g.lines.filter((l) => l.t === "MESSAGE_CREATE").length >= 50, 10_000, "traffic");
      const control = await url();
      const cli = await shardsCli(["--url", control, "--reshard"]);
      assert.equal(cli.code, 0, cli.stdout + cli.stderr);
      assert.match(cli.stdout, /resharding: requested: 4 → 8 shards/);

      // While the new set comes up, both sets are listed and only the old one delivers.
      const during = await shardsCli(["--url", control, "--json"]);
      const report = JSON.parse(during.stdout);
      assert.equal(report.shard_count, 4);
      assert.equal(report.resharding.state, "preparing", "the new set needs two identify rounds (5 s apart)");
      {
        assert.equal(report.shards.filter((s: { count: number }) => s.count === 8).length, 8);
        assert.ok(
          report.shards.every((s: { count: number; delivering: boolean }) =>
            s.delivering === (s.count === 4)
          ),
        );
        const text = await shardsCli(["--url", control]);
        assert.match(text.stdout, /resharding 4 → 8: \d\/8 new shard\(s\) READY/);
      }

      await g.waitFor(() => g.lines.some((l) => l.t === "GATEHOUSE_RESHARDED"), 30_000, "the switch");
      // Traffic goes on across the switch and after it, on the new set only once the old one closed.
      await new Promise((resolve) => setTimeout(resolve, 1_500));
    } finally {
      stop();
    }
    // Everything sent reaches stdout: each event through at least one of its sessions.
    const sent = fake.guildEvents;
    await g.waitFor(() => deliveredCounts(sent, g.lines).size === sent.length, 15_000, "every guild event");
    await new Promise((resolve) => setTimeout(resolve, 300));
    const counts = deliveredCounts(sent, g.lines);
    const repeats = [...counts].filter(([, n]) => n > 1);
    const both = sent.filter((e) => new Set(e.deliveries.map((d) => d.count)).size === 2).length;
    assert.deepEqual(repeats, [], "no event delivered twice");
    assert.ok(both > 0, "some events reached both sets (the overlap was exercised)");

    const resharded = g.lines.find((l) => l.t === "GATEHOUSE_RESHARDED")!;
    assert.equal(resharded.d.old_count, 4);
    assert.equal(resharded.d.new_count, 8);
    assert.equal(resharded.d.trigger, "requested");
    assert.equal(readyLines(g, 8).length, 8, "the new set's READYs follow the switch");
    // After the switch only count-8 sessions deliver; the old ones were closed with 1000.
    const after = g.lines.slice(g.lines.indexOf(resharded) + 1);
    const readies = new Map(readyLines(g, 8).map((l) => [l.d.session_id as string, l]));
    for (const line of after.filter((l) => l.t === "MESSAGE_CREATE")) {
      const session = line.uid.split(":")[1];
      assert.ok(readies.has(session), `line ${line.id} after the switch is from the new set`);
    }
    assert.deepEqual(fake.violations, []);
    const control = await url();
    const status = await (await fetch(`${control}/shards`)).json();
    assert.equal(status.shard_count, 8);
    assert.equal(status.shards.length, 8);
    assert.equal(status.resharding.last.outcome, "switched");
    assert.equal(await metric(control, "gatehouse_reshards_total", '{outcome="switched"}'), 1);
    assert.equal(await metric(control, "gatehouse_shard_count"), 8);
    const removed = await metric(control, "gatehouse_reshard_repeats_removed_total");
    assert.ok(removed !== null && removed > 0, `repeats removed: ${removed}`);
    const c = status.resharding.counts;
    console.log(
      `4 → 8: switched ${resharded.d.took_ms} ms after the trigger; ${sent.length} guild events sent, ` +
        `${counts.size} delivered, ${both} reached both sets, ${removed} repeats removed by the filter, ` +
        `${c.old_dropped} old-set copies dropped after the switch, 0 repeats delivered (so none to mark)`,
    );

    // A clean stop stores the new set's sessions: the next start resumes the 8 without an IDENTIFY.
    g.kill("SIGTERM");
    assert.equal((await g.status).code, 0, g.stderr());
    assert.match(g.stderr(), /resharded 4 → 8 in [\d.]+ s/);
    const identifies = fake.identifies.length;
    const again = spawnGatehouse({ env });
    try {
      await again.waitFor(
        () => (again.stderr().match(/resumed at seq/g) ?? []).length === 8,
        20_000,
        "8 RESUMEs",
      );
      const more = fake.burstGuilds(16);
      await again.waitFor(
        () => deliveredCounts(more, again.lines).size === 16,
        10_000,
        "traffic after restart",
      );
      assert.equal(fake.identifies.length, identifies, "no IDENTIFY after the restart");
      assert.ok(fake.identifies.slice(-8).every((i) => i.count === 8));
    } finally {
      again.kill("SIGKILL");
      await again.status;
    }
  });
});

Deno.test("a close with 4011 reshards to Discord's count instead of stopping with exit 5", async () => {
  await withRun({ shards: 8 }, { DISCORD_SHARD_COUNT: "4" }, async (fake, g) => {
    await g.waitFor(() => g.lines.some((l) => l.t === "GATEHOUSE_RESHARDED"), 40_000, "the switch");
    const resharded = g.lines.find((l) => l.t === "GATEHOUSE_RESHARDED")!;
    assert.equal(resharded.d.trigger, "close_4011");
    assert.deepEqual([resharded.d.old_count, resharded.d.new_count], [4, 8]);
    await g.waitFor(() => readyLines(g, 8).length === 8, 10_000, "8 READY lines");
    const sent = fake.burstGuilds(40);
    await g.waitFor(() => deliveredCounts(sent, g.lines).size === 40, 10_000, "traffic on the new set");
    assert.match(g.stderr(), /set it to 8 \(or leave it out\)/);
    assert.deepEqual(fake.violations, []);
  });
});

Deno.test("the periodic check reshards once the guilds cross [resharding] threshold", async () => {
  // 64 guilds on 4 shards fill 0.64 % of what they hold: over a threshold of 0.5 %.
  await withRun(
    {},
    { GATEHOUSE_RESHARD_INTERVAL: "2s", GATEHOUSE_RESHARD_THRESHOLD: "0.005" },
    async (fake, g) => {
      await g.waitFor(() => readyLines(g, 4).length === 4, 20_000, "4 READY lines");
      fake.acceptCounts([4, 8]);
      fake.setRecommendedShards(8);
      await g.waitFor(() => g.lines.some((l) => l.t === "GATEHOUSE_RESHARDED"), 40_000, "the switch");
      const resharded = g.lines.find((l) => l.t === "GATEHOUSE_RESHARDED")!;
      assert.equal(resharded.d.trigger, "periodic");
      assert.match(
        resharded.d.reason,
        /^64 guilds fill 0\.6 % of 4 shard\(s\) \(threshold 0\.5 %\): 4 → 8 shards$/,
      );
      assert.deepEqual(fake.violations, []);
    },
  );
});

Deno.test("a reshard that would eat into the identify reserve is refused with the reason (409, metric)", async () => {
  await withRun(
    { sessionStartLimit: { total: 1000, remaining: 14 } },
    { GATEHOUSE_IDENTIFY_RESERVE: "4" },
    async (fake, g, url) => {
      await g.waitFor(() => readyLines(g, 4).length === 4, 20_000, "4 READY lines");
      fake.acceptCounts([4, 8]);
      fake.setRecommendedShards(8);
      const control = await url();
      const response = await fetch(`${control}/reshard`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}` },
        body: JSON.stringify({ count: 8 }),
      });
      const body = await response.json();
      assert.equal(response.status, 409);
      assert.equal(body.reason, "budget");
      assert.match(
        body.why,
        /8 new sessions need 8 IDENTIFYs, but only 10 session starts are left today and 4/,
      );
      assert.equal(await metric(control, "gatehouse_reshards_refused_total", '{reason="budget"}'), 1);
      const cli = await shardsCli(["--url", control, "--reshard", "8"]);
      assert.equal(cli.code, 1);
      assert.match(cli.stdout, /not resharding: .*session starts are left today/);
      const bad = await shardsCli(["--url", control, "--reshard", "eight"]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /--reshard takes a positive shard count, not "eight"/);
      assert.equal(fake.identifies.length, 4, "no new shard identified");
      assert.ok(!g.lines.some((l) => l.t === "GATEHOUSE_RESHARDED"));
    },
  );
});

Deno.test("a new set that never becomes READY is given up; the old set never stopped delivering", async () => {
  await withRun({}, { GATEHOUSE_RESHARD_TIMEOUT: "4s" }, async (fake, g, url) => {
    await g.waitFor(() => readyLines(g, 4).length === 4, 20_000, "4 READY lines");
    fake.acceptCounts([4, 8]);
    fake.setRecommendedShards(8);
    fake.withholdReady([8]);
    const control = await url();
    const stop = traffic(fake, 2);
    try {
      const response = await fetch(`${control}/reshard`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      assert.equal(response.status, 202, await response.text());
      await g.waitFor(
        () => /reshard 4 → 8 given up: new shard\(s\) [\d, ]+ of 8 not READY/.test(g.stderr()),
        20_000,
        "abort",
      );
    } finally {
      stop();
    }
    const sent = fake.guildEvents;
    await g.waitFor(
      () => deliveredCounts(sent, g.lines).size === sent.length,
      10_000,
      "every event by the old set",
    );
    const status = await (await fetch(`${control}/shards`)).json();
    assert.equal(status.shard_count, 4);
    assert.equal(status.resharding.last.outcome, "aborted");
    await g.waitFor(() => fake.connections().length === 4, 10_000, "new set closed");
    assert.ok(!g.lines.some((l) => l.t === "GATEHOUSE_RESHARDED"));
    assert.equal(await metric(control, "gatehouse_reshards_total", '{outcome="aborted"}'), 1);
  });
});
