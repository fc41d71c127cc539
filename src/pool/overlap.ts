/**
 * The overlap of a reshard (docs/protocol.md §13): while a new shard set runs beside the old one, both
 * receive the same events. Discord serialises an event's `d` once and sends the same bytes to every session
 * that should see it (only `s`, and the session's own events, differ), so a fingerprint of (`t`, `d` bytes)
 * recognises the second copy without parsing.
 *
 * The rule is counted, not set-like: a copy from one generation is dropped only when the other generation
 * delivered the same fingerprint within the window and that delivery has not been matched yet; each drop
 * consumes one such delivery. So an event seen once on each side is delivered once, an event that truly
 * happens twice with identical bytes is delivered twice, and an event only one side sees is delivered.
 * Memory is bounded by a time window and a count; what falls out of either is never matched, so the cost of
 * a bound that is too tight is a repeat delivered, never an event lost.
 *
 * Pure and synchronous: time comes from the injected clock (or the caller's receive time), no timers.
 * The bytes to offer are `d`'s value alone (`dataOf` in src/gateway/frame.ts gives a view of it), never the
 * whole frame: the frame carries the session's own `s`.
 */
import type { Clock } from "../util/clock.ts";

/** The shard set a dispatch came from: the one being replaced, or the one taking over. */
export type Generation = "old" | "new";

export type OverlapVerdict = "deliver" | "drop-repeat";

export interface OverlapOptions {
  clock: Clock;
  /** How long (ms) a delivery waits for its copy from the other generation. Default 30 s. */
  windowMs?: number;
  /** Most unmatched deliveries remembered, both generations together. Default 100 000. */
  maxEntries?: number;
  /**
   * Seeds of the two 32-bit hash lanes. Default random per filter, so nobody can choose bytes offline that
   * collide with another event's; tests pass fixed seeds.
   */
  seeds?: [number, number];
  /** Event names that are per session by definition and never matched (default READY, RESUMED). */
  perSession?: readonly string[];
}

export const OVERLAP_DEFAULTS = { windowMs: 30_000, maxEntries: 100_000 } as const;

/** One unmatched delivery, waiting for its copy from the other generation. */
interface Pending {
  key: string;
  generation: Generation;
  at: number;
  live: boolean;
  /** What the caller attached to the delivery (`offer`'s `token`). */
  token: unknown;
}

/** What the filter has done, for metrics. */
export interface OverlapCounts {
  delivered: number;
  dropped: number;
  /** Unmatched deliveries forgotten because the count bound was reached before their window ended. */
  evicted: number;
  /** Unmatched deliveries whose window ended. */
  expired: number;
}

export class OverlapFilter {
  readonly #clock: Clock;
  readonly #windowMs: number;
  readonly #maxEntries: number;
  readonly #seeds: [number, number];
  readonly #perSession: ReadonlySet<string>;
  /** Unmatched deliveries by generation, then fingerprint; each list oldest first. */
  readonly #pending: Record<Generation, Map<string, Pending[]>> = { old: new Map(), new: new Map() };
  /** Every recorded delivery in arrival order (dead ones are skipped lazily, compacted when many). */
  #queue: Pending[] = [];
  #head = 0;
  #live = 0;
  readonly counts: OverlapCounts = { delivered: 0, dropped: 0, evicted: 0, expired: 0 };

  constructor(options: OverlapOptions) {
    this.#clock = options.clock;
    this.#windowMs = options.windowMs ?? OVERLAP_DEFAULTS.windowMs;
    this.#maxEntries = options.maxEntries ?? OVERLAP_DEFAULTS.maxEntries;
    if (!(this.#windowMs > 0) || !Number.isFinite(this.#windowMs)) {
      throw new RangeError(`Cannot use windowMs ${this.#windowMs}: it must be a positive number of ms`);
    }
    if (!Number.isInteger(this.#maxEntries) || this.#maxEntries < 1) {
      throw new RangeError(`Cannot use maxEntries ${this.#maxEntries}: it must be a positive integer`);
    }
    this.#seeds = options.seeds ?? [randomUint32(), randomUint32()];
    this.#perSession = new Set(options.perSession ?? ["READY", "RESUMED"]);
  }

  /** Unmatched deliveries remembered now (both generations). */
  get size(): number {
    return this.#live;
  }

  /** Records held, matched ones not yet cleared included: what memory follows (≤ 2 × maxEntries + 1024). */
  get held(): number {
    return this.#queue.length - this.#head;
  }

  /** The `token` of the delivery the last "drop-repeat" matched (undefined when it had none). */
  matched: unknown = undefined;

  /**
   * Decides one dispatch. `receivedAt` defaults to the clock; a receive time in the future of the clock
   * counts as now. `token` is kept with a delivery that waits for its copy, and is `matched` when the copy
   * comes (a reshard holds the new set's deliveries and cancels one when the old set turns out to have it).
   */
  offer(
    generation: Generation,
    t: string,
    d: Uint8Array,
    receivedAt?: number,
    token?: unknown,
  ): OverlapVerdict {
    const now = this.#clock.now();
    const at = Math.min(receivedAt ?? now, now);
    this.#expire(now);
    if (this.#perSession.has(t)) {
      this.counts.delivered++;
      return "deliver";
    }
    const key = fingerprintKey(t, d, this.#seeds);
    const other = this.#pending[generation === "old" ? "new" : "old"];
    const waiting = other.get(key);
    if (waiting) {
      const cutoff = at - this.#windowMs;
      while (waiting.length > 0) {
        const first = waiting.shift()!;
        this.#kill(first);
        if (first.at >= cutoff) {
          if (waiting.length === 0) other.delete(key);
          this.counts.dropped++;
          this.matched = first.token;
          return "drop-repeat";
        }
        this.counts.expired++;
      }
      other.delete(key);
    }
    this.#record(generation, key, at, token);
    this.counts.delivered++;
    return "deliver";
  }

  /** Forgets what has left the window; `offer` does this itself, an idle caller may call it. */
  expire(): void {
    this.#expire(this.#clock.now());
  }

  #record(generation: Generation, key: string, at: number, token: unknown): void {
    const entry: Pending = { key, generation, at, live: true, token };
    const byKey = this.#pending[generation];
    const list = byKey.get(key);
    if (list) list.push(entry);
    else byKey.set(key, [entry]);
    this.#queue.push(entry);
    this.#live++;
    while (this.#live > this.#maxEntries) {
      const oldest = this.#nextLive();
      if (!oldest) break;
      this.#forget(oldest);
      this.counts.evicted++;
    }
    if (this.#head > 1024 && this.#head * 2 > this.#queue.length) this.#compact();
    else if (this.#queue.length - this.#head > 2 * this.#maxEntries + 1024) this.#compact();
  }

  #expire(now: number): void {
    const cutoff = now - this.#windowMs;
    for (;;) {
      const oldest = this.#nextLive();
      if (!oldest || oldest.at >= cutoff) break;
      this.#forget(oldest);
      this.counts.expired++;
    }
  }

  /** The oldest live entry of the queue, dropping dead ones in front of it. */
  #nextLive(): Pending | undefined {
    while (this.#head < this.#queue.length) {
      const entry = this.#queue[this.#head];
      if (entry.live) return entry;
      this.#head++;
    }
    return undefined;
  }

  /** Removes a live entry that is the oldest of its list (the queue's oldest always is). */
  #forget(entry: Pending): void {
    const byKey = this.#pending[entry.generation];
    const list = byKey.get(entry.key)!;
    const i = list.indexOf(entry);
    list.splice(i, 1);
    if (list.length === 0) byKey.delete(entry.key);
    this.#kill(entry);
  }

  #kill(entry: Pending): void {
    if (!entry.live) return;
    entry.live = false;
    this.#live--;
  }

  #compact(): void {
    this.#queue = this.#queue.slice(this.#head).filter((e) => e.live);
    this.#head = 0;
  }
}

/**
 * 64 bits over the bytes in two independent 32-bit lanes (a MurmurHash3-style word mix and a
 * multiply-rotate lane with another constant, each finalised with fmix32), read four bytes at a time.
 * Plain integer arithmetic: no BigInt, no allocation, synchronous (crypto.subtle is async).
 */
export function fingerprint64(d: Uint8Array, seeds: [number, number]): [number, number] {
  let h1 = seeds[0] | 0;
  let h2 = seeds[1] | 0;
  const n = d.length;
  const end = n - (n & 3);
  let i = 0;
  for (; i < end; i += 4) {
    let k = d[i] | (d[i + 1] << 8) | (d[i + 2] << 16) | (d[i + 3] << 24);
    h2 = Math.imul(h2 ^ k, 0x27d4eb2f);
    h2 = (h2 << 15) | (h2 >>> 17);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h1 ^= Math.imul(k, 0x1b873593);
    h1 = (h1 << 13) | (h1 >>> 19);
    h1 = (Math.imul(h1, 5) + 0xe6546b64) | 0;
  }
  let k = 0;
  switch (n & 3) {
    case 3:
      k ^= d[i + 2] << 16;
    // falls through
    case 2:
      k ^= d[i + 1] << 8;
    // falls through
    case 1:
      k ^= d[i];
      h2 = Math.imul(h2 ^ k, 0x27d4eb2f);
      k = Math.imul(k, 0xcc9e2d51);
      k = (k << 15) | (k >>> 17);
      h1 ^= Math.imul(k, 0x1b873593);
  }
  return [fmix32(h1 ^ n), fmix32(h2 ^ Math.imul(n, 0x9e3779b1))];
}

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The map key of one dispatch: its name, its length and the 64-bit fingerprint of its bytes. */
function fingerprintKey(t: string, d: Uint8Array, seeds: [number, number]): string {
  const [a, b] = fingerprint64(d, seeds);
  return `${t}\u0000${d.length}\u0000${a}\u0000${b}`;
}

function randomUint32(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0];
}
