/**
 * Counters the gateway keeps for metrics and `gatehouse shards`: events by shard and type (received,
 * and delivered per sink), guilds per shard, reconnects, resumes and heartbeat latencies. Updating
 * them costs a map lookup and an array increment per event; turning them into Prometheus series
 * happens only when /metrics is scraped.
 */
import type { ShardObserver } from "../gateway/shard.ts";
import type { EventBatch } from "../journal/journal.ts";
import type { DispatchObserver } from "../pool/dispatcher.ts";

/** Counts by event type and shard: `type → counts[shard]`. */
export class EventCounts {
  readonly #byType = new Map<string, number[]>();
  total = 0;

  add(shard: number, t: string, n = 1): void {
    let counts = this.#byType.get(t);
    if (counts === undefined) {
      counts = [];
      this.#byType.set(t, counts);
    }
    counts[shard] = (counts[shard] ?? 0) + n;
    this.total += n;
  }

  /** Every batch event, by its shard and type. */
  addBatch(batch: EventBatch): void {
    for (let i = 0; i < batch.count; i++) this.add(batch.shard(i), batch.t(i));
  }

  /** [shard, type, count] for every non-zero count. */
  *entries(): Generator<[number, string, number]> {
    for (const [t, counts] of this.#byType) {
      for (let shard = 0; shard < counts.length; shard++) {
        const n = counts[shard];
        if (n) yield [shard, t, n];
      }
    }
  }

  /** Total per shard. */
  byShard(): Map<number, number> {
    const totals = new Map<number, number>();
    for (const [shard, , n] of this.entries()) totals.set(shard, (totals.get(shard) ?? 0) + n);
    return totals;
  }
}

/** Heartbeat latency buckets, in seconds. */
export const LATENCY_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const decoder = new TextDecoder();

export class GatewayStats implements ShardObserver, DispatchObserver {
  readonly received = new EventCounts();
  /** Per sink name. */
  readonly delivered = new Map<string, EventCounts>();
  /** Events left out by the `events` allow-list. */
  filtered = 0;
  /** `shard → reason → count`. */
  readonly reconnects = new Map<number, Map<string, number>>();
  readonly resumes = new Map<number, Map<string, number>>();
  readonly identifies = new Map<number, number>();
  readonly sessionsLost = new Map<number, number>();
  /** `shard → kind → count`: frames Discord sent that could not be used, events not handed over. */
  readonly protocolErrors = new Map<number, Map<string, number>>();
  /** Called with every heartbeat latency, in seconds (the metrics' histogram). */
  onLatency: ((seconds: number) => void) | null = null;
  /** Commands taken, by source and result. */
  readonly commands = new Map<string, number>();
  readonly #guilds = new Map<number, Set<string>>();

  // ---- the event path ----

  /** One dispatch (called for every event, kept or filtered). */
  event(shard: number, t: string, payload: Uint8Array, start: number): void {
    this.received.add(shard, t);
    if (t.charCodeAt(0) === 71 /* G */ && t.startsWith("GUILD_")) {
      if (t === "GUILD_CREATE") this.#guildCreate(shard, payload, start);
      else if (t === "GUILD_DELETE") this.#guildDelete(shard, payload, start);
    } else if (t === "READY") this.#ready(shard, payload, start);
  }

  /** An event left out by the `events` allow-list. */
  filteredOut(_shard: number, _t: string): void {
    this.filtered++;
  }

  deliveredTo(sink: string, batch: EventBatch): void {
    let counts = this.delivered.get(sink);
    if (counts === undefined) {
      counts = new EventCounts();
      this.delivered.set(sink, counts);
    }
    counts.addBatch(batch);
  }

  command(source: string, accepted: boolean): void {
    const key = `${source}\u0000${accepted ? "accepted" : "rejected"}`;
    this.commands.set(key, (this.commands.get(key) ?? 0) + 1);
  }

  /** Guilds the shard is in now (from READY, GUILD_CREATE and GUILD_DELETE). */
  guilds(shard: number): number {
    return this.#guilds.get(shard)?.size ?? 0;
  }

  #ready(shard: number, payload: Uint8Array, start: number): void {
    const set = new Set<string>();
    try {
      const message = JSON.parse(decoder.decode(payload.subarray(start))) as { d?: { guilds?: unknown } };
      const guilds = message.d?.guilds;
      if (Array.isArray(guilds)) {
        for (const g of guilds) if (typeof g?.id === "string") set.add(g.id);
      }
    } catch {
      // the shard reports bad frames itself
    }
    this.#guilds.set(shard, set);
  }

  #guildCreate(shard: number, payload: Uint8Array, start: number): void {
    const id = topLevelId(payload, start);
    if (id === null) return;
    let set = this.#guilds.get(shard);
    if (set === undefined) this.#guilds.set(shard, set = new Set());
    set.add(id);
  }

  #guildDelete(shard: number, payload: Uint8Array, start: number): void {
    try {
      const d = (JSON.parse(decoder.decode(payload.subarray(start))) as {
        d?: { id?: unknown; unavailable?: unknown };
      })
        .d;
      // unavailable = an outage: the bot is still in the guild.
      if (typeof d?.id === "string" && d.unavailable !== true) this.#guilds.get(shard)?.delete(d.id);
    } catch {
      // ignored, as above
    }
  }

  // ---- ShardObserver ----

  latency(_shard: number, ms: number): void {
    this.onLatency?.(ms / 1000);
  }

  reconnect(shard: number, reason: string): void {
    bump(this.reconnects, shard, reason);
  }

  session(shard: number, resumed: boolean, reason: string): void {
    if (resumed) bump(this.resumes, shard, reason);
    else this.identifies.set(shard, (this.identifies.get(shard) ?? 0) + 1);
  }

  sessionLost(shard: number): void {
    this.sessionsLost.set(shard, (this.sessionsLost.get(shard) ?? 0) + 1);
  }

  protocolError(shard: number, kind: string): void {
    bump(this.protocolErrors, shard, kind);
  }
}

function bump(map: Map<number, Map<string, number>>, shard: number, reason: string): void {
  let reasons = map.get(shard);
  if (reasons === undefined) map.set(shard, reasons = new Map());
  reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
}

/**
 * The string value of the `id` key of the payload's `d` object, found without parsing the whole
 * (possibly megabytes long) GUILD_CREATE: a scan that skips strings and nested values.
 */
export function topLevelId(payload: Uint8Array, start: number): string | null {
  // Find `"d":` at depth 1 of the payload, then the key `"id"` at depth 1 of d.
  const d = findKey(payload, start, "d");
  if (d < 0 || payload[d] !== 0x7b) return null;
  const id = findKey(payload, d, "id");
  if (id < 0 || payload[id] !== 0x22) return null;
  const end = payload.indexOf(0x22, id + 1);
  return end < 0 ? null : decoder.decode(payload.subarray(id + 1, end));
}

/** In the object starting at `open` (its `{`), the index of `key`'s value (after `:` and spaces), or -1. */
function findKey(b: Uint8Array, open: number, key: string): number {
  let depth = 0;
  let i = open;
  while (i < b.length) {
    const c = b[i];
    if (c === 0x22) {
      // A string: at depth 1 and followed by ':' it is a key.
      const from = i + 1;
      i = from;
      while (i < b.length && b[i] !== 0x22) i += b[i] === 0x5c ? 2 : 1;
      const to = i;
      i++;
      if (depth === 1) {
        let j = i;
        while (j < b.length && b[j] <= 0x20) j++;
        if (b[j] === 0x3a) {
          j++;
          while (j < b.length && b[j] <= 0x20) j++;
          if (to - from === key.length && matches(b, from, key)) return j;
          i = j;
        }
      }
      continue;
    }
    if (c === 0x7b || c === 0x5b) depth++;
    else if (c === 0x7d || c === 0x5d) {
      depth--;
      if (depth === 0) return -1;
    }
    i++;
  }
  return -1;
}

function matches(b: Uint8Array, at: number, key: string): boolean {
  for (let k = 0; k < key.length; k++) if (b[at + k] !== key.charCodeAt(k)) return false;
  return true;
}
