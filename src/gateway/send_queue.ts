/**
 * What a shard writes to its socket, in order and within the send budget (`send_limiter.ts`).
 * Heartbeats, IDENTIFY and RESUME go first and never wait behind commands: they use slots the commands
 * may not touch, so only the commands wait (on a timer) when the budget is spent. The bot's commands go
 * only while the session is live, and survive a reconnect; the priority frames belong to one connection.
 */
import type { Clock, TimerId } from "../util/clock.ts";
import type { GatewaySocket } from "./gateway_socket.ts";
import { SendLimiter } from "./send_limiter.ts";
import { WS_OPEN } from "./ws_client.ts";

/**
 * Commands waiting for one shard at most; more are refused. At Discord's 120 sends per minute this is
 * minutes of backlog already: a bot that sends faster must be told, not buffered without bound.
 */
export const MAX_QUEUED_COMMANDS = 1000;

export interface SendQueueOptions {
  clock: Clock;
  /** The heartbeat frame as it is written: it carries the seq of that moment, not of when it was queued. */
  heartbeatFrame: () => string;
  /** Whether commands may go now (the session is live). */
  commandsAllowed: () => boolean;
}

interface PriorityFrame {
  /** null: the heartbeat, filled in when written. */
  text: string | null;
  onWritten?: () => void;
}

export class SendQueue {
  readonly #o: SendQueueOptions;
  readonly #limiter: SendLimiter;
  #socket: GatewaySocket | null = null;
  #priority: PriorityFrame[] = [];
  #commands: string[] = [];
  /** Per queued command (same order): called once it is written to the socket. */
  #commandSent: Array<(() => void) | undefined> = [];
  #timer: TimerId | null = null;

  constructor(options: SendQueueOptions) {
    this.#o = options;
    this.#limiter = new SendLimiter({ clock: options.clock });
  }

  get queuedCommands(): number {
    return this.#commands.length;
  }

  /** A new connection: writes go to `socket`, with a fresh budget. */
  attach(socket: GatewaySocket): void {
    this.#limiter.reset();
    this.#socket = socket;
  }

  /** The connection ended: its priority frames go with it; the commands wait for the next one. */
  detach(): void {
    this.#clearTimer();
    this.#priority = [];
    this.#socket = null;
  }

  /** Keeps enough of the budget for heartbeats at `interval` (see `SendLimiter.reserveForHeartbeat`). */
  reserveForHeartbeat(interval: number): void {
    this.#limiter.reserveForHeartbeat(interval);
  }

  /**
   * Queues a heartbeat. At most one waits: a beat due while the previous one still waits for the send
   * budget (an interval too short for 120 sends per minute) does not queue another.
   */
  heartbeat(): void {
    if (this.#priority.some((frame) => frame.text === null)) return;
    this.priority(null);
  }

  /** Queues IDENTIFY or RESUME; `onWritten` is called when it goes out. */
  priority(text: string | null, onWritten?: () => void): void {
    this.#priority.push({ text, onWritten });
    this.pump();
  }

  /** Queues a command (bounded by the caller: see MAX_QUEUED_COMMANDS). */
  command(text: string, onSent?: () => void): void {
    this.#commands.push(text);
    this.#commandSent.push(onSent);
    this.pump();
  }

  /** Writes what the send budget allows; waits on a timer for the rest. */
  pump(): void {
    const socket = this.#socket;
    if (socket === null || socket.readyState !== WS_OPEN) return;
    let wait = 0;
    while (this.#priority.length > 0) {
      wait = this.#limiter.delay(true);
      if (wait > 0) break;
      this.#limiter.record();
      const frame = this.#priority.shift()!;
      // IDENTIFY's slot counts from when its bytes left, not from when they were queued.
      socket.send(frame.text ?? this.#o.heartbeatFrame(), frame.onWritten);
    }
    if (wait === 0 && this.#o.commandsAllowed()) {
      while (this.#commands.length > 0) {
        wait = this.#limiter.delay(false);
        if (wait > 0) break;
        this.#limiter.record();
        socket.send(this.#commands.shift()!);
        this.#commandSent.shift()?.();
      }
    }
    this.#clearTimer();
    if (wait > 0) {
      this.#timer = this.#o.clock.setTimeout(() => {
        this.#timer = null;
        this.pump();
      }, wait);
    }
  }

  #clearTimer(): void {
    if (this.#timer !== null) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = null;
  }
}
