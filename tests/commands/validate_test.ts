/**
 * Commands are checked against Discord's documented payloads before they reach a shard (Discord closes
 * the connection for a bad payload of a known op) and routed over every shard of the bot.
 */
import assert from "node:assert/strict";
import { shardForGuild } from "../../src/gateway/protocol.ts";
import { parseCommand } from "../../src/commands/validate.ts";

/** A guild id owned by `shard` of `count` (the n-th such id). */
function guildOf(shard: number, count: number, n = 0): string {
  let found = -1;
  for (let i = 1n;; i++) {
    const id = String(i << 22n);
    if (shardForGuild(id, count) === shard && ++found === n) return id;
  }
}

function reason(command: unknown, count = 4): string {
  const parsed = parseCommand(JSON.stringify(command), count);
  assert.equal(parsed.ok, false, `${JSON.stringify(command)} should be refused`);
  return (parsed as { reason: string }).reason;
}

function parts(command: unknown, count = 4) {
  const parsed = parseCommand(JSON.stringify(command), count);
  assert.ok(parsed.ok, `${JSON.stringify(command)}: ${(parsed as { reason?: string }).reason}`);
  return parsed.parts;
}

const presence = { since: null, activities: [{ name: "chess", type: 0 }], status: "online", afk: false };

Deno.test("op 31 (Discord's shape): guild ids grouped by their shard, one op 31 per shard", () => {
  const a0 = guildOf(0, 4), b0 = guildOf(0, 4, 1), a2 = guildOf(2, 4);
  assert.deepEqual(parts({ op: 31, d: { guild_ids: [a2, a0, b0, a0] } }), [
    { shard: 0, d: { guild_ids: [a0, b0] } },
    { shard: 2, d: { guild_ids: [a2] } },
  ]);
  assert.match(
    reason({ op: 31, d: { guild_ids: [] } }),
    /op 31 needs d.guild_ids, a non-empty list of snowflake/,
  );
  assert.match(reason({ op: 31, d: { guild_ids: [1234] } }), /op 31 needs d.guild_ids/);
  assert.match(reason({ op: 31, d: { guild_id: a0 } }), /op 31 needs d.guild_ids/);
  assert.match(
    reason({ op: 31, shard: 0, d: { guild_ids: [a0, a2] } }),
    new RegExp(`guild ${a2} belongs to shard 2, not 0`),
  );
});

Deno.test("op 43: fields is a non-empty list of distinct known fields", () => {
  const g = guildOf(1, 4);
  assert.deepEqual(parts({ op: 43, d: { guild_id: g, fields: ["status", "voice_start_time"] } }), [
    { shard: 1, d: { guild_id: g, fields: ["status", "voice_start_time"] } },
  ]);
  const expected = /^op 43 needs d\.fields, a non-empty list of: status, voice_start_time/;
  assert.match(reason({ op: 43, d: { guild_id: g } }), expected);
  assert.match(reason({ op: 43, d: { guild_id: g, fields: [] } }), expected);
  assert.match(reason({ op: 43, d: { guild_id: g, fields: ["topic"] } }), /not "topic"/);
  assert.match(reason({ op: 43, d: { guild_id: g, fields: ["status", "status"] } }), /each at most once/);
  assert.match(reason({ op: 43, d: { fields: ["status"] } }), /op 43 needs d.guild_id, a snowflake string/);
});

Deno.test("op 8: query with limit, or user_ids (at most 100); presences boolean; nonce ≤ 32 bytes", () => {
  const g = guildOf(3, 4);
  assert.equal(parts({ op: 8, d: { guild_id: g, query: "", limit: 0 } })[0].shard, 3);
  parts({ op: 8, d: { guild_id: g, user_ids: "80351110224678912", presences: true, nonce: "n".repeat(32) } });
  parts({ op: 8, d: { guild_id: g, user_ids: Array(100).fill("80351110224678912") } });
  assert.match(
    reason({ op: 8, d: { guild_id: [g], query: "", limit: 0 } }),
    /op 8 needs d.guild_id, a snowflake/,
  );
  assert.match(
    reason({ op: 8, d: { guild_id: g } }),
    /op 8 needs d.query \(a string, with d.limit\) or d.user_ids/,
  );
  assert.match(reason({ op: 8, d: { guild_id: g, query: "a", user_ids: ["1"], limit: 1 } }), /not both/);
  assert.match(reason({ op: 8, d: { guild_id: g, query: "a" } }), /op 8 needs d.limit, an integer ≥ 0/);
  assert.match(reason({ op: 8, d: { guild_id: g, query: "a", limit: -1 } }), /d.limit, an integer ≥ 0/);
  assert.match(reason({ op: 8, d: { guild_id: g, query: 5, limit: 1 } }), /op 8 needs d.query, a string/);
  assert.match(
    reason({ op: 8, d: { guild_id: g, user_ids: Array(101).fill("1") } }),
    /d.user_ids, a snowflake string or a list of 1 to 100/,
  );
  assert.match(reason({ op: 8, d: { guild_id: g, user_ids: [1] } }), /d.user_ids/);
  assert.match(
    reason({ op: 8, d: { guild_id: g, user_ids: "1", presences: "yes" } }),
    /d.presences must be a boolean/,
  );
  assert.match(
    reason({ op: 8, d: { guild_id: g, user_ids: "1", nonce: "é".repeat(17) } }),
    /d.nonce must be a string of at most 32 bytes/,
  );
});

Deno.test("op 4: channel_id snowflake or null, self_mute and self_deaf booleans", () => {
  const g = guildOf(0, 4);
  parts({ op: 4, d: { guild_id: g, channel_id: null, self_mute: false, self_deaf: true } });
  parts({ op: 4, d: { guild_id: g, channel_id: "127121515262115840", self_mute: false, self_deaf: false } });
  assert.match(
    reason({ op: 4, d: { guild_id: g, self_mute: false, self_deaf: false } }),
    /op 4 needs d.channel_id/,
  );
  assert.match(
    reason({ op: 4, d: { guild_id: g, channel_id: null, self_deaf: false } }),
    /op 4 needs d.self_mute/,
  );
  assert.match(
    reason({ op: 4, d: { guild_id: g, channel_id: null, self_mute: true, self_deaf: "no" } }),
    /op 4 needs d.self_deaf, a boolean/,
  );
});

Deno.test("op 3: since, activities {name, type 0-6}, status, afk; to every shard of the bot or `shard`", () => {
  assert.deepEqual(parts({ op: 3, d: presence }).map((p) => p.shard), [0, 1, 2, 3]);
  const all = parseCommand(JSON.stringify({ op: 3, d: presence }), 4);
  assert.ok(all.ok && all.everyShard);
  const one = parseCommand(JSON.stringify({ op: 3, shard: 2, d: presence }), 4);
  assert.ok(one.ok && !one.everyShard && one.parts.length === 1 && one.parts[0].shard === 2);
  parts({ op: 3, d: { ...presence, since: 1700000000000, activities: [{ name: "x", type: 6 }] } });
  assert.match(reason({ op: 3, d: { ...presence, since: "now" } }), /op 3 needs d.since, a Unix time/);
  assert.match(reason({ op: 3, d: { ...presence, activities: undefined } }), /op 3 needs d.activities/);
  assert.match(
    reason({ op: 3, d: { ...presence, activities: [{ name: "x", type: 7 }] } }),
    /d.activities\[0\] needs type, an integer from 0 to 6/,
  );
  assert.match(
    reason({ op: 3, d: { ...presence, activities: [{ type: 0 }] } }),
    /d.activities\[0\] needs name/,
  );
  assert.match(
    reason({ op: 3, d: { ...presence, status: "away" } }),
    /op 3 needs d.status, one of: online, dnd, idle, invisible, offline/,
  );
  assert.match(reason({ op: 3, d: { ...presence, afk: 0 } }), /op 3 needs d.afk, a boolean/);
  assert.match(
    reason({ op: 3, shard: 4, d: presence }),
    /shard 4 is not a shard of this bot: it has 4 \(0-3\)/,
  );
});

Deno.test("shape: JSON object, known op, object d, at most 4096 bytes", () => {
  const notJson = parseCommand("{nope", 1);
  assert.ok(!notJson.ok && /^not JSON/.test(notJson.reason));
  assert.match(reason([1, 2]), /a command is a JSON object/);
  assert.match(reason({ op: 2, d: {} }), /op 2 is not a command; allowed: 3 \(presence update\)/);
  assert.match(reason({ op: 8, d: "x" }), /op 8 needs an object d/);
  assert.match(
    reason({ op: 3, d: { ...presence, x: "y".repeat(5000) } }),
    /bytes; Discord accepts at most 4096/,
  );
  const g = guildOf(1, 4);
  assert.match(
    reason({ op: 8, shard: 2, d: { guild_id: g, query: "", limit: 0 } }),
    new RegExp(`guild ${g} belongs to shard 1, not 2`),
  );
});
