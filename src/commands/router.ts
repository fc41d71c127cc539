/**
 * Gateway commands from the bot (docs/architecture.md, Commands): validated (validate.ts), then routed — by guild
 * id to the shard that owns the guild, presence (op 3) to every shard unless `shard` names one — and
 * queued on the shard under its send limiter (120 per 60 s, room kept for heartbeats; over-budget
 * commands wait, they are not dropped). A bad command is rejected with a reason; nothing throws.
 */
import { type CommandPart, parseCommand, type ParsedCommand } from "./validate.ts";

export { COMMAND_OPS } from "./validate.ts";

export interface CommandTarget {
  readonly id: number;
  /** Queues the command; returns an error text when the shard refuses it. `onSent`: once written. */
  send(op: number, d: unknown, onSent?: () => void): string | null;
}

/**
 * The shards this process runs, looked up at each command: the pool may add and remove shards while
 * the router is in use.
 */
export interface ShardDirectory {
  get(id: number): CommandTarget | undefined;
  /** Ids of the shards this process runs now (any order). */
  ids(): Iterable<number>;
}

/**
 * A directory over a list of targets, read afresh at each call, so a list that changes (in place or
 * replaced) is followed. (`gatehouse run` passes the pool, which is a directory itself.)
 */
export function shardDirectory(targets: () => readonly CommandTarget[]): ShardDirectory {
  return {
    get: (id) => targets().find((t) => t.id === id),
    ids: () => targets().map((t) => t.id),
  };
}

/** Why a command was not taken, and the shard it concerns (for the rejection event), if any. */
export interface Refusal {
  reason: string;
  shard: number | null;
}

export type CommandResult =
  | {
    ok: true;
    op: number;
    shards: number[]; /** Resolves once every shard wrote it to Discord. */
    sent: Promise<void>;
  }
  | ({ ok: false } & Refusal);

export class CommandRouter {
  readonly #shards: ShardDirectory;
  /** Shards of the whole bot (all processes); a reshard's switch changes it. */
  shardCount: number;

  constructor(shards: ShardDirectory, shardCount: number) {
    this.#shards = shards;
    this.shardCount = shardCount;
  }

  /** The shards this process runs now, ascending. */
  get shardIds(): number[] {
    return [...this.#shards.ids()].sort((a, b) => a - b);
  }

  runs(shard: number): boolean {
    return this.#shards.get(shard) !== undefined;
  }

  /**
   * The object that runs `shard` now (undefined: none). A shard removed and started again is a new
   * object: what the old one had queued is never written (see redis_sends.ts).
   */
  target(shard: number): CommandTarget | undefined {
    return this.#shards.get(shard);
  }

  /** Validates and routes over every shard of the bot (for sources that pass commands on, see redis_source). */
  parse(text: string): ParsedCommand {
    return parseCommand(text, this.shardCount);
  }

  /**
   * One command as text (an NDJSON line) for this process's shards (stdin, the control listener): op 3
   * without `shard` goes to every local shard; a command for a shard this process does not run is refused.
   */
  handle(text: string): CommandResult {
    const parsed = this.parse(text);
    if (!parsed.ok) return parsed;
    let parts: CommandPart[];
    if (parsed.everyShard) {
      parts = parsed.parts.filter((p) => this.runs(p.shard));
    } else {
      parts = parsed.parts;
      const foreign = parts.find((p) => !this.runs(p.shard));
      if (foreign) return { ok: false, reason: this.#notLocal(parsed.op, foreign), shard: null };
    }
    const sends: Promise<void>[] = [];
    for (const part of parts) {
      const taken = this.sendTo(part.shard, parsed.op, part.d);
      if ("refused" in taken) return { ok: false, reason: taken.refused, shard: part.shard };
      sends.push(taken.sent);
    }
    return {
      ok: true,
      op: parsed.op,
      shards: parts.map((p) => p.shard),
      sent: Promise.all(sends).then(() => {}),
    };
  }

  /** Queues one part on a local shard; `sent` resolves once it was written to Discord. */
  sendTo(shard: number, op: number, d: unknown): { sent: Promise<void> } | { refused: string } {
    const target = this.#shards.get(shard);
    if (!target) return { refused: `shard ${shard} is not run by this process (it runs ${this.#runList()})` };
    let done!: () => void;
    const sent = new Promise<void>((resolve) => (done = resolve));
    const refused = target.send(op, d, done);
    return refused === null ? { sent } : { refused };
  }

  /**
   * A command read from shard `shard`'s own stream or queue (`where` names it): validated again and
   * queued on that shard, or the refusal (also when it names another shard: it was put in the wrong
   * place).
   */
  sendOwn(text: string, shard: number, where: string): { sent: Promise<void> } | { refusal: Refusal } {
    const parsed = this.parse(text);
    if (!parsed.ok) return { refusal: { reason: parsed.reason, shard } };
    const part = parsed.everyShard
      ? parsed.parts.find((p) => p.shard === shard)
      : parsed.parts.length === 1 && parsed.parts[0].shard === shard
      ? parsed.parts[0]
      : undefined;
    if (!part) {
      const owners = parsed.parts.map((p) => p.shard).join(", ");
      return { refusal: { reason: `a command in ${where} is for shard ${owners}, not ${shard}`, shard } };
    }
    const taken = this.sendTo(shard, parsed.op, part.d);
    return "sent" in taken ? taken : { refusal: { reason: taken.refused, shard } };
  }

  #notLocal(op: number, part: CommandPart): string {
    if (op === 3) return `shard ${part.shard} is not run by this process (it runs ${this.#runList()})`;
    const d = part.d as { guild_id?: string; guild_ids?: string[] };
    const guild = d.guild_id ?? d.guild_ids?.[0];
    return `guild ${guild} belongs to shard ${part.shard}, which this process does not run`;
  }

  #runList(): string {
    return this.shardIds.join(", ");
  }
}

export interface LineHandlers {
  onLine(line: string): void;
  /** A line longer than the limit: its size and its first 200 characters (the rest was never kept). */
  onTooLong(bytes: number, head: string): void;
}

const NEWLINE = 10;
const HEAD_BYTES = 200;

/**
 * Reads NDJSON commands from a stream (stdin in a pipe) until it ends; each line goes to `onLine`.
 * A line longer than `maxLine` bytes is reported once, as too long, when it ends: its bytes are counted,
 * not buffered, so a hostile 10 MB line costs neither memory nor a flood of rejections.
 */
export async function readLines(
  stream: ReadableStream<Uint8Array>,
  handlers: LineHandlers,
  maxLine = 64 * 1024,
): Promise<void> {
  const decoder = new TextDecoder();
  let parts: Uint8Array[] = [];
  let size = 0;
  /** Bytes of the current line once it is too long (then `parts` holds only its head). */
  let tooLong = -1;
  const endLine = () => {
    if (tooLong >= 0) {
      const head = decoder.decode(concat(parts, size)).slice(0, HEAD_BYTES);
      handlers.onTooLong(tooLong, head);
    } else if (size > 0) {
      const line = decoder.decode(concat(parts, size)).trim();
      if (line !== "") handlers.onLine(line);
    }
    parts = [];
    size = 0;
    tooLong = -1;
  };
  for await (const chunk of stream) {
    let start = 0;
    while (start <= chunk.length) {
      const newline = chunk.indexOf(NEWLINE, start);
      const end = newline === -1 ? chunk.length : newline;
      if (tooLong >= 0) {
        tooLong += end - start;
      } else if (size + end - start > maxLine) {
        tooLong = size + end - start;
        // Keep only the head, for the rejection event.
        const head = concat([...parts, chunk.subarray(start, end)], size + end - start).slice(0, HEAD_BYTES);
        parts = [head];
        size = head.length;
      } else if (end > start) {
        parts.push(chunk.slice(start, end));
        size += end - start;
      }
      if (newline === -1) break;
      endLine();
      start = newline + 1;
    }
  }
  endLine();
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  if (parts.length === 1) return parts[0];
  const out = new Uint8Array(size);
  let at = 0;
  for (const part of parts) {
    out.set(part.subarray(0, size - at), at);
    at += Math.min(part.length, size - at);
    if (at >= size) break;
  }
  return out;
}
