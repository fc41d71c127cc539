/**
 * A bot process for the proxy tests: the full discord.js v14 `Client` (test-only), its REST pointed at the
 * proxy, printing every dispatch as one JSON line `{shard, t, s, d}` on stdout and, once discord.js says it
 * is ready, a line `{t: "CLIENT_READY", d: {guilds: [{id, available, name, channels, members}]}}` of what its
 * caches hold. Its sessions are kept in a file (session_file.ts; discord.js keeps them in memory, so the
 * documented `ws.buildStrategy` hook hands them over), so a killed and restarted process RESUMEs.
 *
 * Usage: deno run -A djs_client_child.ts <api base URL> <token> <session file>
 */
import { Client, Events, GatewayIntentBits } from "npm:discord.js@14.28.1";
// The @discordjs/ws that discord.js 14.28 itself uses.
import { SimpleShardingStrategy } from "npm:@discordjs/ws@1.2.3";
import { SessionFile } from "./session_file.ts";

const [api, token, path] = Deno.args;
const sessions = new SessionFile(path);
const client = new Client({
  intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages, GatewayIntentBits.GuildMembers],
  rest: { api: `${api}/api` },
  // The shard count from GET /gateway/bot (the proxy answers with the bot's).
  shards: "auto",
  ws: {
    // deno-lint-ignore no-explicit-any
    buildStrategy: (manager: any) => {
      const update = manager.options.updateSessionInfo;
      manager.options.retrieveSessionInfo = (shardId: number) => sessions.retrieve(shardId);
      // deno-lint-ignore no-explicit-any
      manager.options.updateSessionInfo = (shardId: number, info: any) => {
        sessions.update(shardId, info);
        update(shardId, info);
      };
      return new SimpleShardingStrategy(manager);
    },
  },
});
// deno-lint-ignore no-explicit-any
client.on(Events.Raw, (packet: any, shardId: number) => {
  if (packet.op === 0) sessions.printed(shardId, packet);
});
client.on(Events.ClientReady, (c) => {
  const guilds = [...c.guilds.cache.values()].map((g) => ({
    id: g.id,
    available: g.available,
    name: g.name,
    channels: g.channels.cache.size,
    members: g.members.cache.size,
  }));
  console.log(JSON.stringify({ shard: -1, t: "CLIENT_READY", s: 0, d: { guilds } }));
});
client.on(Events.ShardResume, (id) => console.error(`resumed shard ${id}`));
await client.login(token);
console.error("logged in");
