/** What the operator is told when Discord closes a shard with a code that forbids reconnecting. */
import type { GatehouseConfig } from "../config/load.ts";
import { intentNames, PRIVILEGED_INTENTS } from "../discord/intents.ts";
import type { PoolFailure } from "../pool/pool.ts";

/** The operator-facing explanation of a fatal close code. */
export function fatalMessage(failure: PoolFailure, config: GatehouseConfig, shardCount: number): string {
  const { code, shard } = failure;
  switch (code) {
    case 4004:
      return "Discord rejected the token (close 4004 on shard " + shard + "): check DISCORD_TOKEN";
    case 4013:
      return `Discord rejected the intents ${config.intents} (${intentNames(config.intents).join(", ")}) ` +
        "as an invalid bitfield (close 4013)";
    case 4014: {
      const privileged = intentNames(config.intents & PRIVILEGED_INTENTS);
      return `Discord refused the intents: ${privileged.join(", ") || "a privileged intent"} ` +
        "(close 4014, disallowed intents). Privileged intents must be enabled for the application in the " +
        "Discord developer portal (Bot → Privileged Gateway Intents), or removed from `intents`";
    }
    case 4010:
      return `Discord rejected the shard layout: shard [${shard}, ${shardCount}] is invalid (close 4010)`;
    case 4011:
      return `Discord requires more shards: shard ${shard} of ${shardCount} holds too many guilds ` +
        "(close 4011); raise [shards] count or leave it unset to use Discord's recommendation";
    case 4012:
      return `Discord rejected API version ${config.api.version} (close 4012)`;
    default:
      return `shard ${shard}: Discord closed with ${code} (${failure.reason}); not reconnecting`;
  }
}
