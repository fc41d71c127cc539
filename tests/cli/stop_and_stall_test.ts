/**
 * What a reader, a broker, the disk or an operator does must never freeze gatehouse, lose an event or
 * leave a stop hanging: a stdout reader that stops reading, a Sentinel nobody answers, a disk that fills
 * up, SIGHUP, a second signal, a store holding an unusable resume URL. Against the real binary.
 */
import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { FakeDiscord } from "../fake_discord/server.ts";
import { controlUrl, fakeEnv, type Gatehouse, type Line, spawnGatehouse } from "../helpers/gatehouse.ts";
import { freePort } from "../helpers/redis_server.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The first event of a (not invalidated) fake session that is not among `lines` (by uid), or null. */
function firstMissing(fake: FakeDiscord, lines: Line[]): string | null {
  const uids = new Set(lines.map((l) => l.uid));
  for (const session of fake.sessions()) {
    if (session.invalidated) continue;
    for (let seq = 1; seq <= session.lastSeq; seq++) {
      if (!uids.has(`${session.shard}:${session.id}:${seq}`)) return `session ${session.id}: seq ${seq}`;
    }
  }
  return null;
}

/** Every event of every fake session is among `lines` (by uid), once each after de-duplication. */
function assertAllDelivered(fake: FakeDiscord, lines: Line[]): void {
  const missing = firstMissing(fake, lines);
  assert.ok(missing === null, `${missing} delivered`);
}

async function timed<T>(promise: Promise<T>): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  const value = await promise;
  return { value, ms: Date.now() - started };
}

async function withDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-stop-" });
  try {
    return await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test("a stdout reader that stops reading only makes stdout lag: heartbeats, /healthz and SIGTERM go on", async () => {
  await withDir(async (dir) => {
    const store = `${dir}/gatehouse.db`;
    const fake = await FakeDiscord.start({ shards: 2, maxConcurrency: 2, heartbeatIntervalMs: 1000 });
    const env = { ...fakeEnv(fake.apiHost), GATEHOUSE_STORE: store, GATEHOUSE_LOG_LEVEL: "info" };
    const g = spawnGatehouse({ env, stallStdout: true });
    let second: Gatehouse | null = null;
    try {
      await fake.waitFor(() => fake.identifies.length === 2, 15_000, "2 shards identified");
      // Far more than a pipe holds (64 KB): the writes are stuck within a second.
      fake.startTraffic(300);
      await sleep(5000);
      const health = await timed(
        fetch(`${await controlUrl(store)}/healthz`, { signal: AbortSignal.timeout(3000) }),
      );
      assert.equal(health.value.status, 200);
      await health.value.body?.cancel();
      assert.ok(health.ms < 1000, `/healthz took ${health.ms} ms while stdout was stuck`);
      fake.stopTraffic();
      assert.deepEqual(fake.violations, [], "no heartbeat was missed while nobody read stdout");
      assert.ok(fake.connections().every((c) => c.heartbeats >= 4), "heartbeats went on");
      g.kill("SIGTERM");
      // The process itself (g.status also waits for stdout to be read, which nobody does yet).
      const stop = await timed(g.child.status);
      assert.equal(stop.value.code, 0, g.stderr().slice(-2000));
      assert.ok(stop.ms < 15_000, `the stop took ${stop.ms} ms`);
      assert.match(g.stderr(), /sink stdout: \d+ event\(s\) not delivered yet; they wait in the journal/);
      // The reader comes back: what the pipe held, then the next start delivers the rest from the journal.
      g.readStdout();
      await g.status;
      second = spawnGatehouse({ env });
      await second.waitFor(
        () => firstMissing(fake, [...g.lines, ...second!.lines]) === null,
        20_000,
        "every event after the restart",
      );
      assertAllDelivered(fake, [...g.lines, ...second.lines]);
      // Only the line the stop cut in half can be broken; everything else parsed.
      assert.ok(g.badLines.length <= 1, `${g.badLines.length} broken lines`);
      second.kill("SIGTERM");
      assert.equal((await second.status).code, 0);
    } finally {
      g.kill("SIGKILL");
      g.readStdout();
      second?.kill("SIGKILL");
      await Promise.all([g.status, second?.status]);
      fake.stopTraffic();
      await fake.stop();
    }
  });
});

Deno.test("SIGTERM with an unreachable Redis Sentinel is bounded; a second signal ends the stop at once", async () => {
  const fake = await FakeDiscord.start({ shards: 1 });
  const env = {
    ...fakeEnv(fake.apiHost),
    BROKER_TYPE: "stdout,redis",
    REDIS_URL: `redis+sentinel://127.0.0.1:${freePort()}/mymaster`,
    GATEHOUSE_LOG_LEVEL: "info",
  };
  const first = spawnGatehouse({ env });
  const second = spawnGatehouse({ env });
  try {
    await first.waitFor(() => first.lines.some((l) => l.t === "READY"), 15_000, "READY");
    await second.waitFor(() => second.lines.some((l) => l.t === "READY"), 15_000, "READY");
    first.kill("SIGTERM");
    const stop = await timed(first.status);
    assert.equal(stop.value.code, 0, first.stderr().slice(-2000));
    assert.ok(stop.ms < 20_000, `the stop took ${stop.ms} ms`);
    assert.match(
      first.stderr(),
      /stopped: 1 of 1 connected shard\(s\) closed cleanly; delivered this run: stdout \d+, redis 0/,
    );

    second.kill("SIGTERM");
    // The same signal again within a second is taken for a repeat of the first (a hang-up comes twice).
    await sleep(300);
    second.kill("SIGTERM");
    await sleep(1000);
    second.kill("SIGTERM");
    const forced = await timed(second.status);
    assert.ok(forced.ms < 3000, `the second signal took ${forced.ms} ms to end it`);
    assert.equal(forced.value.code, 1);
    assert.match(second.stderr(), /SIGTERM while stopping on SIGTERM: exiting now/);
  } finally {
    first.kill("SIGKILL");
    second.kill("SIGKILL");
    await Promise.all([first.status, second.status]);
    await fake.stop();
  }
});

Deno.test("SIGHUP stops like SIGTERM: sessions closed with 4000 and stored, the next start resumes", async () => {
  await withDir(async (dir) => {
    const fake = await FakeDiscord.start({ shards: 1 });
    const env = {
      ...fakeEnv(fake.apiHost),
      GATEHOUSE_STORE: `${dir}/gatehouse.db`,
      GATEHOUSE_LOG_LEVEL: "info",
    };
    const g = spawnGatehouse({ env });
    let again: Gatehouse | null = null;
    try {
      await g.waitFor(() => g.lines.length >= 3, 15_000, "READY and the guilds");
      g.kill("SIGHUP");
      assert.equal((await g.status).code, 0, g.stderr().slice(-2000));
      assert.match(g.stderr(), /stopping on SIGHUP/);
      assert.deepEqual(fake.clientCloses.map((c) => c.code), [4000]);
      again = spawnGatehouse({ env });
      await fake.waitFor(() => fake.resumes.some((r) => r.ok), 15_000, "a resume");
      assert.equal(fake.identifies.length, 1);
      again.kill("SIGTERM");
      assert.equal((await again.status).code, 0);
    } finally {
      g.kill("SIGKILL");
      again?.kill("SIGKILL");
      await Promise.all([g.status, again?.status]);
      await fake.stop();
    }
  });
});

Deno.test("a stored session whose resume URL is unusable is resumed through the main URL, not a crash loop", async () => {
  await withDir(async (dir) => {
    const store = `${dir}/gatehouse.db`;
    const fake = await FakeDiscord.start({ shards: 1 });
    const env = { ...fakeEnv(fake.apiHost), GATEHOUSE_STORE: store, GATEHOUSE_LOG_LEVEL: "info" };
    const g = spawnGatehouse({ env });
    await g.waitFor(() => g.lines.length >= 3, 15_000, "READY and the guilds");
    g.kill("SIGTERM");
    assert.equal((await g.status).code, 0);
    for (const url of ["not a url", "ws://[::1"]) {
      const db = new DatabaseSync(store);
      db.prepare("UPDATE sessions SET resume_url = ?").run(url);
      db.close();
      const again = spawnGatehouse({ env });
      try {
        await fake.waitFor(
          () => fake.resumes.filter((r) => r.ok).length >= 1,
          15_000,
          `a resume after ${url}`,
        );
        await sleep(500);
        again.kill("SIGTERM");
        assert.equal((await again.status).code, 0, again.stderr().slice(-2000));
        assert.doesNotMatch(again.stderr(), /unexpected failure|Uncaught/);
      } finally {
        again.kill("SIGKILL");
        await again.status;
      }
      fake.resumes.length = 0;
    }
    await fake.stop();
  });
});

/** A small tmpfs of the test's own (root only), unmounted at the end. */
async function withTmpfs(sizeKb: number, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-full-" });
  const mount = await new Deno.Command("mount", {
    args: ["-t", "tmpfs", "-o", `size=${sizeKb}k`, "tmpfs", dir],
  })
    .output();
  assert.ok(mount.success, `mount tmpfs: ${new TextDecoder().decode(mount.stderr)}`);
  try {
    await fn(dir);
  } finally {
    await new Deno.Command("umount", { args: ["-l", dir] }).output();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

Deno.test({
  name:
    "disk full while running: nothing is acknowledged that was not stored; the stop says so; a restart gets it all",
  // Mounting a small file system needs root; CI runs as root.
  ignore: Deno.uid() !== 0,
  fn: () =>
    withTmpfs(6144, async (dir) => {
      const store = `${dir}/gatehouse.db`;
      const fake = await FakeDiscord.start({ shards: 1 });
      const env = { ...fakeEnv(fake.apiHost), GATEHOUSE_STORE: store, GATEHOUSE_LOG_LEVEL: "info" };
      const g = spawnGatehouse({ env });
      let again: Gatehouse | null = null;
      try {
        await g.waitFor(() => g.lines.length >= 3, 15_000, "READY and the guilds");
        fake.startTraffic(100);
        await g.waitFor(() => g.lines.length >= 100, 15_000, "events flow");
        // Fill the file system to the last byte.
        const filler = await Deno.open(`${dir}/filler`, { create: true, write: true });
        const block = new Uint8Array(64 * 1024);
        try {
          for (;;) await filler.write(block);
        } catch {
          // ENOSPC: full
        }
        try {
          for (;;) await filler.write(block.subarray(0, 512));
        } catch {
          // full to the last block
        }
        filler.close();
        await g.waitFor(() => /cannot write to the store/.test(g.stderr()), 15_000, "the store failing");
        await sleep(1000);
        fake.stopTraffic();
        const written = g.lines.length;
        g.kill("SIGTERM");
        const status = await g.status;
        assert.equal(status.code, 6, g.stderr().slice(-3000));
        assert.match(g.stderr(), /\d+ event\(s\) received from Discord were never stored/);
        assert.ok(fake.sessions()[0].lastSeq > written, "some events were received but never stored");
        // Room again: the next start resumes from the stored seq and Discord sends the rest.
        await Deno.remove(`${dir}/filler`);
        again = spawnGatehouse({ env });
        await again.waitFor(
          () => firstMissing(fake, [...g.lines, ...again!.lines]) === null,
          20_000,
          "every event after the restart",
        );
        assert.equal(fake.identifies.length, 1, "resumed, not identified again");
        assertAllDelivered(fake, [...g.lines, ...again.lines]);
        again.kill("SIGTERM");
        assert.equal((await again.status).code, 0, again.stderr().slice(-2000));
      } finally {
        g.kill("SIGKILL");
        again?.kill("SIGKILL");
        await Promise.all([g.status, again?.status]);
        fake.stopTraffic();
        await fake.stop();
      }
    }),
});
