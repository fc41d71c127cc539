/**
 * What the replay server takes from the recording's READY events: the bot's user and shard count, and
 * the guilds a replayed READY lists (as unavailable) for the shard a bot identifies as.
 */
import type { Store, StoredEvent } from "../journal/store.ts";
import type { Selection } from "./select.ts";

const decoder = new TextDecoder();

/** What the recording says about the bot: its shard count (null when nothing says) and its user. */
export interface RecordedFacts {
  count: number | null;
  user: unknown;
  /** Whether a recorded READY was found (if not, a store being written may have one later). */
  fromReady: boolean;
}

function readyData(event: StoredEvent): { user?: unknown; guilds?: unknown; shard?: unknown } | null {
  try {
    const d = JSON.parse(decoder.decode(event.payload)).d;
    return d !== null && typeof d === "object" ? d : null;
  } catch {
    return null;
  }
}

/**
 * The recorded READY of each shard in `shards` where the selection starts: the newest at or before its
 * first id, or else the first inside it. Reads READY events only, walking away from the start, and stops
 * as soon as every shard has one, so a recording of millions of events costs a few queries.
 */
export function recordedReadies(
  store: Store,
  selection: Selection,
  shards: ReadonlySet<number>,
): Map<number, StoredEvent> {
  const found = new Map<number, StoredEvent>();
  const take = (page: StoredEvent[]) => {
    for (const event of page) {
      if (shards.has(event.shard) && !found.has(event.shard)) found.set(event.shard, event);
    }
  };
  let from = selection.fromId;
  // Each query asks for as many READYs as shards are missing: never more than finding them all needs.
  while (found.size < shards.size && from >= 1) {
    const limit = shards.size - found.size;
    const page = store.events.ofType("READY", from, "down", limit);
    take(page);
    if (page.length < limit) break;
    from = page[page.length - 1].id - 1;
  }
  const to = Number.isFinite(selection.toId) ? selection.toId : Number.MAX_SAFE_INTEGER;
  from = Math.max(1, selection.fromId + 1);
  while (found.size < shards.size && from <= to) {
    const limit = shards.size - found.size;
    const page = store.events.ofType("READY", from, "up", limit, to);
    take(page);
    if (page.length < limit) break;
    from = page[page.length - 1].id + 1;
  }
  return found;
}

/**
 * The guilds a bot identifying as shard [shard, count] owns, as READY lists them (each unavailable until
 * its GUILD_CREATE): those of its shard's recorded READY, or of every recorded shard's for a bot with one
 * shard (only the --shard one, when the selection has one: the others' events are not sent).
 */
export function readyGuilds(
  store: Store,
  selection: Selection,
  shard: number,
  count: number,
  recordedCount: number,
  readies = new Map<number, StoredEvent>(),
): Array<{ id: string; unavailable: true }> {
  let shards = count === 1 ? Array.from({ length: recordedCount }, (_, i) => i) : [shard];
  if (selection.shard !== null) shards = shards.filter((s) => s === selection.shard);
  // `readies` keeps what earlier calls found (a READY found stays the one): only missing shards are read.
  const missing = new Set(shards.filter((s) => !readies.has(s)));
  if (missing.size > 0) {
    for (const [s, event] of recordedReadies(store, selection, missing)) readies.set(s, event);
  }
  const ids = new Set<string>();
  for (const s of shards) {
    const event = readies.get(s);
    const guilds = event ? readyData(event)?.guilds : undefined;
    if (!Array.isArray(guilds)) continue;
    for (const guild of guilds) {
      const id = (guild as { id?: unknown } | null)?.id;
      if (typeof id === "string") ids.add(id);
    }
  }
  return [...ids].map((id) => ({ id, unavailable: true }));
}

/** The recorded shard count and bot user, from the READY where the selection starts (or the sessions). */
export function recordedFacts(store: Store, selection: Selection): RecordedFacts {
  const user: unknown = { id: "0", username: "replay", discriminator: "0", bot: true, avatar: null };
  const facts: RecordedFacts = {
    count: store.sessions.load()[0]?.shardCount ?? null,
    user,
    fromReady: false,
  };
  const to = Number.isFinite(selection.toId) ? selection.toId : Number.MAX_SAFE_INTEGER;
  const ready = store.events.ofType("READY", selection.fromId, "down", 1)[0] ??
    store.events.ofType("READY", selection.fromId + 1, "up", 1, to)[0];
  const d = ready ? readyData(ready) : null;
  if (!d) return facts;
  facts.fromReady = true;
  if (d.user) facts.user = d.user;
  // A READY without `shard` answered an IDENTIFY without one: one shard.
  if (Array.isArray(d.shard) && Number.isInteger(d.shard[1])) facts.count = d.shard[1];
  else if (d.shard === undefined) facts.count = 1;
  return facts;
}
