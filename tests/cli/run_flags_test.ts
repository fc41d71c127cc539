import assert from "node:assert/strict";
import type { Option } from "commander";
import { buildProgram } from "../../main.ts";
import { loadRunConfig, runFlagOptions, type RunFlags } from "../../src/cli/config.ts";
import { camelCase } from "../../src/config/key.ts";
import { ALL_KEYS } from "../../src/config/keys.ts";

const flagged = ALL_KEYS.filter((key) => key.flag);

Deno.test("run has one option per key with a flag, and --config; its help names the key's env variables", () => {
  const run = buildProgram(() => {}).commands.find((command) => command.name() === "run");
  assert.ok(run);
  const options = run.options.map((option) => option.long).filter((long) => long !== "--help");
  assert.deepEqual(options, ["--config", ...flagged.map((key) => `--${key.flag!.option}`)]);
  for (const key of flagged) {
    const found: Option = run.options.find((o) => o.long === `--${key.flag!.option}`)!;
    assert.equal(found.attributeName(), camelCase(key.flag!.option));
    assert.ok(found.required, `${key.path}: the flag takes a value`);
    for (const env of key.env) assert.ok(found.description.includes(env), `${key.path}: ${env} in --help`);
  }
  assert.deepEqual(
    runFlagOptions().find((o) => o.long === "--compression")?.argChoices,
    ["zlib-stream", "zstd-stream", "none"],
  );
});

Deno.test("parsed run flags reach the loader under the key's name", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/gatehouse.toml`;
  await Deno.writeTextFile(path, 'token = "abc.def.ghi"\n[shards]\ncount = 2\n');
  try {
    let seen: RunFlags | undefined;
    const program = buildProgram(() => {});
    const run = program.commands.find((command) => command.name() === "run")!;
    run.action((flags: RunFlags) => {
      seen = flags;
    });
    await program.parseAsync(["run", "--shard-count", "4", "--api-scheme", "http", "-c", path], {
      from: "user",
    });
    assert.deepEqual(seen, { shardCount: "4", apiScheme: "http", config: path });
    const { config } = loadRunConfig(seen!);
    assert.equal(config.shards.count, 4);
    assert.equal(config.api.scheme, "http");
    assert.equal(config.token.reveal(), "abc.def.ghi");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
