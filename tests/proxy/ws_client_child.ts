/**
 * A bot process for the proxy tests: @discordjs/ws (a real client library, test-only) connected to the
 * proxy, printing every dispatch as one JSON line `{shard, t, s, d}` on stdout, its sessions kept in a
 * file (session_file.ts) so a killed and restarted process RESUMEs instead of identifying.
 *
 * Usage: deno run -A ws_client_child.ts <api base URL> <token> <session file> [zlib]
 */
import { CompressionMethod, WebSocketManager, WebSocketShardEvents } from "npm:@discordjs/ws@2.0.4";
import { REST } from "npm:@discordjs/rest@2.6.3";
import { SessionFile } from "./session_file.ts";

const [api, token, path, compression] = Deno.args;
const sessions = new SessionFile(path);
const manager = new WebSocketManager({
  token,
  intents: 1 | 512 | 32768,
  rest: new REST({ api: `${api}/api`, version: "10" }).setToken(token),
  compression: compression === "zlib" ? CompressionMethod.ZlibNative : null,
  retrieveSessionInfo: (shardId) => sessions.retrieve(shardId),
  updateSessionInfo: (shardId, info) => sessions.update(shardId, info),
});
manager.on(
  WebSocketShardEvents.Dispatch,
  (payload: { t: string; s: number; d: unknown }, shardId: number) => sessions.printed(shardId, payload),
);
manager.on(WebSocketShardEvents.Closed, (code: number, shardId: number) => {
  console.error(`closed shard ${shardId} code ${code}`);
});
await manager.connect();
console.error("connected");
