/**
 * The release binary: `deno compile` with the flags of `deno task compile` (scripts/compile.ts), then the
 * binary itself: --help, --version, `run` against the fake Discord until SIGTERM, `inspect` of what it
 * stored (node:sqlite and the journal's writer thread, which only `--include` brings into the binary).
 *
 * `deno compile` downloads Deno's runtime stub (denort) unless it is cached or DENORT_BIN names one. Where
 * that download cannot be made (no internet), the smoke test says so on stderr and ends there; any other
 * compile failure fails it.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { compileArgs, TARGETS } from "../../scripts/compile.ts";
import { VERSION } from "../../src/version.ts";
import { FakeDiscord } from "../fake_discord/server.ts";
import { fakeEnv, ROOT } from "../helpers/gatehouse.ts";

const decoder = new TextDecoder();

/** The line of a failed `deno compile` that says the runtime stub could not be fetched, if it says so. */
function runtimeDownloadFailure(stderr: string): string | null {
  const lines = stderr.split("\n").map((line) => line.replace(/^\s*\d+:\s*/, "").trim());
  return lines.find((line) =>
    /denort/i.test(line) &&
    /error sending request|dns error|connect|timed out|network|unreachable|connection (refused|reset)/i
      .test(line)
  ) ?? null;
}

async function exec(binary: string, args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(binary, { args, env: { NO_COLOR: "1", ...env }, stdin: "null" })
    .output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

Deno.test("a failed runtime download is told apart from other compile errors", () => {
  const offline = [
    "error: Writing deno compile executable to temporary file 'dist/gatehouse.tmp-806a933d15a94d54'",
    "",
    "Caused by:",
    "    0: Setting up base binary.",
    "    1: error sending request for url (https://example.invalid/denort-x86_64-unknown-linux-gnu.zip): " +
    "client error (Connect): dns error: failed to lookup address information",
    "    2: client error (Connect)",
  ].join("\n");
  assert.match(runtimeDownloadFailure(offline)!, /^error sending request for url .*denort/);
  assert.equal(
    runtimeDownloadFailure("TS2353 [ERROR]: Object literal may only specify known properties"),
    null,
  );
  assert.equal(runtimeDownloadFailure('error: Module not found "file:///x/main.ts".'), null);
});

Deno.test("the release workflow builds the five targets with deno task compile, not flags of its own", async () => {
  const workflow = await Deno.readTextFile(join(ROOT, ".github/workflows/release.yml"));
  const targets = [...workflow.matchAll(/^\s*- target: (\S+)$/gm)].map((m) => m[1]);
  assert.deepEqual(targets.sort(), [...TARGETS].sort());
  assert.match(workflow, /run: deno task compile --target \$\{\{ matrix\.target \}\} --output dist\//);
  assert.doesNotMatch(workflow, /deno compile --/, "the flags are scripts/compile.ts's");
  assert.match(workflow, /sha256sum gatehouse-\* > SHA256SUMS/);
});

Deno.test({
  name: "the compiled binary: --help, --version, run against the fake Discord until SIGTERM, inspect",
  ignore: Deno.build.os === "windows", // no SIGTERM to send
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "gatehouse-compile-" });
    try {
      const binary = join(dir, "gatehouse");
      const compiled = await new Deno.Command(Deno.execPath(), {
        args: compileArgs({ output: binary }),
        cwd: ROOT,
        env: { NO_COLOR: "1" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      if (!compiled.success) {
        const stderr = decoder.decode(compiled.stderr);
        const download = runtimeDownloadFailure(stderr);
        if (download !== null) {
          console.warn(
            `compile smoke test skipped: deno compile could not download its runtime (${download})`,
          );
          return;
        }
        assert.fail(`deno ${compileArgs({ output: binary }).join(" ")} failed:\n${stderr}`);
      }

      const help = await exec(binary, ["--help"]);
      assert.equal(help.code, 0, help.stderr);
      const commands = help.stdout.slice(help.stdout.indexOf("Commands:"));
      for (const name of ["run", "shards", "inspect", "replay"]) {
        assert.match(commands, new RegExp(`^  ${name}\\b`, "m"), `--help lists ${name}:\n${help.stdout}`);
      }

      const version = await exec(binary, ["--version"]);
      assert.equal(version.code, 0, version.stderr);
      assert.equal(version.stdout.trim(), VERSION);

      const fake = await FakeDiscord.start({ shards: 1 });
      const store = join(dir, "gatehouse.db");
      try {
        const child = new Deno.Command(binary, {
          args: ["run"],
          cwd: dir,
          env: {
            ...fakeEnv(fake.apiHost),
            NO_COLOR: "1",
            GATEHOUSE_STORE: store,
            GATEHOUSE_CONTROL_ADDRESS: "127.0.0.1:0",
          },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).spawn();
        let stdout = "";
        let stderr = "";
        const reading = Promise.all([
          (async () => {
            for await (const chunk of child.stdout) stdout += decoder.decode(chunk, { stream: true });
          })(),
          (async () => {
            for await (const chunk of child.stderr) stderr += decoder.decode(chunk, { stream: true });
          })(),
        ]);
        const lines = () => stdout.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line));
        const deadline = Date.now() + 20_000;
        let exited = false;
        child.status.then(() => (exited = true));
        while (!lines().some((line) => line.t === "READY")) {
          if (exited || Date.now() > deadline) {
            child.kill("SIGKILL");
            await reading;
            assert.fail(`no READY line from the binary (exited: ${exited}); stderr:\n${stderr.slice(-3000)}`);
          }
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        child.kill("SIGTERM");
        const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
        const status = await child.status;
        clearTimeout(timer);
        await reading;
        assert.equal(status.code, 0, `exit on SIGTERM; stderr:\n${stderr.slice(-3000)}`);
        const ready = lines().find((line) => line.t === "READY");
        assert.equal(ready.shard, 0);
        assert.equal(ready.op, 0);
        assert.deepEqual(fake.violations, []);

        // What the run stored, read back by the binary: the journal's writer thread ran inside it.
        const inspect = await exec(binary, ["inspect", "--json", "--store", store]);
        assert.equal(inspect.code, 0, inspect.stderr);
        const report = JSON.parse(inspect.stdout);
        assert.equal(report.events.count, lines().length);
        assert.ok(report.events.perType.some((row: { t: string }) => row.t === "READY"), inspect.stdout);
      } finally {
        await fake.stop();
      }
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
