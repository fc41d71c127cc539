/**
 * `[redis] url` as a configuration value: Sentinel and Cluster URLs whose password holds `/`, `?`, `@` or
 * `:` parse exactly (userinfo ends at the last `@` before a valid host list), and no error says any part
 * of the URL, only which part is wrong.
 */
import assert from "node:assert/strict";
import { ConfigError, loadConfig } from "../../src/config/load.ts";
import { parseRedisUrl, redisUrlSecretParts } from "../../src/redis/url.ts";

function parseError(url: string): string {
  try {
    parseRedisUrl(url);
  } catch (error) {
    return (error as Error).message;
  }
  assert.fail(`expected an error for a bad URL`);
}

function loadError(url: string): string {
  try {
    loadConfig({
      env: (name) => ({ DISCORD_TOKEN: "t0ken", REDIS_URL: url })[name],
      flags: {},
      readTextFile: () => "",
    });
  } catch (error) {
    assert.ok(error instanceof ConfigError);
    return error.message;
  }
  assert.fail("expected a ConfigError");
}

Deno.test("sentinel: a password holding / ? @ : is read exactly", () => {
  assert.deepEqual(parseRedisUrl("redis+sentinel://:p/a?s@s@127.0.0.1:26379/mymaster"), {
    kind: "sentinel",
    sentinels: [{ host: "127.0.0.1", port: 26379 }],
    name: "mymaster",
    db: 0,
    username: undefined,
    password: "p/a?s@s",
    sentinelPassword: undefined,
    tls: false,
  });
  assert.deepEqual(
    parseRedisUrl(
      "rediss+sentinel://us%3Aer:p:w/o?r@d:@s1:26379,[::1]:26380,s3/mymaster/2?sentinelPassword=sp",
    ),
    {
      kind: "sentinel",
      sentinels: [{ host: "s1", port: 26379 }, { host: "::1", port: 26380 }, { host: "s3", port: 26379 }],
      name: "mymaster",
      db: 2,
      username: "us:er",
      password: "p:w/o?r@d:",
      sentinelPassword: "sp",
      tls: true,
    },
  );
  // An @ in the query (the sentinel password) is not taken for the end of the userinfo.
  const withQuery = parseRedisUrl("redis+sentinel://:pw@s1:26379/m?sentinelPassword=a@b");
  assert.equal(withQuery.kind, "sentinel");
  if (withQuery.kind === "sentinel") {
    assert.equal(withQuery.password, "pw");
    assert.equal(withQuery.sentinelPassword, "a@b");
    assert.deepEqual(withQuery.sentinels, [{ host: "s1", port: 26379 }]);
  }
  // Percent-encoded forms still decode.
  const encoded = parseRedisUrl("redis+sentinel://:p%2Fa%3Fs%40s@s1/mymaster");
  assert.equal(encoded.kind === "sentinel" && encoded.password, "p/a?s@s");
});

Deno.test("cluster: a password holding / ? @ : is read exactly", () => {
  assert.deepEqual(parseRedisUrl("redis+cluster://:p/a?s@s:x@10.0.0.1:7000,[::1]:7001"), {
    kind: "cluster",
    nodes: [{ host: "10.0.0.1", port: 7000 }, { host: "::1", port: 7001 }],
    username: undefined,
    password: "p/a?s@s:x",
    tls: false,
  });
  assert.deepEqual(parseRedisUrl("rediss+cluster://admin:@@@n1:7000/"), {
    kind: "cluster",
    nodes: [{ host: "n1", port: 7000 }],
    username: "admin",
    password: "@@",
    tls: true,
  });
  // Through the configuration too: the URL is kept as given.
  const url = "redis+cluster://:p/a?s@s:x@10.0.0.1:7000,10.0.0.2:7001";
  const { config } = loadConfig({
    env: (name) => ({ DISCORD_TOKEN: "t0ken", REDIS_URL: url })[name],
    flags: {},
    readTextFile: () => "",
  });
  assert.equal(config.redis.url.reveal(), url);
});

Deno.test("errors say which part is wrong and never any part of the URL", () => {
  const cases: Array<[string, RegExp]> = [
    ["redis+sentinel://:p/a?s@s@127.0.0.1:26379", /names the master after the hosts/],
    ["redis+sentinel://:pwSECRET@goodhost:26379,bad!hostname:1/mymaster", /^host 2 is not host:port$/],
    ["redis+sentinel://:pwSECRET@goodhost:26379,:1/mymaster", /^host 2 is not host:port$/],
    [
      "redis+cluster://:pwSECRET@goodhost:7000,otherhost:70000",
      /^the port of host 2 is not a number from 1 to 65535$/,
    ],
    ["redis+cluster://:pwSECRET@goodhost:0", /^the port of host 1 is not a number from 1 to 65535$/],
    ["redis+cluster://:pwSECRET@goodhost:abc", /^the port of host 1 is not a number from 1 to 65535$/],
    ["redis+cluster://:pwSECRET@/", /at least one host/],
    ["redis+cluster://:pwSECRET@goodhost:7000/0", /takes no path or query after the hosts/],
    ["redis+sentinel://:pwSECRET@goodhost/master/db9", /the database after the master name is not a number/],
    [
      "redis+sentinel://:pwSECRET@goodhost/master?other=SECRET",
      /the only query parameter .* is sentinelPassword/,
    ],
    ["redis+cluster://:pwSECRET%zz@goodhost:7000", /the password is not valid percent-encoding/],
    [
      "redis+sentinel://:pw@goodhost/master?sentinelPassword=%zzSECRET",
      /sentinelPassword is not valid percent-encoding/,
    ],
    ["redis+sentinel://:pw SECRET@goodhost/master", /contains whitespace/],
    ["redis://:pwSECRET@goodhost:99999", /^the port is not a number from 1 to 65535$/],
    ["redis://:pwSECRET@goodhost:0", /^the port is not a number from 1 to 65535$/],
    ["redis://:pw/SECRET@goodhost:6379", /must be percent-encoded/],
    ["redis://:pwSECRET@", /no host/],
    ["redis://:pwSECRET@goodhost:6379/db1", /the database \(the path\) is not a number/],
    ["redis+kafka://:pwSECRET@goodhost", /not a redis:\/\//],
  ];
  for (const [url, pattern] of cases) {
    const message = parseError(url);
    assert.match(message, pattern, url);
    for (
      const part of ["SECRET", "goodhost", "otherhost", "bad!", "p/a", "mymaster", "master/", "db9", "pw"]
    ) {
      assert.ok(!message.includes(part), `${url}: ${message}`);
    }
    const configMessage = loadError(url);
    assert.match(configMessage, /^redis\.url = <redacted> \(from env REDIS_URL\) is invalid: must be /);
    assert.ok(!configMessage.includes("SECRET") && !configMessage.includes("goodhost"), configMessage);
  }
});

Deno.test("the parts of a Redis URL the log redactor must know: userinfo, password (as given and decoded)", () => {
  const parts = redisUrlSecretParts("redis+sentinel://us:p%2Fw@rd@s1:26379/m?sentinelPassword=s%40nt");
  for (const part of ["us:p%2Fw@rd", "p%2Fw@rd", "p/w@rd", "s%40nt", "s@nt"]) {
    assert.ok(parts.includes(part), `${part} in ${JSON.stringify(parts)}`);
  }
  const server = redisUrlSecretParts("rediss://user:p%40ss@h:6379/1");
  for (const part of ["user:p%40ss", "p%40ss", "p@ss"]) assert.ok(server.includes(part), part);
  assert.deepEqual(redisUrlSecretParts("redis://127.0.0.1:6379"), []);
});
