/**
 * Configuration keys of the event transforms (`[transforms]`, src/sinks/transforms.ts): what the sinks
 * get besides Discord's events as they came. All off by default; the journal always keeps the originals.
 */
import { defineKey } from "./key.ts";
import * as p from "./parsers.ts";
import type { GatehouseConfig } from "./schema.ts";

const WINDOW_ALLOWED = 'a duration from 100ms to 1h, like "10s" or "2m"';

/** A duration from 100 ms to 1 h. */
const messageWindowParser: p.Parser<number> = {
  fromText: p.duration.fromText,
  parse: (raw) => {
    const parsed = p.parseDuration(raw);
    if (!parsed.ok || parsed.value < 100 || parsed.value > 3_600_000) {
      return { ok: false, allowed: WINDOW_ALLOWED };
    }
    return parsed;
  },
};

export const guildCreate = defineKey({
  path: "transforms.guild_create",
  env: ["GATEHOUSE_TRANSFORMS_GUILD_CREATE"],
  default: "off" as "off" | "annotate" | "rename",
  parser: p.oneOf(["off", "annotate", "rename"] as const, "off, annotate or rename", true),
  set: (c, v) => (c.transforms.guildCreate = v),
  get: (c) => c.transforms.guildCreate,
  docs: {
    toml: '"off"',
    notes:
      '`annotate`: every GUILD_CREATE line gets `"guild_create"`: `"loading"` (in its shard\'s READY), ' +
      '`"available"` (back after an outage) or `"joined"` (new); `rename`: the same, and the loading ones ' +
      "are named `GUILD_LOADED_DD` (`d` untouched). See [Transforms](#transforms)",
    comment: 'Tell the three GUILD_CREATEs apart. "annotate": every GUILD_CREATE line gets a top-level ' +
      '"guild_create": "loading" (its guild was in the shard\'s READY: start-up), "available" (back after ' +
      'GUILD_DELETE unavailable: an outage) or "joined" (the bot was just added). "rename": the same, and ' +
      'the loading ones are delivered as GUILD_LOADED_DD (Discordeno\'s name; d untouched). "off": as Discord ' +
      "sent them.",
  },
});

export const guildDelete = defineKey({
  path: "transforms.guild_delete",
  env: ["GATEHOUSE_TRANSFORMS_GUILD_DELETE"],
  default: "off" as "off" | "drop_unavailable",
  parser: p.oneOf(["off", "drop_unavailable"] as const, "off or drop_unavailable", true),
  set: (c, v) => (c.transforms.guildDelete = v),
  get: (c) => c.transforms.guildDelete,
  docs: {
    toml: '"off"',
    notes:
      "`drop_unavailable`: GUILD_DELETE with `unavailable: true` (an outage, not a leave) is not delivered",
    comment: 'Tell outages from leaves. "drop_unavailable": GUILD_DELETE with unavailable: true (a guild ' +
      'outage; the bot did not leave) is not delivered; the GUILD_CREATE that ends the outage still is. "off": ' +
      "every GUILD_DELETE is delivered.",
  },
});

export const messageUpdate = defineKey({
  path: "transforms.message_update",
  env: ["GATEHOUSE_TRANSFORMS_MESSAGE_UPDATE"],
  default: "off" as "off" | "drop_unchanged",
  parser: p.oneOf(["off", "drop_unchanged"] as const, "off or drop_unchanged", true),
  set: (c, v) => (c.transforms.messageUpdate = v),
  get: (c) => c.transforms.messageUpdate,
  docs: {
    toml: '"off"',
    notes: "`drop_unchanged`: MESSAGE_UPDATE without `content`, or with the content last seen, within " +
      "`message_window` of the message's last MESSAGE_CREATE or MESSAGE_UPDATE is not delivered (embeds unfurling)",
    comment:
      'Tell edits from embeds unfurling. "drop_unchanged": a MESSAGE_UPDATE that leaves the content as ' +
      "it was (no content, or the content last seen in its MESSAGE_CREATE or MESSAGE_UPDATE) within " +
      "message_window of that is not delivered. Other updates that keep the content within the window (a " +
      'pin, embeds suppressed) go too. "off": every MESSAGE_UPDATE is delivered.',
  },
});

export const messageWindow = defineKey({
  path: "transforms.message_window",
  env: ["GATEHOUSE_TRANSFORMS_MESSAGE_WINDOW"],
  default: 10_000,
  parser: messageWindowParser,
  set: (c, v) => (c.transforms.messageWindowMs = v),
  get: (c) => c.transforms.messageWindowMs,
  docs: {
    toml: '"10s"',
    notes:
      "how long a message's content is remembered after it was last seen, in event time (when gatehouse " +
      "received the events); 100ms–1h",
    comment: "How long a message's content is remembered after its last MESSAGE_CREATE or MESSAGE_UPDATE " +
      "with content, counted in event time (when gatehouse received the events, as the journal keeps it). " +
      "From 100ms to 1h.",
  },
});

export const messageCache = defineKey({
  path: "transforms.message_cache",
  env: ["GATEHOUSE_TRANSFORMS_MESSAGE_CACHE"],
  default: 10_000,
  parser: p.integer(1, 1_000_000, "an integer from 1 to 1000000"),
  set: (c, v) => (c.transforms.messageCache = v),
  get: (c) => c.transforms.messageCache,
  docs: {
    notes: "messages remembered at most, per sink (about 100 bytes each); past it the least recently seen " +
      "are forgotten (their next update is delivered)",
    comment: "Messages remembered at most, per sink (about 100 bytes each, whatever the content's length); " +
      "past it the least recently seen are forgotten and their next update is delivered. 1 to 1000000.",
  },
});

/** In the order of the README's table. */
export const TRANSFORM_KEYS = [guildCreate, guildDelete, messageUpdate, messageWindow, messageCache] as const;

/** What a configuration's `events` allow-list leaves the transforms without (warnings for `run`). */
export function transformWarnings(config: GatehouseConfig): string[] {
  const events = config.events;
  if (events === null || events.length === 0) return [];
  const warnings: string[] = [];
  const missing = (names: string[]) => names.filter((name) => !events.includes(name));
  if (config.transforms.guildCreate !== "off") {
    const lacking = missing(["READY", "GUILD_DELETE"]);
    if (lacking.length > 0) {
      warnings.push(
        `transforms.guild_create = "${config.transforms.guildCreate}" learns each shard's guilds from READY ` +
          `and its outages from GUILD_DELETE, but events leaves out ${
            lacking.join(" and ")
          }: GUILD_CREATEs ` +
          'will be taken for "joined"; add them to events (they are journaled, the sinks get them too)',
      );
    }
  }
  if (config.transforms.messageUpdate !== "off" && !events.includes("MESSAGE_CREATE")) {
    warnings.push(
      'transforms.message_update = "drop_unchanged" remembers contents from MESSAGE_CREATE, but events leaves ' +
        "it out: only updates after an update of the same message within the window can be dropped",
    );
  }
  return warnings;
}
