/**
 * `deno task demo`: gatehouse without a Discord token. Starts the built-in fake Discord (the test
 * double in tests/fake_discord/) with a little live traffic, runs `gatehouse run` against it, and lets
 * its NDJSON flow to stdout. Logs go to stderr. Ctrl-C stops both.
 *
 *   deno task demo | jq -c 'select(.t == "MESSAGE_CREATE") | {shard, content: .d.content}'
 */
import { RUN_FLAGS } from "../tests/helpers/gatehouse.ts";
import { FakeDiscord } from "../tests/fake_discord/server.ts";

const SHARDS = 2;
const encoder = new TextEncoder();
const say = (text: string) => Deno.stderr.writeSync(encoder.encode(`[demo] ${text}\n`));

const fake = await FakeDiscord.start({
  shards: SHARDS,
  maxConcurrency: SHARDS,
  guildsPerShard: 3,
  heartbeatIntervalMs: 10_000,
});
say(`fake Discord listening: REST http://${fake.apiHost}, gateway ${fake.gatewayUrl}`);
say(`starting gatehouse run with ${SHARDS} shards; events follow on stdout as NDJSON; Ctrl-C to stop`);
say("in another terminal: `deno run -A main.ts shards` (or curl http://127.0.0.1:7979/metrics)");

const store = await Deno.makeTempDir({ prefix: "gatehouse-demo-" });
const child = new Deno.Command(Deno.execPath(), {
  // The flags of `deno task start`.
  args: [...RUN_FLAGS, new URL("../main.ts", import.meta.url).pathname, "run"],
  env: {
    DISCORD_TOKEN: "fake-token",
    DISCORD_API_SCHEME: "http",
    DISCORD_API_HOST: fake.apiHost,
    GATEHOUSE_STORE: `${store}/gatehouse.db`,
  },
  stdin: "null",
  stdout: "inherit",
  stderr: "inherit",
}).spawn();

// Live traffic once the shards are up; now and then Discord asks a shard to reconnect, so the demo
// shows a RESUME without losing events.
fake.startTraffic(2);
let round = 0;
const chaos = setInterval(() => {
  const shard = round++ % SHARDS;
  say(`fake Discord sends op 7 (reconnect) to shard ${shard}: watch it resume without losing an event`);
  fake.sendReconnect(shard);
}, 15_000);

const stop = () => {
  try {
    child.kill("SIGINT");
  } catch {
    // already stopped
  }
};
Deno.addSignalListener("SIGINT", stop);
if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", stop);

const status = await child.status;
clearInterval(chaos);
fake.stopTraffic();
await fake.stop();
await Deno.remove(store, { recursive: true }).catch(() => {});
say(`gatehouse exited with code ${status.code}`);
Deno.exit(status.code);
