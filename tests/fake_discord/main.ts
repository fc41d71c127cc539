/**
 * Runs the fake Discord on its own, for trying gatehouse (or any gateway client) without a token:
 *
 *   deno run -A tests/fake_discord/main.ts --shards 2 --rate 5
 *
 * Prints one JSON line on stdout with the addresses (`apiHost`, `scheme`, `token`, `gatewayUrl`,
 * `resumeUrl`), then serves until SIGINT/SIGTERM. Bad flags: a message on stderr, exit code 2.
 */
import { parseArgs } from "node:util";
import { FakeDiscord, type FakeDiscordOptions } from "./server.ts";

const USAGE = `Usage: deno run -A tests/fake_discord/main.ts [options]

  --token T                  the accepted bot token (default fake-token)
  --shards N                 shards recommended by /gateway/bot (default 1)
  --max-concurrency N        identify buckets (default 1)
  --rate N                   live events per shard per second (default 0: none)
  --flood                    send events as fast as each connection takes them
  --guilds-per-shard N       GUILD_CREATEs after each READY (default 2)
  --guilds N                 one fixed set of N guilds, owned by (id >> 22) % count (default 0: per shard)
  --large-guild-members N    members of each shard's first guild (default 0: not large)
  --heartbeat-interval MS    HELLO's heartbeat_interval (default 41250)
  --identify-interval MS     identify spacing per bucket (default 5000)
  --session-ttl MS           how long a dropped session stays resumable (default 120000)
  --port-file PATH           also write the JSON line to PATH
  -h, --help                 this text
`;

/** Parses the command line into fake options; throws a RangeError naming the bad flag. */
export function parseCli(args: string[]): {
  options: FakeDiscordOptions;
  token: string;
  rate: number;
  flood: boolean;
  portFile: string | undefined;
  help: boolean;
} {
  const { values } = parseArgs({
    args,
    options: {
      token: { type: "string", default: "fake-token" },
      shards: { type: "string", default: "1" },
      "max-concurrency": { type: "string", default: "1" },
      rate: { type: "string", default: "0" },
      flood: { type: "boolean", default: false },
      "guilds-per-shard": { type: "string", default: "2" },
      guilds: { type: "string", default: "0" },
      "large-guild-members": { type: "string", default: "0" },
      "heartbeat-interval": { type: "string", default: "41250" },
      "identify-interval": { type: "string", default: "5000" },
      "session-ttl": { type: "string", default: "120000" },
      "port-file": { type: "string" },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const int = (flag: keyof typeof values, min: number): number => {
    const text = String(values[flag]);
    const value = Number(text);
    if (!/^\d+$/.test(text) || value < min) {
      throw new RangeError(`Cannot use --${flag} ${text}: an integer of at least ${min} is required`);
    }
    return value;
  };
  const token = values.token;
  if (token === "") throw new RangeError("Cannot use an empty --token");
  return {
    options: {
      token,
      shards: int("shards", 1),
      maxConcurrency: int("max-concurrency", 1),
      guildsPerShard: int("guilds-per-shard", 0),
      guilds: int("guilds", 0),
      largeGuildMembers: int("large-guild-members", 0),
      heartbeatIntervalMs: int("heartbeat-interval", 1),
      identifyIntervalMs: int("identify-interval", 0),
      sessionTtlMs: int("session-ttl", 0),
      // A flood uses frames compressed once, so the fake spends little CPU.
      precompressed: values.flood,
    },
    token,
    rate: int("rate", 0),
    flood: values.flood,
    portFile: values["port-file"],
    help: values.help,
  };
}

if (import.meta.main) {
  let cli: ReturnType<typeof parseCli>;
  try {
    cli = parseCli(Deno.args);
  } catch (error) {
    console.error(`fake Discord: ${(error as Error).message}\n\n${USAGE}`);
    Deno.exit(2);
  }
  if (cli.help) {
    console.log(USAGE);
    Deno.exit(0);
  }
  const fake = await FakeDiscord.start(cli.options);
  if (cli.rate > 0) fake.startTraffic(cli.rate);
  if (cli.flood) fake.startFlood();
  const line = JSON.stringify({
    apiHost: fake.apiHost,
    scheme: "http",
    token: cli.token,
    gatewayUrl: fake.gatewayUrl,
    resumeUrl: fake.resumeUrl,
  });
  console.log(line);
  if (cli.portFile) await Deno.writeTextFile(cli.portFile, `${line}\n`);
  await new Promise<void>((resolve) => {
    Deno.addSignalListener("SIGINT", resolve);
    if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", resolve);
  });
  await fake.stop();
  Deno.exit(0);
}
