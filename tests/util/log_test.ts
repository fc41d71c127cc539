/**
 * The log redactor: a registered secret never reaches a log line, in text or JSON, whether it is written
 * as given, JSON-escaped (once or twice), as Deno.inspect quotes it, or percent-encoded — and the parts of
 * URL secrets (userinfo, password) are scrubbed too, as libraries print them.
 */
import assert from "node:assert/strict";
import { loadConfig, registerSecrets } from "../../src/config/load.ts";
import { addSecret, logger, redact, setupLogging } from "../../src/util/log.ts";
import { Secret } from "../../src/util/secret.ts";

const FORMATS = ["text", "json"] as const;

/** Logs through the real LogTape setup; returns every line written. */
function capture(format: "text" | "json", emit: (log: ReturnType<typeof logger>) => void): string[] {
  const lines: string[] = [];
  setupLogging({ level: "trace", format, write: (line) => lines.push(line) });
  emit(logger("test"));
  return lines;
}

function assertClean(lines: string[], markers: string[]): void {
  assert.ok(lines.length > 0, "nothing was logged");
  for (const line of lines) {
    for (const marker of markers) assert.ok(!line.includes(marker), `${marker} in ${JSON.stringify(line)}`);
  }
}

Deno.test("a token with a newline, quotes and a backslash is redacted in text and JSON lines, however it is escaped", () => {
  const token = 'tok-FIRSTHALF\ntok-"MIDDLE"\\tok-SECONDHALF';
  addSecret(token);
  for (const format of FORMATS) {
    const lines = capture(format, (log) => {
      log.info("token {token}", { token });
      log.info(`inline ${token}`);
      log.warn("in an object {value}", { value: { nested: { token } } });
      log.error("a library said: {error}", { error: `401 for ${JSON.stringify({ auth: token })}` });
      log.error("encoded: {url}", { url: `https://x.example/?t=${encodeURIComponent(token)}` });
      log.error("{error}", { error: new Error(`rejected ${token}`) });
    });
    assertClean(lines, ["FIRSTHALF", "SECONDHALF", "MIDDLE"]);
    // Every line but the Error's in JSON (JSON.stringify gives `{}` for an Error) shows where it was.
    assert.ok(lines.filter((line) => line.includes("<redacted>")).length >= 5, lines.join(""));
  }
});

Deno.test("URL secrets: the whole URL, its userinfo and its password (as given, decoded, re-encoded) are redacted", () => {
  const env: Record<string, string> = {
    DISCORD_TOKEN: "discord-tokenSECRET",
    // `$` and `+` need no encoding in userinfo; a library that encodes the password writes %24 and %2B.
    AMQP_URL: "amqp://gate:pa$s+w0rdSECRET@127.0.0.1:5672/v",
    GATEHOUSE_HTTP_URL: "https://hook:h%2Fp%40ssSECRET@bot.example/events",
    REDIS_URL: "redis+sentinel://:r/e?d@isSECRET@127.0.0.1:26379/mymaster?sentinelPassword=sentinelSECRET",
    GATEHOUSE_HTTP_AUTHORIZATION: "Bearer bearer-credentialSECRET",
    GATEHOUSE_CONTROL_TOKEN: "control-token-0123456789SECRET",
  };
  const { config } = loadConfig({ env: (name) => env[name], flags: {}, readTextFile: () => "" });
  registerSecrets(config);
  const said = [
    env.AMQP_URL,
    "gate:pa$s+w0rdSECRET",
    "pa$s+w0rdSECRET",
    encodeURIComponent("pa$s+w0rdSECRET"),
    env.GATEHOUSE_HTTP_URL,
    "h%2Fp%40ssSECRET",
    "h/p@ssSECRET",
    new URL(env.GATEHOUSE_HTTP_URL).href,
    env.REDIS_URL,
    "r/e?d@isSECRET",
    encodeURIComponent("r/e?d@isSECRET"),
    "sentinelSECRET",
    "bearer-credentialSECRET",
    env.GATEHOUSE_CONTROL_TOKEN,
  ];
  for (const format of FORMATS) {
    const lines = capture(format, (log) => {
      for (const text of said) {
        log.error("connect failed: {error}", { error: `ECONNREFUSED (${text})` });
        log.error(`inline: ${text}`);
        log.debug("{value}", { value: { text } });
      }
    });
    assertClean(lines, ["SECRET"]);
  }
});

Deno.test("Secret values print as <redacted> in log lines without being registered", () => {
  const secret = new Secret("unregistered-obj-SECRET");
  for (const format of FORMATS) {
    const lines = capture(format, (log) => {
      log.info("secret {secret}", { secret });
      log.info("in an object {value}", { value: { secret } });
      log.info(`template ${secret}`);
    });
    assertClean(lines, ["SECRET", "Secret("]);
    assert.ok(lines.every((line) => line.includes("<redacted>")));
    assert.ok(
      lines[0].includes("secret <redacted>") || lines[0].includes('secret \\"<redacted>\\"'),
      lines[0],
    );
  }
});

Deno.test("fragments under 4 characters are not registered; the whole URL still is", () => {
  const url = "amqp://u:ab1@127.0.0.1:5672/fragment-test";
  const { config } = loadConfig({
    env: (name) => ({ DISCORD_TOKEN: "t0ken-fragment-test", AMQP_URL: url })[name],
    flags: {},
    readTextFile: () => "",
  });
  registerSecrets(config);
  assert.equal(redact("ab1 ab12 tab1e"), "ab1 ab12 tab1e");
  assert.equal(redact(`failed: ${url}`), "failed: <redacted>");
  // The tiniest whole secret is still redacted.
  addSecret("xyz");
  assert.equal(redact("a xyz b"), "a <redacted> b");
});
