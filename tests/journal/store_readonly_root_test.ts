/**
 * A store opens (and is created) where the only writable directory is the store's own: a container
 * with a read-only root filesystem and no writable /tmp, as a Kubernetes pod with
 * `readOnlyRootFilesystem: true` runs. SQLite would put its temporary files (statement journals) in a temp
 * directory; gatehouse keeps them in memory (`PRAGMA temp_store = MEMORY`, src/journal/store.ts).
 * Run under bubblewrap (`bwrap --ro-bind / /`) where it is installed and may make namespaces; skipped,
 * with a line that says so, where it cannot.
 */
import assert from "node:assert/strict";

const STORE_MODULE = new URL("../../src/journal/store.ts", import.meta.url).href;

function bwrapUsable(): string | null {
  try {
    const probe = new Deno.Command("bwrap", {
      args: ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--", "true"],
      stdout: "null",
      stderr: "piped",
    }).outputSync();
    return probe.success ? null : new TextDecoder().decode(probe.stderr).trim().split("\n")[0];
  } catch (error) {
    return (error as Error).message;
  }
}

Deno.test("store: opens, migrates and writes with a read-only root and no writable temp directory", async () => {
  const why = bwrapUsable();
  if (why !== null) {
    console.warn(`read-only-root store test skipped: bubblewrap cannot run here (${why})`);
    return;
  }
  const dir = await Deno.makeTempDir({ dir: "/var/tmp", prefix: "gatehouse-ro-" });
  try {
    const script = `${dir}/open.ts`;
    await Deno.writeTextFile(
      script,
      `import { Store } from ${JSON.stringify(STORE_MODULE)};\n` +
        `const store = Store.open(Deno.args[0]);\n` +
        `store.transaction("a test write", () => store.setMeta("probe", "yes"));\n` +
        `console.log(JSON.stringify({ probe: store.meta("probe") }));\n`,
    );
    // Everything read-only but the store's directory: no /tmp, /var/tmp or cache to write to.
    const out = await new Deno.Command("bwrap", {
      args: [
        "--ro-bind",
        "/",
        "/",
        "--bind",
        dir,
        dir,
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--",
        Deno.execPath(),
        "run",
        "--allow-all",
        "--no-lock",
        script,
        `${dir}/gatehouse.db`,
      ],
      env: { NO_COLOR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.deepEqual(JSON.parse(new TextDecoder().decode(out.stdout)), { probe: "yes" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
