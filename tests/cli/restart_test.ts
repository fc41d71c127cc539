/**
 * Lossless by construction: kill -9 gatehouse in the middle of a flood, start it again on the same
 * store, five times. Across every run's stdout, every event the fake Discord sent appears; repeats
 * (events written but not yet acknowledged when the process died) carry the same id and are at most one
 * batch per crash. A clean SIGTERM restart repeats nothing. Restarts RESUME: no new IDENTIFY.
 */
import assert from "node:assert/strict";
import { FakeDiscord } from "../fake_discord/server.ts";
import { assertExactlyOnce, CatchUp, caughtUp } from "../helpers/delivery.ts";
import { fakeEnv, type Line, spawnGatehouse } from "../helpers/gatehouse.ts";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
/** A batch is cut at 1 MB of payloads (journal.ts maxBatchBytes). */
const MAX_BATCH_BYTES = 1024 * 1024;

/** Lines of all runs in order, without the repeats; checks each repeat against what it repeats. */
function mergeRuns(runs: Line[][]): { merged: Line[]; repeatsPerRun: number[] } {
  const seen = new Map<number, string>();
  const merged: Line[] = [];
  const repeatsPerRun: number[] = [];
  runs.forEach((lines, run) => {
    let repeats = 0;
    let repeatBytes = 0;
    let prefix = true;
    for (const line of lines) {
      const text = JSON.stringify(line);
      const before = seen.get(line.id);
      if (before !== undefined) {
        assert.equal(text, before, `id ${line.id} was repeated with different content`);
        assert.ok(prefix, `run ${run}: repeated id ${line.id} after new events (repeats must come first)`);
        repeats++;
        repeatBytes += text.length;
        continue;
      }
      prefix = false;
      seen.set(line.id, text);
      merged.push(line);
    }
    assert.ok(
      // A delivery holds at most MAX_BATCH_BYTES of payloads; each line adds its id, uid and shard.
      repeatBytes <= MAX_BATCH_BYTES + repeats * 128,
      `run ${run}: ${repeats} repeats (${repeatBytes} bytes) exceed one batch`,
    );
    repeatsPerRun.push(repeats);
  });
  return { merged, repeatsPerRun };
}

Deno.test("kill -9 five times in a flood of 4 shards: nothing lost, repeats only with the same id, one batch at most", async () => {
  const fake = await FakeDiscord.start({
    shards: 4,
    maxConcurrency: 4,
    guildsPerShard: 2,
    precompressed: true,
  });
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-crash-" });
  const env = {
    ...fakeEnv(fake.apiHost),
    GATEHOUSE_STORE: `${dir}/gatehouse.db`,
    GATEHOUSE_LOG_LEVEL: "info",
  };
  const runs: Line[][] = [];
  const partialLines: number[] = [];
  try {
    fake.startFlood();
    for (let crash = 0; crash < 5; crash++) {
      const resumedBefore = fake.resumes.filter((r) => r.ok).length;
      const g = spawnGatehouse({ env });
      // Killed while its shards receive the flood (not while it still writes out the last run's backlog).
      // The first run is killed only once all 4 are ready: a shard killed between its IDENTIFY and READY
      // has no session to resume, and identifies again (seen once in CI on a loaded machine).
      await g.waitFor(
        () =>
          g.lines.length > 2000 &&
          (crash === 0
            ? fake.identifies.length === 4 && /all 4 shard\(s\) ready/.test(g.stderr())
            : fake.resumes.filter((r) => r.ok).length >= resumedBefore + 4),
        20_000,
        `run ${crash} receiving`,
      );
      await sleep(200 + Math.random() * 1200);
      g.kill("SIGKILL");
      const status = await g.status;
      assert.equal(status.signal, "SIGKILL");
      // The kill may cut the last line short; that event is delivered again by the next run.
      assert.ok(g.badLines.length <= 1, `run ${crash}: ${g.badLines.length} bad lines`);
      partialLines.push(g.badLines.length);
      runs.push([...g.lines]);
      await sleep(300 + Math.random() * 700);
    }
    fake.stopFlood();
    const last = spawnGatehouse({ env });
    // The journal took the whole flood while this test read stdout more slowly: the last run delivers
    // the backlog (often 200 000 events or more) before it has caught up.
    const catchUp = new CatchUp();
    await last.waitFor(() => catchUp.check(fake, ...runs, last.lines), 120_000, "final run caught up");
    last.kill("SIGTERM");
    assert.equal((await last.status).code, 0, last.stderr());
    runs.push([...last.lines]);

    const { merged, repeatsPerRun } = mergeRuns(runs);
    const report = assertExactlyOnce(fake, merged);
    assert.deepEqual(fake.violations, []);
    assert.equal(fake.identifies.length, 4, "restarts resume, they do not identify");
    assert.ok(fake.resumes.filter((r) => r.ok).length >= 5 * 4, `resumes: ${fake.resumes.length}`);
    assert.ok(fake.sessions().every((s) => !s.invalidated && !s.expired));
    assert.match(last.stderr(), /resuming 4 stored session\(s\)/);
    console.log(
      `crash test: ${report.lines} events over ${runs.length} runs, repeats per restart ${
        repeatsPerRun.slice(1).join(", ")
      }, ` +
        `cut lines ${partialLines.join(", ")}, sessions ${
          fake.sessions().map((s) => s.lastSeq).join("/")
        } events each`,
    );
  } finally {
    fake.stopFlood();
    await fake.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a clean SIGTERM restart repeats nothing and resumes without IDENTIFY", async () => {
  const fake = await FakeDiscord.start({ shards: 2, maxConcurrency: 2 });
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-restart-" });
  const env = { ...fakeEnv(fake.apiHost), GATEHOUSE_STORE: `${dir}/gatehouse.db` };
  const runs: Line[][] = [];
  try {
    fake.startTraffic(300);
    for (let run = 0; run < 3; run++) {
      const g = spawnGatehouse({ env });
      await g.waitFor(() => g.lines.length > 200, 15_000, `run ${run}`);
      g.kill("SIGTERM");
      assert.equal((await g.status).code, 0, g.stderr());
      assert.deepEqual(g.badLines, []);
      runs.push([...g.lines]);
      // Events keep coming while gatehouse is down: Discord buffers them for the session.
      await sleep(500);
    }
    fake.stopTraffic();
    const last = spawnGatehouse({ env });
    await last.waitFor(() => caughtUp(fake, [...runs.flat(), ...last.lines]), 15_000, "caught up");
    last.kill("SIGTERM");
    assert.equal((await last.status).code, 0);
    runs.push([...last.lines]);

    const all = runs.flat();
    assert.equal(new Set(all.map((l) => l.id)).size, all.length, "no id repeats after clean stops");
    assertExactlyOnce(fake, all);
    assert.equal(fake.identifies.length, 2);
    assert.deepEqual(fake.clientCloses.map((c) => c.code), Array(8).fill(4000));
    assert.deepEqual(fake.violations, []);
  } finally {
    fake.stopTraffic();
    await fake.stop();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("journal off: kill -9 in traffic loses nothing (Discord replays from the last checkpoint), ids are never reused", async () => {
  const fake = await FakeDiscord.start({ shards: 2, maxConcurrency: 2, guildsPerShard: 2 });
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-crash-off-" });
  const env = {
    ...fakeEnv(fake.apiHost),
    GATEHOUSE_STORE: `${dir}/gatehouse.db`,
    GATEHOUSE_JOURNAL: "false",
    GATEHOUSE_LOG_LEVEL: "info",
  };
  const first = spawnGatehouse({ env });
  let second: ReturnType<typeof spawnGatehouse> | null = null;
  try {
    await first.waitFor(() => first.lines.filter((l) => l.t === "READY").length === 2, 15_000, "READY");
    fake.startTraffic(500);
    await first.waitFor(() => first.lines.length >= 1500, 15_000, "1500 events");
    await sleep(Math.random() * 500);
    first.kill("SIGKILL");
    await first.status;
    second = spawnGatehouse({ env });
    const run2 = second;
    await run2.waitFor(() => run2.lines.length >= 500, 15_000, "events after the restart");
    fake.stopTraffic();
    const last = fake.sessions().map((s) => ({ shard: s.shard, seq: s.lastSeq }));
    await run2.waitFor(
      () => last.every(({ shard, seq }) => run2.lines.some((l) => l.shard === shard && l.s === seq)),
      15_000,
      "the last events",
    );
    run2.kill("SIGTERM");
    assert.equal((await run2.status).code, 0);

    // Every event of both sessions reached stdout; repeats are the events after the last checkpoint.
    const all = [...first.lines, ...run2.lines];
    let repeats = 0;
    for (const session of fake.sessions()) {
      const got = all.filter((l) => l.shard === session.shard && typeof l.s === "number").map((l) =>
        l.s as number
      );
      const distinct = new Set(got);
      repeats += got.length - distinct.size;
      for (const { s } of session.events) {
        assert.ok(distinct.has(s), `shard ${session.shard} seq ${s} delivered`);
      }
    }
    assert.ok(repeats < 1500, `${repeats} repeats: about a second of traffic at most`);
    // Ids: increasing within a run, and the second run's above every id of the first.
    const maxFirst = Math.max(...first.lines.map((l) => l.id));
    assert.ok(run2.lines.every((l) => l.id > maxFirst), "no id given out twice");
    assert.equal(fake.identifies.length, 2, "the restart resumed both sessions");
    assert.equal(fake.violations.length, 0, JSON.stringify(fake.violations));
  } finally {
    first.kill("SIGKILL");
    await first.status;
    second?.kill("SIGKILL");
    await second?.status;
    await fake.stop();
    await Deno.remove(dir, { recursive: true });
  }
});
