/**
 * Bad stores seen from outside: corrupt, in use by another gatehouse, read-only, and full at runtime.
 * Each gives a clear message and exit code 6; a full store holds events back (nothing acknowledged,
 * nothing lost) and recovers once retention has made room.
 */
import assert from "node:assert/strict";
import { FakeDiscord } from "../fake_discord/server.ts";
import { assertExactlyOnce, caughtUp } from "../helpers/delivery.ts";
import { fakeEnv, runGatehouse, spawnGatehouse } from "../helpers/gatehouse.ts";

async function withFake(fn: (fake: FakeDiscord, dir: string) => Promise<void>, options = {}) {
  const fake = await FakeDiscord.start({ shards: 1, ...options });
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-bad-store-" });
  try {
    await fn(fake, dir);
  } finally {
    await fake.stop();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("a corrupt store: run and inspect exit 6 naming the file", async () => {
  await withFake(async (fake, dir) => {
    const store = `${dir}/gatehouse.db`;
    await Deno.writeTextFile(store, "SQLite format 3\u0000".padEnd(4096, "#") + "garbage".repeat(2000));
    const run = await runGatehouse({ env: { ...fakeEnv(fake.apiHost), GATEHOUSE_STORE: store } });
    assert.equal(run.code, 6, run.stderr);
    assert.match(run.stderr, new RegExp(`store ${store} is corrupt or not a gatehouse store`));
    assert.equal(fake.identifies.length, 0, "Discord is not contacted with a broken store");
    const inspect = await runGatehouse({ command: ["inspect", "--store", store] });
    assert.equal(inspect.code, 6);
    assert.match(inspect.stderr, /corrupt or not a gatehouse store/);
  });
});

Deno.test("a store in use by a running gatehouse: a second run exits 6 naming the owner", async () => {
  await withFake(async (fake, dir) => {
    const env = { ...fakeEnv(fake.apiHost), GATEHOUSE_STORE: `${dir}/gatehouse.db` };
    const first = spawnGatehouse({ env });
    try {
      await first.waitFor(() => first.lines.some((l) => l.t === "READY"), 10_000, "first READY");
      const second = await runGatehouse({ env });
      assert.equal(second.code, 6, second.stderr);
      assert.match(second.stderr, new RegExp(`in use by another gatehouse \\(pid ${first.pid} on `));
    } finally {
      first.kill("SIGTERM");
      await first.status;
    }
    // Once the first has stopped, the store is free again.
    const third = spawnGatehouse({ env });
    await third.waitFor(() => fake.resumes.some((r) => r.ok), 10_000, "third run resumes");
    third.kill("SIGTERM");
    assert.equal((await third.status).code, 0);
  });
});

Deno.test("a read-only store exits 6 saying so", async () => {
  await withFake(async (fake, dir) => {
    const store = `${dir}/gatehouse.db`;
    const env = { ...fakeEnv(fake.apiHost), GATEHOUSE_STORE: store };
    const first = spawnGatehouse({ env });
    await first.waitFor(() => first.lines.some((l) => l.t === "READY"), 10_000, "READY");
    first.kill("SIGTERM");
    await first.status;
    // Root ignores file modes; the immutable attribute stops root too. Where chattr is missing, a
    // store in a directory that cannot be written gives the same kind of error.
    const chattr = await new Deno.Command("chattr", { args: ["+i", store] }).output().catch(() => null);
    const readonly = chattr?.success ? store : "/proc/gatehouse-test.db";
    try {
      const run = await runGatehouse({ env: { ...env, GATEHOUSE_STORE: readonly } });
      assert.equal(run.code, 6, run.stderr);
      assert.match(run.stderr, /read-only|cannot create store|cannot open store/);
    } finally {
      if (chattr?.success) await new Deno.Command("chattr", { args: ["-i", store] }).output();
    }
  });
});

Deno.test("a store that fills up at runtime: events held, nothing lost, recovered once retention makes room", async () => {
  await withFake(async (fake, dir) => {
    const env = {
      ...fakeEnv(fake.apiHost),
      GATEHOUSE_STORE: `${dir}/gatehouse.db`,
      // A tiny hard limit: SQLite's max_page_count makes writes fail when it is reached.
      GATEHOUSE_STORE_HARD_MAX_SIZE: "3MB",
      GATEHOUSE_LOG_LEVEL: "info",
    };
    const g = spawnGatehouse({ env });
    try {
      await g.waitFor(() => g.lines.some((l) => l.t === "READY"), 10_000, "READY");
      // About 8 MB of events, more than twice the limit.
      for (let round = 0; round < 16; round++) {
        fake.burst(0, 400);
        await new Promise((resolve) => setTimeout(resolve, 150));
      }
      await g.waitFor(() => caughtUp(fake, g.lines), 30_000, "every event delivered");
      assertExactlyOnce(fake, g.lines);
      assert.match(g.stderr(), /is full while writing events/);
      assert.match(g.stderr(), /store writable again/);
      assert.match(g.stderr(), /retention pruned \d+ delivered event/);
      assert.doesNotMatch(g.stderr(), /pruned \d+ undelivered/, "only delivered events were pruned");
      const size = (await Deno.stat(`${dir}/gatehouse.db`)).size;
      assert.ok(size <= 3_000_000 + 64 * 1024, `store file is ${size} bytes`);
      assert.deepEqual(fake.violations, []);
    } finally {
      g.kill("SIGTERM");
      await g.status;
    }
  }, { guildsPerShard: 1 });
});

Deno.test("a store path, -wal, -shm or .lock file that is a symbolic link is refused; the file it points to is untouched", async () => {
  for (const planted of ["", "-wal", "-shm", ".lock"]) {
    await withFake(async (fake, dir) => {
      const store = `${dir}/gatehouse.db`;
      const victim = `${dir}/victim.txt`;
      await Deno.writeTextFile(victim, "precious\n");
      await Deno.chmod(victim, 0o644);
      await Deno.symlink(victim, `${store}${planted}`);
      const run = await runGatehouse({ env: { ...fakeEnv(fake.apiHost), GATEHOUSE_STORE: store } });
      assert.equal(run.code, 6, run.stderr);
      assert.match(run.stderr, new RegExp(`${store}${planted} is a symbolic link`));
      assert.equal(await Deno.readTextFile(victim), "precious\n");
      assert.equal((await Deno.stat(victim)).mode! & 0o777, 0o644, "the victim's mode is unchanged");
      assert.equal(fake.identifies.length, 0);
    });
  }
});

Deno.test("a <store>.control that is a symbolic link is replaced by a file of its own, not written through", async () => {
  await withFake(async (fake, dir) => {
    const store = `${dir}/gatehouse.db`;
    const victim = `${dir}/victim.txt`;
    await Deno.writeTextFile(victim, "precious\n");
    await Deno.symlink(victim, `${store}.control`);
    const g = spawnGatehouse({ env: { ...fakeEnv(fake.apiHost), GATEHOUSE_STORE: store } });
    try {
      await g.waitFor(() => g.lines.some((l) => l.t === "READY"), 10_000, "READY");
      for (let i = 0; i < 100 && (await Deno.lstat(`${store}.control`)).isSymlink; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const control = await Deno.lstat(`${store}.control`);
      assert.ok(control.isFile && !control.isSymlink, "a regular file now");
      assert.equal(control.mode! & 0o777, 0o600);
      assert.match(await Deno.readTextFile(`${store}.control`), /"url":"http:\/\/127\.0\.0\.1:\d+"/);
      assert.equal(await Deno.readTextFile(victim), "precious\n");
    } finally {
      g.kill("SIGTERM");
      await g.status;
    }
  });
});
