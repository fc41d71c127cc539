/**
 * gatehouse — a standalone Discord gateway. This is the CLI edge: parse arguments, dispatch to a
 * subcommand, and map errors to exit codes in one place. Each subcommand's module is imported when that
 * subcommand runs, so `run` does not carry `replay`'s server nor `shards`' client (static specifiers:
 * `deno compile` includes them).
 */
import { Command, CommanderError } from "commander";
import { ExitError } from "./src/cli/errors.ts";
import { loadRunConfig, runFlagOptions, type RunFlags } from "./src/cli/config.ts";
import type { ReplayFlags } from "./src/cli/replay.ts";
import type { ShardsFlags } from "./src/cli/shards.ts";
import type { GatehouseConfig } from "./src/config/load.ts";
import { captureConsole, logger, redact, setupLogging } from "./src/util/log.ts";
import { VERSION } from "./src/version.ts";

const encoder = new TextEncoder();

function writeErr(text: string): void {
  Deno.stderr.writeSync(encoder.encode(redact(text)));
}

/**
 * The config of a command other than `run` (which sets logging up itself, after adding the token as a
 * secret), with logging set up as `run` does it: stderr at [log] level, so stdout keeps only the command's
 * output, and the config's warnings logged instead of dropped.
 */
function commandConfig(flags: { config?: string; store?: string }): GatehouseConfig {
  const { config, warnings } = loadRunConfig({ config: flags.config, store: flags.store }, {
    requireToken: false,
  });
  setupLogging({ level: config.log.level });
  captureConsole();
  for (const warning of warnings) logger("config").warn(warning);
  return config;
}

export function buildProgram(onExit: (code: number) => void): Command {
  const program = new Command("gatehouse")
    .description(
      "A standalone Discord gateway: holds a bot's shard connections and writes every event as one " +
        "NDJSON line on stdout.",
    )
    .version(VERSION, "-V, --version", "print the version and exit")
    .helpOption("-h, --help", "show help")
    .helpCommand(false)
    .exitOverride()
    .configureOutput({
      writeOut: (text) => Deno.stdout.writeSync(encoder.encode(text)),
      writeErr,
      outputError: (text, write) => write(`gatehouse: ${text.replace(/^error: /, "")}`),
    })
    .showSuggestionAfterError(true);

  const runCommand = program
    .command("run")
    .description(
      "Connect every shard and print each dispatch as an NDJSON line on stdout until SIGINT/SIGTERM.\n" +
        "Options override environment variables, which override the config file.",
    )
    .option("-c, --config <path>", "config file (TOML); a missing default file is fine", undefined);
  // One option per configuration key with a flag, from the key table.
  for (const option of runFlagOptions()) runCommand.addOption(option);
  runCommand
    .addHelpText(
      "after",
      "\nThe token comes from DISCORD_TOKEN or `token` in the config file (never a flag: flags show in ps).\n" +
        "Sinks: [broker] type (BROKER_TYPE) = stdout, redis, amqp and/or http. When stdin is a pipe, each line is a\n" +
        'gateway command: {"op":3,"d":{...}} presence to every shard, ops 4, 8, 43 to the guild\'s shard, op 31\n' +
        "to the shards of its guild_ids. Stop with SIGINT, SIGTERM or SIGHUP (a second signal exits at once).\n" +
        "Control listener (default 127.0.0.1:7979, [control] address): /metrics, /healthz, /readyz, /shards; see\n" +
        "`gatehouse shards`. Actions (reconnect a shard, send a command, reshard) need [control] token.\n" +
        "Exit codes: 0 stopped cleanly, 1 unexpected failure, 2 configuration or usage error,\n" +
        "3 Discord rejected the token, 4 intents invalid or not enabled, 5 shard layout rejected (4011: when no\n" +
        "reshard can answer it),\n" +
        "6 store unusable (corrupt, used by another gatehouse, read-only, full; also when events received could not\n" +
        "be stored by the stop: they were not acknowledged, so the next start gets them again).",
    )
    .action(async (flags: RunFlags) => {
      const { run } = await import("./src/cli/run.ts");
      onExit(await run(flags));
    });

  program
    .command("shards")
    .description(
      "Show every shard of the running gatehouse (state, latency, guilds, seq, session age, events/s, last " +
        "event), read from its control listener. When none answers, shows the last state in the store.\n" +
        'In cluster mode ([cluster] mode = "redis"): every shard of the bot with its owner node, read from Redis.',
    )
    .option(
      "-c, --config <path>",
      "config file (TOML), for [control] address and [store] path; [cluster] mode, [redis] url and prefix",
    )
    .option("--store <path>", "SQLite store [GATEHOUSE_STORE]; run records its control address beside it")
    .option("--url <url>", "the control listener, e.g. http://127.0.0.1:7979 (default: found as above)")
    .option("--json", "print JSON")
    .option("--watch", "refresh in place until interrupted")
    .option("--interval <s>", "seconds between refreshes with --watch (default 2)")
    .option("--check", "one summary line; exit 0 healthy, 1 degraded, 2 down or unreachable")
    .option(
      "--max-latency <ms>",
      "with --check: degraded when a shard's heartbeat latency is above (default 2000)",
    )
    .option("--max-not-ready <n>", "with --check: degraded when more shards are not ready (default 0)")
    .option("--max-lag <events>", "with --check: degraded when a sink is further behind (default 10000)")
    .option(
      "--timeout <ms>",
      "how long to wait for the control listener, or Redis in cluster mode (default 3000)",
    )
    .option(
      "--reshard [count]",
      "reshard the running gatehouse (POST /reshard, needs [control] token): to COUNT shards, else to " +
        "Discord's recommendation; exit 0 started, 1 refused (it says why)",
    )
    .addHelpText(
      "after",
      "\nReady = the shard's session is live (READY or RESUMED) and Discord was heard from within 1.5 heartbeat\n" +
        "intervals. --check: down = unreachable or no shard ready; degraded = a threshold crossed.\n" +
        "Cluster mode: the leases say each shard's node, the reports every process publishes say its state;\n" +
        "--check judges the whole bot (every shard of the count owned and ready; a shard without an owner is\n" +
        "degraded even within --max-not-ready), Redis unreachable = down. --url asks one process instead.\n" +
        "During a reshard both sets are listed (ID/COUNT, the new one marked); only the delivering set is judged.",
    )
    .action(async (flags: ShardsFlags & { config?: string; store?: string }) => {
      const config = commandConfig(flags);
      const { shards } = await import("./src/cli/shards.ts");
      try {
        onExit(await shards(config, flags));
      } catch (error) {
        // --check promises 2 for anything that keeps it from answering.
        if (flags.check && error instanceof ExitError) throw new ExitError(2, error.message);
        throw error;
      }
    });

  program
    .command("inspect")
    .description(
      "Show what the store holds: events, sessions, sink cursors. Read-only; works while run is running.",
    )
    .option("-c, --config <path>", "config file (TOML), for [store] path")
    .option("--store <path>", "SQLite store [GATEHOUSE_STORE]")
    .option("--json", "print one JSON object")
    .action(async (flags: { config?: string; store?: string; json?: boolean }) => {
      const config = commandConfig(flags);
      const { inspect } = await import("./src/cli/inspect.ts");
      onExit(inspect(config, { json: flags.json }));
    });

  program
    .command("replay")
    .description(
      "Re-emit recorded events as NDJSON on stdout (their original ids), or serve them to a bot as a " +
        "Discord-compatible gateway with --serve.",
    )
    .option("-c, --config <path>", "config file (TOML), for [store] path and events")
    .option("--store <path>", "SQLite store [GATEHOUSE_STORE]")
    .option(
      "--from <id|time>",
      "first event: an id, a time (2026-11-22T10:00:00Z) or relative (-30m, -2h, -1d)",
    )
    .option("--to <id|time>", "last event, same forms (default: the newest)")
    .option("--shard <id>", "only this shard's events")
    .option("--events <names>", "only these event names (comma-separated)")
    .option("--follow", "keep going: emit new events as gatehouse run stores them")
    .option(
      "--serve <addr>",
      "serve as a Discord gateway on addr (127.0.0.1:4000, :4000); REST at http://addr/api",
    )
    .option(
      "--speed <n|max>",
      "pacing: 1 = as recorded, 10 = ten times faster, max = no waiting " +
        "(default: max on stdout, 1 with --serve)",
    )
    .addHelpText(
      "after",
      "\nLogs go to stderr at [log] level (GATEHOUSE_LOG_LEVEL): JSON lines unless stderr is a terminal. stdout\n" +
        'carries only the events, or with --serve one line: {"url":"ws://…","api":"http://…"}.\n' +
        "--serve: a bot identifies with the recorded shard count (its shard's events) or with 1 (every shard's).",
    )
    .action(async (flags: ReplayFlags & { config?: string; store?: string }) => {
      const config = commandConfig(flags);
      const { replay } = await import("./src/cli/replay.ts");
      onExit(await replay(config, flags));
    });

  return program;
}

export async function main(args: string[]): Promise<number> {
  let code = 0;
  const program = buildProgram((c) => (code = c));
  if (args.length === 0) {
    program.outputHelp({ error: true });
    return 2;
  }
  try {
    await program.parseAsync(args, { from: "user" });
    return code;
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end with exit code 0; everything else commander rejects is a usage error.
      if (error.code === "commander.helpDisplayed" || error.code === "commander.version") return 0;
      if (error.code === "commander.help") return 0;
      return 2;
    }
    if (error instanceof ExitError) {
      if (!error.logged && error.message) writeErr(`gatehouse: ${error.message}\n`);
      return error.code;
    }
    writeErr(`gatehouse: unexpected failure: ${(error as Error)?.stack ?? String(error)}\n`);
    return 1;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
