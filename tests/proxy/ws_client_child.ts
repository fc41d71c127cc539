/**
 * A bot process for the proxy tests: @discordjs/ws (a real client library, test-only) connected to the
 * proxy, printing every dispatch as one JSON line `{shard, t, s, d}` on stdout. Its session (id, seq,
 * resume URL) is kept in a file, as a bot that survives its own restart keeps it, so a killed and
 * restarted process RESUMEs instead of identifying.
 *
 * Usage: deno run -A ws_client_child.ts <api base URL> <token> <session file> [compression]
 */
import {
  CompressionMethod,
  type SessionInfo,
  WebSocketManager,
  WebSocketShardEvents,
} from "npm:@discordjs/ws@2.0.4";
import { REST } from "npm:@discordjs/rest@2.6.3";

const [api, token, sessionFile, compression] = Deno.args;
const rest = new REST({ api: `${api}/api`, version: "10" }).setToken(token);
const sessions: Record<number, SessionInfo | null> = (() => {
  try {
    return JSON.parse(Deno.readTextFileSync(sessionFile));
  } catch {
    return {};
  }
})();
const encoder = new TextEncoder();
const manager = new WebSocketManager({
  token,
  intents: 1 | 512 | 32768,
  rest,
  compression: compression === "zlib" ? CompressionMethod.ZlibNative : null,
  retrieveSessionInfo: (shardId) => sessions[shardId] ?? null,
  // Kept in memory here and stored once the event is printed (below): a kill -9 between the two resumes
  // from the last event printed, never past one that was not.
  updateSessionInfo: (shardId, info) => {
    const known = sessions[shardId];
    sessions[shardId] = info === null
      ? null
      : { ...info, sequence: known?.sessionId === info.sessionId ? known.sequence : 0 };
    if (info === null) Deno.writeTextFileSync(sessionFile, JSON.stringify(sessions));
  },
});
manager.on(
  WebSocketShardEvents.Dispatch,
  (payload: { t: string; s: number; d: unknown }, shardId: number) => {
    Deno.stdout.writeSync(
      encoder.encode(JSON.stringify({ shard: shardId, t: payload.t, s: payload.s, d: payload.d }) + "\n"),
    );
    const session = sessions[shardId];
    if (session) {
      session.sequence = payload.s;
      Deno.writeTextFileSync(sessionFile, JSON.stringify(sessions));
    }
  },
);
manager.on(WebSocketShardEvents.Closed, (code: number, shardId: number) => {
  console.error(`closed shard ${shardId} code ${code}`);
});
await manager.connect();
console.error("connected");
