import assert from "node:assert/strict";
import { ConfigError, type FlagName, loadConfig } from "../../src/config/load.ts";
import { KEYS } from "../../src/config/schema.ts";
import { NON_PRIVILEGED_INTENTS } from "../../src/gateway/protocol.ts";

const TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.super-secret-token-value";

interface Setup {
  file?: string;
  env?: Record<string, string>;
  flags?: Partial<Record<FlagName, string>>;
  configPath?: string;
}

function load({ file, env = {}, flags = {}, configPath }: Setup) {
  return loadConfig({
    configPath,
    env: (name) => env[name],
    flags,
    readTextFile: (path) => {
      if (file === undefined) throw new Deno.errors.NotFound(`${path}: not found`);
      return file;
    },
  });
}

function loadError(setup: Setup): string {
  try {
    load(setup);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected ConfigError, got ${error}`);
    return error.message;
  }
  assert.fail("expected a ConfigError");
}

const withToken = { DISCORD_TOKEN: TOKEN };

Deno.test("defaults: only a token is needed; a missing default gatehouse.toml is fine", () => {
  const { config, warnings } = load({ env: withToken });
  assert.equal(config.token.reveal(), TOKEN);
  assert.equal(config.events, null);
  assert.equal(config.intents, NON_PRIVILEGED_INTENTS);
  assert.deepEqual(config.shards, { count: null, ids: null });
  assert.deepEqual(config.api, { version: 10, scheme: "https", host: "discord.com" });
  assert.equal(config.presence, null);
  assert.deepEqual(config.gateway, { compression: "zlib-stream", largeThreshold: 50, identifyReserve: 10 });
  assert.deepEqual(config.store, {
    path: "gatehouse.db",
    journal: true,
    maxAgeMs: 7 * 86_400_000,
    maxSizeBytes: 1e9,
    hardMaxSizeBytes: 0,
    commitIntervalMs: 50,
  });
  assert.deepEqual(config.log, { level: "info" });
  assert.deepEqual(warnings, []);
});

Deno.test("an explicit --config that does not exist is an error", () => {
  assert.equal(
    loadError({ configPath: "nope.toml", env: withToken }),
    "cannot read config file nope.toml: no such file",
  );
});

Deno.test("a missing token says how to set it", () => {
  assert.equal(loadError({}), "no Discord token: set DISCORD_TOKEN or `token` in gatehouse.toml");
  assert.match(loadError({ configPath: "my.toml", file: "" }), /`token` in my\.toml/);
});

Deno.test("'Bot ' prefix is stripped from the token", () => {
  assert.equal(load({ env: { DISCORD_TOKEN: `Bot ${TOKEN}` } }).config.token.reveal(), TOKEN);
});

// Precedence file < env < flag for every key that has all three.
const PRECEDENCE: Array<
  {
    key: string;
    file: string;
    env: [string, string];
    flag: [FlagName, string];
    get: (c: ReturnType<typeof load>["config"]) => unknown;
    want: [unknown, unknown, unknown];
  }
> = [
  {
    key: "events",
    file: 'events = ["READY"]',
    env: ["DISCORD_EVENTS", "MESSAGE_CREATE,GUILD_CREATE"],
    flag: ["events", "TYPING_START"],
    get: (c) => c.events,
    want: [["READY"], ["MESSAGE_CREATE", "GUILD_CREATE"], ["TYPING_START"]],
  },
  {
    key: "intents",
    file: 'intents = ["GUILDS"]',
    env: ["DISCORD_INTENTS", "guilds,guild_messages"],
    flag: ["intents", "33281"],
    get: (c) => c.intents,
    want: [1, 513, 33281],
  },
  {
    key: "shards.count",
    file: "[shards]\ncount = 4",
    env: ["DISCORD_SHARD_COUNT", "8"],
    flag: ["shardCount", "16"],
    get: (c) => c.shards.count,
    want: [4, 8, 16],
  },
  {
    key: "shards.ids",
    file: "[shards]\nids = [0, 1]",
    env: ["DISCORD_SHARD_IDS", "2,3"],
    flag: ["shardIds", "0-3,8"],
    get: (c) => c.shards.ids,
    want: [[0, 1], [2, 3], [0, 1, 2, 3, 8]],
  },
  {
    key: "api.version",
    file: "[api]\nversion = 9",
    env: ["DISCORD_API_VERSION", "10"],
    flag: ["apiVersion", "9"],
    get: (c) => c.api.version,
    want: [9, 10, 9],
  },
  {
    key: "api.scheme",
    file: '[api]\nscheme = "http"',
    env: ["DISCORD_API_SCHEME", "https"],
    flag: ["apiScheme", "http"],
    get: (c) => c.api.scheme,
    want: ["http", "https", "http"],
  },
  {
    key: "api.host",
    file: '[api]\nhost = "a.example"',
    env: ["DISCORD_API_HOST", "127.0.0.1:8080"],
    flag: ["apiHost", "[::1]:9"],
    get: (c) => c.api.host,
    want: ["a.example", "127.0.0.1:8080", "[::1]:9"],
  },
  {
    key: "gateway.compression",
    file: '[gateway]\ncompression = "none"',
    env: ["GATEHOUSE_COMPRESSION", "zstd-stream"],
    flag: ["compression", "zlib-stream"],
    get: (c) => c.gateway.compression,
    want: ["none", "zstd-stream", "zlib-stream"],
  },
  {
    key: "gateway.large_threshold",
    file: "[gateway]\nlarge_threshold = 100",
    env: ["GATEHOUSE_LARGE_THRESHOLD", "200"],
    flag: ["largeThreshold", "250"],
    get: (c) => c.gateway.largeThreshold,
    want: [100, 200, 250],
  },
  {
    key: "store.path",
    file: '[store]\npath = "file.db"',
    env: ["GATEHOUSE_STORE", "env.db"],
    flag: ["store", "flag.db"],
    get: (c) => c.store.path,
    want: ["file.db", "env.db", "flag.db"],
  },
  {
    key: "store.journal",
    file: "[store]\njournal = false",
    env: ["GATEHOUSE_JOURNAL", "true"],
    flag: ["journal", "false"],
    get: (c) => c.store.journal,
    want: [false, true, false],
  },
  {
    key: "control.address",
    file: '[control]\naddress = "127.0.0.1:8000"',
    env: ["GATEHOUSE_CONTROL_ADDRESS", "127.0.0.2:0"],
    flag: ["controlAddress", "off"],
    get: (c) => c.control.address,
    want: [{ hostname: "127.0.0.1", port: 8000 }, { hostname: "127.0.0.2", port: 0 }, null],
  },
  {
    key: "log.level",
    file: '[log]\nlevel = "debug"',
    env: ["GATEHOUSE_LOG_LEVEL", "warning"],
    flag: ["logLevel", "ERROR"],
    get: (c) => c.log.level,
    want: ["debug", "warning", "error"],
  },
];

for (const p of PRECEDENCE) {
  Deno.test(`precedence for ${p.key}: file < env ${p.env[0]} < flag --${p.flag[0]}`, () => {
    assert.deepEqual(p.get(load({ file: p.file, env: withToken }).config), p.want[0]);
    assert.deepEqual(
      p.get(load({ file: p.file, env: { ...withToken, [p.env[0]]: p.env[1] } }).config),
      p.want[1],
    );
    assert.deepEqual(
      p.get(
        load({ file: p.file, env: { ...withToken, [p.env[0]]: p.env[1] }, flags: { [p.flag[0]]: p.flag[1] } })
          .config,
      ),
      p.want[2],
    );
  });
}

Deno.test("every key with a flag is covered by the precedence table", () => {
  const covered = new Set(PRECEDENCE.map((p) => p.key));
  for (const def of KEYS) if (def.flag) assert.ok(covered.has(def.key), def.key);
});

Deno.test("token: file < env", () => {
  assert.equal(load({ file: 'token = "from-file"' }).config.token.reveal(), "from-file");
  assert.equal(
    load({ file: 'token = "from-file"', env: { DISCORD_TOKEN: "from-env" } }).config.token.reveal(),
    "from-env",
  );
});

Deno.test("DISCORD_RAW_INTENTS wins over DISCORD_INTENTS and the file", () => {
  const { config } = load({
    file: 'intents = ["GUILDS"]',
    env: { ...withToken, DISCORD_INTENTS: "GUILD_MESSAGES", DISCORD_RAW_INTENTS: "33026" },
  });
  assert.equal(config.intents, 33026);
});

Deno.test("DISCORD_API_PROTOCOL (Spectacles' code) works; DISCORD_API_SCHEME wins when both are set", () => {
  assert.equal(load({ env: { ...withToken, DISCORD_API_PROTOCOL: "http" } }).config.api.scheme, "http");
  assert.equal(
    load({ env: { ...withToken, DISCORD_API_PROTOCOL: "http", DISCORD_API_SCHEME: "https" } }).config.api
      .scheme,
    "https",
  );
});

Deno.test("intents: names, aliases, case, numbers", () => {
  const intents = (value: string) => load({ file: `intents = ${value}`, env: withToken }).config.intents;
  assert.equal(intents('["GUILDS", "GUILD_MESSAGES"]'), 513);
  assert.equal(intents('["guilds", "Guild_Messages", "MESSAGE_CONTENT"]'), 33281);
  assert.equal(intents('["GUILD_BANS", "GUILD_EMOJIS"]'), 4 | 8);
  assert.equal(intents("53608447"), 53608447);
  assert.equal(intents("0"), 0);
  assert.equal(intents("[]"), 0);
});

Deno.test("intents: unknown names and undefined bits are errors listing what is valid", () => {
  const names = loadError({ file: 'intents = ["GUILDS", "GUILD"]', env: withToken });
  assert.match(
    names,
    /^intents = \["GUILDS","GUILD"\] \(a TOML array\) \(from gatehouse\.toml\) is invalid: must be intent names among GUILDS, .* \(unknown: GUILD\)$/,
  );
  const bits = loadError({ env: { ...withToken, DISCORD_RAW_INTENTS: String(1 << 17) } });
  assert.match(
    bits,
    /^intents = "131072" \(from env DISCORD_RAW_INTENTS\) is invalid: must be only defined intent bits .*undefined bits set: 131072$/,
  );
});

Deno.test("shard ids: ranges, uniqueness, below count", () => {
  assert.deepEqual(load({ env: { ...withToken, DISCORD_SHARD_IDS: "0-2, 5,7-8" } }).config.shards.ids, [
    0,
    1,
    2,
    5,
    7,
    8,
  ]);
  assert.match(loadError({ env: { ...withToken, DISCORD_SHARD_IDS: "1,1" } }), /ids repeat/);
  assert.match(
    loadError({ env: { ...withToken, DISCORD_SHARD_IDS: "a" } }),
    /shards\.ids = "a" \(from env DISCORD_SHARD_IDS\)/,
  );
  assert.equal(
    loadError({ env: { ...withToken, DISCORD_SHARD_COUNT: "4", DISCORD_SHARD_IDS: "2-5" } }),
    "shards.ids = [2,3,4,5] (from env DISCORD_SHARD_IDS) is invalid: ids must be below shards.count (4); 4, 5 are not",
  );
});

Deno.test("presence: TOML table, Spectacles' [presence.game], env JSON", () => {
  const table = load({
    file: '[presence]\nstatus = "dnd"\nafk = true\nactivities = [{ name = "x", type = 3 }]',
    env: withToken,
  }).config.presence;
  assert.deepEqual(table, { since: null, activities: [{ name: "x", type: 3 }], status: "dnd", afk: true });
  const game = load({
    file:
      '[presence]\nstatus = "idle"\n[presence.game]\nname = "test"\ntype = 1\nurl = "https://twitch.tv/x"',
    env: withToken,
  }).config.presence;
  assert.deepEqual(game, {
    since: null,
    activities: [{ name: "test", type: 1, url: "https://twitch.tv/x" }],
    status: "idle",
    afk: false,
  });
  const env =
    load({ env: { ...withToken, DISCORD_PRESENCE: '{"status":"invisible","since":5}' } }).config.presence;
  assert.deepEqual(env, { since: 5, activities: [], status: "invisible", afk: false });
  assert.match(
    loadError({ env: { ...withToken, DISCORD_PRESENCE: '{"status":"busy"}' } }),
    /^presence = "\{\\"status\\":\\"busy\\"\}" \(from env DISCORD_PRESENCE\) is invalid: must be a table with status/,
  );
  assert.match(loadError({ env: { ...withToken, DISCORD_PRESENCE: "{" } }), /must be a JSON object/);
});

Deno.test("error messages name key, value, source and what is allowed", () => {
  assert.equal(
    loadError({ env: { ...withToken, DISCORD_SHARD_COUNT: "abc" } }),
    'shards.count = "abc" (from env DISCORD_SHARD_COUNT) is invalid: must be a positive integer',
  );
  assert.equal(
    loadError({ env: withToken, flags: { largeThreshold: "10" } }),
    "gateway.large_threshold = 10 (from flag --large-threshold) is invalid: must be an integer from 50 to 250",
  );
  assert.equal(
    loadError({ file: '[shards]\ncount = "2"', env: withToken }),
    'shards.count = "2" (a TOML string) (from gatehouse.toml) is invalid: must be a positive integer',
  );
  assert.equal(
    loadError({ env: { ...withToken, GATEHOUSE_COMPRESSION: "gzip" } }),
    'gateway.compression = "gzip" (from env GATEHOUSE_COMPRESSION) is invalid: must be zlib-stream, zstd-stream, none',
  );
  assert.match(
    loadError({ env: { ...withToken, DISCORD_API_HOST: "https://discord.com/api" } }),
    /api\.host = .* without scheme or path/,
  );
  assert.match(
    loadError({ env: { ...withToken, DISCORD_API_VERSION: "8" } }),
    /api\.version = 8 .* must be 9 or 10/,
  );
  assert.match(
    loadError({ env: { ...withToken, DISCORD_EVENTS: "message_create" } }),
    /events = .* upper case/,
  );
});

Deno.test("durations and sizes for retention; the identify reserve", () => {
  const { config } = load({
    file: '[store]\nmax_age = "36h"\nmax_size = "512MiB"\nhard_max_size = "2GB"\ncommit_interval_ms = 25\n' +
      "[gateway]\nidentify_reserve = 50",
    env: withToken,
  });
  assert.equal(config.store.maxAgeMs, 36 * 3_600_000);
  assert.equal(config.store.maxSizeBytes, 512 * 1024 * 1024);
  assert.equal(config.store.hardMaxSizeBytes, 2e9);
  assert.equal(config.gateway.identifyReserve, 50);
  assert.equal(config.store.commitIntervalMs, 25);
  assert.equal(load({ env: withToken }).config.store.commitIntervalMs, 50);
  assert.match(
    loadError({ env: { ...withToken, GATEHOUSE_COMMIT_INTERVAL_MS: "5000" } }),
    /store\.commit_interval_ms = 5000 \(from env GATEHOUSE_COMMIT_INTERVAL_MS\) is invalid: must be an integer from 0 to 1000/,
  );
  assert.equal(load({ env: { ...withToken, GATEHOUSE_STORE_MAX_AGE: "0" } }).config.store.maxAgeMs, 0);
  assert.match(
    loadError({ env: { ...withToken, GATEHOUSE_STORE_MAX_AGE: "a week" } }),
    /store\.max_age = "a week" \(from env GATEHOUSE_STORE_MAX_AGE\) is invalid: must be a duration like "7d"/,
  );
  assert.match(
    loadError({ file: '[store]\nmax_size = "lots"', env: withToken }),
    /store\.max_size = "lots" .* must be a size like "500MB"/,
  );
  assert.match(
    loadError({ env: { ...withToken, GATEHOUSE_JOURNAL: "maybe" } }),
    /store\.journal = "maybe" .* must be true or false/,
  );
});

Deno.test("inspect and replay need no token", () => {
  const { config } = loadConfig({
    env: () => undefined,
    flags: {},
    readTextFile: () => "",
    requireToken: false,
  });
  assert.equal(config.token.isEmpty, true);
});

Deno.test("all errors are reported at once, one per line", () => {
  const message = loadError({
    env: { ...withToken, DISCORD_SHARD_COUNT: "0", GATEHOUSE_LOG_LEVEL: "loud", GATEHOUSE_COMPRESSION: "x" },
  });
  assert.equal(message.split("\n").length, 3);
});

Deno.test("TOML syntax errors give file, line and column", () => {
  const message = loadError({ file: 'token = "x"\n[shards\ncount = 1', env: withToken });
  assert.match(message, /^gatehouse\.toml:2:\d+: invalid TOML: /);
});

Deno.test("unknown keys are errors, with a suggestion when close", () => {
  assert.equal(
    loadError({ file: "[shards]\ncuont = 2", env: withToken }),
    "unknown key shards.cuont in gatehouse.toml (did you mean shards.count?)",
  );
  assert.equal(loadError({ file: "colour = 1", env: withToken }), "unknown key colour in gatehouse.toml");
  assert.equal(
    loadError({ file: "shards = 4", env: withToken }),
    "shards in gatehouse.toml must be a table ([shards]), not a integer",
  );
});

Deno.test("Spectacles keys not supported yet are warnings, not errors", () => {
  const { warnings } = load({
    file: '[broker]\nmessage_timeout = "2m"\n[redis]\npool_size = 8\n[shard_store]\ntype = "redis"',
    env: { ...withToken, SHARD_STORE_PREFIX: "gateway" },
  });
  assert.deepEqual(warnings, [
    "broker.message_timeout in gatehouse.toml is ignored: this version of gatehouse does not support it yet",
    "redis.pool_size in gatehouse.toml is ignored: this version of gatehouse does not support it yet",
    "[shard_store] in gatehouse.toml is ignored: this version of gatehouse does not support it yet",
    "env SHARD_STORE_PREFIX is ignored: this version of gatehouse does not support it yet",
  ]);
});

Deno.test("control: default 127.0.0.1:7979; [prometheus] address/endpoint are aliases; [control] address wins", () => {
  const plain = load({ env: withToken }).config.control;
  assert.deepEqual(plain, {
    address: { hostname: "127.0.0.1", port: 7979 },
    token: null,
    metricsPath: "/metrics",
  });
  const spectacles = load({
    file: '[prometheus]\naddress = "localhost:9090"\nendpoint = "/prom"',
    env: withToken,
  }).config.control;
  assert.deepEqual(spectacles.address, { hostname: "localhost", port: 9090 });
  assert.equal(spectacles.metricsPath, "/prom");
  assert.deepEqual(
    load({
      env: { ...withToken, PROMETHEUS_ADDRESS: "127.0.0.1:9090", GATEHOUSE_CONTROL_ADDRESS: "127.0.0.1:1" },
    })
      .config.control.address,
    { hostname: "127.0.0.1", port: 1 },
  );
  assert.equal(load({ file: '[control]\naddress = "off"', env: withToken }).config.control.address, null);
  assert.deepEqual(
    load({ file: '[control]\naddress = "[::1]:7000"', env: withToken }).config.control.address,
    { hostname: "::1", port: 7000 },
  );
});

Deno.test("control: a non-loopback address needs a token; bad addresses and short tokens are named", () => {
  // Spectacles writes ":9090" for every interface: allowed only with a token.
  assert.match(
    loadError({ file: '[prometheus]\naddress = ":9090"', env: withToken }),
    /control\.address = 0\.0\.0\.0:9090 is reachable from other machines, and control\.token is not set/,
  );
  const secured = load({
    file: '[control]\naddress = "0.0.0.0:7979"',
    env: { ...withToken, GATEHOUSE_CONTROL_TOKEN: "a-long-enough-token-123" },
  }).config.control;
  assert.equal(secured.token, "a-long-enough-token-123");
  assert.match(
    loadError({ file: '[control]\naddress = "localhost"', env: withToken }),
    /control\.address = "localhost" .*must be host:port/,
  );
  assert.match(
    loadError({ env: { ...withToken, GATEHOUSE_CONTROL_ADDRESS: "127.0.0.1:70000" } }),
    /GATEHOUSE_CONTROL_ADDRESS/,
  );
  const short = loadError({ env: { ...withToken, GATEHOUSE_CONTROL_TOKEN: "short" } });
  assert.match(short, /control\.token = <redacted> .*at least 16 characters/);
  assert.ok(!short.includes('short"'));
});

Deno.test("sinks: [broker] type (Spectacles' key) lists one or more; [redis] url, prefix, streams, max_len", () => {
  assert.deepEqual(load({ env: withToken }).config.broker, { types: ["stdout"], group: "gatehouse" });
  const { config } = load({
    file: '[broker]\ntype = ["stdout", "redis"]\ngroup = "bots"\n[redis]\nurl = "redis://10.0.0.5:6380"\n' +
      'prefix = "gw"\nstreams = "single"\nmax_len = 100000\ntls_ca = "/etc/ca.pem"',
    env: withToken,
  });
  assert.deepEqual(config.broker, { types: ["stdout", "redis"], group: "bots" });
  assert.deepEqual(config.redis, {
    url: "redis://10.0.0.5:6380",
    prefix: "gw",
    streams: "single",
    maxLen: 100000,
    tlsCa: "/etc/ca.pem",
  });
  for (const url of ["redis+sentinel://:pw@s1:26379,s2:26380/mymaster", "rediss+cluster://n1:7000,n2:7001"]) {
    assert.equal(load({ env: { ...withToken, REDIS_URL: url } }).config.redis.url, url);
  }
  const noMaster = loadError({ env: { ...withToken, REDIS_URL: "redis+sentinel://:hunter2@s1:26379" } });
  assert.match(noMaster, /redis\.url = <redacted> .*names the master after the hosts/);
  assert.ok(!noMaster.includes("hunter2"));
  const env = load({ env: { ...withToken, BROKER_TYPE: "redis", REDIS_URL: "rediss://u:p@h:6379" } }).config;
  assert.deepEqual(env.broker.types, ["redis"]);
  assert.equal(env.redis.url, "rediss://u:p@h:6379");
  assert.match(
    loadError({ env: { ...withToken, BROKER_TYPE: "kafka" } }),
    /broker\.type = "kafka" \(from env BROKER_TYPE\) is invalid: must be one or more of stdout, redis, amqp/,
  );
  assert.match(loadError({ file: '[broker]\ntype = ["redis", "redis"]', env: withToken }), /broker\.type/);
  // A Redis URL can hold a password: an error never shows it.
  const bad = loadError({ env: { ...withToken, REDIS_URL: "localhost:6379/secret-pass" } });
  assert.match(
    bad,
    /redis\.url = <redacted> \(from env REDIS_URL\) is invalid: must be a redis:\/\/ or rediss:\/\/ URL/,
  );
  assert.ok(!bad.includes("secret-pass"));
  const amqp = load({
    env: {
      ...withToken,
      BROKER_TYPE: "amqp,stdout",
      AMQP_URL: "amqp://u:p@mq:5672/v",
      GATEHOUSE_AMQP_EXCHANGE: "gw",
    },
  }).config;
  assert.deepEqual(amqp.broker.types, ["amqp", "stdout"]);
  assert.deepEqual(amqp.amqp, { url: "amqp://u:p@mq:5672/v", exchange: "gw" });
  assert.match(loadError({ env: { ...withToken, AMQP_URL: "mq:5672" } }), /amqp\.url = <redacted>/);
  const http = load({
    env: {
      ...withToken,
      BROKER_TYPE: "http",
      GATEHOUSE_HTTP_URL: "https://bot.example/events",
      GATEHOUSE_HTTP_AUTHORIZATION: "Bearer x",
    },
  }).config;
  assert.deepEqual(http.http, { url: "https://bot.example/events", authorization: "Bearer x" });
  assert.match(loadError({ env: { ...withToken, BROKER_TYPE: "http" } }), /http\.url is not set/);
});

Deno.test("undocumented event names only warn", () => {
  const { config, warnings } = load({
    env: { ...withToken, DISCORD_EVENTS: "MESSAGE_CREATE,BRAND_NEW_EVENT" },
  });
  assert.deepEqual(config.events, ["MESSAGE_CREATE", "BRAND_NEW_EVENT"]);
  assert.equal(warnings.length, 1);
  assert.match(warnings[0], /BRAND_NEW_EVENT is not a documented Discord event name/);
});

Deno.test("the token never appears in errors, JSON or inspect output", () => {
  const message = loadError({ env: { DISCORD_TOKEN: TOKEN, DISCORD_SHARD_COUNT: "x" } });
  assert.ok(!message.includes(TOKEN));
  const bad = loadError({ file: "token = 42" });
  assert.equal(
    bad,
    "token = <redacted> (from gatehouse.toml) is invalid: must be a non-empty bot token string",
  );
  const { config } = load({ env: withToken });
  assert.ok(!JSON.stringify(config).includes(TOKEN));
  assert.ok(!Deno.inspect(config, { depth: 10 }).includes(TOKEN));
  assert.ok(!String(config.token).includes(TOKEN));
  assert.ok(JSON.stringify(config).includes("<redacted>"));
});

Deno.test("config.example.toml loads and mentions every key, env variable and flag", () => {
  const text = Deno.readTextFileSync(new URL("../../config.example.toml", import.meta.url));
  const { config } = loadConfig({
    configPath: "config.example.toml",
    env: (name) => (name === "DISCORD_TOKEN" ? TOKEN : undefined),
    flags: {},
    readTextFile: () => text,
  });
  // The example shows the defaults.
  assert.equal(config.intents, NON_PRIVILEGED_INTENTS);
  assert.deepEqual(config.api, { version: 10, scheme: "https", host: "discord.com" });
  assert.deepEqual(config.gateway, { compression: "zlib-stream", largeThreshold: 50, identifyReserve: 10 });
  assert.equal(config.store.maxAgeMs, 7 * 86_400_000);
  assert.equal(config.store.hardMaxSizeBytes, 0);
  for (const def of KEYS) {
    const [table, key] = def.key.includes(".") ? def.key.split(".") : [null, def.key];
    if (table) assert.ok(text.includes(`[${table}]`), `[${table}] missing`);
    // presence is a whole table; every other key is a `key =` line (commented when it has no default).
    const line = def.key === "presence" ? /^# \[presence\]$/m : new RegExp(`^#? ?${key} =`, "m");
    assert.match(text, line, `${def.key} missing`);
    for (const env of def.env) assert.ok(text.includes(env), `${env} missing`);
    if (def.flag) assert.ok(text.includes(`--${def.flag.option}`), `--${def.flag.option} missing`);
  }
});
