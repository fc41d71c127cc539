/**
 * For the bot processes of the proxy tests: a bot's sessions kept in a file, as a bot that survives its own
 * restart keeps them. The seq is stored once an event is printed, never before, so a kill -9 between the
 * two resumes from the last event printed and never past one that was not.
 */
import type { SessionInfo } from "npm:@discordjs/ws@2.0.4";

const encoder = new TextEncoder();

export class SessionFile {
  readonly #path: string;
  readonly #sessions: Record<number, SessionInfo | null>;

  constructor(path: string) {
    this.#path = path;
    try {
      this.#sessions = JSON.parse(Deno.readTextFileSync(path));
    } catch {
      this.#sessions = {};
    }
  }

  retrieve(shardId: number): SessionInfo | null {
    return this.#sessions[shardId] ?? null;
  }

  /** The library's update: kept in memory (a new session starts at seq 0 until something is printed). */
  update(shardId: number, info: SessionInfo | null): void {
    const known = this.#sessions[shardId];
    this.#sessions[shardId] = info === null
      ? null
      : { ...info, sequence: known?.sessionId === info.sessionId ? known.sequence : 0 };
    if (info === null) this.#store();
  }

  /** Prints a dispatch as one JSON line, then stores its seq. */
  printed(shardId: number, payload: { t: string; s: number; d: unknown }): void {
    Deno.stdout.writeSync(
      encoder.encode(JSON.stringify({ shard: shardId, t: payload.t, s: payload.s, d: payload.d }) + "\n"),
    );
    const session = this.#sessions[shardId];
    if (session) {
      session.sequence = payload.s;
      this.#store();
    }
  }

  /** Written aside and renamed over: a kill -9 during the write leaves the previous file whole. */
  #store(): void {
    Deno.writeTextFileSync(`${this.#path}.tmp`, JSON.stringify(this.#sessions));
    Deno.renameSync(`${this.#path}.tmp`, this.#path);
  }
}
