/**
 * Proxy mode's centre: fed every committed batch of the journal (so what a client gets is what the
 * journal holds, in its order), it keeps the cache current, hands each event to the clients of its
 * shard, and keeps the client sessions — in memory for the resume window after a client leaves, and in
 * the store (with the journal's batches) so they outlive a restart of gatehouse.
 */
import { createHash, timingSafeEqual } from "node:crypto";
import type { BatchConsumer, EventBatch } from "../journal/batch.ts";
import type { StoredEvent, StoredProxySession } from "../journal/store.ts";
import { dataOf } from "../gateway/frame.ts";
import type { Logger } from "../util/log.ts";
import type { GuildCache } from "./cache.ts";
import type { ProxyClient } from "./client.ts";
import { deliverable, ProxySession } from "./sessions.ts";

const decoder = new TextDecoder();
/** A GUILD_MEMBERS_CHUNK's nonce (a top-level key: inside strings a quote is always escaped). */
const NONCE = /"nonce":"((?:[^"\\]|\\.){1,64})"/;
/** A nonce claimed by a client is routed to it for this long after its last chunk. */
const NONCE_TTL_MS = 120_000;

/** What the hub needs of the running gateway. */
export interface ProxyGateway {
  /** The shard count that delivers now. */
  count(): number;
  /** Whether this process runs shard `id` of `count` (and it delivers). */
  runs(id: number, count: number): boolean;
  /** Queues a command on the shard under its send limiter; an error text when refused. */
  send(id: number, count: number, op: number, d: unknown): string | null;
  /** The intents gatehouse identifies with. */
  intents: number;
}

/** The journal as the hub uses it: committed batches, client sessions stored with them, reads. */
export interface ProxyJournal {
  subscribe(consumer: BatchConsumer): number;
  unsubscribe(consumer: BatchConsumer): void;
  proxySession(sessionId: string, session: StoredProxySession | null): void;
}

/** The store as the hub reads it; null when events are not kept (then nothing can be resumed). */
export interface ProxyStore {
  read(afterId: number, limit: number): StoredEvent[];
  minId(): number;
  loadSessions(): StoredProxySession[];
}

export interface HubOptions {
  gateway: ProxyGateway;
  journal: ProxyJournal;
  store: ProxyStore | null;
  cache: GuildCache;
  /** The token clients must send (a leading "Bot " is ignored). */
  token: string;
  resumeWindowMs: number;
  maxBufferBytes: number;
  heartbeatIntervalMs?: number;
  logger: Logger;
  now?: () => number;
}

export interface ProxyCounters {
  startUps: number;
  resumes: number;
  invalidated: number;
  slowClosed: number;
  commands: number;
  events: number;
  /** Clients told to reconnect (op 7) because the bot was resharded. */
  reshardReconnects: number;
}

export class ProxyHub implements BatchConsumer {
  readonly cache: GuildCache;
  readonly maxBufferBytes: number;
  readonly heartbeatIntervalMs: number;
  readonly counters: ProxyCounters = {
    startUps: 0,
    resumes: 0,
    invalidated: 0,
    slowClosed: 0,
    commands: 0,
    events: 0,
    reshardReconnects: 0,
  };
  readonly #options: HubOptions;
  readonly #log: Logger;
  readonly #tokenDigest: Uint8Array;
  readonly #sessions = new Map<string, ProxySession>();
  /** Attached clients by shard id. */
  readonly #byShard = new Map<number, Set<ProxyClient>>();
  readonly #clientOf = new Map<ProxySession, ProxyClient>();
  /** GUILD_MEMBERS_CHUNK nonces clients asked with: nonce → sessions, and when last seen. */
  readonly #nonces = new Map<string, { sessions: Set<string>; at: number }>();
  /** Shards whose READY the cache holds. */
  readonly #readyShards = new Set<number>();
  #waiters: Array<() => void> = [];
  #lastSeenId: number;
  /** The bot's shard count the clients are served under (a reshard's switch changes it). */
  #count: number;
  #timer: ReturnType<typeof setInterval> | undefined;
  readonly now: () => number;

  constructor(options: HubOptions) {
    this.#options = options;
    this.#log = options.logger;
    this.cache = options.cache;
    this.maxBufferBytes = options.maxBufferBytes;
    this.heartbeatIntervalMs = options.heartbeatIntervalMs ?? 41_250;
    this.now = options.now ?? Date.now;
    this.#tokenDigest = digest(bare(options.token));
    this.#count = options.gateway.count();
    // Sessions stored by the previous run: their clients may resume within the window from now.
    const at = this.now();
    for (const row of options.store?.loadSessions() ?? []) {
      const session = ProxySession.fromStored(row);
      if (!session || at - row.updatedAt > options.resumeWindowMs + 3_600_000) {
        options.journal.proxySession(row.sessionId, null);
        continue;
      }
      session.disconnectedAt = at;
      this.#sessions.set(session.id, session);
    }
    this.#lastSeenId = options.journal.subscribe(this);
    // Stored checkpoints, expired sessions: once a second.
    this.#timer = setInterval(() => this.#tick(), 1_000);
  }

  get lastSeenId(): number {
    return this.#lastSeenId;
  }

  get intents(): number {
    return this.#options.gateway.intents;
  }

  /** Restored or kept sessions, attached or not. */
  get sessionCount(): number {
    return this.#sessions.size;
  }

  // ---- the journal's batches ----

  offer(batch: EventBatch): void {
    const cache = this.cache;
    const count = this.#options.gateway.count();
    if (count !== this.#count) this.#resharded(count);
    for (let i = 0; i < batch.count; i++) {
      const t = batch.t(i);
      const payload = batch.payload(i);
      const shard = batch.shard(i);
      if (cache.handles(t)) {
        const d = dataOf(payload);
        if (d !== null) cache.apply(t, decoder.decode(d));
        if (t === "READY") this.#readyShards.add(shard);
      }
      const clients = this.#byShard.get(shard);
      if (clients === undefined || clients.size === 0) continue;
      const owners = this.ownersOf(t, payload);
      const id = batch.id(i);
      for (const client of clients) client.offer(id, t, payload, owners);
      if (deliverable(t)) this.counters.events += clients.size;
    }
    this.#lastSeenId = batch.lastId;
    if (this.#waiters.length > 0 && this.cache.user !== null) {
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const wake of waiters) wake();
    }
  }

  /** The sessions a GUILD_MEMBERS_CHUNK is for (by the nonce a client asked with); null = every client. */
  ownersOf(t: string, payload: Uint8Array): ReadonlySet<string> | null {
    if (t !== "GUILD_MEMBERS_CHUNK" || this.#nonces.size === 0) return null;
    const match = NONCE.exec(decoder.decode(payload));
    const claim = match ? this.#nonces.get(match[1]) : undefined;
    if (!claim) return null;
    claim.at = this.now();
    return claim.sessions;
  }

  claimNonce(nonce: string, sessionId: string): void {
    const claim = this.#nonces.get(nonce);
    if (claim) {
      claim.sessions.add(sessionId);
      claim.at = this.now();
    } else this.#nonces.set(nonce, { sessions: new Set([sessionId]), at: this.now() });
  }

  // ---- clients ----

  tokenMatches(token: string): boolean {
    const given = digest(bare(token));
    return timingSafeEqual(given, this.#tokenDigest);
  }

  /** Why a client cannot be shard [id, count] here (close code and reason), or null. */
  refuseShard(id: unknown, count: unknown): { code: number; reason: string } | null {
    const running = this.#options.gateway.count();
    if (!Number.isInteger(id) || !Number.isInteger(count) || (count as number) < 1) {
      return { code: 4010, reason: "Invalid shard." };
    }
    if ((id as number) < 0 || (id as number) >= (count as number)) {
      return { code: 4010, reason: "Invalid shard." };
    }
    if (count !== running) {
      return (count as number) < running
        ? { code: 4011, reason: `Sharding required: the bot runs ${running} shards.` }
        : { code: 4010, reason: `Invalid shard: the bot runs ${running} shard(s).` };
    }
    if (!this.#options.gateway.runs(id as number, count as number)) {
      return { code: 4010, reason: `Invalid shard: shard ${id} does not run in this gatehouse process.` };
    }
    return null;
  }

  openSession(shard: number, count: number, client: ProxyClient): ProxySession {
    const session = new ProxySession(crypto.randomUUID().replaceAll("-", ""), shard, count);
    this.#sessions.set(session.id, session);
    this.#attach(session, client);
    return session;
  }

  /**
   * The session a RESUME names, moved to `client` with its position found in the journal; or why it
   * cannot be resumed.
   */
  resumeSession(sessionId: string, seq: unknown, client: ProxyClient): ProxySession | string {
    const session = this.#sessions.get(sessionId);
    if (!session) return "no such session (unknown, or gone for longer than [proxy] resume_window)";
    if (this.#options.store === null) return "[store] journal = false: no events to resume from";
    if (typeof seq !== "number" || !Number.isInteger(seq) || seq < 0) return `seq ${JSON.stringify(seq)}`;
    if (!this.#options.gateway.runs(session.shard, session.count)) {
      return `its shard [${session.shard}, ${session.count}] does not run here now`;
    }
    const point = session.resumePoint(seq);
    if (point === null) return `seq ${seq} is not one this session can go on from`;
    const position = this.#locate(session.shard, point.id, point.after);
    if (position === null) return `the events after seq ${seq} are no longer in the journal`;
    this.#clientOf.get(session)?.close(4000, "Session resumed on another connection.");
    session.resumedAt(seq, position);
    this.#attach(session, client);
    return session;
  }

  /** The journal id after which the stream goes on: `after` deliverable events of the shard past `id`. */
  #locate(shard: number, id: number, after: number): number | null {
    const store = this.#options.store!;
    // Events after `id` pruned by retention: they cannot be sent.
    const min = store.minId();
    if (min > id + 1 && this.#lastSeenId > id) return null;
    let position = id;
    let remaining = after;
    while (remaining > 0) {
      const rows = store.read(position, 1_000);
      if (rows.length === 0) return null;
      for (const row of rows) {
        position = row.id;
        if (row.shard === shard && deliverable(row.t) && --remaining === 0) break;
      }
    }
    return position;
  }

  #attach(session: ProxySession, client: ProxyClient): void {
    session.disconnectedAt = null;
    this.#clientOf.set(session, client);
    let clients = this.#byShard.get(session.shard);
    if (!clients) this.#byShard.set(session.shard, clients = new Set());
    clients.add(client);
  }

  detach(client: ProxyClient): void {
    this.#byShard.get(client.session?.shard ?? -1)?.delete(client);
    const session = client.session;
    if (session && this.#clientOf.get(session) === client) {
      this.#clientOf.delete(session);
      session.disconnectedAt = this.now();
      // A session that never finished its start-up has nothing a client could resume from.
      if (session.checkpoints.length === 0) this.#forget(session);
    }
  }

  /** Resolves true once the cache holds shard `shard`'s READY (false after 60 s, or when `gone()`). */
  async whenReady(shard: number, gone: () => boolean): Promise<boolean> {
    const deadline = this.now() + 60_000;
    while (!this.#readyShards.has(shard) || this.cache.user === null) {
      if (gone() || this.now() > deadline) return false;
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 250);
      });
    }
    return true;
  }

  /** Lets everything else run (a client's start-up or catch-up goes a slice per turn). */
  turn(): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, 0));
  }

  pause(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }

  read(afterId: number, limit: number): StoredEvent[] {
    return this.#options.store?.read(afterId, limit) ?? [];
  }

  send(id: number, count: number, op: number, d: unknown): string | null {
    return this.#options.gateway.send(id, count, op, d);
  }

  // ---- upkeep ----

  #tick(): void {
    const now = this.now();
    for (const session of this.#sessions.values()) {
      if (session.disconnectedAt !== null && now - session.disconnectedAt > this.#options.resumeWindowMs) {
        this.#forget(session);
      } else if (session.dirty && session.checkpoints.length > 0) {
        session.dirty = false;
        this.#options.journal.proxySession(session.id, session.toStored(now));
      }
    }
    for (const [nonce, claim] of this.#nonces) if (now - claim.at > NONCE_TTL_MS) this.#nonces.delete(nonce);
    // A client that stopped reading after the last event it was given: nothing new comes to judge it by.
    for (const client of [...this.#clientOf.values()]) client.judge();
  }

  /**
   * The bot runs `count` shards now (a reshard's switch): the clients of the old count are told to
   * reconnect (op 7) before any event of the new set reaches them (shard ids repeat across counts), and
   * their sessions, which cannot go on, are forgotten. They start again with the new count.
   */
  #resharded(count: number): void {
    const from = this.#count;
    this.#count = count;
    let told = 0;
    for (const clients of this.#byShard.values()) {
      for (const client of [...clients]) {
        if (client.session === null || client.session.count === count) continue;
        client.reconnect();
        told++;
      }
    }
    for (const session of [...this.#sessions.values()]) if (session.count !== count) this.#forget(session);
    this.counters.reshardReconnects += told;
    this.#log.info(
      "proxy: the bot was resharded {from} → {to}: {told} client(s) of {from} shards told to reconnect " +
        "(op 7); they go on with {to} shards",
      { from, to: count, told },
    );
  }

  #forget(session: ProxySession): void {
    this.#sessions.delete(session.id);
    this.#options.journal.proxySession(session.id, null);
  }

  /** The clients, for /shards, metrics and `gatehouse shards`. */
  clients(): Array<{
    session: string;
    shard: number;
    count: number;
    state: string;
    seq: number;
    behind: number;
    bufferedBytes: number;
    connectedAt: number;
  }> {
    const out = [];
    for (const [session, client] of this.#clientOf) {
      out.push({
        session: session.id.slice(0, 8),
        shard: session.shard,
        count: session.count,
        state: client.state,
        seq: session.seq,
        // Journal ids between what it was given and the newest: an upper bound of the events it lags.
        behind: Math.max(0, this.#lastSeenId - session.position),
        bufferedBytes: client.buffered,
        connectedAt: client.connectedAt,
      });
    }
    return out.sort((a, b) => a.shard - b.shard || a.connectedAt - b.connectedAt);
  }

  /** Stores every session's checkpoints and closes the clients resumably (gatehouse is stopping). */
  stop(): void {
    clearInterval(this.#timer);
    this.#options.journal.unsubscribe(this);
    const now = this.now();
    for (const client of [...this.#clientOf.values()]) client.close(4000, "gatehouse is restarting: resume.");
    for (const session of this.#sessions.values()) {
      if (session.checkpoints.length > 0) {
        this.#options.journal.proxySession(session.id, session.toStored(now));
      }
    }
  }
}

function bare(token: string): string {
  return token.trim().replace(/^Bot\s+/i, "");
}

function digest(text: string): Uint8Array {
  return createHash("sha256").update(text).digest();
}
