/**
 * Choosing recorded events for `gatehouse replay`: an id or time range, a shard, event names; read from
 * the store in id order, page by page, optionally following new events as `run` commits them.
 */
import type { Store, StoredEvent } from "../journal/store.ts";

export interface Selection {
  /** First id (inclusive). */
  fromId: number;
  /** Last id (inclusive); Infinity = up to the newest (and beyond, with follow). */
  toId: number;
  shard: number | null;
  events: ReadonlySet<string> | null;
}

/** A point given as an id, an ISO 8601 time, or a time relative to now like "-30m", "-2h", "-1d". */
export type Point = { id: number } | { time: number };

const RELATIVE_UNITS: Record<string, number> = {
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

export function parsePoint(text: string, now = Date.now()): Point {
  const trimmed = text.trim();
  if (/^\d+$/.test(trimmed)) return { id: Number(trimmed) };
  const relative = /^-(\d+(?:\.\d+)?)(s|m|h|d|w)$/.exec(trimmed);
  if (relative) return { time: now - Number(relative[1]) * RELATIVE_UNITS[relative[2]] };
  const time = Date.parse(trimmed);
  if (Number.isNaN(time)) {
    throw new RangeError(
      `Cannot read "${text}" as an event id, a time (2026-11-22T10:00:00Z) or a relative time (-30m, -2h, -1d)`,
    );
  }
  return { time };
}

/** Turns --from/--to into an inclusive id range over what the store holds. */
export function resolveRange(
  store: Store,
  from: Point | null,
  to: Point | null,
): { fromId: number; toId: number } {
  let fromId = 1;
  if (from) {
    if ("id" in from) fromId = from.id;
    else fromId = store.events.firstIdAtOrAfter(from.time) ?? store.events.maxId() + 1;
  }
  let toId = Infinity;
  if (to) {
    if ("id" in to) toId = to.id;
    else {
      const after = store.events.firstIdAtOrAfter(to.time + 1);
      toId = after === null ? store.events.maxId() : after - 1;
    }
  }
  return { fromId, toId };
}

export function matches(selection: Selection, event: StoredEvent): boolean {
  return (selection.shard === null || event.shard === selection.shard) &&
    (selection.events === null || selection.events.has(event.t));
}

/**
 * Selected events, page by page, in id order. With `follow`, keeps polling for new ones until the
 * signal aborts.
 */
export async function* readSelection(
  store: Store,
  selection: Selection,
  options: { follow?: boolean; signal?: AbortSignal; pageSize?: number; pollMs?: number } = {},
): AsyncGenerator<StoredEvent[]> {
  let after = selection.fromId - 1;
  const page = options.pageSize ?? 2000;
  while (!options.signal?.aborted) {
    const upTo = Number.isFinite(selection.toId) ? selection.toId : Number.MAX_SAFE_INTEGER;
    const rows = store.events.read(after, page, upTo);
    if (rows.length > 0) {
      after = rows[rows.length - 1].id;
      const chosen = rows.filter((row) => matches(selection, row));
      if (chosen.length > 0) yield chosen;
      if (after >= selection.toId) return;
      continue;
    }
    if (!options.follow) return;
    await new Promise((resolve) => setTimeout(resolve, options.pollMs ?? 250));
  }
}

/**
 * The wait before sending an event recorded `gapMs` after the previous one, at `speed` (1 = as
 * recorded, 0 = no waiting). Gaps are capped at 10 s so a recording that spans a downtime does not
 * stall a replay for hours.
 */
export function pacing(gapMs: number, speed: number): number {
  if (speed <= 0 || gapMs <= 0) return 0;
  return Math.min(10_000, gapMs / speed);
}
