/**
 * `gatehouse run` options seen from outside: compression none, the events allow-list, presence and
 * large_threshold in IDENTIFY, SIGINT, and a reader that closes stdout.
 */
import assert from "node:assert/strict";
import { Redis } from "ioredis";
import { FakeDiscord } from "../fake_discord/server.ts";
import { caughtUp } from "../helpers/delivery.ts";
import { fakeEnv, spawnGatehouse } from "../helpers/gatehouse.ts";

Deno.test("compression none, events allow-list, presence and large_threshold from the config file; SIGINT exits 0", async () => {
  const fake = await FakeDiscord.start({ shards: 1 });
  const dir = await Deno.makeTempDir();
  const config = `${dir}/gatehouse.toml`;
  await Deno.writeTextFile(
    config,
    [
      'events = ["MESSAGE_CREATE", "GUILD_CREATE"]',
      "[gateway]",
      'compression = "none"',
      "large_threshold = 120",
      "[presence]",
      'status = "dnd"',
      'activities = [{ name = "the gateway", type = 3 }]',
    ].join("\n"),
  );
  const g = spawnGatehouse({ env: fakeEnv(fake.apiHost), args: ["--config", config] });
  try {
    await g.waitFor(() => g.lines.filter((l) => l.t === "GUILD_CREATE").length === 2, 10_000, "GUILD_CREATE");
    fake.startTraffic(200);
    await g.waitFor(() => g.lines.filter((l) => l.t === "MESSAGE_CREATE").length > 20, 10_000, "messages");
    fake.stopTraffic();
    assert.deepEqual(new Set(g.lines.map((l) => l.t)), new Set(["GUILD_CREATE", "MESSAGE_CREATE"]));
    assert.equal(fake.connections()[0].compression, "none");
    assert.equal(fake.identifies[0].largeThreshold, 120);
    assert.deepEqual(fake.identifies[0].presence, {
      since: null,
      activities: [{ name: "the gateway", type: 3 }],
      status: "dnd",
      afk: false,
    });
    // Filtered events still count: the heartbeat carries the real last seq, not the last forwarded one.
    const lastSeq = fake.sessions()[0].lastSeq;
    fake.requestHeartbeat(0);
    await fake.waitFor(
      () => fake.connections()[0]?.lastHeartbeatSeq === lastSeq,
      5000,
      "heartbeat with last seq",
    );
    g.kill("SIGINT");
    assert.equal((await g.status).code, 0);
    await fake.waitFor(() => fake.clientCloses.length === 1, 3000, "close frame");
    assert.equal(fake.clientCloses[0].code, 4000);
    assert.match(g.stderr(), /stopping on SIGINT/);
  } finally {
    g.kill("SIGKILL");
    await g.status;
    await fake.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a reader closing stdout (gatehouse run | head) stops gatehouse cleanly", async () => {
  const fake = await FakeDiscord.start({ shards: 1 });
  const dir = await Deno.makeTempDir();
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "main.ts", "run"],
    cwd: new URL("../../", import.meta.url),
    env: { ...fakeEnv(fake.apiHost), NO_COLOR: "1", GATEHOUSE_STORE: `${dir}/gatehouse.db` },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  try {
    const reader = child.stdout.getReader();
    const first = await reader.read();
    assert.ok(first.value && first.value.length > 0);
    await reader.cancel();
    fake.startTraffic(500);
    const status = await child.status;
    const stderr = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer());
    assert.equal(status.code, 0, stderr);
    assert.match(stderr, /stopping: cannot write to stdout/);
    await fake.waitFor(() => fake.clientCloses.length === 1, 3000, "close frame");
    assert.equal(fake.clientCloses[0].code, 4000);
  } finally {
    fake.stopTraffic();
    try {
      child.kill("SIGKILL");
    } catch {
      // exited
    }
    await fake.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a large GUILD_CREATE burst with a fast heartbeat is not mistaken for a zombie", async () => {
  const fake = await FakeDiscord.start({
    shards: 1,
    guildsPerShard: 4,
    largeGuildMembers: 8000,
    // Short next to Discord's ~41 s, yet long enough that a loaded 2-core machine running the suite in
    // parallel does not starve the process for a whole interval (300 ms did, now and then).
    heartbeatIntervalMs: 1000,
  });
  const g = spawnGatehouse({ env: fakeEnv(fake.apiHost) });
  try {
    await g.waitFor(() => g.lines.filter((l) => l.t === "GUILD_CREATE").length === 4, 15_000, "GUILD_CREATE");
    fake.startTraffic(300);
    await new Promise((resolve) => setTimeout(resolve, 3500));
    fake.stopTraffic();
    await g.waitFor(() => caughtUp(fake, g.lines), 10_000, "caught up");
    assert.equal(g.lines.find((l) => l.t === "GUILD_CREATE")!.d.members.length, 8000);
    assert.deepEqual(fake.resumes, [], "no reconnect");
    assert.equal(fake.identifies.length, 1);
    assert.deepEqual(fake.violations, []);
  } finally {
    g.kill("SIGKILL");
    await g.status;
    await fake.stop();
  }
});

Deno.test("what a library prints (ioredis' password warning) arrives as a JSON log line, never as plain text", async () => {
  const fake = await FakeDiscord.start({ shards: 1 });
  const prefix = `gatehouse-test-${crypto.randomUUID().slice(0, 8)}`;
  // The local Redis needs no password: ioredis warns with console.warn when one is given.
  const g = spawnGatehouse({
    env: {
      ...fakeEnv(fake.apiHost),
      BROKER_TYPE: "stdout,redis",
      REDIS_URL: "redis://:not-needed-secret@127.0.0.1:6379",
      GATEHOUSE_REDIS_PREFIX: prefix,
      GATEHOUSE_LOG_LEVEL: "info",
    },
  });
  try {
    await g.waitFor(() => /does not require a password/.test(g.stderr()), 15_000, "ioredis' warning");
    g.kill("SIGTERM");
    await g.status;
    const lines = g.stderr().split("\n").filter((l) => l !== "");
    for (const line of lines) JSON.parse(line); // every stderr line is JSON
    const warning = lines.map((l) => JSON.parse(l)).find((l) =>
      /does not require a password/.test(l.message)
    );
    assert.equal(warning.logger, "gatehouse.library");
    assert.equal(warning.level, "WARNING");
    assert.doesNotMatch(g.stderr(), /not-needed-secret/);
    assert.deepEqual(g.badLines, []);
  } finally {
    g.kill("SIGKILL");
    await g.status;
    await fake.stop();
    const client = new Redis("redis://127.0.0.1:6379");
    const keys = [...await client.keys(`${prefix}:*`), ...await client.keys(`{${prefix}:*`)];
    if (keys.length > 0) await client.del(...keys);
    client.disconnect();
  }
});
