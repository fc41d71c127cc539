/**
 * Event transforms on the way from the journal to a sink (`[transforms]`, README "Transforms"), from
 * Discordeno's big-bot guide: annotate (or rename) GUILD_CREATE by why it came, drop GUILD_DELETE of an
 * outage, drop MESSAGE_UPDATE that left the content as it was (an embed unfurling). The journal keeps
 * every event as Discord sent it; proxy mode, `inspect` and `replay` read it untransformed.
 *
 * Each sink runner has its own `Transforms` (sinks are at different places in the journal). Every event
 * is judged once, in id order, the first time a delivery reaches it; its verdict is kept until the sink
 * acknowledges it, so a delivery that fails and is tried again (from the store, cut differently) gets
 * the same verdicts, and the state never runs twice over an event. After a restart the state is rebuilt
 * from the journal up to the sink's cursor (transform_warmup.ts) before the sink delivers.
 *
 * A dropped event is simply not in the batch the sink gets; the batch keeps its id range, so the
 * cursor moves past it like any other event.
 */
import { fieldOf, membersOf, valueStart } from "../gateway/frame.ts";
import type { EventBatch } from "../journal/journal.ts";
import { contentHash, GuildBook, type GuildCreateKind, MessageBook, NO_CONTENT } from "./transform_state.ts";

/** `[transforms]`: what to do to the events each sink gets (all off by default). */
export interface TransformOptions {
  /** `annotate`: a `guild_create` member on every GUILD_CREATE; `rename`: also `t` GUILD_LOADED_DD for the loading ones. */
  guildCreate: "off" | "annotate" | "rename";
  /** `drop_unavailable`: drop GUILD_DELETE with `unavailable: true` (an outage, not a leave). */
  guildDelete: "off" | "drop_unavailable";
  /** `drop_unchanged`: drop MESSAGE_UPDATE that leaves `content` as it was within `messageWindowMs` of the message last seen. */
  messageUpdate: "off" | "drop_unchanged";
  messageWindowMs: number;
  /** Messages remembered at most (the oldest written are forgotten first). */
  messageCache: number;
}

/** Whether the options change anything (otherwise no runner gets transforms: nothing on the path). */
export function transformsOn(options: TransformOptions | null | undefined): options is TransformOptions {
  return options !== null && options !== undefined &&
    (options.guildCreate !== "off" || options.guildDelete !== "off" || options.messageUpdate !== "off");
}

/** The name a loading GUILD_CREATE gets with `guild_create = "rename"` (Discordeno's). */
export const LOADED_NAME = "GUILD_LOADED_DD";

/** What happens to one event. Verdicts are shared constants, compared by identity. */
export interface Verdict {
  readonly drop: boolean;
  /** The line's added members (`EventBatch.extra`). */
  readonly extra: Uint8Array | null;
  /** The new event name, or null. */
  readonly rename: string | null;
  /** Which count it adds to once acknowledged. */
  readonly count: keyof TransformCounts | null;
}

const encoder = new TextEncoder();

function verdict(
  count: keyof TransformCounts | null,
  options: { drop?: boolean; kind?: GuildCreateKind; rename?: boolean } = {},
): Verdict {
  return Object.freeze({
    drop: options.drop ?? false,
    extra: options.kind ? encoder.encode(`"guild_create":"${options.kind}"`) : null,
    rename: options.rename ? LOADED_NAME : null,
    count,
  });
}

export const PASS: Verdict = verdict(null);
const DROP_UNAVAILABLE = verdict("droppedUnavailableGuildDelete", { drop: true });
const DROP_UNCHANGED = verdict("droppedUnchangedMessageUpdate", { drop: true });
const ANNOTATED: Record<GuildCreateKind, Verdict> = {
  loading: verdict("loading", { kind: "loading" }),
  available: verdict("available", { kind: "available" }),
  joined: verdict("joined", { kind: "joined" }),
};
const LOADING_RENAMED = verdict("loading", { kind: "loading", rename: true });

/** What one sink's transforms did, counted when the sink acknowledged it (the metrics). */
export class TransformCounts {
  droppedUnavailableGuildDelete = 0;
  droppedUnchangedMessageUpdate = 0;
  /** GUILD_CREATEs annotated, by kind. */
  loading = 0;
  available = 0;
  joined = 0;
  /** Loading GUILD_CREATEs delivered as GUILD_LOADED_DD. */
  renamed = 0;
}

const D = encoder.encode("d");
const T = encoder.encode("t");
const ID = [encoder.encode("id")];
const ID_UNAVAILABLE = [ID[0], encoder.encode("unavailable")];
const ID_CONTENT = [ID[0], encoder.encode("content")];
const decoder = new TextDecoder();
/** `membersOf`'s output, reused (judging is synchronous). */
const found: Array<Uint8Array | null> = [];

/** One sink's transforms: the state, the verdicts not acknowledged yet, the counts. */
export class Transforms {
  readonly options: TransformOptions;
  readonly counts = new TransformCounts();
  readonly #guilds: GuildBook | null;
  readonly #messages: MessageBook | null;
  readonly #rename: boolean;
  readonly #dropOutages: boolean;
  /** Events up to this id have been judged (the state includes them). */
  #through = 0;
  /** Verdicts other than PASS of events judged and not acknowledged, in id order. */
  readonly #pending = new Map<number, Verdict>();

  constructor(options: TransformOptions) {
    this.options = options;
    this.#guilds = options.guildCreate !== "off" ? new GuildBook() : null;
    this.#rename = options.guildCreate === "rename";
    this.#dropOutages = options.guildDelete === "drop_unavailable";
    this.#messages = options.messageUpdate === "drop_unchanged"
      ? new MessageBook(options.messageWindowMs, options.messageCache)
      : null;
  }

  /** The event names whose payloads the state follows (what a rebuild reads from the journal). */
  get followed(): { guilds: string[]; messages: string[] } {
    return {
      guilds: this.#guilds ? ["READY", "GUILD_CREATE", "GUILD_DELETE"] : [],
      messages: this.#messages ? ["MESSAGE_CREATE", "MESSAGE_UPDATE"] : [],
    };
  }

  /** The id up to which events have been judged. */
  get through(): number {
    return this.#through;
  }

  /** Guilds and messages remembered (memory). */
  get remembered(): { guilds: number; messages: number } {
    return { guilds: this.#guilds?.size ?? 0, messages: this.#messages?.size ?? 0 };
  }

  /**
   * What the sink gets of `batch`: the batch itself when no event of it is touched, else a view without
   * the dropped events and with the annotations and names changed. Events beyond `through` are judged
   * now (in order); those before it get the verdict they had.
   */
  apply(batch: EventBatch): EventBatch {
    let kept: number[] | null = null;
    let verdicts: Verdict[] | null = null;
    const n = batch.count;
    for (let i = 0; i < n; i++) {
      const id = batch.id(i);
      let v: Verdict;
      if (id <= this.#through) v = this.#pending.get(id) ?? PASS;
      else {
        v = this.#judge(batch, i);
        this.#through = id;
        if (v !== PASS) this.#pending.set(id, v);
      }
      if (kept === null) {
        if (v === PASS) continue;
        kept = [];
        verdicts = [];
        for (let k = 0; k < i; k++) {
          kept.push(k);
          verdicts.push(PASS);
        }
      }
      if (!v.drop) {
        kept.push(i);
        verdicts!.push(v);
      }
    }
    return kept === null ? batch : new TransformedBatch(batch, kept, verdicts!);
  }

  /** The sink took everything up to `lastId`: its verdicts are counted and forgotten. */
  acknowledged(lastId: number): void {
    for (const [id, v] of this.#pending) {
      if (id > lastId) break;
      if (v.count !== null) this.counts[v.count]++;
      if (v.rename !== null) this.counts.renamed++;
      this.#pending.delete(id);
    }
  }

  /**
   * Feeds the events of `batch` up to `lastId` into the state without delivering them (a rebuild from
   * the journal): they were delivered before, their verdicts are not needed.
   */
  observe(batch: EventBatch, lastId: number): void {
    for (let i = 0; i < batch.count; i++) {
      const id = batch.id(i);
      if (id > lastId) break;
      if (id <= this.#through) continue;
      this.#judge(batch, i);
      this.#through = id;
    }
  }

  /** Everything up to `id` is known (the rebuild reached the sink's cursor): it is not judged again. */
  skipTo(id: number): void {
    if (id > this.#through) this.#through = id;
  }

  /** The verdict on event `i`, updating the state. A payload that cannot be read passes untouched. */
  #judge(batch: EventBatch, i: number): Verdict {
    const t = batch.t(i);
    try {
      switch (t) {
        case "GUILD_CREATE":
          return this.#guilds === null ? PASS : this.#guildCreate(batch.shard(i), batch.payload(i));
        case "GUILD_DELETE":
          if (this.#guilds === null && !this.#dropOutages) return PASS;
          return this.#guildDelete(batch.shard(i), batch.payload(i));
        case "READY":
          if (this.#guilds !== null) this.#guilds.ready(batch.shard(i), readyGuildIds(batch.payload(i)));
          return PASS;
        case "MESSAGE_CREATE":
          if (this.#messages !== null) this.#message(batch, i, false);
          return PASS;
        case "MESSAGE_UPDATE":
          return this.#messages !== null && this.#message(batch, i, true) ? DROP_UNCHANGED : PASS;
        default:
          return PASS;
      }
    } catch {
      // Journaled payloads are valid JSON; whatever else cannot be read goes out as it came.
      return PASS;
    }
  }

  #guildCreate(shard: number, payload: Uint8Array): Verdict {
    const id = dMembers(payload, ID) > 0 ? stringValue(found[0]) : null;
    if (id === null) return PASS;
    const kind = this.#guilds!.created(shard, id);
    return kind === "loading" && this.#rename ? LOADING_RENAMED : ANNOTATED[kind];
  }

  #guildDelete(shard: number, payload: Uint8Array): Verdict {
    dMembers(payload, ID_UNAVAILABLE);
    const id = stringValue(found[0]);
    if (id === null) return PASS;
    const unavailable = isTrue(found[1]);
    this.#guilds?.deleted(shard, id, unavailable);
    return unavailable && this.#dropOutages ? DROP_UNAVAILABLE : PASS;
  }

  /** Remembers a message's content; for an update, whether it changed nothing (drop). */
  #message(batch: EventBatch, i: number, update: boolean): boolean {
    dMembers(batch.payload(i), ID_CONTENT);
    const id = stringValue(found[0]);
    if (id === null) return false;
    const content = found[1];
    const hash = content !== null && content[0] === 0x22 ? contentHash(content) : undefined;
    const at = batch.time?.(i) ?? 0;
    if (!update) {
      this.#messages!.created(id, hash ?? NO_CONTENT, at);
      return false;
    }
    return this.#messages!.updated(id, hash, at);
  }
}

/** A batch as a sink gets it after the transforms: some events left out, some annotated or renamed. */
export class TransformedBatch implements EventBatch {
  readonly #source: EventBatch;
  /** Index in the source of each event kept. */
  readonly #kept: number[];
  readonly #verdicts: Verdict[];

  constructor(source: EventBatch, kept: number[], verdicts: Verdict[]) {
    this.#source = source;
    this.#kept = kept;
    this.#verdicts = verdicts;
  }
  get count(): number {
    return this.#kept.length;
  }
  /** The source's range: the cursor moves past the dropped events too. */
  get firstId(): number {
    return this.#source.firstId;
  }
  get lastId(): number {
    return this.#source.lastId;
  }
  get size(): number {
    let bytes = 0;
    for (const k of this.#kept) bytes += this.#source.payload(k).length;
    return bytes;
  }
  get firstReceivedAt(): number | undefined {
    return this.#source.firstReceivedAt;
  }
  id(i: number): number {
    return this.#source.id(this.#kept[i]);
  }
  shard(i: number): number {
    return this.#source.shard(this.#kept[i]);
  }
  t(i: number): string {
    return this.#verdicts[i].rename ?? this.#source.t(this.#kept[i]);
  }
  payload(i: number): Uint8Array {
    const payload = this.#source.payload(this.#kept[i]);
    const rename = this.#verdicts[i].rename;
    return rename === null ? payload : renamed(payload, rename);
  }
  scope(i: number): string {
    return this.#source.scope(this.#kept[i]);
  }
  position(i: number): number {
    return this.#source.position(this.#kept[i]);
  }
  time(i: number): number {
    return this.#source.time?.(this.#kept[i]) ?? 0;
  }
  extra(i: number): Uint8Array | null {
    return this.#verdicts[i].extra;
  }
}

/** `payload` with the value of its top-level `t` replaced by `name` (`d` and the rest byte for byte). */
export function renamed(payload: Uint8Array, name: string): Uint8Array {
  const t = fieldOf(payload, T);
  if (t === null) return payload;
  const from = t.byteOffset - payload.byteOffset;
  const value = encoder.encode(JSON.stringify(name));
  const out = new Uint8Array(payload.length - t.length + value.length);
  out.set(payload.subarray(0, from));
  out.set(value, from);
  out.set(payload.subarray(from + t.length), from + value.length);
  return out;
}

/** `keys` of the payload's `d` into `found` (one pass over d's members, stopping once all are found). */
function dMembers(payload: Uint8Array, keys: readonly Uint8Array[]): number {
  const at = valueStart(payload, D);
  if (at < 0) {
    found.length = keys.length;
    found.fill(null);
    return 0;
  }
  return membersOf(payload, at, keys, found);
}

/**
 * The text of a JSON string value's bytes (with quotes), or null. Guild and message ids are a few ASCII
 * digits: taken as char codes, without a TextDecoder call (which costs more than the rest here).
 */
function stringValue(bytes: Uint8Array | null): string | null {
  if (bytes === null || bytes.length < 2 || bytes[0] !== 0x22) return null;
  const end = bytes.length - 1;
  if (end > 33) return decoder.decode(bytes.subarray(1, end));
  let text = "";
  for (let k = 1; k < end; k++) {
    const c = bytes[k];
    if (c >= 0x80 || c === 0x5c) return decoder.decode(bytes.subarray(1, end));
    text += String.fromCharCode(c);
  }
  return text;
}

function isTrue(bytes: Uint8Array | null): boolean {
  return bytes !== null && bytes.length === 4 && bytes[0] === 0x74; // true
}

/** The guild ids of a READY payload (`d.guilds[].id`). */
function readyGuildIds(payload: Uint8Array): string[] {
  const guilds = (JSON.parse(decoder.decode(payload)) as { d?: { guilds?: unknown } })?.d?.guilds;
  if (!Array.isArray(guilds)) return [];
  return guilds.map((g) => g?.id).filter((id): id is string => typeof id === "string");
}
