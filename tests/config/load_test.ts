import assert from "node:assert/strict";
import { ConfigError, type FlagName, loadConfig } from "../../src/config/load.ts";
import { ALL_KEYS } from "../../src/config/keys.ts";
import { NON_PRIVILEGED_INTENTS } from "../../src/discord/intents.ts";

const TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gabcde.super-secret-token-value";

interface Setup {
  file?: string;
  env?: Record<string, string>;
  flags?: Partial<Record<FlagName, string>>;
  configPath?: string;
  /** Other files readTextFile finds (the Redis CA); the config file is `file`. */
  files?: Record<string, string>;
}

function load({ file, env = {}, flags = {}, configPath, files = {} }: Setup) {
  return loadConfig({
    configPath,
    env: (name) => env[name],
    flags,
    readTextFile: (path) => {
      if (path in files) return files[path];
      if (file === undefined || path !== (configPath ?? "gatehouse.toml")) {
        throw new Deno.errors.NotFound(`${path}: not found`);
      }
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
  for (const def of ALL_KEYS) if (def.flag) assert.ok(covered.has(def.path), def.path);
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
    /control\.address = 0\.0\.0\.0:9090 \(from prometheus\.address in gatehouse\.toml\) is reachable from other machines, and control\.token is not set/,
  );
  const secured = load({
    file: '[control]\naddress = "0.0.0.0:7979"',
    env: { ...withToken, GATEHOUSE_CONTROL_TOKEN: "a-long-enough-token-123" },
  }).config.control;
  assert.equal(secured.token?.reveal(), "a-long-enough-token-123");
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
  assert.deepEqual(load({ env: withToken }).config.broker, {
    types: ["stdout"],
    group: "gatehouse",
    format: "gatehouse",
  });
  const { config } = load({
    file: '[broker]\ntype = ["stdout", "redis"]\ngroup = "bots"\n[redis]\nurl = "redis://10.0.0.5:6380"\n' +
      'prefix = "gw"\nstreams = "single"\nmax_len = 100000\ntls_ca = "/etc/ca.pem"\ncommand_claim_idle_ms = 5000',
    env: withToken,
    files: { "/etc/ca.pem": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n" },
  });
  assert.deepEqual(config.broker, { types: ["stdout", "redis"], group: "bots", format: "gatehouse" });
  const { url: redisUrl, ...redis } = config.redis;
  assert.equal(redisUrl.reveal(), "redis://10.0.0.5:6380");
  assert.deepEqual(redis, {
    prefix: "gw",
    streamPrefix: "gw:",
    streams: "single",
    maxLen: 100000,
    commandClaimIdleMs: 5000,
    tlsCa: "/etc/ca.pem",
    tlsCaPem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
  });
  for (const url of ["redis+sentinel://:pw@s1:26379,s2:26380/mymaster", "rediss+cluster://n1:7000,n2:7001"]) {
    assert.equal(load({ env: { ...withToken, REDIS_URL: url } }).config.redis.url.reveal(), url);
  }
  const noMaster = loadError({ env: { ...withToken, REDIS_URL: "redis+sentinel://:hunter2@s1:26379" } });
  assert.match(noMaster, /redis\.url = <redacted> .*names the master after the hosts/);
  assert.ok(!noMaster.includes("hunter2"));
  assert.equal(load({ env: withToken }).config.redis.commandClaimIdleMs, 30_000);
  assert.match(
    loadError({ env: { ...withToken, GATEHOUSE_COMMAND_CLAIM_IDLE_MS: "5" } }),
    /redis\.command_claim_idle_ms = 5 \(from env GATEHOUSE_COMMAND_CLAIM_IDLE_MS\) is invalid: must be an integer from 100/,
  );
  const env = load({ env: { ...withToken, BROKER_TYPE: "redis", REDIS_URL: "rediss://u:p@h:6379" } }).config;
  assert.deepEqual(env.broker.types, ["redis"]);
  assert.equal(env.redis.url.reveal(), "rediss://u:p@h:6379");
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
  assert.equal(amqp.amqp.url.reveal(), "amqp://u:p@mq:5672/v");
  assert.equal(amqp.amqp.exchange, "gw");
  assert.match(loadError({ env: { ...withToken, AMQP_URL: "mq:5672" } }), /amqp\.url = <redacted>/);
  const http = load({
    env: {
      ...withToken,
      BROKER_TYPE: "http",
      GATEHOUSE_HTTP_URL: "https://bot.example/events",
      GATEHOUSE_HTTP_AUTHORIZATION: "Bearer x",
    },
  }).config;
  assert.equal(http.http.url?.reveal(), "https://bot.example/events");
  assert.equal(http.http.authorization?.reveal(), "Bearer x");
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
  for (const def of ALL_KEYS) {
    const [table, key] = def.path.includes(".") ? def.path.split(".") : [null, def.path];
    if (table) assert.ok(text.includes(`[${table}]`), `[${table}] missing`);
    // presence and proxy.cache are whole tables; every other key is a `key =` line (commented when it has no default).
    const line = def.docs.table
      ? new RegExp(`^#? ?\\[${def.path.replace(".", "\\.")}\\]$`, "m")
      : new RegExp(`^#? ?${key} =`, "m");
    assert.match(text, line, `${def.path} missing`);
    for (const env of def.env) assert.ok(text.includes(env), `${env} missing`);
    if (def.flag) assert.ok(text.includes(`--${def.flag.option}`), `--${def.flag.option} missing`);
  }
});

// --- Secrets: URLs checked at load time, typed secrets, tokens without whitespace -------------------

Deno.test("amqp.url and http.url are parsed at load time: errors name key, source and the problem, never the value", () => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [
      { AMQP_URL: "amqp://user:s3cretpass@mqhostname:notaport" },
      /^amqp\.url = <redacted> \(from env AMQP_URL\) is invalid: must be an amqp:\/\/ or amqps:\/\/ URL.* \(the port is not a number from 1 to 65535\)$/,
    ],
    [
      { AMQP_URL: "amqp://user:s3cretpass@mqhostname:0" },
      /amqp\.url = <redacted> .*the port is not a number from 1/,
    ],
    [
      { AMQP_URL: "amqps://user:s3cretpass@mqhostname:65536/v" },
      /amqp\.url = <redacted> .*the port is not a number/,
    ],
    [{ AMQP_URL: "amqp://user:s3cretpass@/vhost" }, /amqp\.url = <redacted> .*\(it has no host\)/],
    [{ AMQP_URL: "amqp://user:s3cretpass@" }, /amqp\.url = <redacted> .*\(it has no host\)/],
    [
      { AMQP_URL: "https://user:s3cretpass@mqhostname" },
      /amqp\.url = <redacted> .*\(the scheme is not amqp:\/\/ or amqps:\/\/\)/,
    ],
    [
      { AMQP_URL: "amqp://user:s3cret pass@mqhostname" },
      /amqp\.url = <redacted> .*\(it contains whitespace\)/,
    ],
    [{ AMQP_URL: "amqp://user:s3cret/pass@mqhostname" }, /amqp\.url = <redacted> .*must be percent-encoded/],
    [
      { BROKER_TYPE: "http", GATEHOUSE_HTTP_URL: "http://user:s3cretpass@exa mple.com/" },
      /^http\.url = <redacted> \(from env GATEHOUSE_HTTP_URL\) is invalid: must be an http:\/\/ or https:\/\/ URL.* \(it contains whitespace\)$/,
    ],
    [
      { GATEHOUSE_HTTP_URL: "https://user:s3cretpass@mqhostname:99999/x" },
      /http\.url = <redacted> .*the port is not/,
    ],
    [
      { GATEHOUSE_HTTP_URL: "https://user:s3cretpass@mqhostname:0/x" },
      /http\.url = <redacted> .*the port is not/,
    ],
    [{ GATEHOUSE_HTTP_URL: "https://user:s3cretpass@/x" }, /http\.url = <redacted> .*\(it has no host\)/],
    [
      { GATEHOUSE_HTTP_URL: "https://user:s3cretpass@[::1/x" },
      /http\.url = <redacted> .*\(it is not a valid URL/,
    ],
    [
      { GATEHOUSE_HTTP_URL: "ftp://user:s3cretpass@mqhostname/x" },
      /http\.url = <redacted> .*\(the scheme is not http/,
    ],
  ];
  for (const [env, pattern] of cases) {
    const message = loadError({ env: { ...withToken, ...env } });
    assert.match(message, pattern, JSON.stringify(env));
    assert.ok(!message.includes("s3cret"), message);
    assert.ok(!message.includes("mqhostname"), message);
  }
  const file = loadError({ file: '[amqp]\nurl = "amqp://u:s3cretpass@mq:x"', env: withToken });
  assert.match(file, /^amqp\.url = <redacted> \(from gatehouse\.toml\) is invalid: .*the port/);
  assert.ok(!file.includes("s3cret"));
  // Good URLs still load.
  for (const url of ["amqp://mq", "amqps://u:p%2Fw@mq:5671/%2F", "amqp://[::1]:5672/v"]) {
    assert.equal(load({ env: { ...withToken, AMQP_URL: url } }).config.amqp.url.reveal(), url);
  }
  for (const url of ["http://127.0.0.1:8080/events?key=abc", "https://u:p@bot.example/x"]) {
    assert.equal(load({ env: { ...withToken, GATEHOUSE_HTTP_URL: url } }).config.http.url?.reveal(), url);
  }
});

Deno.test("tokens: inner whitespace or control characters are errors (value redacted); the ends and 'Bot ' are trimmed", () => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [
      { DISCORD_TOKEN: "first-half-tok.abc\nsecond-half-tok" },
      /^token = <redacted> \(from env DISCORD_TOKEN\) is invalid: .*\(the token contains a line break\)$/,
    ],
    [
      { DISCORD_TOKEN: "Bot first-half-tok.abc second-half-tok" },
      /^token = <redacted> .*contains whitespace/,
    ],
    [{ DISCORD_TOKEN: "first-half-tok.abc\u0000second-half-tok" }, /^token = <redacted> .*control character/],
    [
      { ...withToken, GATEHOUSE_CONTROL_TOKEN: "first-half-tok-1234\r\nsecond-half-tok" },
      /^control\.token = <redacted> \(from env GATEHOUSE_CONTROL_TOKEN\) is invalid: .*contains a line break/,
    ],
    [
      { ...withToken, GATEHOUSE_CONTROL_TOKEN: "first-half-tok-1234 second-half-tok" },
      /^control\.token = <redacted> .*contains whitespace/,
    ],
    [
      { ...withToken, GATEHOUSE_HTTP_AUTHORIZATION: "Bearer first-half-tok\nsecond-half-tok" },
      /^http\.authorization = <redacted> \(from env GATEHOUSE_HTTP_AUTHORIZATION\) is invalid: .*contains a line break/,
    ],
  ];
  for (const [env, pattern] of cases) {
    const message = loadError({ env });
    assert.match(message, pattern, JSON.stringify(env));
    assert.ok(!message.includes("first-half") && !message.includes("second-half"), message);
  }
  const inFile = loadError({ file: 'token = "first-half-tok\\nsecond-half-tok"' });
  assert.match(inFile, /^token = <redacted> \(from gatehouse\.toml\) is invalid: .*line break/);
  assert.ok(!inFile.includes("first-half"));
  assert.equal(load({ env: { DISCORD_TOKEN: `  Bot  ${TOKEN}\n` } }).config.token.reveal(), TOKEN);
  assert.equal(
    load({ env: { ...withToken, GATEHOUSE_CONTROL_TOKEN: " a-long-enough-token-123\n" } }).config.control
      .token
      ?.reveal(),
    "a-long-enough-token-123",
  );
  // An Authorization header has a space in it; that is fine.
  assert.equal(
    load({ env: { ...withToken, GATEHOUSE_HTTP_AUTHORIZATION: "Bearer abc" } }).config.http.authorization
      ?.reveal(),
    "Bearer abc",
  );
});

const ALL_SECRETS = {
  DISCORD_TOKEN: "discord-token-SECRET-value.abc",
  GATEHOUSE_CONTROL_TOKEN: "control-token-SECRET-value",
  GATEHOUSE_HTTP_AUTHORIZATION: "Bearer authorization-SECRET-value",
  REDIS_URL: "redis://:redis-SECRET-pass@127.0.0.1:6379",
  AMQP_URL: "amqp://u:amqp-SECRET-pass@127.0.0.1:5672",
  GATEHOUSE_HTTP_URL: "https://u:http-SECRET-pass@bot.example/x",
};

Deno.test("every secret is a Secret: <redacted> through String, templates, JSON.stringify and Deno.inspect", () => {
  const { config } = load({ env: ALL_SECRETS });
  const secrets = {
    token: config.token,
    "control.token": config.control.token,
    "http.authorization": config.http.authorization,
    "redis.url": config.redis.url,
    "amqp.url": config.amqp.url,
    "http.url": config.http.url,
  };
  for (const [key, secret] of Object.entries(secrets)) {
    assert.ok(secret !== null && typeof secret === "object", `${key} is not a Secret`);
    assert.equal(String(secret), "<redacted>", key);
    assert.equal(`${secret}`, "<redacted>", key);
    assert.equal("" + secret, "<redacted>", key);
    assert.equal(JSON.stringify(secret), '"<redacted>"', key);
    assert.equal(Deno.inspect(secret), "<redacted>", key);
    assert.equal(Deno.inspect(secret, { colors: true }), "<redacted>", key);
  }
  assert.equal(config.control.token?.reveal(), ALL_SECRETS.GATEHOUSE_CONTROL_TOKEN);
  assert.equal(config.http.authorization?.reveal(), ALL_SECRETS.GATEHOUSE_HTTP_AUTHORIZATION);
  assert.equal(config.redis.url.reveal(), ALL_SECRETS.REDIS_URL);
  assert.equal(config.amqp.url.reveal(), ALL_SECRETS.AMQP_URL);
  assert.equal(config.http.url?.reveal(), ALL_SECRETS.GATEHOUSE_HTTP_URL);
  const whole = [
    JSON.stringify(config),
    Deno.inspect(config, { depth: 10 }),
    `${JSON.stringify({ config })}`,
  ];
  for (const text of whole) assert.ok(!text.includes("SECRET"), text);
  // Defaults are Secrets too.
  const defaults = load({ env: withToken }).config;
  assert.equal(String(defaults.redis.url), "<redacted>");
  assert.equal(String(defaults.amqp.url), "<redacted>");
});

Deno.test("every secret is <redacted> through console.log and console.error (a real process)", async () => {
  const code = `
    import { loadConfig } from "./src/config/load.ts";
    const env = ${JSON.stringify(ALL_SECRETS)};
    const { config } = loadConfig({ env: (n) => env[n], flags: {}, readTextFile: () => "" });
    console.log(config);
    console.log("%s %o %O %j", config.amqp.url, config.redis.url, config.http.url, config.control.token);
    console.error(config.token, config.http.authorization, { deep: { deeper: config } });
    console.log(\`\${config.token} \${config.http.url}\`);
  `;
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", code],
    cwd: new URL("../../", import.meta.url),
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(output.stdout);
  const stderr = new TextDecoder().decode(output.stderr);
  assert.equal(output.code, 0, stderr);
  assert.ok(stdout.includes("<redacted>") && stderr.includes("<redacted>"), stdout + stderr);
  assert.ok(!stdout.includes("SECRET"), stdout);
  assert.ok(!stderr.includes("SECRET"), stderr);
});

// --- Config values: trimmed numbers, bounded echoes, ports, sources, every problem at once ----------

Deno.test("numbers and bitfields from env and flags are trimmed", () => {
  const envCases: Array<[string, string, (c: ReturnType<typeof load>["config"]) => unknown, unknown]> = [
    ["DISCORD_RAW_INTENTS", " 513 ", (c) => c.intents, 513],
    ["DISCORD_INTENTS", "\t513\n", (c) => c.intents, 513],
    ["DISCORD_SHARD_COUNT", " 4 ", (c) => c.shards.count, 4],
    ["DISCORD_SHARD_IDS", " 0-1 , 3 \n", (c) => c.shards.ids, [0, 1, 3]],
    ["DISCORD_API_VERSION", " 9 ", (c) => c.api.version, 9],
    ["GATEHOUSE_LARGE_THRESHOLD", " 100\n", (c) => c.gateway.largeThreshold, 100],
    ["GATEHOUSE_IDENTIFY_RESERVE", " 5 ", (c) => c.gateway.identifyReserve, 5],
    ["GATEHOUSE_STORE_MAX_AGE", " 2h ", (c) => c.store.maxAgeMs, 7_200_000],
    ["GATEHOUSE_STORE_MAX_SIZE", " 10MB ", (c) => c.store.maxSizeBytes, 1e7],
    ["GATEHOUSE_STORE_HARD_MAX_SIZE", "\t10MB\n", (c) => c.store.hardMaxSizeBytes, 1e7],
    ["GATEHOUSE_COMMIT_INTERVAL_MS", " 20 ", (c) => c.store.commitIntervalMs, 20],
    ["GATEHOUSE_REDIS_MAX_LEN", " 1000 ", (c) => c.redis.maxLen, 1000],
    ["GATEHOUSE_JOURNAL", " false ", (c) => c.store.journal, false],
    ["GATEHOUSE_CONTROL_ADDRESS", " 127.0.0.1:1234 ", (c) => c.control.address, {
      hostname: "127.0.0.1",
      port: 1234,
    }],
    ["PROMETHEUS_ADDRESS", " 127.0.0.1:1235 ", (c) => c.control.address, {
      hostname: "127.0.0.1",
      port: 1235,
    }],
  ];
  for (const [name, text, get, want] of envCases) {
    assert.deepEqual(get(load({ env: { ...withToken, [name]: text } }).config), want, name);
  }
  const flagCases: Array<[FlagName, string, (c: ReturnType<typeof load>["config"]) => unknown, unknown]> = [
    ["intents", " 513 ", (c) => c.intents, 513],
    ["shardCount", " 4 ", (c) => c.shards.count, 4],
    ["shardIds", " 2 ", (c) => c.shards.ids, [2]],
    ["apiVersion", " 9 ", (c) => c.api.version, 9],
    ["largeThreshold", " 60 ", (c) => c.gateway.largeThreshold, 60],
    ["journal", " true ", (c) => c.store.journal, true],
    ["controlAddress", " 127.0.0.1:1236 ", (c) => c.control.address, { hostname: "127.0.0.1", port: 1236 }],
  ];
  for (const [name, text, get, want] of flagCases) {
    assert.deepEqual(get(load({ env: withToken, flags: { [name]: text } }).config), want, name);
  }
  // A TOML string holding a bitfield is read the same way.
  assert.equal(load({ file: 'intents = " 513 "', env: withToken }).config.intents, 513);
});

Deno.test("a huge bad value is cut to 100 characters in the error, with its length", () => {
  const huge = "x".repeat(1_000_000);
  const count = loadError({ env: { ...withToken, DISCORD_SHARD_COUNT: huge } });
  assert.equal(
    count,
    `shards.count = "${"x".repeat(98)}… (1000000 characters) (from env DISCORD_SHARD_COUNT) is invalid: ` +
      "must be a positive integer",
  );
  const cases: Setup[] = [
    { env: { ...withToken, DISCORD_EVENTS: huge } },
    { env: { ...withToken, DISCORD_INTENTS: "nope,".repeat(200_000) } },
    { env: { ...withToken, DISCORD_PRESENCE: huge } },
    { env: { ...withToken, GATEHOUSE_REDIS_TLS_CA: "/".repeat(1_000_000), BROKER_TYPE: "redis" } },
    { env: withToken, flags: { apiHost: huge } },
    { file: `[store]\npath = ${JSON.stringify(["a".repeat(500_000)])}`, env: withToken },
    { file: `${"k".repeat(1_000_000)} = 1`, env: withToken },
    { file: `[shards]\n${"c".repeat(1_000_000)} = 1`, env: withToken },
    {
      file: "[shards]\ncount = 1\nids = [" + Array.from({ length: 50_000 }, (_, i) => i).join(",") + "]",
      env: withToken,
    },
    { env: { ...withToken, DISCORD_SHARD_COUNT: "1", DISCORD_SHARD_IDS: "0-99999" } },
  ];
  for (const setup of cases) {
    const started = Date.now();
    const message = loadError(setup);
    // The longest "allowed" text (every intent name) is about 600 characters; the value adds at most 100.
    assert.ok(message.length < 1000, `${message.length} characters: ${message.slice(0, 300)}`);
    assert.ok(Date.now() - started < 2000, "took too long");
  }
  assert.match(
    loadError({ env: { ...withToken, DISCORD_INTENTS: "nope,".repeat(200_000) } }),
    /… \(\d+ characters\)/,
  );
});

Deno.test("host:port keys take ports 1-65535 (0 = any free port where listening)", () => {
  assert.match(
    loadError({ file: '[api]\nhost = "127.0.0.1:99999"', env: withToken }),
    /^api\.host = "127\.0\.0\.1:99999" \(a TOML string\) \(from gatehouse\.toml\) is invalid: .*port from 1 to 65535/,
  );
  for (const host of ["127.0.0.1:0", "[::1]:65536", "discord.com:70000", "h:"]) {
    assert.match(loadError({ env: { ...withToken, DISCORD_API_HOST: host } }), /^api\.host = /, host);
  }
  for (const host of ["127.0.0.1:65535", "[::1]:1", "discord.com"]) {
    assert.equal(load({ env: { ...withToken, DISCORD_API_HOST: host } }).config.api.host, host);
  }
  for (
    const [name, address] of [["GATEHOUSE_CONTROL_ADDRESS", "127.0.0.1:99999"], [
      "PROMETHEUS_ADDRESS",
      ":65536",
    ]]
  ) {
    assert.match(
      loadError({ env: { ...withToken, [name]: address } }),
      new RegExp(`from env ${name}\\) is invalid`),
    );
  }
  assert.match(
    loadError({ file: '[prometheus]\naddress = "127.0.0.1:99999"', env: withToken }),
    /^prometheus\.address = "127\.0\.0\.1:99999" .*\(from gatehouse\.toml\) is invalid/,
  );
  assert.deepEqual(
    load({ env: { ...withToken, GATEHOUSE_CONTROL_ADDRESS: "127.0.0.1:0" } }).config.control.address,
    { hostname: "127.0.0.1", port: 0 },
  );
});

Deno.test("errors found after reading every value name where the value came from", () => {
  assert.match(
    loadError({ file: '[prometheus]\naddress = ":9090"', env: withToken }),
    /^control\.address = 0\.0\.0\.0:9090 \(from prometheus\.address in gatehouse\.toml\) is reachable from other machines/,
  );
  assert.match(
    loadError({ env: { ...withToken, GATEHOUSE_CONTROL_ADDRESS: "0.0.0.0:7979" } }),
    /^control\.address = 0\.0\.0\.0:7979 \(from env GATEHOUSE_CONTROL_ADDRESS\) is reachable/,
  );
  assert.match(
    loadError({ env: withToken, flags: { controlAddress: "10.1.2.3:7979" } }),
    /^control\.address = 10\.1\.2\.3:7979 \(from flag --control-address\) is reachable/,
  );
  assert.match(
    loadError({ env: { ...withToken, BROKER_TYPE: "stdout,http" } }),
    /^broker\.type = "stdout,http" \(from env BROKER_TYPE\) includes http, but http\.url is not set: set \[http\] url or GATEHOUSE_HTTP_URL$/,
  );
  assert.match(
    loadError({ file: '[broker]\ntype = ["http"]', env: withToken }),
    /^broker\.type = \["http"\] \(from gatehouse\.toml\) includes http/,
  );
  // The Redis CA is read while loading, so its error names the key and the source.
  assert.equal(
    loadError({ file: '[broker]\ntype = "redis"\n[redis]\ntls_ca = "/nope/ca.pem"', env: withToken }),
    'redis.tls_ca = "/nope/ca.pem" (from gatehouse.toml) cannot be read: no such file',
  );
  assert.match(
    loadError({ env: { ...withToken, BROKER_TYPE: "redis", GATEHOUSE_REDIS_TLS_CA: "/nope/ca.pem" } }),
    /^redis\.tls_ca = "\/nope\/ca\.pem" \(from env GATEHOUSE_REDIS_TLS_CA\) cannot be read: no such file$/,
  );
  assert.match(
    loadError({
      env: { ...withToken, BROKER_TYPE: "redis", GATEHOUSE_REDIS_TLS_CA: "/etc/ca.der" },
      files: { "/etc/ca.der": "\x30\x82binary" },
    }),
    /^redis\.tls_ca = "\/etc\/ca\.der" \(from env GATEHOUSE_REDIS_TLS_CA\) is not a PEM file/,
  );
  const pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  const withCa = load({
    env: { ...withToken, BROKER_TYPE: "redis", GATEHOUSE_REDIS_TLS_CA: "/etc/ca.pem" },
    files: { "/etc/ca.pem": pem },
  }).config.redis;
  assert.equal(withCa.tlsCa, "/etc/ca.pem");
  assert.equal(withCa.tlsCaPem, pem);
  // Not read when Redis is not a sink, nor for inspect/replay (no token needed, no broker files read).
  assert.equal(
    load({ env: { ...withToken, GATEHOUSE_REDIS_TLS_CA: "/nope/ca.pem" } }).config.redis.tlsCaPem,
    null,
  );
  const readOnly = loadConfig({
    env: (name) =>
      ({ BROKER_TYPE: "redis", GATEHOUSE_REDIS_TLS_CA: "/nope/ca.pem" } as Record<string, string>)[name],
    flags: {},
    readTextFile: () => {
      throw new Deno.errors.NotFound("nothing here");
    },
    requireToken: false,
  });
  assert.equal(readOnly.config.redis.tlsCaPem, null);
});

Deno.test("loadConfig lists every problem found, not only the first", () => {
  const lines = loadError({
    file:
      '[broker]\ntype = ["redis", "http"]\n[redis]\ntls_ca = "/nope/ca.pem"\n[control]\naddress = "0.0.0.0:1"',
    env: { ...withToken, DISCORD_SHARD_COUNT: "many", AMQP_URL: "amqp://u:p@h:x" },
  }).split("\n");
  assert.equal(lines.length, 5, lines.join("\n"));
  assert.ok(lines.some((l) => l.startsWith("shards.count = ")));
  assert.ok(lines.some((l) => l.startsWith("amqp.url = <redacted>")));
  assert.ok(lines.some((l) => l.startsWith("control.address = 0.0.0.0:1 ")));
  assert.ok(lines.some((l) => l.startsWith("broker.type = ")));
  assert.ok(lines.some((l) => l.startsWith("redis.tls_ca = ")));
  // A broken file does not hide the problems of env and flags (and its token is not called missing).
  const broken = loadError({
    file: 'token = "x"\n[shards\ncount = 1',
    env: { DISCORD_SHARD_COUNT: "zero" },
    flags: { largeThreshold: "7" },
  }).split("\n");
  assert.equal(broken.length, 3, broken.join("\n"));
  assert.match(broken[0], /^gatehouse\.toml:2:\d+: invalid TOML/);
  const missing = loadError({
    configPath: "nope.toml",
    env: { ...withToken, GATEHOUSE_LOG_LEVEL: "loud" },
  }).split("\n");
  assert.deepEqual(missing.length, 2, missing.join("\n"));
  assert.equal(missing[0], "cannot read config file nope.toml: no such file");
});

Deno.test("cluster keys: off by default; mode, lease and node from file or env, each checked by name", () => {
  const defaults = load({ env: { DISCORD_TOKEN: TOKEN } }).config.cluster;
  assert.deepEqual(defaults, { mode: "off", leaseMs: 15_000, node: null });
  const fromFile = load({
    env: { DISCORD_TOKEN: TOKEN },
    file: '[cluster]\nmode = "redis"\nlease_ms = 6000\nnode = "worker-1"\n',
  }).config.cluster;
  assert.deepEqual(fromFile, { mode: "redis", leaseMs: 6000, node: "worker-1" });
  const fromEnv = load({
    env: {
      DISCORD_TOKEN: TOKEN,
      GATEHOUSE_CLUSTER: " REDIS ",
      GATEHOUSE_CLUSTER_LEASE_MS: "2000",
      GATEHOUSE_CLUSTER_NODE: "host-a:42",
    },
  }).config.cluster;
  assert.deepEqual(fromEnv, { mode: "redis", leaseMs: 2000, node: "host-a:42" });
  for (
    const [env, named] of [
      [{ GATEHOUSE_CLUSTER: "zookeeper" }, /GATEHOUSE_CLUSTER.*"off" or "redis"/s],
      [{ GATEHOUSE_CLUSTER_LEASE_MS: "500" }, /GATEHOUSE_CLUSTER_LEASE_MS.*1000 to 600000/s],
      [{ GATEHOUSE_CLUSTER_NODE: "a b" }, /GATEHOUSE_CLUSTER_NODE.*node name/s],
    ] as const
  ) {
    assert.throws(() => load({ env: { DISCORD_TOKEN: TOKEN, ...env } }), (error: Error) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, named);
      return true;
    });
  }
});

Deno.test("broker.format: the drop-in formats' bare stream names unless a prefix is given, and what does not go with them", () => {
  const env = { DISCORD_TOKEN: TOKEN, BROKER_TYPE: "redis" };
  const of = (extra: Record<string, string>) => load({ env: { ...env, ...extra } }).config;
  assert.equal(of({}).broker.format, "gatehouse");
  assert.equal(of({}).redis.streamPrefix, "gatehouse:");
  for (const format of ["spectacles", "discordjs", "Spectacles"]) {
    const config = of({ GATEHOUSE_BROKER_FORMAT: format });
    assert.equal(config.broker.format, format.toLowerCase());
    assert.equal(config.redis.streamPrefix, "", "bare names, as the consumers read them");
    assert.equal(config.redis.prefix, "gatehouse", "gatehouse's own keys keep theirs");
  }
  assert.equal(
    of({ GATEHOUSE_BROKER_FORMAT: "discordjs", GATEHOUSE_REDIS_PREFIX: "bot1" }).redis.streamPrefix,
    "bot1:",
  );
  assert.equal(
    load({ env: { DISCORD_TOKEN: TOKEN }, file: '[broker]\ntype = "redis"\nformat = "spectacles"\n' }).config
      .broker.format,
    "spectacles",
  );
  assert.match(
    loadError({ env: { ...env, GATEHOUSE_BROKER_FORMAT: "twilight" } }),
    /broker\.format = "twilight" \(from env GATEHOUSE_BROKER_FORMAT\) is invalid: .*"gatehouse", "spectacles" or "discordjs"/,
  );
  assert.match(
    loadError({ env: { ...env, GATEHOUSE_BROKER_FORMAT: "spectacles", GATEHOUSE_REDIS_STREAMS: "single" } }),
    /redis\.streams = "single" .* does not go with broker\.format = "spectacles"/,
  );
  assert.match(
    loadError({ env: { ...env, BROKER_TYPE: "redis,amqp", GATEHOUSE_BROKER_FORMAT: "discordjs" } }),
    /broker\.format = "discordjs" .* has no RabbitMQ convention/,
  );
  const { warnings } = load({ env: { DISCORD_TOKEN: TOKEN, GATEHOUSE_BROKER_FORMAT: "discordjs" } });
  assert.ok(warnings.some((w) => /applies to the redis and amqp sinks only/.test(w)), warnings.join("\n"));
});
