/**
 * Which parts may import which: the pool reports to interfaces it defines (it imports nothing of the
 * control side), commands use the Redis client of src/redis/, and no CLI command imports another's module
 * for a helper (`gatehouse shards` reads the control file through src/control/).
 */
import assert from "node:assert/strict";

const SRC = new URL("../../src/", import.meta.url);

function importsOf(path: string): string[] {
  const text = Deno.readTextFileSync(new URL(path, SRC));
  return [...text.matchAll(/^(?:import|export)[^"';]*from\s+"([^"]+)"/gm)].map((m) => m[1]);
}

function filesIn(dir: string): string[] {
  return [...Deno.readDirSync(new URL(dir, SRC))]
    .filter((e) => e.isFile && e.name.endsWith(".ts"))
    .map((e) => `${dir}/${e.name}`);
}

Deno.test("layers: src/pool imports nothing from src/control", () => {
  const files = filesIn("pool");
  assert.ok(files.includes("pool/dispatcher.ts"));
  for (const file of files) {
    for (const spec of importsOf(file)) assert.ok(!spec.includes("/control/"), `${file} imports ${spec}`);
  }
});

Deno.test("layers: src/commands imports nothing from src/sinks; cli/shards.ts does not import cli/run.ts", () => {
  for (const file of filesIn("commands")) {
    for (const spec of importsOf(file)) assert.ok(!spec.includes("/sinks/"), `${file} imports ${spec}`);
  }
  const shards = importsOf("cli/shards.ts");
  assert.ok(shards.includes("../control/control_file.ts"), "the scan finds its imports");
  assert.ok(!shards.includes("./run.ts"));
});
