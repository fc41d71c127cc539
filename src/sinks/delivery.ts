/**
 * Delivery: one SinkRunner per sink, each subscribed to the journal's committed batches (through its own
 * transforms, when `[transforms]` asks for any), and the bounded end of it all at a stop.
 */
import type { EventBatch, Journal } from "../journal/journal.ts";
import type { Store } from "../journal/store.ts";
import type { Backpressure } from "../util/backpressure.ts";
import { type Clock, systemClock, type TimerId } from "../util/clock.ts";
import type { Logger } from "../util/log.ts";
import { SinkRunner } from "./runner.ts";
import type { Sink } from "./sink.ts";
import { type TransformOptions, Transforms, transformsOn } from "./transforms.ts";
import { rebuildTransforms } from "./transform_warmup.ts";

export interface DeliveryOptions {
  journal: Journal;
  sinks: Sink[];
  /** Whether the journal keeps events (`[store] journal`): sinks that are behind read them back. */
  keepEvents: boolean;
  store: Store;
  backpressure: Backpressure;
  logger: Logger;
  /** Called with every batch a sink acknowledged (metrics). */
  onDelivered?: (sink: string, batch: EventBatch) => void;
  clock?: Clock;
  /** `[transforms]`: each sink gets its own, rebuilt from the journal before it delivers. */
  transforms?: TransformOptions | null;
}

export interface Delivery {
  readonly runners: readonly SinkRunner[];
  /** Highest id every sink has acknowledged. */
  delivered(): number;
  /**
   * Commits what is gathered, lets every sink take what was handed out (at most `settleMs`), and
   * stores the last seqs and cursors (see `finishDelivery`). Returns the highest id handed out.
   */
  finish(settleMs: number): Promise<{ target: number; taken: boolean[] }>;
  /**
   * After the journal is closed: stops the runners, logs what each sink has not taken (it waits in the
   * journal, or without it, is gone), and closes the sinks (each at most `closeMs`).
   */
  stop(target: number, closeMs: number): Promise<void>;
}

export function startDelivery(options: DeliveryOptions): Delivery {
  const { journal, sinks, keepEvents, logger: log } = options;
  const clock = options.clock ?? systemClock;
  const transforms = transformsOn(options.transforms) ? options.transforms : null;
  // With the journal, the transforms' state is rebuilt up to each cursor before the sinks deliver.
  const rebuild = transforms !== null && keepEvents;
  const runners = sinks.map((sink) =>
    new SinkRunner({
      sink,
      journal,
      store: keepEvents ? options.store : null,
      logger: log,
      backpressure: options.backpressure,
      onDelivered: options.onDelivered && ((batch) => options.onDelivered!(sink.name, batch)),
      clock: options.clock,
      transforms: transforms && new Transforms(transforms),
      held: rebuild,
    })
  );
  for (const runner of runners) runner.start();
  log.info("delivering events to {sinks}", { sinks: sinks.map((s) => s.name).join(", ") });
  const stopRebuild = new AbortController();
  if (rebuild) {
    void rebuildTransforms({
      store: options.store,
      targets: runners.map((runner) => ({ transforms: runner.transforms!, through: runner.cursor })),
      logger: log,
      signal: stopRebuild.signal,
    }).then(({ events, ms }) => {
      // Stopped meanwhile: the events wait in the journal for the next start (and its rebuild).
      if (stopRebuild.signal.aborted) return;
      log.info("transforms: state rebuilt from {events} event(s) of the journal in {ms} ms", {
        events,
        ms: Math.round(ms),
      });
      for (const runner of runners) runner.release();
    });
  }
  return {
    runners,
    delivered: () => Math.min(...runners.map((r) => r.cursor)),
    finish: (settleMs) => finishDelivery(journal, runners, keepEvents, settleMs),
    stop: async (target, closeMs) => {
      stopRebuild.abort();
      for (const runner of runners) {
        runner.close();
        const waiting = (keepEvents ? journal.lastCommittedId : target) - runner.cursor;
        if (waiting <= 0) continue;
        if (keepEvents) {
          log.info(
            "sink {sink}: {events} event(s) not delivered yet; they wait in the journal for the next start",
            { sink: runner.sink.name, events: waiting },
          );
        } else {
          log.warn(
            "sink {sink} did not take {events} event(s) before the stop, and without the journal they are " +
              "kept nowhere: the sessions' sequence numbers stay at the last checkpoint, so the next start " +
              "resumes there and Discord sends what followed it again (events the sink had not taken " +
              "before that checkpoint are lost)",
            { sink: runner.sink.name, events: waiting },
          );
        }
      }
      await Promise.all(sinks.map((sink) => bounded(sink.close?.(), closeMs, clock)));
    },
  };
}

/**
 * The end of a run's delivery: commits what is gathered, lets every sink take what was handed out (at
 * most `timeoutMs`), and stores the last seqs and cursors. With the journal the events are stored
 * first, so what a sink has not taken waits there. Without it they are only in memory: the sessions'
 * seqs are checkpointed past them only when every sink took them, else the last checkpoint stays and the
 * next start's RESUME makes Discord send what followed it again.
 */
export async function finishDelivery(
  journal: Journal,
  runners: readonly SinkRunner[],
  keepEvents: boolean,
  timeoutMs: number,
): Promise<{ target: number; taken: boolean[] }> {
  if (keepEvents) await journal.flush();
  else journal.commit();
  const target = journal.lastOfferedId;
  const taken = await Promise.all(runners.map((runner) => runner.finish(target, timeoutMs)));
  if (keepEvents || taken.every(Boolean)) await journal.flush();
  return { target, taken };
}

/** Waits for `promise` (its failure ignored) at most `ms`. */
async function bounded(promise: unknown, ms: number, clock: Clock): Promise<void> {
  if (!(promise instanceof Promise)) return;
  let timer: TimerId | undefined;
  await Promise.race([
    promise.catch(() => {}),
    new Promise<void>((resolve) => (timer = clock.setTimeout(resolve, ms))),
  ]);
  if (timer !== undefined) clock.clearTimeout(timer);
}
