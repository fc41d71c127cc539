import assert from "node:assert/strict";
import fc from "npm:fast-check@4.11.0";
import { type CacheKinds, DEFAULT_CACHE_KINDS, GuildCache } from "../../src/proxy/cache.ts";

type Json = Record<string, unknown>;

/** A snowflake of shard `shard` of 2 (`(id >> 22) % 2`), all of one length. */
function guildId(n: number, shard = 0): string {
  return String(BigInt(2 ** 20 + 2 * n + shard) << 22n);
}

const ALL: CacheKinds = { ...DEFAULT_CACHE_KINDS, presences: true };
const NONE: CacheKinds = {
  channels: false,
  threads: false,
  roles: false,
  emojis: false,
  stickers: false,
  members: false,
  presences: false,
  voiceStates: false,
  stageInstances: false,
  scheduledEvents: false,
  users: false,
};

const BOT = { id: "900", username: "gatebot", discriminator: "0", bot: true, avatar: null };

function user(id: string, name = `user${id}`) {
  return { id, username: name, global_name: name.toUpperCase(), avatar: null, discriminator: "0" };
}

function member(id: string, over: Json = {}) {
  return {
    user: user(id),
    nick: null,
    roles: ["r1"],
    joined_at: "2024-01-01T00:00:00.000000+00:00",
    deaf: false,
    mute: false,
    flags: 0,
    ...over,
  };
}

function channel(id: string, over: Json = {}) {
  return {
    id,
    type: 0,
    name: `chan-${id}`,
    position: 1,
    permission_overwrites: [],
    parent_id: null,
    ...over,
  };
}

function thread(id: string, parentId: string, over: Json = {}) {
  return {
    id,
    type: 11,
    name: `thread-${id}`,
    parent_id: parentId,
    thread_metadata: { archived: false },
    ...over,
  };
}

function role(id: string, over: Json = {}) {
  return { id, name: `role-${id}`, color: 0, position: 1, permissions: "0", managed: false, ...over };
}

/** A guild as Discord sends it in GUILD_CREATE, every collection filled. */
function fullGuild(id: string): Json {
  return {
    id,
    name: "Guild \u00e9 \u{1f3ae}",
    icon: null,
    owner_id: "1",
    features: ["COMMUNITY"],
    premium_tier: 0,
    joined_at: "2023-05-05T00:00:00.000000+00:00",
    large: false,
    member_count: 3,
    unavailable: false,
    channels: [channel("c1"), channel("c2", { type: 2, name: "voice" })],
    threads: [thread("t1", "c1")],
    roles: [role(id, { name: "@everyone" }), role("r1")],
    emojis: [{ id: "e1", name: "smile", roles: [], require_colons: true, animated: false }],
    stickers: [{ id: "s1", name: "wave", tags: "wave", type: 2, format_type: 1 }],
    members: [member("1"), member("2", { nick: "two" })],
    presences: [{
      user: { id: "1" },
      status: "online",
      activities: [],
      client_status: { desktop: "online" },
    }],
    voice_states: [{
      user_id: "2",
      channel_id: "c2",
      session_id: "vs2",
      deaf: false,
      mute: false,
      self_deaf: false,
      self_mute: true,
      self_video: false,
      suppress: false,
      request_to_speak_timestamp: null,
      member: member("2"),
    }],
    stage_instances: [{ id: "si1", guild_id: id, channel_id: "c2", topic: "talk", privacy_level: 2 }],
    guild_scheduled_events: [{ id: "ev1", guild_id: id, name: "party", status: 1, entity_type: 2 }],
  };
}

/** What the cache gives back for `fullGuild`: the same, less the voice states' `member`. */
function expected(guild: Json): Json {
  const states = (guild.voice_states as Json[]).map(({ member: _, ...state }) => state);
  return { ...guild, voice_states: states, unavailable: false };
}

function ready(guilds: string[], shard?: [number, number]): string {
  return JSON.stringify({
    v: 10,
    user: BOT,
    session_id: "s",
    resume_gateway_url: "wss://x",
    guilds: guilds.map((id) => ({ id, unavailable: true })),
    application: { id: "900", flags: 0 },
    ...(shard ? { shard } : {}),
  });
}

/** `t` with `d` given as an object. */
function send(cache: GuildCache, t: string, d: unknown): void {
  cache.apply(t, JSON.stringify(d));
}

/** A cache with shard 0's READY and `guilds`' GUILD_CREATEs applied. */
function cacheWith(kinds: CacheKinds, ...guilds: Json[]): GuildCache {
  const cache = new GuildCache(kinds);
  cache.apply("READY", ready(guilds.map((g) => g.id as string)));
  for (const g of guilds) send(cache, "GUILD_CREATE", g);
  return cache;
}

function out(cache: GuildCache, id: string): Json {
  const text = cache.guildCreate(id);
  assert.ok(text !== null, `guild ${id} is cached and available`);
  return JSON.parse(text);
}

function ids(list: unknown): string[] {
  return (list as Json[]).map((e) => (e.id ?? (e.user as Json)?.id ?? e.user_id) as string);
}

/** The stats' bytes, recomputed from what guildCreate gives back (the texts it was put together from). */
function bytesFromOutput(cache: GuildCache, fields: string[]): number {
  let bytes = 0;
  for (const id of cache.guildIds()) {
    const text = cache.guildCreate(id);
    if (text === null) continue;
    const g = JSON.parse(text) as Json;
    for (const field of fields) for (const e of g[field] as unknown[]) bytes += JSON.stringify(e).length;
  }
  return bytes;
}

Deno.test("cache: before any READY the user and application are null and no guild is known", () => {
  const cache = new GuildCache();
  assert.equal(cache.user, null);
  assert.equal(cache.application, null);
  assert.deepEqual(cache.guildIds(), []);
  assert.equal(cache.available("1"), false);
  assert.equal(cache.guildCreate("1"), null);
  assert.equal(cache.stats().bytes, 0);
});

Deno.test("cache: READY then GUILD_CREATE gives back the guild as Discord sent it (less voice states' member)", () => {
  const id = guildId(1);
  const guild = fullGuild(id);
  const cache = new GuildCache(ALL);
  cache.apply("READY", ready([id, guildId(2)]));
  assert.deepEqual(JSON.parse(cache.user!), BOT);
  assert.deepEqual(JSON.parse(cache.application!), { id: "900", flags: 0 });
  assert.deepEqual(cache.guildIds(), [id, guildId(2)]);
  assert.equal(cache.available(id), false, "listed in READY only: not yet available");
  assert.equal(cache.guildCreate(id), null);
  assert.deepEqual(cache.stats().unavailable, 2);

  send(cache, "GUILD_CREATE", guild);
  assert.equal(cache.available(id), true);
  assert.deepEqual(out(cache, id), expected(guild));
  assert.deepEqual(cache.guildIds(), [id, guildId(2)], "a GUILD_CREATE keeps the guild's place");
  assert.deepEqual(cache.guildIds((g) => g !== id), [guildId(2)]);
  const stats = cache.stats();
  assert.equal(stats.guilds, 2);
  assert.equal(stats.unavailable, 1);
  assert.equal(stats.kinds.channels.entries, 2);
  assert.equal(stats.kinds.members.entries, 2);
  assert.equal(stats.kinds.voiceStates.entries, 1);
  assert.equal(cache.malformed, 0);
});

Deno.test("cache: the default kinds keep everything but presences", () => {
  const id = guildId(1);
  const guild = fullGuild(id);
  const cache = cacheWith(DEFAULT_CACHE_KINDS, guild);
  assert.deepEqual(out(cache, id), { ...expected(guild), presences: [] });
  assert.equal(cache.handles("PRESENCE_UPDATE"), false);
  assert.equal(cache.handles("GUILD_MEMBER_UPDATE"), true);
});

Deno.test("cache: a GUILD_CREATE without member_count or collections gives member_count out and [] for each", () => {
  const id = guildId(3);
  const cache = cacheWith(ALL, { id, name: "bare" });
  const text = cache.guildCreate(id)!;
  assert.deepEqual(JSON.parse(text), {
    id,
    name: "bare",
    unavailable: false,
    channels: [],
    threads: [],
    roles: [],
    emojis: [],
    stickers: [],
    members: [],
    presences: [],
    voice_states: [],
    stage_instances: [],
    guild_scheduled_events: [],
  });
});

Deno.test("cache: USER_UPDATE replaces the bot's user", () => {
  const cache = cacheWith(ALL);
  send(cache, "USER_UPDATE", { ...BOT, username: "renamed" });
  assert.equal(JSON.parse(cache.user!).username, "renamed");
  send(cache, "USER_UPDATE", { username: "no id" });
  assert.equal(JSON.parse(cache.user!).username, "renamed");
  assert.equal(cache.malformed, 1);
});

Deno.test("cache: GUILD_UPDATE replaces the guild's fields, keeps joined_at/large/member_count, and roles/emojis/stickers when sent", () => {
  const id = guildId(1);
  const guild = fullGuild(id);
  const cache = cacheWith(ALL, guild);
  send(cache, "GUILD_UPDATE", { id, name: "Renamed", icon: "abc", owner_id: "2", features: [] });
  let g = out(cache, id);
  assert.equal(g.name, "Renamed");
  assert.equal(g.icon, "abc");
  assert.deepEqual(g.features, []);
  assert.equal(g.joined_at, guild.joined_at);
  assert.equal(g.large, false);
  assert.equal(g.member_count, 3);
  assert.deepEqual(g.roles, guild.roles, "collections not sent are kept");
  assert.deepEqual(g.emojis, guild.emojis);

  const roles = [role(id, { name: "@everyone", permissions: "8" })];
  send(cache, "GUILD_UPDATE", { id, name: "Again", roles, emojis: [], stickers: [], member_count: 10 });
  g = out(cache, id);
  assert.equal(g.name, "Again");
  assert.deepEqual(g.roles, roles);
  assert.deepEqual(g.emojis, []);
  assert.deepEqual(g.stickers, []);
  assert.equal(g.member_count, 10);
  assert.deepEqual(g.channels, guild.channels);
  assert.equal(cache.stats().kinds.roles.entries, 1);
  assert.equal(cache.stats().kinds.emojis.entries, 0);
});

Deno.test("cache: GUILD_DELETE unavailable keeps the data for a later GUILD_CREATE; without it the guild is removed", () => {
  const a = guildId(1);
  const b = guildId(2);
  const cache = cacheWith(ALL, fullGuild(a), fullGuild(b));
  const bytes = cache.stats().bytes;

  send(cache, "GUILD_DELETE", { id: a, unavailable: true });
  assert.equal(cache.available(a), false);
  assert.equal(cache.guildCreate(a), null);
  assert.deepEqual(cache.guildIds(), [a, b]);
  assert.equal(cache.stats().unavailable, 1);
  assert.equal(cache.stats().bytes, bytes, "an outage keeps what was known");
  // Events during the outage still apply.
  send(cache, "CHANNEL_CREATE", { ...channel("c9"), guild_id: a });

  send(cache, "GUILD_CREATE", { id: a, unavailable: true });
  assert.equal(cache.stats().unavailable, 1, "unavailable twice counts once");
  send(cache, "GUILD_CREATE", fullGuild(a));
  assert.equal(cache.available(a), true);
  assert.deepEqual(out(cache, a), expected(fullGuild(a)), "the fresh GUILD_CREATE replaces everything");
  assert.equal(cache.stats().unavailable, 0);

  send(cache, "GUILD_DELETE", { id: b });
  assert.deepEqual(cache.guildIds(), [a]);
  assert.equal(cache.guildCreate(b), null);
  assert.equal(cache.available(b), false);
  const stats = cache.stats();
  assert.equal(stats.guilds, 1);
  assert.equal(stats.kinds.channels.entries, 2, "the removed guild's entities are gone from the sizes");
  assert.equal(stats.bytes * 2, bytes, "two equal guilds, one left");

  send(cache, "GUILD_DELETE", { id: b });
  send(cache, "GUILD_DELETE", { id: guildId(7), unavailable: true });
  assert.deepEqual(cache.guildIds(), [a], "deleting an unknown guild changes nothing");
  assert.equal(cache.malformed, 0);
});

Deno.test("cache: a GUILD_CREATE marked unavailable for an unknown guild makes it known as unavailable", () => {
  const cache = cacheWith(ALL);
  const id = guildId(4);
  send(cache, "GUILD_CREATE", { id, unavailable: true });
  assert.deepEqual(cache.guildIds(), [id]);
  assert.equal(cache.available(id), false);
  assert.equal(cache.stats().unavailable, 1);
});

Deno.test("cache: a shard's READY prunes its guilds not listed, adds listed unknown ones, leaves other shards' alone", () => {
  const even = [guildId(1, 0), guildId(2, 0), guildId(3, 0)];
  const odd = [guildId(1, 1), guildId(2, 1)];
  for (const id of even) assert.equal((BigInt(id) >> 22n) % 2n, 0n);
  for (const id of odd) assert.equal((BigInt(id) >> 22n) % 2n, 1n);

  const cache = new GuildCache(ALL);
  cache.apply("READY", ready(even, [0, 2]));
  cache.apply("READY", ready(odd, [1, 2]));
  for (const id of [...even, ...odd]) send(cache, "GUILD_CREATE", fullGuild(id));
  assert.equal(cache.stats().unavailable, 0);

  // Shard 0 reconnects afresh: even[1] was left meanwhile, a new guild joined.
  const joined = guildId(9, 0);
  cache.apply("READY", ready([even[0], even[2], joined], [0, 2]));
  assert.deepEqual(cache.guildIds(), [even[0], even[2], ...odd, joined]);
  assert.equal(cache.available(joined), false);
  assert.equal(cache.available(even[0]), true, "a listed guild keeps its data until its GUILD_CREATE");
  assert.deepEqual(out(cache, even[0]), expected(fullGuild(even[0])));
  for (const id of odd) assert.deepEqual(out(cache, id), expected(fullGuild(id)));
  assert.equal(cache.stats().guilds, 5);
  assert.equal(cache.stats().kinds.channels.entries, 4 * 2);

  // Without `shard`, READY is shard [0, 1]: all guilds are its own.
  cache.apply("READY", ready([odd[0]]));
  assert.deepEqual(cache.guildIds(), [odd[0]]);
  assert.equal(cache.stats().kinds.channels.entries, 2);
});

Deno.test("cache: channel events set, update and delete; deleting a channel deletes its threads; DMs are ignored", () => {
  const id = guildId(1);
  const cache = cacheWith(ALL, fullGuild(id));
  send(cache, "THREAD_CREATE", { ...thread("t2", "c2"), guild_id: id });
  send(cache, "CHANNEL_CREATE", { ...channel("c3"), guild_id: id });
  send(cache, "CHANNEL_UPDATE", { ...channel("c1", { name: "renamed" }), guild_id: id });
  let g = out(cache, id);
  assert.deepEqual(ids(g.channels), ["c1", "c2", "c3"]);
  assert.equal((g.channels as Json[])[0].name, "renamed");

  send(cache, "CHANNEL_DELETE", { ...channel("c1"), guild_id: id });
  g = out(cache, id);
  assert.deepEqual(ids(g.channels), ["c2", "c3"]);
  assert.deepEqual(ids(g.threads), ["t2"], "c1's thread went with it");

  const before = cache.guildCreate(id);
  send(cache, "CHANNEL_CREATE", { id: "dm1", type: 1, recipients: [user("5")] });
  send(cache, "CHANNEL_DELETE", { id: "dm1", type: 1 });
  assert.equal(cache.guildCreate(id), before);
  assert.equal(cache.malformed, 0);
});

Deno.test("cache: thread events and THREAD_LIST_SYNC (by channel, or all threads)", () => {
  const id = guildId(1);
  const cache = cacheWith(ALL, fullGuild(id));
  send(cache, "THREAD_CREATE", { ...thread("t2", "c2"), guild_id: id, newly_created: true });
  send(cache, "THREAD_CREATE", { ...thread("t3", "c2"), guild_id: id });
  send(cache, "THREAD_UPDATE", { ...thread("t1", "c1", { name: "renamed" }), guild_id: id });
  let g = out(cache, id);
  assert.deepEqual(ids(g.threads), ["t1", "t2", "t3"]);
  assert.equal((g.threads as Json[])[0].name, "renamed");

  send(cache, "THREAD_DELETE", { id: "t2", guild_id: id, parent_id: "c2", type: 11 });
  assert.deepEqual(ids(out(cache, id).threads), ["t1", "t3"]);

  send(cache, "THREAD_LIST_SYNC", {
    guild_id: id,
    channel_ids: ["c2"],
    threads: [thread("t4", "c2"), thread("t5", "c2")],
    members: [],
  });
  assert.deepEqual(ids(out(cache, id).threads), ["t1", "t4", "t5"], "c1's thread was not synced");

  send(cache, "THREAD_LIST_SYNC", { guild_id: id, threads: [thread("t6", "c1")], members: [] });
  g = out(cache, id);
  assert.deepEqual(ids(g.threads), ["t6"], "without channel_ids, every thread is synced");
  assert.equal(cache.stats().kinds.threads.entries, 1);
});

Deno.test("cache: role create, update and delete", () => {
  const id = guildId(1);
  const cache = cacheWith(ALL, fullGuild(id));
  send(cache, "GUILD_ROLE_CREATE", { guild_id: id, role: role("r2") });
  send(cache, "GUILD_ROLE_UPDATE", { guild_id: id, role: role("r1", { name: "mods", color: 5 }) });
  let g = out(cache, id);
  assert.deepEqual(ids(g.roles), [id, "r1", "r2"]);
  assert.deepEqual((g.roles as Json[])[1], role("r1", { name: "mods", color: 5 }));
  send(cache, "GUILD_ROLE_DELETE", { guild_id: id, role_id: "r1" });
  g = out(cache, id);
  assert.deepEqual(ids(g.roles), [id, "r2"]);
});

Deno.test("cache: GUILD_EMOJIS_UPDATE and GUILD_STICKERS_UPDATE replace the whole collection", () => {
  const id = guildId(1);
  const cache = cacheWith(ALL, fullGuild(id));
  const emojis = [{ id: "e2", name: "a" }, { id: "e3", name: "b" }];
  const stickers = [{ id: "s2", name: "c" }];
  send(cache, "GUILD_EMOJIS_UPDATE", { guild_id: id, emojis });
  send(cache, "GUILD_STICKERS_UPDATE", { guild_id: id, stickers });
  let g = out(cache, id);
  assert.deepEqual(g.emojis, emojis);
  assert.deepEqual(g.stickers, stickers);
  send(cache, "GUILD_EMOJIS_UPDATE", { guild_id: id, emojis: [] });
  g = out(cache, id);
  assert.deepEqual(g.emojis, []);
  assert.deepEqual(cache.stats().kinds.emojis, { entries: 0, bytes: 0 });
});

Deno.test("cache: member add, update, remove and chunks keep members and member_count", () => {
  const id = guildId(1);
  const cache = cacheWith(ALL, fullGuild(id));
  send(cache, "GUILD_MEMBER_ADD", { ...member("3"), guild_id: id });
  let g = out(cache, id);
  assert.equal(g.member_count, 4);
  assert.deepEqual((g.members as Json[])[2], member("3"), "kept without guild_id");

  send(cache, "GUILD_MEMBER_UPDATE", {
    guild_id: id,
    user: user("3", "newname"),
    roles: ["r1", "r2"],
    nick: "three",
    joined_at: "2024-01-01T00:00:00.000000+00:00",
    communication_disabled_until: null,
  });
  g = out(cache, id);
  assert.deepEqual((g.members as Json[])[2], {
    ...member("3"),
    user: user("3", "newname"),
    roles: ["r1", "r2"],
    nick: "three",
    communication_disabled_until: null,
  }, "the update's fields over the known member's; the rest kept");

  send(cache, "GUILD_MEMBER_UPDATE", { guild_id: id, user: user("8"), roles: [], joined_at: null });
  assert.deepEqual((out(cache, id).members as Json[])[3], { user: user("8"), roles: [], joined_at: null });

  send(cache, "GUILD_MEMBER_REMOVE", { guild_id: id, user: user("1") });
  g = out(cache, id);
  assert.deepEqual(ids(g.members), ["2", "3", "8"]);
  assert.equal(g.member_count, 3);
  assert.deepEqual(ids(g.presences), [], "the member's presence went with it");

  send(cache, "GUILD_MEMBERS_CHUNK", {
    guild_id: id,
    members: [member("2", { nick: "chunked" }), member("10")],
    presences: [{ user: { id: "10" }, status: "idle", activities: [] }],
    chunk_index: 0,
    chunk_count: 1,
    nonce: "n",
  });
  g = out(cache, id);
  assert.deepEqual(ids(g.members), ["2", "3", "8", "10"]);
  assert.equal((g.members as Json[])[0].nick, "chunked");
  assert.deepEqual(g.presences, [{ user: { id: "10" }, status: "idle", activities: [] }]);
  assert.equal(g.member_count, 3, "a chunk lists members, it adds none");

  for (let i = 0; i < 5; i++) send(cache, "GUILD_MEMBER_REMOVE", { guild_id: id, user: user(`x${i}`) });
  assert.equal(out(cache, id).member_count, 0, "never below 0");
});

Deno.test("cache: PRESENCE_UPDATE sets by user id without guild_id; offline removes", () => {
  const id = guildId(1);
  const cache = cacheWith(ALL, fullGuild(id));
  const presence = {
    user: { id: "2", username: "two" },
    status: "dnd",
    activities: [{ name: "x", type: 0 }],
  };
  send(cache, "PRESENCE_UPDATE", { ...presence, guild_id: id, client_status: { web: "dnd" } });
  let g = out(cache, id);
  assert.deepEqual(ids(g.presences), ["1", "2"]);
  assert.deepEqual((g.presences as Json[])[1], { ...presence, client_status: { web: "dnd" } });
  send(cache, "PRESENCE_UPDATE", { user: { id: "1" }, guild_id: id, status: "offline", activities: [] });
  g = out(cache, id);
  assert.deepEqual(ids(g.presences), ["2"]);
  send(cache, "PRESENCE_UPDATE", { user: { id: "1" }, status: "online" });
  assert.deepEqual(ids(out(cache, id).presences), ["2"], "a presence without guild is no guild's");
  assert.equal(cache.malformed, 0);
});

Deno.test("cache: VOICE_STATE_UPDATE sets without guild_id and member; leaving the channel removes", () => {
  const id = guildId(1);
  const cache = cacheWith(ALL, fullGuild(id));
  const state = { channel_id: "c2", user_id: "1", session_id: "vs1", self_mute: false, deaf: false };
  send(cache, "VOICE_STATE_UPDATE", { ...state, guild_id: id, member: member("1") });
  let g = out(cache, id);
  assert.deepEqual(ids(g.voice_states), ["2", "1"]);
  assert.deepEqual((g.voice_states as Json[])[1], state);
  send(cache, "VOICE_STATE_UPDATE", { ...state, guild_id: id, channel_id: null });
  send(cache, "VOICE_STATE_UPDATE", { ...state, user_id: "2", guild_id: id, channel_id: null });
  g = out(cache, id);
  assert.deepEqual(g.voice_states, []);
  assert.deepEqual(cache.stats().kinds.voiceStates, { entries: 0, bytes: 0 });
});

Deno.test("cache: stage instances and scheduled events are set and deleted", () => {
  const id = guildId(1);
  const cache = cacheWith(ALL, fullGuild(id));
  const stage = { id: "si2", guild_id: id, channel_id: "c2", topic: "new", privacy_level: 2 };
  send(cache, "STAGE_INSTANCE_CREATE", stage);
  send(cache, "STAGE_INSTANCE_UPDATE", { ...stage, topic: "changed" });
  send(cache, "STAGE_INSTANCE_DELETE", { id: "si1", guild_id: id, channel_id: "c2" });
  const event = { id: "ev2", guild_id: id, name: "meet", status: 1, entity_type: 3 };
  send(cache, "GUILD_SCHEDULED_EVENT_CREATE", event);
  send(cache, "GUILD_SCHEDULED_EVENT_UPDATE", { id: "ev1", guild_id: id, name: "party!", status: 2 });
  send(cache, "GUILD_SCHEDULED_EVENT_DELETE", { ...event });
  const g = out(cache, id);
  assert.deepEqual(g.stage_instances, [{ ...stage, topic: "changed" }]);
  assert.deepEqual(g.guild_scheduled_events, [{ id: "ev1", guild_id: id, name: "party!", status: 2 }]);
});

Deno.test("cache: events of a guild the cache does not know are ignored", () => {
  const id = guildId(1);
  const cache = cacheWith(ALL, fullGuild(id));
  const before = cache.stats();
  const other = guildId(2);
  send(cache, "CHANNEL_CREATE", { ...channel("c9"), guild_id: other });
  send(cache, "GUILD_MEMBER_ADD", { ...member("9"), guild_id: other });
  send(cache, "GUILD_ROLE_CREATE", { guild_id: other, role: role("r9") });
  send(cache, "GUILD_UPDATE", { id: other, name: "x" });
  send(cache, "VOICE_STATE_UPDATE", { guild_id: other, channel_id: "c", user_id: "1" });
  assert.deepEqual(cache.stats(), before);
  assert.deepEqual(cache.guildIds(), [id]);
  assert.equal(cache.malformed, 0);
});

Deno.test("cache: kinds that are off keep nothing, give [] and cost no bytes; their events are not read", () => {
  const id = guildId(1);
  const guild = fullGuild(id);
  const cache = cacheWith(NONE, guild);
  const g = out(cache, id);
  const own = Object.fromEntries(
    Object.entries(guild).filter(([, v]) => !Array.isArray(v) || v === guild.features),
  );
  assert.deepEqual(g, {
    ...own,
    unavailable: false,
    channels: [],
    threads: [],
    roles: [],
    emojis: [],
    stickers: [],
    members: [],
    presences: [],
    voice_states: [],
    stage_instances: [],
    guild_scheduled_events: [],
  });
  const stats = cache.stats();
  for (const [kind, size] of Object.entries(stats.kinds)) {
    if (kind !== "guilds") assert.deepEqual(size, { entries: 0, bytes: 0 }, kind);
  }
  assert.equal(stats.bytes, stats.kinds.guilds.bytes);

  for (
    const t of [
      "CHANNEL_CREATE",
      "GUILD_MEMBER_UPDATE",
      "PRESENCE_UPDATE",
      "VOICE_STATE_UPDATE",
      "THREAD_LIST_SYNC",
    ]
  ) {
    assert.equal(cache.handles(t), false, t);
  }
  for (
    const t of [
      "READY",
      "GUILD_CREATE",
      "GUILD_UPDATE",
      "GUILD_DELETE",
      "GUILD_MEMBER_ADD",
      "GUILD_MEMBER_REMOVE",
    ]
  ) {
    assert.equal(cache.handles(t), true, t);
  }
  send(cache, "CHANNEL_CREATE", { ...channel("c9"), guild_id: id });
  send(cache, "GUILD_MEMBER_ADD", { ...member("9"), guild_id: id });
  assert.equal(cache.stats().bytes, stats.bytes);
  // GUILD_UPDATE is always read (the guild's own fields); the collections it carries are still not kept.
  send(cache, "GUILD_UPDATE", {
    id,
    name: "x",
    roles: [role("r5")],
    emojis: [{ id: "e5" }],
    stickers: [{ id: "s5" }],
  });
  assert.deepEqual(out(cache, id).roles, []);
  assert.deepEqual(cache.stats().kinds.roles, { entries: 0, bytes: 0 });
  assert.deepEqual(cache.stats().kinds.emojis, { entries: 0, bytes: 0 });
  assert.equal(out(cache, id).member_count, 4, "member_count is kept whatever the kinds");
});

Deno.test("cache: each kind alone keeps only its own collection", () => {
  const id = guildId(1);
  const guild = expected(fullGuild(id));
  const fields = {
    channels: "channels",
    threads: "threads",
    roles: "roles",
    emojis: "emojis",
    stickers: "stickers",
    members: "members",
    presences: "presences",
    voiceStates: "voice_states",
    stageInstances: "stage_instances",
    scheduledEvents: "guild_scheduled_events",
  } as const;
  for (const [kind, field] of Object.entries(fields)) {
    const cache = cacheWith({ ...NONE, users: true, [kind]: true }, fullGuild(id));
    const g = out(cache, id);
    for (const other of Object.values(fields)) {
      assert.deepEqual(g[other], other === field ? guild[other] : [], `${kind}: ${other}`);
    }
  }
});

Deno.test("cache: users off keeps only the user's id in members and presences", () => {
  const id = guildId(1);
  const cache = cacheWith({ ...ALL, users: false }, fullGuild(id));
  send(cache, "GUILD_MEMBER_ADD", { ...member("3"), guild_id: id });
  send(cache, "GUILD_MEMBER_UPDATE", { guild_id: id, user: user("2", "renamed"), roles: [], nick: "x" });
  send(cache, "PRESENCE_UPDATE", { guild_id: id, user: user("3"), status: "online", activities: [] });
  send(cache, "GUILD_MEMBERS_CHUNK", { guild_id: id, members: [member("4")], presences: [] });
  const g = out(cache, id);
  assert.deepEqual(g.members, [
    { ...member("1"), user: { id: "1" } },
    { ...member("2", { nick: "x" }), roles: [], user: { id: "2" } },
    { ...member("3"), user: { id: "3" } },
    { ...member("4"), user: { id: "4" } },
  ]);
  assert.deepEqual(g.presences, [
    { user: { id: "1" }, status: "online", activities: [], client_status: { desktop: "online" } },
    { user: { id: "3" }, status: "online", activities: [] },
  ]);
  assert.equal(JSON.stringify(g.members).includes("username"), false);
  assert.equal(JSON.stringify(g.voice_states).includes("username"), false);
  const withUsers = cacheWith(ALL, fullGuild(id)).stats().kinds.members;
  const withoutUsers = cacheWith({ ...ALL, users: false }, fullGuild(id)).stats().kinds.members;
  assert.equal(withoutUsers.entries, withUsers.entries);
  assert.ok(withoutUsers.bytes < withUsers.bytes * 0.75, `${withoutUsers.bytes} vs ${withUsers.bytes} bytes`);
});

Deno.test("cache: events the cache does not use are not read, and change nothing", () => {
  const id = guildId(1);
  const cache = cacheWith(ALL, fullGuild(id));
  const before = { text: cache.guildCreate(id), stats: cache.stats(), user: cache.user };
  for (const t of ["MESSAGE_CREATE", "TYPING_START", "INTERACTION_CREATE", "RESUMED", "", "guild_create"]) {
    assert.equal(cache.handles(t), false, t);
    cache.apply(t, "not json at all {");
    cache.apply(t, JSON.stringify({ guild_id: id, id: "c1", channel_id: "c1" }));
  }
  assert.equal(cache.malformed, 0, "not parsed, so not even malformed");
  assert.deepEqual({ text: cache.guildCreate(id), stats: cache.stats(), user: cache.user }, before);
});

Deno.test("cache: malformed events never throw, change nothing and are counted", () => {
  const id = guildId(1);
  const cache = cacheWith(ALL, fullGuild(id));
  const before = {
    text: cache.guildCreate(id),
    stats: cache.stats(),
    user: cache.user,
    ids: cache.guildIds(),
  };
  const bad: [string, string][] = [
    ["GUILD_CREATE", "{"],
    ["GUILD_CREATE", ""],
    ["GUILD_CREATE", "null"],
    ["GUILD_CREATE", "[1,2]"],
    ["GUILD_CREATE", '"text"'],
    ["GUILD_CREATE", '{"name":"no id"}'],
    ["GUILD_CREATE", '{"id":"not-a-snowflake","name":"x"}'],
    ["GUILD_CREATE", '{"id":12345}'],
    ["READY", '{"guilds":[]}'],
    ["READY", JSON.stringify({ user: BOT, guilds: "all" })],
    ["READY", JSON.stringify({ user: BOT, guilds: [], shard: [3, 2] })],
    ["READY", JSON.stringify({ user: BOT, guilds: [], shard: ["0", "1"] })],
    ["READY", JSON.stringify({ user: BOT, guilds: [], shard: [0, 0] })],
    ["GUILD_UPDATE", '{"name":"x"}'],
    ["GUILD_DELETE", "{}"],
    ["CHANNEL_CREATE", JSON.stringify({ guild_id: id, name: "no id" })],
    ["CHANNEL_UPDATE", JSON.stringify({ guild_id: 5, id: "c1" })],
    ["CHANNEL_DELETE", JSON.stringify({ guild_id: id })],
    ["THREAD_CREATE", JSON.stringify({ guild_id: id, id: 7 })],
    ["THREAD_DELETE", JSON.stringify({ guild_id: id })],
    ["THREAD_LIST_SYNC", JSON.stringify({ guild_id: id })],
    ["THREAD_LIST_SYNC", JSON.stringify({ guild_id: id, channel_ids: "c1", threads: [] })],
    ["GUILD_ROLE_CREATE", JSON.stringify({ guild_id: id, role: "r" })],
    ["GUILD_ROLE_UPDATE", JSON.stringify({ guild_id: id, role: { name: "no id" } })],
    ["GUILD_ROLE_DELETE", JSON.stringify({ guild_id: id })],
    ["GUILD_EMOJIS_UPDATE", JSON.stringify({ guild_id: id, emojis: {} })],
    ["GUILD_STICKERS_UPDATE", JSON.stringify({ guild_id: id })],
    ["GUILD_MEMBER_ADD", JSON.stringify({ guild_id: id, nick: "no user" })],
    ["GUILD_MEMBER_ADD", JSON.stringify({ guild_id: id, user: { username: "no id" } })],
    ["GUILD_MEMBER_UPDATE", JSON.stringify({ guild_id: id, user: "1" })],
    ["GUILD_MEMBER_REMOVE", JSON.stringify({ guild_id: id, user: null })],
    ["GUILD_MEMBERS_CHUNK", JSON.stringify({ guild_id: id, members: null })],
    ["PRESENCE_UPDATE", JSON.stringify({ guild_id: id, status: "online" })],
    ["VOICE_STATE_UPDATE", JSON.stringify({ guild_id: id, channel_id: "c2" })],
    ["VOICE_STATE_UPDATE", JSON.stringify({ guild_id: id, user_id: "1", channel_id: 5 })],
    ["STAGE_INSTANCE_CREATE", JSON.stringify({ guild_id: id, topic: "no id" })],
    ["GUILD_SCHEDULED_EVENT_DELETE", JSON.stringify({ guild_id: id, id: null })],
    ["USER_UPDATE", "[]"],
  ];
  for (const [t, d] of bad) {
    assert.doesNotThrow(() => cache.apply(t, d), `${t} ${d}`);
  }
  assert.equal(cache.malformed, bad.length);
  assert.deepEqual(
    { text: cache.guildCreate(id), stats: cache.stats(), user: cache.user, ids: cache.guildIds() },
    before,
  );
  // Odd keys are kept as keys, not as prototypes.
  const odd = guildId(6);
  cache.apply("GUILD_CREATE", `{"id":"${odd}","__proto__":{"x":1},"channels":[{"id":"c","__proto__":null}]}`);
  assert.deepEqual(JSON.parse(cache.guildCreate(odd)!).channels, [JSON.parse('{"id":"c","__proto__":null}')]);
  assert.equal(JSON.parse(cache.guildCreate(odd)!).__proto__.x, 1);
});

Deno.test("cache: stats follow every change and return to zero when the guilds go", () => {
  const a = guildId(1);
  const b = guildId(2);
  const cache = cacheWith(ALL, fullGuild(a), fullGuild(b));
  const fields = ["channels", "threads", "roles", "members", "presences", "voice_states"];
  const check = () => {
    const s = cache.stats();
    const sum = s.kinds.channels.bytes + s.kinds.threads.bytes + s.kinds.roles.bytes + s.kinds.members.bytes +
      s.kinds.presences.bytes + s.kinds.voiceStates.bytes;
    assert.equal(sum, bytesFromOutput(cache, fields));
    assert.equal(s.bytes, Object.values(s.kinds).reduce((n, k) => n + k.bytes, 0));
  };
  check();
  send(cache, "CHANNEL_UPDATE", {
    ...channel("c1", { name: "a much longer name than before" }),
    guild_id: a,
  });
  send(cache, "GUILD_MEMBER_UPDATE", { guild_id: b, user: user("1"), roles: [] });
  send(cache, "VOICE_STATE_UPDATE", { guild_id: a, user_id: "2", channel_id: null });
  send(cache, "PRESENCE_UPDATE", { guild_id: b, user: { id: "1" }, status: "offline" });
  send(cache, "CHANNEL_DELETE", { guild_id: b, id: "c1" });
  check();
  assert.deepEqual(cache.stats().kinds.users, { entries: 0, bytes: 0 }, "users are counted inside members");
  cache.apply("READY", ready([]));
  assert.equal(cache.stats().guilds, 0);
  assert.equal(cache.stats().bytes, 0);
  for (const size of Object.values(cache.stats().kinds)) assert.deepEqual(size, { entries: 0, bytes: 0 });
});

Deno.test("cache: a typical guild (50 channels, 20 roles, 100 members) holds its entities' JSON length within 10%", () => {
  const id = guildId(1);
  const channels = Array.from({ length: 50 }, (_, i) =>
    channel(String(1000 + i), {
      topic: i % 3 === 0 ? `Topic of channel ${i}` : null,
      permission_overwrites: [{ id: "r1", type: 0, allow: "1024", deny: "0" }],
      parent_id: i < 5 ? null : String(1000 + (i % 5)),
      rate_limit_per_user: 0,
      nsfw: false,
    }));
  const roles = Array.from(
    { length: 20 },
    (_, i) =>
      role(String(2000 + i), { color: i * 1000, hoist: i < 3, icon: null, mentionable: false, flags: 0 }),
  );
  const members = Array.from({ length: 100 }, (_, i) =>
    member(String(3000 + i), {
      roles: roles.slice(0, i % 4).map((r) => r.id),
      nick: i % 2 === 0 ? `nick${i}` : null,
      avatar: null,
      premium_since: null,
      pending: false,
    }));
  const own = {
    id,
    name: "A typical guild",
    icon: "a_0123456789abcdef0123456789abcdef",
    owner_id: "3000",
    features: ["COMMUNITY", "NEWS"],
    verification_level: 1,
    preferred_locale: "en-US",
    joined_at: "2023-05-05T00:00:00.000000+00:00",
    large: false,
  };
  // What Discord sends: each entity's JSON text.
  const entityBytes = [...channels, ...roles, ...members].reduce((n, e) => n + JSON.stringify(e).length, 0);
  const ownBytes = JSON.stringify(own).length;
  const d = JSON.stringify({ ...own, member_count: 100, channels, roles, members });

  const cache = new GuildCache(DEFAULT_CACHE_KINDS);
  cache.apply("READY", ready([id]));
  cache.apply("GUILD_CREATE", d);
  const stats = cache.stats();
  const within = (held: number, sent: number, what: string) =>
    assert.ok(Math.abs(held - sent) <= sent * 0.1, `${what}: ${held} bytes held for ${sent} sent`);
  within(stats.bytes, entityBytes + ownBytes, "the guild");
  within(stats.kinds.channels.bytes, channels.reduce((n, e) => n + JSON.stringify(e).length, 0), "channels");
  within(stats.kinds.members.bytes, members.reduce((n, e) => n + JSON.stringify(e).length, 0), "members");
  within(stats.kinds.guilds.bytes, ownBytes, "the guild's own fields");
  // And the GUILD_CREATE given back is the texts held, plus its punctuation.
  const text = cache.guildCreate(id)!;
  within(text.length, stats.bytes, "the GUILD_CREATE's length");
  assert.ok(text.length < d.length + 300, "nothing is held twice");
  assert.equal(stats.kinds.members.entries, 100);
  assert.equal(stats.kinds.channels.entries, 50);
  assert.equal(stats.kinds.roles.entries, 20);
});

// ---- random sequences against a plain model ----

type Op =
  | { t: "channel"; id: number; name: string }
  | { t: "channel_delete"; id: number }
  | { t: "role"; id: number; color: number }
  | { t: "role_delete"; id: number }
  | { t: "member_add"; id: number }
  | { t: "member_update"; id: number; nick: string }
  | { t: "member_remove"; id: number }
  | { t: "outage" }
  | { t: "recreate" }
  | { t: "junk"; text: string };

/** The model: what a GUILD_CREATE should hold after the ops, as plain objects. */
interface Model {
  available: boolean;
  memberCount: number;
  channels: Map<string, Json>;
  roles: Map<string, Json>;
  members: Map<string, Json>;
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ t: fc.constant("channel" as const), id: fc.nat(6), name: fc.string({ maxLength: 6 }) }),
  fc.record({ t: fc.constant("channel_delete" as const), id: fc.nat(6) }),
  fc.record({ t: fc.constant("role" as const), id: fc.nat(4), color: fc.nat(99) }),
  fc.record({ t: fc.constant("role_delete" as const), id: fc.nat(4) }),
  fc.record({ t: fc.constant("member_add" as const), id: fc.nat(6) }),
  fc.record({ t: fc.constant("member_update" as const), id: fc.nat(6), nick: fc.string({ maxLength: 6 }) }),
  fc.record({ t: fc.constant("member_remove" as const), id: fc.nat(6) }),
  fc.constant({ t: "outage" as const }),
  fc.constant({ t: "recreate" as const }),
  fc.record({ t: fc.constant("junk" as const), text: fc.string({ maxLength: 10 }) }),
);

Deno.test("cache: random sequences of events give the GUILD_CREATE a plain model of the same events gives", () => {
  const id = guildId(1);
  const start = {
    id,
    name: "g",
    member_count: 1,
    channels: [channel("c0")],
    roles: [],
    members: [member("m0")],
  };
  fc.assert(
    fc.property(fc.array(opArb, { maxLength: 40 }), (ops) => {
      const cache = cacheWith(ALL, start);
      const fresh = (): Model => ({
        available: true,
        memberCount: 1,
        channels: new Map([["c0", channel("c0")]]),
        roles: new Map(),
        members: new Map([["m0", member("m0")]]),
      });
      let model = fresh();
      for (const op of ops) {
        switch (op.t) {
          case "channel": {
            const c = channel(`c${op.id}`, { name: op.name });
            send(cache, "CHANNEL_UPDATE", { ...c, guild_id: id });
            model.channels.set(c.id, { ...c, guild_id: id });
            break;
          }
          case "channel_delete":
            send(cache, "CHANNEL_DELETE", { id: `c${op.id}`, guild_id: id });
            model.channels.delete(`c${op.id}`);
            break;
          case "role": {
            const r = role(`r${op.id}`, { color: op.color });
            send(cache, "GUILD_ROLE_UPDATE", { guild_id: id, role: r });
            model.roles.set(r.id, r);
            break;
          }
          case "role_delete":
            send(cache, "GUILD_ROLE_DELETE", { guild_id: id, role_id: `r${op.id}` });
            model.roles.delete(`r${op.id}`);
            break;
          case "member_add": {
            const m = member(`m${op.id}`);
            send(cache, "GUILD_MEMBER_ADD", { ...m, guild_id: id });
            model.members.set(`m${op.id}`, m);
            model.memberCount++;
            break;
          }
          case "member_update": {
            const update = { user: user(`m${op.id}`), roles: [], nick: op.nick };
            send(cache, "GUILD_MEMBER_UPDATE", { guild_id: id, ...update });
            model.members.set(`m${op.id}`, { ...model.members.get(`m${op.id}`), ...update });
            break;
          }
          case "member_remove":
            send(cache, "GUILD_MEMBER_REMOVE", { guild_id: id, user: user(`m${op.id}`) });
            model.members.delete(`m${op.id}`);
            model.memberCount = Math.max(0, model.memberCount - 1);
            break;
          case "outage":
            send(cache, "GUILD_DELETE", { id, unavailable: true });
            model.available = false;
            break;
          case "recreate":
            send(cache, "GUILD_CREATE", start);
            model = fresh();
            break;
          case "junk":
            cache.apply("CHANNEL_UPDATE", op.text);
            cache.apply("MESSAGE_CREATE", op.text);
            break;
        }
      }
      assert.equal(cache.available(id), model.available);
      if (!model.available) {
        assert.equal(cache.guildCreate(id), null);
        return;
      }
      const g = out(cache, id);
      assert.equal(g.member_count, model.memberCount);
      assert.deepEqual(g.channels, [...model.channels.values()]);
      assert.deepEqual(g.roles, [...model.roles.values()]);
      assert.deepEqual(g.members, [...model.members.values()]);
      const s = cache.stats();
      assert.equal(s.kinds.channels.entries, model.channels.size);
      assert.equal(
        s.kinds.channels.bytes + s.kinds.roles.bytes + s.kinds.members.bytes,
        bytesFromOutput(cache, ["channels", "roles", "members"]),
      );
    }),
    { numRuns: 300, seed: 0xcac4e },
  );
});
