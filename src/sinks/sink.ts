/**
 * The sink contract: a sink delivers journaled events in id order and acknowledges them by returning
 * (or resolving). Throwing (or rejecting) acknowledges nothing: the same events are offered again.
 * Delivery is at-least-once; every event carries its `id`, so consumers can drop repeats.
 */
import type { EventBatch } from "../journal/journal.ts";

export interface Sink {
  /** Names the sink's cursor in the store; stable across restarts. */
  readonly name: string;
  deliver(batch: EventBatch): void | Promise<void>;
  close?(): void | Promise<void>;
}
