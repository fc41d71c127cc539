/**
 * The resharder on a manual clock, with a recording sink, journal and pool: what the new set holds, what
 * the switch hands to the journal and in which order, which copies of the overlap are removed, and the
 * ways a reshard is refused or given up.
 */
import assert from "node:assert/strict";
import type { GatewayBotInfo } from "../../src/gateway/protocol.ts";
import type { ResumableSession } from "../../src/gateway/shard.ts";
import type { ShardKey } from "../../src/pool/ownership.ts";
import type { PoolFailure } from "../../src/pool/pool.ts";
import { Resharder, type ResharderOptions } from "../../src/pool/resharder.ts";
import { ManualClock } from "../../src/util/clock.ts";
import { logger } from "../../src/util/log.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

type Record =
  | ["dispatch", number, string, number, string]
  | ["skip", number, string, number]
  | ["internal", number, string, unknown]
  | ["started", number, number, string]
  | ["lost", number, number];

/** A guild id owned by shard `shard` of 8 (and by `shard % 4` of 4): `(id >> 22) % count`. */
function guildOf(shard: number, k = 0): string {
  return String((BigInt(8 * k + shard) << 22n) + 12345n);
}

function frame(t: string, s: number, d: unknown): Uint8Array {
  return encoder.encode(JSON.stringify({ t, s, op: 0, d }));
}

function ready(shard: number, count: number, guilds: string[], session = `s-${shard}-${count}`) {
  return frame("READY", 1, {
    session_id: session,
    shard: [shard, count],
    guilds: guilds.map((id) => ({ id, unavailable: true })),
  });
}

function message(guild: string, text: string, s: number) {
  return frame("MESSAGE_CREATE", s, { guild_id: guild, content: text });
}

function setup(overrides: Partial<ResharderOptions> = {}, info: Partial<GatewayBotInfo> = {}) {
  const clock = new ManualClock();
  const records: Record[] = [];
  const added: ShardKey[] = [];
  const removed: Array<[ShardKey, number | undefined]> = [];
  const failures: PoolFailure[] = [];
  const switched: number[] = [];
  const bot: GatewayBotInfo = {
    url: "ws://127.0.0.1",
    shards: 8,
    session_start_limit: { total: 1000, remaining: 1000, reset_after: 1, max_concurrency: 1 },
    ...info,
  };
  const resharder = new Resharder({
    count: 4,
    pool: {
      add: (key) => (added.push(key), true),
      remove: (key, code) => (removed.push([key, code]), Promise.resolve()),
    },
    sink: {
      dispatch: (shard, t, s, payload, start) =>
        records.push(["dispatch", shard, t, s, decoder.decode(payload.subarray(start))]),
      skip: (shard, t, s) => records.push(["skip", shard, t, s]),
      internal: (shard, t, d) => records.push(["internal", shard, t, d]),
    },
    journal: {
      sessionStarted: (count, shard, session) => records.push(["started", count, shard, session.id]),
      sessionLost: (count, shard) => records.push(["lost", count, shard]),
    },
    fetchInfo: () => Promise.resolve(bot),
    reserve: 0,
    threshold: 0.8,
    intervalMs: 0,
    timeoutMs: 60_000,
    maxHeldBytes: 1 << 20,
    logger: logger("test"),
    clock,
    windowMs: 10_000,
    guildWaitMs: 5_000,
    onSwitched: (count) => switched.push(count),
    onUnanswered4011: (failure) => failures.push(failure),
    ...overrides,
  });
  const old = resharder.sinkFor(4);
  const fresh = resharder.sinkFor(8);
  const send = (sink: typeof old, shard: number, bytes: Uint8Array) => {
    const text = decoder.decode(bytes);
    const { t, s } = JSON.parse(text);
    sink.dispatch(shard, t, s, bytes, 0);
  };
  /** Brings every new shard to READY (no guilds unless given) with its session reported first. */
  const readyAll = (guilds: (shard: number) => string[] = () => []) => {
    for (let shard = 0; shard < 8; shard++) {
      const session: ResumableSession = { id: `s-${shard}-8`, seq: 1, resumeUrl: "ws://resume" };
      resharder.onSession({ id: shard, count: 8 }, session);
      send(fresh, shard, ready(shard, 8, guilds(shard)));
    }
  };
  return { clock, records, added, removed, failures, switched, resharder, old, fresh, send, readyAll, bot };
}

const dispatched = (records: Record[]) =>
  records.filter((r): r is Extract<Record, ["dispatch", ...unknown[]]> => r[0] === "dispatch");

Deno.test("resharder: the running set delivers straight through while nothing reshards", () => {
  const { records, old, send } = setup();
  send(old, 1, message(guildOf(1), "a", 5));
  assert.deepEqual(records, [[
    "dispatch",
    1,
    "MESSAGE_CREATE",
    5,
    decoder.decode(message(guildOf(1), "a", 5)),
  ]]);
});

Deno.test("resharder: the new set identifies in the background and is held; at the switch the journal gets, in order, the old sessions lost, GATEHOUSE_RESHARDED, then the held items with repeats skipped", async () => {
  const { clock, records, added, removed, switched, resharder, old, send, readyAll, fresh } = setup();
  const answer = await resharder.request({ kind: "requested" });
  assert.deepEqual(answer, { reshard: true, count: 8, why: "requested: 4 → 8 shards" });
  assert.deepEqual(added, Array.from({ length: 8 }, (_, id) => ({ id, count: 8 })));
  assert.equal(resharder.status().state, "preparing");

  readyAll((shard) => [guildOf(shard)]);
  const g5 = guildOf(5);
  // Old first, then new: the new copy is a repeat.
  send(old, 1, message(g5, "both-old-first", 10));
  send(fresh, 5, message(g5, "both-old-first", 2));
  // New first, then old: the old set delivers it (it still does), the held copy becomes the repeat.
  send(fresh, 5, message(g5, "both-new-first", 3));
  send(old, 1, message(g5, "both-new-first", 11));
  // Only the new set has it so far (the old copy would come after the switch).
  send(fresh, 5, message(g5, "new-only", 4));
  assert.equal(dispatched(records).length, 2, "only the old set delivered so far");
  assert.equal(resharder.status().heldEvents, 11);
  assert.equal(resharder.status().ready, 8);
  assert.equal(resharder.status().loaded, 0);

  // GUILD_CREATE of each READY guild loads its shard; the last one switches (on the next turn).
  for (let shard = 0; shard < 8; shard++) {
    send(fresh, shard, frame("GUILD_CREATE", 5 + shard, { id: guildOf(shard), name: `g${shard}` }));
  }
  assert.equal(resharder.status().loaded, 8);
  await clock.advance(0);
  assert.deepEqual(switched, [8]);
  assert.equal(resharder.count, 8);
  assert.equal(resharder.status().state, "settling");

  const at = records.findIndex((r) => r[0] === "internal" && r[2] === "GATEHOUSE_RESHARDED");
  const before = records.slice(2, at);
  assert.deepEqual(before, [["lost", 4, 0], ["lost", 4, 1], ["lost", 4, 2], ["lost", 4, 3]]);
  const resharded = records[at][3] as { old_count: number; new_count: number; repeats_removed: number };
  assert.equal(resharded.old_count, 4);
  assert.equal(resharded.new_count, 8);
  assert.equal(resharded.repeats_removed, 2);
  const held = records.slice(at + 1);
  // Each new session starts before its READY; the repeats only advance the seq.
  assert.deepEqual(held.slice(0, 2).map((r) => r.slice(0, 3)), [["started", 8, 0], ["dispatch", 0, "READY"]]);
  assert.deepEqual(held.filter((r) => r[0] === "skip"), [["skip", 5, "MESSAGE_CREATE", 2], [
    "skip",
    5,
    "MESSAGE_CREATE",
    3,
  ]]);
  const texts = dispatched(held).filter((r) => r[2] === "MESSAGE_CREATE").map((r) =>
    JSON.parse(r[4]).d.content
  );
  assert.deepEqual(texts, ["new-only"]);
  assert.deepEqual(removed, Array.from({ length: 4 }, (_, id) => [{ id, count: 4 }, 1000]));

  // Settling: the old set's late copy is dropped, the new set delivers, repeats of old deliveries removed.
  const n = records.length;
  send(old, 1, message(g5, "new-only", 12));
  send(fresh, 5, message(g5, "after", 20));
  assert.deepEqual(records.slice(n).map((r) => r[0]), ["dispatch"]);
  await clock.advance(10_000);
  assert.equal(resharder.status().state, "idle");
  assert.equal(resharder.status().last?.outcome, "switched");
});

Deno.test("resharder: an old delivery its new owner could never see does not swallow a later event with the same bytes", async () => {
  const { clock, records, resharder, old, fresh, send } = setup();
  await resharder.request({ kind: "requested" });
  const g3 = guildOf(3);
  // E1: new shard 3 is not READY yet (and will not be for more than 2 s): only the old set sees it.
  send(old, 3, message(g3, "same", 10));
  await clock.advance(3_000);
  for (let shard = 0; shard < 8; shard++) {
    resharder.onSession({ id: shard, count: 8 }, { id: `s-${shard}-8`, seq: 1, resumeUrl: "ws://r" });
    send(fresh, shard, ready(shard, 8, []));
  }
  // E2: identical bytes, seen by both: the new copy is the repeat.
  send(old, 3, message(g3, "same", 11));
  send(fresh, 3, message(g3, "same", 2));
  await clock.advance(0);
  assert.equal(resharder.count, 8);
  // E3: identical again, after the switch, on the new set (the old copy is dropped with the old set).
  send(fresh, 3, message(g3, "same", 3));
  send(old, 3, message(g3, "same", 12));
  const delivered = dispatched(records).filter((r) => r[2] === "MESSAGE_CREATE").map((r) => r[3]);
  assert.deepEqual(delivered, [10, 11, 3], "E1 and E2 by the old set, E3 by the new one");
});

Deno.test("resharder: an old delivery just before its new owner's READY (in flight) still removes the new copy", async () => {
  const { clock, records, resharder, old, fresh, send } = setup();
  await resharder.request({ kind: "requested" });
  const g2 = guildOf(2);
  send(old, 2, message(g2, "in flight", 10));
  await clock.advance(500);
  resharder.onSession({ id: 2, count: 8 }, { id: "s-2-8", seq: 1, resumeUrl: "ws://r" });
  send(fresh, 2, ready(2, 8, []));
  send(fresh, 2, message(g2, "in flight", 2));
  for (const shard of [0, 1, 3, 4, 5, 6, 7]) send(fresh, shard, ready(shard, 8, []));
  await clock.advance(0);
  assert.ok(records.some((r) => r[0] === "skip" && r[1] === 2 && r[3] === 2), "the new copy is skipped");
});

Deno.test("resharder: a new shard missing a GUILD_CREATE of its READY counts as loaded after the guild wait", async () => {
  const { clock, resharder, readyAll } = setup();
  await resharder.request({ kind: "requested" });
  readyAll((shard) => [guildOf(shard)]);
  await clock.advance(4_000);
  assert.equal(resharder.status().state, "preparing");
  await clock.advance(2_000);
  assert.equal(resharder.count, 8);
});

Deno.test("resharder: a new set not ready within the timeout is given up; the old set never stopped", async () => {
  const { clock, records, removed, resharder, old, fresh, send } = setup({ timeoutMs: 10_000 });
  await resharder.request({ kind: "requested" });
  for (let shard = 0; shard < 7; shard++) send(fresh, shard, ready(shard, 8, []));
  send(old, 0, message(guildOf(0), "kept", 3));
  await clock.advance(11_000);
  const status = resharder.status();
  assert.equal(status.state, "idle");
  assert.equal(status.last?.outcome, "aborted");
  assert.match(status.last!.why, /^new shard\(s\) 7 of 8 not READY with their guilds within 1[01] s$/);
  assert.equal(resharder.count, 4);
  assert.deepEqual(removed.map(([k, code]) => [k.count, code]), Array(8).fill([8, 1000]));
  assert.ok(!records.some((r) => r[0] === "internal"), "no GATEHOUSE_RESHARDED");
  // The given-up set's late events go nowhere; the old set goes on.
  send(fresh, 7, ready(7, 8, []));
  send(old, 0, message(guildOf(0), "still", 4));
  assert.deepEqual(dispatched(records).map((r) => r[3]), [3, 4]);
  assert.equal(resharder.counts.aborted, 1);
});

Deno.test("resharder: a new shard closed for good gives the reshard up; a hold past max_held too", async () => {
  {
    const { resharder } = setup();
    await resharder.request({ kind: "requested" });
    assert.equal(resharder.onFatal({ shard: 3, count: 8, code: 4013, reason: "Invalid intent(s)." }), true);
    assert.match(resharder.status().last!.why, /new shard 3 of 8 was closed with 4013/);
  }
  {
    const { resharder, fresh, send } = setup({ maxHeldBytes: 1_000 });
    await resharder.request({ kind: "requested" });
    for (let i = 0; i < 20; i++) send(fresh, 0, message(guildOf(0), "x".repeat(60), i + 2));
    assert.equal(resharder.status().last?.outcome, "aborted");
    assert.match(resharder.status().last!.why, /passed \[resharding\] max_held/);
  }
});

Deno.test("resharder: 4011 on the running set starts one reshard for all its shards; one that cannot be answered fails the pool", async () => {
  {
    const { clock, added, resharder } = setup();
    for (let shard = 0; shard < 4; shard++) {
      assert.equal(resharder.onFatal({ shard, count: 4, code: 4011, reason: "Sharding required." }), true);
    }
    await clock.advance(0);
    assert.equal(added.length, 8);
    assert.equal(resharder.counts.started, 1);
    assert.equal(
      resharder.onFatal({ shard: 0, count: 4, code: 4004, reason: "Authentication failed." }),
      false,
    );
  }
  {
    const { clock, failures, resharder } = setup({}, {
      session_start_limit: { total: 1000, remaining: 5, reset_after: 1, max_concurrency: 1 },
    });
    const failure = { shard: 2, count: 4, code: 4011, reason: "Sharding required." };
    assert.equal(resharder.onFatal(failure), true);
    await clock.advance(0);
    assert.deepEqual(failures, [failure]);
    assert.equal(resharder.counts.refused.budget, 1);
  }
  {
    const { resharder } = setup({ unavailable: "cluster mode" });
    assert.equal(resharder.onFatal({ shard: 0, count: 4, code: 4011, reason: "" }), false);
    assert.deepEqual(await resharder.request({ kind: "requested" }), {
      reshard: false,
      reason: "unavailable",
      why: "cluster mode",
    });
  }
});

Deno.test("resharder: a request while one runs is refused as busy; the periodic check reads guilds from the READYs", async () => {
  const { clock, resharder, old, send } = setup({ intervalMs: 60_000, threshold: 0.001 });
  // 3 guilds on 4 shards: 0.03 % of 10 000, under 0.1 %.
  send(old, 0, ready(0, 4, [guildOf(0), guildOf(4), guildOf(0, 1)]));
  resharder.start();
  await clock.advance(60_000);
  assert.equal(resharder.counts.refused.not_needed, 1);
  assert.equal(resharder.guilds(), 3);
  for (let shard = 1; shard < 4; shard++) {
    send(old, shard, ready(shard, 4, Array.from({ length: 3 }, (_, k) => guildOf(shard, k))));
  }
  await clock.advance(60_000);
  assert.equal(resharder.status().state, "preparing");
  const busy = await resharder.request({ kind: "requested", count: 16 });
  assert.equal(busy.reshard, false);
  assert.equal(!busy.reshard && busy.reason, "busy");
  resharder.stop();
});

Deno.test("resharder: the switch hands a large hold over a slice per turn; what arrives meanwhile follows it", async () => {
  const { clock, records, resharder, fresh, send, readyAll } = setup({ drainSliceMs: 0 });
  await resharder.request({ kind: "requested" });
  for (let i = 0; i < 1_000; i++) send(fresh, 0, message(guildOf(0), `held ${i}`, i + 2));
  readyAll();
  let injectedAfter = -1;
  const count = () => dispatched(records).filter((r) => r[2] === "MESSAGE_CREATE").length;
  {
    // Between two slices (a microtask runs before the next timer), a new event arrives.
    const original = records.push.bind(records);
    records.push = (...items: Record[]) => {
      const n = original(...items);
      if (injectedAfter < 0 && count() === 300) {
        injectedAfter = 0;
        queueMicrotask(() => {
          injectedAfter = count();
          send(fresh, 1, message(guildOf(1), "live", 2));
        });
      }
      return n;
    };
    await clock.advance(0);
  }
  const texts = dispatched(records).filter((r) => r[2] === "MESSAGE_CREATE").map((r) =>
    JSON.parse(r[4]).d.content
  );
  assert.equal(texts.length, 1_001);
  assert.equal(texts.at(-1), "live", "the live event follows the hold");
  assert.ok(injectedAfter > 0 && injectedAfter < 1_000, `it arrived between slices (after ${injectedAfter})`);
  assert.equal(resharder.count, 8);
});
