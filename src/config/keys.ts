/**
 * The table of every configuration key, assembled from its sections (`keys_*.ts`), and what follows from
 * it alone: the flag names, and the TOML tables with their introductions for the example file.
 */
import type { AnyKey, CamelCase } from "./key.ts";
import { CLUSTER_KEYS } from "./keys_cluster.ts";
import { CONTROL_KEYS } from "./keys_control.ts";
import { DELIVERY_KEYS } from "./keys_delivery.ts";
import { DISCORD_KEYS } from "./keys_discord.ts";
import { PROXY_KEYS } from "./keys_proxy.ts";
import { RESHARDING_KEYS } from "./keys_resharding.ts";
import { STORE_KEYS } from "./keys_store.ts";
import { TRANSFORM_KEYS } from "./keys_transforms.ts";

/** Every key, in the order of the README's table; messages about several keys follow it too. */
export const KEYS = [
  ...DISCORD_KEYS,
  ...STORE_KEYS,
  ...DELIVERY_KEYS,
  ...TRANSFORM_KEYS,
  ...CLUSTER_KEYS,
  ...RESHARDING_KEYS,
  ...PROXY_KEYS,
  ...CONTROL_KEYS,
] as const;

/** The table as the loader and the docs walk it. */
export const ALL_KEYS: readonly AnyKey[] = KEYS;

type FlagOption = NonNullable<(typeof KEYS)[number]["flag"]>["option"];

/** The `run` flags' values as commander names them (camelCase): a key's flag, and nothing else. */
export type FlagName = CamelCase<FlagOption>;

/** The comment under a table's header in `config.example.toml`, for tables that need one. */
export const TABLE_INTROS: Readonly<Record<string, string>> = {
  api: "Where the Discord API is. Point these at a Discord-compatible API (a REST proxy, the test double); " +
    "the WebSocket URL always comes from GET /gateway/bot there.",
  http: 'The HTTP sink (type "http"): each batch is one POST of NDJSON lines; a 2xx answer acknowledges ' +
    "it, anything else is retried with backoff (the journal keeps the events meanwhile).",
  prometheus: "Spectacles' names for the control listener.",
  transforms: "What the sinks get instead of Discord's events as they came (Discordeno's big-bot guide). " +
    "The journal keeps every event as received; proxy mode, inspect and replay are never transformed. " +
    "Each sink's transforms follow the events in journal order (and the times stored with them), so an " +
    "event delivered again gets the same result; after a restart their state is rebuilt from the journal.",
  cluster: "Several processes of one bot, on one host or many, sharing its shards through Redis.",
  resharding: "A new shard set comes up beside the old one, identifies in the background and takes over " +
    "once every new shard is READY with its guilds; the events both sets see around the switch are " +
    "delivered once. Triggers: this periodic check, POST /reshard (gatehouse shards --reshard), a close " +
    "with 4011. One process running every shard, or a cluster (one reshard for the bot); not with [shards] ids.",
  proxy: "Proxy mode: gatehouse speaks the Discord gateway to bots that were never rewritten for NDJSON. " +
    "A client identifies as a shard this process runs (shard [id, count]; 4010/4011 otherwise), gets a " +
    "READY and its guilds from the cache, then the live events with its own sequence numbers; commands it " +
    "sends go to the shard. Several clients may share a shard. Events also go to the sinks as usual.",
};
