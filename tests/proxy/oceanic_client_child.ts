/**
 * A bot process for the proxy tests: Oceanic.js (another real client library, test-only), its REST pointed
 * at the proxy, with transport compression, printing every dispatch as one JSON line `{shard, t, s, d}` and,
 * once Oceanic is ready, `{t: "CLIENT_READY", d: {guilds: [{id, name, channels, members}]}}`.
 *
 * Usage: deno run -A oceanic_client_child.ts <api base URL> <token> <unused> [zlib-stream|zstd-stream]
 */
import { Client } from "npm:oceanic.js@1.15.0";

const [api, token, , compress] = Deno.args;
const encoder = new TextEncoder();
const client = new Client({
  auth: `Bot ${token}`,
  rest: { baseURL: `${api}/api/v10` },
  gateway: {
    intents: ["GUILDS", "GUILD_MESSAGES", "GUILD_MEMBERS"],
    ...(compress ? { compress: compress as "zlib-stream" | "zstd-stream" } : {}),
  },
});
client.on("packet", (packet, shardId) => {
  if (packet.op !== 0) return;
  const { t, s, d } = packet as { t: string; s: number; d: unknown };
  Deno.stdout.writeSync(encoder.encode(JSON.stringify({ shard: shardId, t, s, d }) + "\n"));
});
client.on("ready", () => {
  const guilds = client.guilds.map((g) => ({
    id: g.id,
    name: g.name,
    channels: g.channels.size,
    members: g.members.size,
  }));
  Deno.stdout.writeSync(
    encoder.encode(JSON.stringify({ shard: -1, t: "CLIENT_READY", s: 0, d: { guilds } }) + "\n"),
  );
});
client.on("error", (error) => console.error(`error: ${error}`));
await client.connect();
console.error("connected");
