/**
 * Rebuilding the transforms' state after a start (transforms.ts): each sink's `Transforms` is fed the
 * journal's events up to that sink's cursor, so the first event it delivers is judged exactly as the
 * previous run would have judged it (a GUILD_CREATE whose guild was in a READY of long ago is still
 * "loading", an update within the window of a message seen before the restart is still dropped).
 *
 * What is read: for the GUILD_CREATE annotation, READY, GUILD_CREATE and GUILD_DELETE from the journal's
 * first event (a READY starts a shard afresh, so its last READY is as far back as it matters); for
 * MESSAGE_UPDATE, MESSAGE_CREATE and MESSAGE_UPDATE of the window before the cursor. One pass serves
 * every sink. It goes in slices (at most `sliceBytes` of payloads each, a turn of the event loop
 * between them), so the shards connect and heartbeat meanwhile; the sinks wait for it.
 *
 * Exact as long as the journal still holds what matters: a shard's READY pruned by retention (a session
 * older than `[store] max_age`, or pushed out by `max_size`) leaves its guilds that never loaded unknown
 * (their GUILD_CREATE would be "joined"); without the journal (`[store] journal = false`) or on another
 * process of a cluster, the state starts empty.
 */
import type { Store } from "../journal/store.ts";
import type { Logger } from "../util/log.ts";
import { RowBatch } from "./batches.ts";
import type { Transforms } from "./transforms.ts";

export interface WarmUpTarget {
  transforms: Transforms;
  /** The sink's cursor: events up to it are fed in, none after. */
  through: number;
}

export interface WarmUpOptions {
  store: Store;
  targets: readonly WarmUpTarget[];
  logger?: Logger;
  signal?: AbortSignal;
  /** Payload bytes read per slice (default 4 MiB; at least one event). */
  sliceBytes?: number;
  /** Between slices (default: the next turn of the event loop). */
  pause?: () => Promise<void>;
}

/** Events read per slice at most. */
const SLICE_EVENTS = 256;
/**
 * Ids a slice spans at most: SQLite walks every row of the span (there is no index on `t`), so this
 * bounds a slice's time when the names read are rare (about 5 ms for 8192 rows of 1 KB).
 */
const SLICE_IDS = 8192;

/** One range of ids to read, and the names to read in it. */
interface Pass {
  names: string[];
  /** Ids after this one… */
  after: number;
  /** …up to this one. */
  through: number;
}

/**
 * The ranges to read, in id order: the guild names everywhere up to `last`, the message names too inside
 * `spans` (merged where they overlap).
 */
export function readingPlan(
  spans: ReadonlyArray<[number, number]>,
  last: number,
  guilds: string[],
  messages: string[],
): Pass[] {
  const merged: Array<[number, number]> = [];
  for (const [from, to] of [...spans].sort((a, b) => a[0] - b[0])) {
    const top = merged[merged.length - 1];
    if (top !== undefined && from <= top[1] + 1) top[1] = Math.max(top[1], to);
    else merged.push([from, to]);
  }
  const passes: Pass[] = [];
  let at = 0;
  for (const [from, to] of merged) {
    if (guilds.length > 0 && from - 1 > at) passes.push({ names: guilds, after: at, through: from - 1 });
    passes.push({ names: [...guilds, ...messages], after: Math.max(at, from - 1), through: to });
    at = to;
  }
  if (guilds.length > 0 && at < last) passes.push({ names: guilds, after: at, through: last });
  return passes;
}

/** Feeds every target the journal's events up to its cursor; resolves with what it read. */
export async function rebuildTransforms(options: WarmUpOptions): Promise<{ events: number; ms: number }> {
  const { store, targets } = options;
  const started = performance.now();
  const pause = options.pause ?? (() => new Promise<void>((resolve) => setTimeout(resolve, 0)));
  const sliceBytes = options.sliceBytes ?? 4 * 1024 * 1024;
  let events = 0;
  try {
    if (targets.length === 0) return { events, ms: 0 };
    // What any of them follows (every runner of a run has the same configuration).
    const guilds = [...new Set(targets.flatMap((t) => t.transforms.followed.guilds))];
    const messages = [...new Set(targets.flatMap((t) => t.transforms.followed.messages))];
    const last = Math.max(...targets.map((t) => t.through));
    // Messages matter from the window before each cursor (the union of those spans is read for them);
    // guilds from the journal's start.
    const spans: Array<[number, number]> = [];
    if (messages.length > 0) {
      for (const { transforms, through } of targets) {
        if (transforms.followed.messages.length === 0) continue;
        const windowMs = transforms.options.messageWindowMs;
        const at = store.events.timeAtOrBefore(through);
        if (at === null) continue;
        // The search relies on times growing with ids; when it cannot tell (the clock went back after
        // the cursor), every message event up to the cursor is read instead.
        const first = store.events.firstIdAtOrAfter(at - windowMs) ?? store.events.minId();
        if (first <= through) spans.push([first, through]);
      }
    }
    const passes = readingPlan(spans, last, guilds, messages);
    for (const pass of passes) {
      let after = pass.after;
      while (after < pass.through) {
        if (options.signal?.aborted) return { events, ms: performance.now() - started };
        const upTo = Math.min(pass.through, after + SLICE_IDS);
        const rows = store.events.readNamed(after, upTo, pass.names, SLICE_EVENTS, sliceBytes);
        if (rows.length === 0) after = upTo;
        else {
          const batch = new RowBatch(rows, store.producer);
          for (const target of targets) target.transforms.observe(batch, target.through);
          events += rows.length;
          // Perhaps cut short by the slice's bounds: the rest of the span is read next.
          after = rows[rows.length - 1].id;
        }
        await pause();
      }
    }
    return { events, ms: performance.now() - started };
  } catch (error) {
    options.logger?.warn(
      "transforms: could not rebuild their state from the journal ({error}); they go on from what was read",
      { error: (error as Error).message },
    );
    return { events, ms: performance.now() - started };
  } finally {
    for (const target of targets) target.transforms.skipTo(target.through);
  }
}
