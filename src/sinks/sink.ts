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
  /**
   * true: the next delivery need not wait until the previous cursor is stored. A crash may then repeat
   * more than one batch — fine where the destination drops repeats (Redis Streams refuse an entry id
   * they already hold) or marks them (RabbitMQ's message_id). Without it (stdout), a crash repeats at
   * most one batch. Waiting for the store would tie a broker's pace to the journal's write queue.
   */
  readonly runsAheadOfStoredCursor?: boolean;
  /**
   * true: a delivery waits on this machine (a pipe), not on a network peer's reply. While a network sink
   * waits, the read loops' turns let the event loop go idle so the reply gets in (util/cooperate.ts);
   * a local wait needs no such turns.
   */
  readonly local?: boolean;
  close?(): void | Promise<void>;
}
