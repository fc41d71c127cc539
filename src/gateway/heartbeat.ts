/**
 * The heartbeat of a shard's connection (docs/protocol.md §3): beats every HELLO interval on the
 * injected clock (the first one jittered), and knows whether anything arrived between two beats. A beat
 * that comes due after a silent interval is reported as not alive: the shard's state machine then
 * treats the connection as a zombie. Silence while reading is paused (backpressure) is ours, not the
 * connection's, so it counts as alive.
 */
import type { Clock, TimerId } from "../util/clock.ts";

export interface HeartbeatOptions {
  clock: Clock;
  /** In [0, 1): the first beat comes after `interval × random()`. */
  random: () => number;
  /** A beat is due. `alive`: a frame arrived since the previous beat, or reading is paused. */
  onDue: (alive: boolean) => void;
}

export class Heartbeat {
  readonly #o: HeartbeatOptions;
  #interval = 0;
  #timer: TimerId | null = null;
  #receivedSinceBeat = true;
  #lastBeatAt = 0;
  #latency: number | null = null;
  /** Reading is paused (the journal cannot keep up): silence is ours, not a zombie connection. */
  paused = false;

  constructor(options: HeartbeatOptions) {
    this.#o = options;
  }

  /** Discord's interval on the current (or last) connection; 0 before the first HELLO. */
  get interval(): number {
    return this.#interval;
  }

  /** Time from the last beat to its ACK, once one came. */
  get latency(): number | null {
    return this.#latency;
  }

  /** Starts beating at `interval` (HELLO). Shards started together do not beat together: jitter. */
  start(interval: number): void {
    this.stop();
    this.#interval = interval;
    this.#receivedSinceBeat = true;
    this.#schedule(interval * this.#o.random());
  }

  /** Stops beating (the connection ended). A new connection owes nothing until its first beat. */
  stop(): void {
    if (this.#timer !== null) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = null;
    this.#receivedSinceBeat = true;
  }

  /** A frame arrived. */
  received(): void {
    this.#receivedSinceBeat = true;
  }

  /** A heartbeat is being sent: the next interval must bring something. */
  beat(): void {
    this.#receivedSinceBeat = false;
    this.#lastBeatAt = this.#o.clock.now();
  }

  /** Discord acknowledged the heartbeat; returns the latency. */
  ack(): number {
    this.#latency = this.#o.clock.now() - this.#lastBeatAt;
    return this.#latency;
  }

  #schedule(delay: number): void {
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = null;
      this.#schedule(this.#interval);
      this.#o.onDue(this.#receivedSinceBeat || this.paused);
    }, delay);
  }
}
