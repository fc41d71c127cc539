/**
 * Fatal answers from Discord and bad input: each ends with its documented exit code and a message that
 * says what is wrong, and the token never reaches stderr.
 */
import assert from "node:assert/strict";
import { FakeDiscord, type FakeDiscordOptions } from "../fake_discord/server.ts";
import { fakeEnv, runGatehouse, spawnGatehouse } from "../helpers/gatehouse.ts";

const TOKEN = "fake-token-MTEwMDAwMDAwMDAwMDAwMDAx.Gxyzzy.very-secret";

async function withFake(options: FakeDiscordOptions, fn: (fake: FakeDiscord) => Promise<void>) {
  const fake = await FakeDiscord.start({ token: TOKEN, ...options });
  try {
    await fn(fake);
  } finally {
    await fake.stop();
  }
}

Deno.test("HTTP 401 from /gateway/bot: exit 3, 'Discord rejected the token', token not shown", async () => {
  await withFake({}, async (fake) => {
    const wrong = "wrong-token-abcdefghijklmnop";
    const result = await runGatehouse({ env: fakeEnv(fake.apiHost, wrong) });
    assert.equal(result.code, 3, result.stderr);
    assert.match(result.stderr, /Discord rejected the token/);
    assert.ok(!result.stderr.includes(wrong));
    assert.deepEqual(result.lines, []);
  });
});

Deno.test("close 4004 on the gateway: exit 3 with the reason", async () => {
  await withFake({}, async (fake) => {
    const g = spawnGatehouse({ env: fakeEnv(fake.apiHost, TOKEN) });
    await g.waitFor(() => g.lines.some((l) => l.t === "READY"), 10_000, "READY");
    fake.closeWith(0, 4004, "Authentication failed.");
    const status = await g.status;
    assert.equal(status.code, 3, g.stderr());
    assert.match(g.stderr(), /Discord rejected the token \(close 4004 on shard 0\)/);
    assert.ok(!g.stderr().includes(TOKEN));
  });
});

Deno.test("close 4014: exit 4 naming the privileged intents and the developer portal", async () => {
  await withFake({ enabledPrivilegedIntents: 0 }, async (fake) => {
    const result = await runGatehouse({
      env: { ...fakeEnv(fake.apiHost, TOKEN), DISCORD_INTENTS: "GUILDS,GUILD_MEMBERS,MESSAGE_CONTENT" },
    });
    assert.equal(result.code, 4, result.stderr);
    assert.match(result.stderr, /Discord refused the intents: GUILD_MEMBERS, MESSAGE_CONTENT \(close 4014/);
    assert.match(
      result.stderr,
      /Privileged intents must be enabled for the application in the Discord developer portal/,
    );
  });
});

Deno.test("close 4013: exit 4 naming the intents", async () => {
  await withFake({}, async (fake) => {
    const g = spawnGatehouse({ env: { ...fakeEnv(fake.apiHost, TOKEN), DISCORD_RAW_INTENTS: "513" } });
    await g.waitFor(() => g.lines.some((l) => l.t === "READY"), 10_000, "READY");
    fake.closeWith(0, 4013);
    assert.equal((await g.status).code, 4);
    assert.match(g.stderr(), /Discord rejected the intents 513 \(GUILDS, GUILD_MESSAGES\)/);
  });
});

Deno.test("close 4011 (sharding required): exit 5", async () => {
  await withFake({ shards: 1, guildsPerShard: 3000 }, async (fake) => {
    const result = await runGatehouse({ env: fakeEnv(fake.apiHost, TOKEN) });
    assert.equal(result.code, 5, result.stderr);
    assert.match(result.stderr, /Discord requires more shards.*close 4011/);
  });
});

Deno.test("close 4010 (invalid shard): exit 5", async () => {
  await withFake({}, async (fake) => {
    const g = spawnGatehouse({ env: fakeEnv(fake.apiHost, TOKEN) });
    await g.waitFor(() => g.lines.some((l) => l.t === "READY"), 10_000, "READY");
    fake.closeWith(0, 4010);
    assert.equal((await g.status).code, 5);
    assert.match(g.stderr(), /shard \[0, 1\] is invalid \(close 4010\)/);
  });
});

Deno.test("/gateway/bot failing twice with 502 is retried with backoff, then runs", async () => {
  await withFake({}, async (fake) => {
    fake.failRest(2, 502);
    const g = spawnGatehouse({ env: fakeEnv(fake.apiHost, TOKEN) });
    try {
      await g.waitFor(() => g.lines.some((l) => l.t === "READY"), 15_000, "READY");
      assert.equal((g.stderr().match(/GET \/gateway\/bot failed \(HTTP 502/g) ?? []).length, 2);
    } finally {
      g.kill();
      await g.status;
    }
  });
});

Deno.test("an unreachable API ends with exit 1 after retries", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const result = await runGatehouse({
    env: { ...fakeEnv(`127.0.0.1:${port}`, TOKEN) },
    timeoutMs: 60_000,
  });
  assert.equal(result.code, 1, result.stderr);
  assert.match(
    result.stderr,
    /cannot reach http:\/\/127\.0\.0\.1:\d+\/api\/v10\/gateway\/bot.*gave up after 6 attempts/,
  );
});

Deno.test("configuration errors: exit 2 naming key, source, value and what is allowed", async () => {
  const result = await runGatehouse({
    env: { DISCORD_TOKEN: TOKEN, DISCORD_SHARD_COUNT: "many" },
    args: ["--compression", "zstd-stream", "--large-threshold", "7"],
  });
  assert.equal(result.code, 2);
  assert.match(
    result.stderr,
    /shards\.count = "many" \(from env DISCORD_SHARD_COUNT\) is invalid: must be a positive integer/,
  );
  assert.match(result.stderr, /gateway\.large_threshold = 7 \(from flag --large-threshold\) is invalid/);
  assert.ok(!result.stderr.includes(TOKEN));
});

Deno.test("a config file is read; shard ids outside Discord's recommended count are an error", async () => {
  await withFake({ shards: 2 }, async (fake) => {
    const dir = await Deno.makeTempDir();
    const path = `${dir}/gatehouse.toml`;
    await Deno.writeTextFile(
      path,
      `token = "${TOKEN}"\n[shards]\nids = [0, 5]\n[api]\nscheme = "http"\nhost = "${fake.apiHost}"\n`,
    );
    const result = await runGatehouse({ args: ["--config", path] });
    assert.equal(result.code, 2, result.stderr);
    assert.match(result.stderr, /shards\.ids contains 5, but the shard count is 2/);
    assert.ok(!result.stderr.includes(TOKEN));
    await Deno.remove(dir, { recursive: true });
  });
});

Deno.test("usage errors exit 2; --help and --version exit 0", async () => {
  const unknownCommand = await runGatehouse({ command: ["serve"] });
  assert.equal(unknownCommand.code, 2);
  assert.match(unknownCommand.stderr, /unknown command 'serve'/);
  const unknownFlag = await runGatehouse({ command: ["run", "--shards", "3"] });
  assert.equal(unknownFlag.code, 2);
  assert.match(unknownFlag.stderr, /unknown option '--shards'/);
  const badChoice = await runGatehouse({ command: ["run", "--compression", "gzip"] });
  assert.equal(badChoice.code, 2);
  assert.match(badChoice.stderr, /Allowed choices are zlib-stream, zstd-stream, none/);
  const nothing = await runGatehouse({ command: [] });
  assert.equal(nothing.code, 2);
  assert.match(nothing.stderr, /Usage: gatehouse/);
  const help = await runGatehouse({ command: ["run", "--help"] });
  assert.equal(help.code, 0);
  const version = await runGatehouse({ command: ["--version"] });
  assert.equal(version.code, 0);
});

Deno.test("the token never reaches stderr, even at trace level through a whole session", async () => {
  await withFake({}, async (fake) => {
    const g = spawnGatehouse({ env: { ...fakeEnv(fake.apiHost, TOKEN), GATEHOUSE_LOG_LEVEL: "trace" } });
    try {
      await g.waitFor(() => g.lines.some((l) => l.t === "READY"), 10_000, "READY");
      fake.sendReconnect(0);
      await fake.waitFor(() => fake.resumes.some((r) => r.ok), 10_000, "resume");
      g.kill("SIGTERM");
      assert.equal((await g.status).code, 0);
      assert.ok(g.stderr().length > 500, "there were logs");
      assert.ok(!g.stderr().includes(TOKEN), "token in stderr");
      assert.ok(!g.stderr().includes(TOKEN.slice(0, 20)), "part of the token in stderr");
    } finally {
      g.kill("SIGKILL");
      await g.status;
    }
  });
});

Deno.test("bad secret values: exit 2 naming each key and source; nothing of the secrets reaches stderr", async () => {
  const result = await runGatehouse({
    env: {
      DISCORD_TOKEN: "tok-FIRSTHALF\ntok-SECONDHALF",
      BROKER_TYPE: "redis,amqp,http",
      AMQP_URL: "amqp://user:s3cretpass@mqhostname:notaport",
      GATEHOUSE_HTTP_URL: "http://user:s3cretpass@exa mple.com/",
      REDIS_URL: "redis+sentinel://:p/a?s@s@127.0.0.1:26379",
    },
  });
  assert.equal(result.code, 2, result.stderr);
  assert.match(result.stderr, /token = <redacted> \(from env DISCORD_TOKEN\) is invalid: .*line break/);
  assert.match(result.stderr, /amqp\.url = <redacted> \(from env AMQP_URL\) is invalid: .*the port is not/);
  assert.match(
    result.stderr,
    /http\.url = <redacted> \(from env GATEHOUSE_HTTP_URL\) is invalid: .*whitespace/,
  );
  assert.match(
    result.stderr,
    /redis\.url = <redacted> \(from env REDIS_URL\) is invalid: .*names the master/,
  );
  for (const part of ["FIRSTHALF", "SECONDHALF", "s3cret", "mqhostname", "exa mple", "p/a", "s@s"]) {
    assert.ok(!result.stderr.includes(part), `${part} in stderr:\n${result.stderr}`);
  }
});

Deno.test("an unreadable [redis] tls_ca: exit 2 naming the key and where it was set", async () => {
  await withFake({}, async (fake) => {
    const result = await runGatehouse({
      env: {
        ...fakeEnv(fake.apiHost, TOKEN),
        BROKER_TYPE: "redis",
        REDIS_URL: "rediss://127.0.0.1:6379",
        GATEHOUSE_REDIS_TLS_CA: "/nonexistent/gatehouse-ca.pem",
      },
    });
    assert.equal(result.code, 2, result.stderr);
    assert.match(
      result.stderr,
      /redis\.tls_ca = "\/nonexistent\/gatehouse-ca\.pem" \(from env GATEHOUSE_REDIS_TLS_CA\) cannot be read: no such file/,
    );
    assert.deepEqual(fake.identifies.length, 0);
  });
});

/** A TLS listener with the self-signed test certificate, which this machine does not trust. */
function untrustedTls(handler: (request: Request) => Response = () => new Response("no")) {
  return Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: Deno.readTextFileSync(new URL("../fixtures/tls/cert.pem", import.meta.url)),
    key: Deno.readTextFileSync(new URL("../fixtures/tls/key.pem", import.meta.url)),
    onListen: () => {},
  }, handler);
}

Deno.test("an untrusted TLS certificate on the REST API is named, said to be local, and not retried", async () => {
  const server = untrustedTls();
  try {
    const started = Date.now();
    const result = await runGatehouse({
      env: {
        DISCORD_TOKEN: "fake-token",
        DISCORD_API_HOST: `127.0.0.1:${server.addr.port}`,
        GATEHOUSE_LOG_LEVEL: "info",
      },
    });
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr,
      /the TLS certificate of 127\.0\.0\.1:\d+ is not trusted on this machine \(.*certificate/,
    );
    assert.doesNotMatch(result.stderr, /gave up after/);
    assert.ok(Date.now() - started < 10_000, "retrying cannot help a certificate this machine refuses");
  } finally {
    await server.shutdown();
  }
});

Deno.test("an untrusted TLS certificate on the gateway: named, not blamed on Discord, louder after a few failures; start-up says none can connect", async () => {
  const tls = untrustedTls();
  const rest = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () =>
    Response.json({
      url: `wss://127.0.0.1:${tls.addr.port}`,
      shards: 1,
      session_start_limit: { total: 1000, remaining: 1000, reset_after: 0, max_concurrency: 1 },
    }));
  const g = spawnGatehouse({
    env: {
      DISCORD_TOKEN: "fake-token",
      DISCORD_API_SCHEME: "http",
      DISCORD_API_HOST: `127.0.0.1:${rest.addr.port}`,
      GATEHOUSE_LOG_LEVEL: "info",
    },
  });
  try {
    await g.waitFor(() => /"level":"WARNING"[^\n]*reconnecting in/.test(g.stderr()), 20_000, "a warning");
    await g.waitFor(
      () => /none of the 1 not ready can connect/.test(g.stderr()),
      15_000,
      "the start-up line",
    );
    const stderr = g.stderr();
    assert.match(
      stderr,
      /cannot connect: the TLS certificate of 127\.0\.0\.1:\d+ is not trusted on this machine/,
    );
    assert.doesNotMatch(stderr, /closed by Discord/);
    assert.doesNotMatch(stderr, /about \d+ s left/);
    g.kill("SIGTERM");
    assert.equal((await g.status).code, 0);
    assert.match(g.stderr(), /stopped: 0 of 0 connected shard\(s\) closed cleanly \(1 had no connection\)/);
  } finally {
    g.kill("SIGKILL");
    await g.status;
    await tls.shutdown();
    await rest.shutdown();
  }
});
