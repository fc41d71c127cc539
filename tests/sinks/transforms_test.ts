/**
 * The transforms (src/sinks/transforms.ts): the GUILD_CREATE annotation and rename, the dropped
 * GUILD_DELETEs of outages and MESSAGE_UPDATEs that change no content, each alone; and that they are a
 * function of the events in journal order — the same events cut into any batches, delivered again after
 * a failure, or judged after a rebuild from the store (a restart), give the same lines (fast-check).
 */
import assert from "node:assert/strict";
import fc from "npm:fast-check@4.11.0";
import type { EventBatch } from "../../src/journal/journal.ts";
import type { StoredEvent } from "../../src/journal/store.ts";
import { RowBatch } from "../../src/sinks/batches.ts";
import { LineBuffer } from "../../src/sinks/ndjson.ts";
import { contentHash, GuildBook, MessageBook, NO_CONTENT } from "../../src/sinks/transform_state.ts";
import { readingPlan, rebuildTransforms } from "../../src/sinks/transform_warmup.ts";
import { renamed, type TransformOptions, Transforms, transformsOn } from "../../src/sinks/transforms.ts";
import { dec, enc, withStore } from "../helpers/journal_store.ts";

const OFF: TransformOptions = {
  guildCreate: "off",
  guildDelete: "off",
  messageUpdate: "off",
  messageWindowMs: 10_000,
  messageCache: 10_000,
};
const ALL: TransformOptions = {
  ...OFF,
  guildCreate: "annotate",
  guildDelete: "drop_unavailable",
  messageUpdate: "drop_unchanged",
};

/** An event as the tests write it: `at` is its received time (ms), `d` Discord's data. */
interface Ev {
  shard?: number;
  t: string;
  d: unknown;
  at?: number;
}

/** Stored rows of `events`, ids from `first`, seqs per shard from 1. */
function rows(events: Ev[], first = 1): StoredEvent[] {
  return events.map((e, i) => ({
    id: first + i,
    shard: e.shard ?? 0,
    session: `s${e.shard ?? 0}`,
    seq: first + i,
    t: e.t,
    receivedAt: e.at ?? 0,
    payload: enc(JSON.stringify({ t: e.t, s: first + i, op: 0, d: e.d })),
  }));
}

const batchOf = (stored: StoredEvent[]) => new RowBatch(stored, "p");

/** The NDJSON lines a sink writes for `batch`, parsed. */
function lines(batch: EventBatch): Array<Record<string, unknown>> {
  const buffer = new LineBuffer();
  buffer.appendBatch(batch);
  return dec(buffer.take()).split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
}

/** The raw line texts (for byte comparisons). */
function texts(batch: EventBatch): string[] {
  const buffer = new LineBuffer();
  buffer.appendBatch(batch);
  return dec(buffer.take()).split("\n").filter((l) => l !== "");
}

const ready = (shard: number, ...ids: string[]): Ev => ({
  shard,
  t: "READY",
  d: { v: 10, session_id: `s${shard}`, guilds: ids.map((id) => ({ id, unavailable: true })) },
});
const guildCreate = (shard: number, id: string): Ev => ({
  shard,
  t: "GUILD_CREATE",
  d: { name: `guild ${id}`, channels: [{ id: "1", name: "general" }], id, member_count: 3 },
});
const guildDelete = (shard: number, id: string, unavailable: boolean): Ev => ({
  shard,
  t: "GUILD_DELETE",
  d: unavailable ? { id, unavailable: true } : { id },
});
const message = (
  t: "MESSAGE_CREATE" | "MESSAGE_UPDATE",
  id: string,
  content: string | undefined,
  at: number,
) => ({
  t,
  at,
  d: content === undefined
    ? { id, channel_id: "5", embeds: [{ url: "https://example.com" }] }
    : { id, channel_id: "5", content, referenced_message: { id: "0", content: "older" } },
});

Deno.test("transforms: off changes nothing, and the runner gets none", () => {
  assert.equal(transformsOn(OFF), false);
  assert.equal(transformsOn(null), false);
  assert.equal(transformsOn({ ...OFF, guildCreate: "annotate" }), true);
  const batch = batchOf(rows([ready(0, "1"), guildCreate(0, "1")]));
  assert.equal(new Transforms(OFF).apply(batch), batch, "the same batch object: the fast path is kept");
});

Deno.test("GUILD_CREATE annotation: loading (READY), available (after an outage), joined (new); per shard, a new READY starts again", () => {
  const events = [
    ready(0, "10", "11", "12"),
    ready(1, "20"),
    guildCreate(0, "10"),
    guildCreate(0, "11"),
    guildDelete(0, "11", true),
    guildCreate(0, "11"),
    guildCreate(0, "99"),
    guildDelete(0, "12", true), // down before it loaded: its first GUILD_CREATE is still the start-up's
    guildCreate(0, "12"),
    guildCreate(1, "10"), // another shard's READY did not list it
    guildCreate(1, "20"),
    guildDelete(0, "10", false), // left
    guildCreate(0, "10"), // added again
    ready(0, "99"), // a new session (a RESUME would be no event and keep the book)
    guildCreate(0, "99"),
    guildCreate(0, "11"),
  ];
  const transforms = new Transforms({ ...OFF, guildCreate: "annotate" });
  const out = lines(transforms.apply(batchOf(rows(events))));
  const creates = out.filter((l) => l.t === "GUILD_CREATE").map((
    l,
  ) => [l.shard, (l.d as { id: string }).id, l.guild_create]);
  assert.deepEqual(creates, [
    [0, "10", "loading"],
    [0, "11", "loading"],
    [0, "11", "available"],
    [0, "99", "joined"],
    [0, "12", "loading"],
    [1, "10", "joined"],
    [1, "20", "loading"],
    [0, "10", "joined"],
    [0, "99", "loading"],
    [0, "11", "joined"],
  ]);
  assert.equal(out.length, events.length, "nothing dropped");
  assert.ok(out.filter((l) => l.t !== "GUILD_CREATE").every((l) => !("guild_create" in l)));
  transforms.acknowledged(events.length);
  assert.deepEqual(
    { ...transforms.counts },
    {
      droppedUnavailableGuildDelete: 0,
      droppedUnchangedMessageUpdate: 0,
      loading: 5,
      available: 1,
      joined: 4,
      renamed: 0,
    },
  );
  assert.deepEqual(transforms.remembered, { guilds: 0, messages: 0 }, "nothing kept once all loaded");
});

Deno.test("GUILD_CREATE annotation: the line is Discord's bytes with one member added after shard", () => {
  const stored = rows([ready(0, "10"), guildCreate(0, "10")]);
  const plain = texts(batchOf(stored));
  const annotated = texts(new Transforms({ ...OFF, guildCreate: "annotate" }).apply(batchOf(stored)));
  assert.equal(annotated[0], plain[0]);
  const at = plain[1].indexOf(',"t":');
  assert.equal(annotated[1], `${plain[1].slice(0, at)},"guild_create":"loading"${plain[1].slice(at)}`);
});

Deno.test("GUILD_CREATE rename: the loading ones become GUILD_LOADED_DD with d untouched; the others keep their name", () => {
  const stored = rows([ready(0, "10"), guildCreate(0, "10"), guildCreate(0, "77")]);
  const batch = new Transforms({ ...OFF, guildCreate: "rename" }).apply(batchOf(stored));
  assert.deepEqual([batch.t(0), batch.t(1), batch.t(2)], ["READY", "GUILD_LOADED_DD", "GUILD_CREATE"]);
  const out = lines(batch);
  assert.equal(out[1].t, "GUILD_LOADED_DD");
  assert.equal(out[1].guild_create, "loading");
  assert.deepEqual(out[1].d, JSON.parse(dec(stored[1].payload)).d);
  assert.equal(out[2].t, "GUILD_CREATE");
  assert.equal(out[2].guild_create, "joined");
  // Only the name's bytes change.
  const original = dec(stored[1].payload);
  assert.equal(dec(batch.payload(1)), original.replace('"t":"GUILD_CREATE"', '"t":"GUILD_LOADED_DD"'));
  assert.equal(
    dec(renamed(enc('{"s":1,"d":{"t":"GUILD_CREATE"},"t":"GUILD_CREATE"}'), "X")),
    '{"s":1,"d":{"t":"GUILD_CREATE"},"t":"X"}',
    "the top-level t, wherever it is",
  );
});

Deno.test("GUILD_DELETE of an outage is dropped (with or without the annotation); a leave is delivered; the cursor range is kept", () => {
  for (const guildCreateMode of ["off", "annotate"] as const) {
    const events = [
      ready(0, "10"),
      guildCreate(0, "10"),
      guildDelete(0, "10", true),
      guildCreate(0, "10"),
      guildDelete(0, "10", false),
    ];
    const transforms = new Transforms({
      ...OFF,
      guildCreate: guildCreateMode,
      guildDelete: "drop_unavailable",
    });
    const batch = transforms.apply(batchOf(rows(events, 101)));
    assert.equal(batch.count, 4);
    assert.deepEqual([batch.firstId, batch.lastId], [101, 105], "the batch still spans every id");
    assert.deepEqual(Array.from({ length: 4 }, (_, i) => batch.id(i)), [101, 102, 104, 105]);
    const out = lines(batch);
    assert.deepEqual(out[3].d, { id: "10" }, "the leave is delivered");
    if (guildCreateMode === "annotate") assert.equal(out[2].guild_create, "available");
    transforms.acknowledged(105);
    assert.equal(transforms.counts.droppedUnavailableGuildDelete, 1);
  }
});

Deno.test("MESSAGE_UPDATE: dropped when the content is absent or unchanged within the window of the last sighting; kept otherwise", () => {
  const events = [
    message("MESSAGE_CREATE", "1", "hi", 0),
    message("MESSAGE_UPDATE", "1", undefined, 1_000), // embeds unfurled: dropped
    message("MESSAGE_UPDATE", "1", "hi", 2_000), // the same content: dropped (and seen again at 2 s)
    message("MESSAGE_UPDATE", "1", "hi", 11_500), // 9.5 s after the last sighting: dropped
    message("MESSAGE_UPDATE", "1", "hi!", 12_000), // an edit: kept
    message("MESSAGE_UPDATE", "1", "hi!", 30_000), // 18 s later: outside the window, kept
    message("MESSAGE_UPDATE", "1", undefined, 45_000), // nothing known within the window: kept
    message("MESSAGE_UPDATE", "2", "never created", 45_000), // unknown message: kept
    message("MESSAGE_UPDATE", "2", "never created", 46_000), // seen 1 s ago: dropped
    message("MESSAGE_CREATE", "3", 'a "quoted"\\ \u00e9 line', 46_000),
    message("MESSAGE_UPDATE", "3", 'a "quoted"\\ \u00e9 line', 47_000), // escapes read as text: dropped
  ];
  const transforms = new Transforms({ ...OFF, messageUpdate: "drop_unchanged" });
  const batch = transforms.apply(batchOf(rows(events)));
  const kept = Array.from({ length: batch.count }, (_, i) => batch.id(i));
  assert.deepEqual(kept, [1, 5, 6, 7, 8, 10]);
  transforms.acknowledged(events.length);
  assert.equal(transforms.counts.droppedUnchangedMessageUpdate, 5);
});

Deno.test("MESSAGE_UPDATE: at most message_cache messages are remembered, the least recently seen forgotten first", () => {
  const x = contentHash(enc('"x"'));
  const book = new MessageBook(10_000, 2);
  book.created("a", x, 0);
  book.created("b", x, 1);
  assert.equal(book.updated("a", x, 2), true, "a seen again: b is now the oldest");
  book.created("c", x, 3);
  assert.equal(book.size, 2);
  assert.equal(book.updated("b", x, 4), false, "b was forgotten: its update is delivered");
  assert.equal(book.updated("a", x, 5), false, "a went when b was seen again (the bound of 2)");
  assert.equal(book.updated("b", x, 6), true);
  assert.equal(book.updated("b", undefined, 7), true, "no content within the window");
  assert.equal(book.updated("b", NO_CONTENT, 8), false, "emptied: a change");
  // Expired entries go as soon as anything is written.
  const expiring = new MessageBook(100, 10);
  expiring.created("a", x, 0);
  expiring.created("b", x, 150);
  assert.equal(expiring.size, 1);
  assert.throws(() => new MessageBook(0, 1), RangeError);
  assert.throws(() => new MessageBook(1, 0), RangeError);
  assert.notEqual(contentHash(enc('"a"')), contentHash(enc('"b"')));
  assert.equal(contentHash(enc('""')), NO_CONTENT);
});

Deno.test("GuildBook: an outage before the shard's READY is known (a rebuild that starts mid-session)", () => {
  const book = new GuildBook();
  book.deleted(3, "1", true);
  assert.equal(book.created(3, "1"), "available");
  assert.equal(book.created(3, "1"), "joined");
  book.deleted(3, "2", false);
  assert.equal(book.size, 0);
});

Deno.test("transforms: a delivery tried again gets the verdicts it had, also cut differently; counted once, when acknowledged", () => {
  const stored = rows([
    ready(0, "10"),
    guildCreate(0, "10"),
    guildDelete(0, "10", true),
    guildCreate(0, "10"),
    message("MESSAGE_CREATE", "1", "hi", 0),
    message("MESSAGE_UPDATE", "1", "hi", 10),
  ]);
  const transforms = new Transforms(ALL);
  const first = lines(transforms.apply(batchOf(stored)));
  // The delivery failed; the runner reads from the store again, in two pieces this time.
  const again = [
    ...lines(transforms.apply(batchOf(stored.slice(0, 2)))),
    ...lines(transforms.apply(batchOf(stored.slice(2)))),
  ];
  assert.deepEqual(again, first);
  assert.deepEqual(first.map((l) => l.guild_create ?? null), [null, "loading", "available", null]);
  assert.equal(transforms.counts.loading, 0, "nothing counted before the acknowledgement");
  transforms.acknowledged(3);
  assert.deepEqual([transforms.counts.loading, transforms.counts.available], [1, 0]);
  transforms.acknowledged(6);
  assert.deepEqual(
    [
      transforms.counts.available,
      transforms.counts.droppedUnavailableGuildDelete,
      transforms.counts.droppedUnchangedMessageUpdate,
    ],
    [1, 1, 1],
  );
});

// ---- determinism (fast-check) ----

const GUILDS = ["10", "11", "12", "13"];
const MESSAGES = ["1", "2", "3"];
const CONTENTS = ["a", "b", undefined];

/** A random event stream over 2 shards, a few guilds and messages, times non-decreasing. */
const eventStream = fc.array(
  fc.tuple(
    fc.constantFrom(
      "READY",
      "GUILD_CREATE",
      "GUILD_DELETE",
      "MESSAGE_CREATE",
      "MESSAGE_UPDATE",
      "TYPING_START",
    ),
    fc.integer({ min: 0, max: 1 }),
    fc.subarray(GUILDS, { minLength: 0 }),
    fc.constantFrom(...GUILDS),
    fc.boolean(),
    fc.constantFrom(...MESSAGES),
    fc.constantFrom(...CONTENTS),
    fc.integer({ min: 0, max: 6_000 }),
  ),
  { minLength: 1, maxLength: 80 },
).map((specs) => {
  let at = 1_000_000;
  return specs.map(([t, shard, readyGuilds, guild, unavailable, messageId, content, gap]): Ev => {
    at += gap;
    switch (t) {
      case "READY":
        return { ...ready(shard, ...readyGuilds), at };
      case "GUILD_CREATE":
        return { ...guildCreate(shard, guild), at };
      case "GUILD_DELETE":
        return { ...guildDelete(shard, guild, unavailable), at };
      case "MESSAGE_CREATE":
        return message("MESSAGE_CREATE", messageId, content ?? "", at);
      case "MESSAGE_UPDATE":
        return message("MESSAGE_UPDATE", messageId, content, at);
      default:
        return { shard, t, d: { channel_id: "5" }, at };
    }
  });
});

const OPTIONS = fc.record({
  guildCreate: fc.constantFrom("off" as const, "annotate" as const, "rename" as const),
  guildDelete: fc.constantFrom("off" as const, "drop_unavailable" as const),
  messageUpdate: fc.constantFrom("off" as const, "drop_unchanged" as const),
  messageWindowMs: fc.constantFrom(1_000, 5_000, 10_000),
  messageCache: fc.integer({ min: 1, max: 4 }),
});

/** Cut points: sorted, distinct, inside the stream. */
const cutsOf = (n: number, raw: number[]) => [...new Set(raw.map((c) => c % (n + 1)))].sort((a, b) => a - b);

function slices<T>(items: T[], cuts: number[]): T[][] {
  const out: T[][] = [];
  let from = 0;
  for (const cut of [...cuts, items.length]) {
    if (cut > from) out.push(items.slice(from, cut));
    from = Math.max(from, cut);
  }
  return out;
}

Deno.test("transforms are deterministic: one pass, any cut into batches, failed deliveries tried again, give the same lines", () => {
  fc.assert(
    fc.property(
      eventStream,
      OPTIONS,
      fc.array(fc.nat(), { maxLength: 10 }),
      fc.array(fc.boolean(), { maxLength: 12 }),
      (events, options, rawCuts, failures) => {
        const stored = rows(events);
        const once = lines(new Transforms(options).apply(batchOf(stored)));
        const transforms = new Transforms(options);
        const cut: Array<Record<string, unknown>> = [];
        slices(stored, cutsOf(stored.length, rawCuts)).forEach((part, k) => {
          // A failed delivery: judged, not acknowledged; the runner then offers it again from the store.
          if (failures[k]) lines(transforms.apply(batchOf(part)));
          cut.push(...lines(transforms.apply(batchOf(part))));
          transforms.acknowledged(part[part.length - 1].id);
        });
        assert.deepEqual(cut, once);
      },
    ),
    { numRuns: 300 },
  );
});

Deno.test("transforms are deterministic across a restart: rebuilt from the journal up to each sink's cursor, the rest comes out as in one run", async () => {
  await fc.assert(
    fc.asyncProperty(
      eventStream,
      OPTIONS,
      fc.array(fc.nat(), { minLength: 1, maxLength: 3 }),
      fc.integer({ min: 64, max: 4096 }),
      async (events, options, rawCursors, sliceBytes) => {
        if (options.messageUpdate === "off" && options.guildCreate === "off") {
          options = { ...options, guildCreate: "annotate" };
        }
        const stored = rows(events);
        const once = lines(new Transforms(options).apply(batchOf(stored)));
        await withStore(async (store) => {
          store.transaction("seed", () => {
            for (const e of stored) {
              store.events.insert(e.id, e.shard, e.session, e.seq, e.t, e.receivedAt, e.payload);
            }
          });
          // A restart with one sink per cursor: one pass rebuilds each up to its own cursor.
          const targets = rawCursors.map((raw) => ({
            transforms: new Transforms(options),
            through: stored[raw % stored.length].id,
          }));
          await rebuildTransforms({ store, targets, pause: () => Promise.resolve(), sliceBytes });
          for (const { transforms, through } of targets) {
            assert.equal(transforms.through, through);
            const after = stored.filter((e) => e.id > through);
            const got = after.length === 0 ? [] : lines(transforms.apply(batchOf(after)));
            assert.deepEqual(got, once.filter((l) => (l.id as number) > through));
          }
        });
      },
    ),
    { numRuns: 60 },
  );
});

Deno.test("rebuild: the reading plan covers guilds everywhere and messages in the windows, in id order", () => {
  const g = ["READY"], m = ["MESSAGE_CREATE"];
  assert.deepEqual(readingPlan([[50, 60], [10, 20], [15, 30]], 60, g, m), [
    { names: g, after: 0, through: 9 },
    { names: [...g, ...m], after: 9, through: 30 },
    { names: g, after: 30, through: 49 },
    { names: [...g, ...m], after: 49, through: 60 },
  ]);
  assert.deepEqual(readingPlan([[1, 5]], 9, [], m), [{ names: m, after: 0, through: 5 }]);
  assert.deepEqual(readingPlan([], 9, g, []), [{ names: g, after: 0, through: 9 }]);
});

Deno.test("rebuild: reads the window before the cursor for messages, the whole journal for guilds; several sinks in one pass", async () => {
  await withStore(async (store) => {
    const events: Ev[] = [ready(0, "10", "11"), guildCreate(0, "10")];
    // An hour of messages, one a second, then the one whose update comes after the restart.
    for (let s = 0; s < 3600; s++) events.push(message("MESSAGE_CREATE", `m${s}`, "old", s * 1000));
    events.push(message("MESSAGE_CREATE", "last", "x", 3_600_000));
    const stored = rows(events);
    store.transaction("seed", () => {
      for (const e of stored) {
        store.events.insert(e.id, e.shard, e.session, e.seq, e.t, e.receivedAt, e.payload);
      }
    });
    const cursor = stored[stored.length - 1].id;
    const messagesOnly = new Transforms({ ...OFF, messageUpdate: "drop_unchanged" });
    const both = new Transforms(ALL);
    const behind = new Transforms(ALL);
    const { events: read } = await rebuildTransforms({
      store,
      targets: [
        { transforms: messagesOnly, through: cursor },
        { transforms: both, through: cursor },
        { transforms: behind, through: 2 },
      ],
      pause: () => Promise.resolve(),
    });
    assert.ok(read < 30, `${read} events read: the guild events and the last 10 s of messages`);
    assert.ok(messagesOnly.remembered.messages <= 11);
    assert.equal(both.remembered.guilds, 1, "guild 11 still loading");
    assert.equal(behind.through, 2);
    const after = rows([
      message("MESSAGE_UPDATE", "last", "x", 3_601_000),
      guildCreate(0, "11"),
      message("MESSAGE_UPDATE", "m0", "old", 3_601_000),
    ], cursor + 1);
    const out = lines(both.apply(batchOf(after)));
    assert.deepEqual(out.map((l) => [l.t, l.guild_create ?? null]), [
      ["GUILD_CREATE", "loading"],
      ["MESSAGE_UPDATE", null],
    ]);
    assert.equal(messagesOnly.apply(batchOf(after)).count, 2, "the same drop for the other sink");
  });
});

Deno.test("rebuild: a store that fails mid-way leaves the state as read, and the cursor is still where judging starts", async () => {
  const transforms = new Transforms(ALL);
  const broken = {
    events: {
      timeAtOrBefore: () => 0,
      firstIdAtOrAfter: () => 1,
      readNamed: () => {
        throw new Error("disk I/O error");
      },
    },
    producer: "p",
  };
  const warnings: string[] = [];
  const result = await rebuildTransforms({
    // deno-lint-ignore no-explicit-any
    store: broken as any,
    targets: [{ transforms, through: 50 }],
    // deno-lint-ignore no-explicit-any
    logger: { warn: (message: string) => warnings.push(message) } as any,
  });
  assert.equal(result.events, 0);
  assert.equal(transforms.through, 50);
  assert.equal(warnings.length, 1);
});

Deno.test("rebuild: a clock that went back after the cursor still finds the messages of the window", async () => {
  await withStore(async (store) => {
    const stored = rows([
      message("MESSAGE_CREATE", "1", "a", 5_000_000),
      { t: "TYPING_START", d: {}, at: 1_000 },
    ]);
    store.transaction("seed", () => {
      for (const e of stored) {
        store.events.insert(e.id, e.shard, e.session, e.seq, e.t, e.receivedAt, e.payload);
      }
    });
    const transforms = new Transforms({ ...OFF, messageUpdate: "drop_unchanged" });
    await rebuildTransforms({ store, targets: [{ transforms, through: 1 }], pause: () => Promise.resolve() });
    assert.equal(transforms.remembered.messages, 1);
    const after = rows([message("MESSAGE_UPDATE", "1", "a", 5_000_500)], 3);
    assert.equal(transforms.apply(batchOf(after)).count, 0, "dropped as in one run");
  });
});
