/**
 * Memory per cached guild in proxy mode: `deno run -A --v8-flags=--expose-gc bench/proxy_cache_memory.ts
 * [members per guild]`. Builds 2 000 GUILD_CREATEs as the test double sends them (8 channels, roles,
 * emojis, the given number of members), feeds them to the proxy's cache and prints, per guild, the JSON
 * Discord sent, what the cache counts (its JSON texts), and the V8 heap the cache takes (measured: the heap
 * with the cache and without the payloads, minus the heap with the payloads, plus the payloads' bytes —
 * one byte a character, all ASCII).
 */
import { GuildCache } from "../src/proxy/cache.ts";
import { guildCreatePayload, guildIdFor } from "../tests/fake_discord/events.ts";

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error("run with --v8-flags=--expose-gc");
const guilds = 2000;
const members = Number(Deno.args[0] ?? 50);
const payloads = Array.from(
  { length: guilds },
  (_, i) => JSON.stringify(guildCreatePayload(guildIdFor(0, 1, i), i, members)),
);
const json = payloads.reduce((sum, p) => sum + p.length, 0);
gc();
gc();
const before = Deno.memoryUsage().heapUsed;
const cache = new GuildCache();
for (const p of payloads) cache.apply("GUILD_CREATE", p);
payloads.length = 0;
gc();
gc();
const after = Deno.memoryUsage().heapUsed;
console.log(JSON.stringify({
  guilds: cache.stats().guilds,
  members,
  json_bytes_per_guild: Math.round(json / guilds),
  cached_json_bytes_per_guild: Math.round(cache.stats().bytes / guilds),
  heap_bytes_per_guild: Math.round((after - before + json) / guilds),
}));
