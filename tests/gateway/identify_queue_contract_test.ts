import { IDENTIFY_MARGIN_MS, IdentifyGuard, LocalIdentifyQueue } from "../../src/gateway/identify_queue.ts";
import { IDENTIFY_INTERVAL_MS } from "../../src/gateway/protocol.ts";
import { ManualClock } from "../../src/util/clock.ts";
import { identifyQueueContract, type IdentifyQueueHarness } from "./identify_queue_contract.ts";

/**
 * The local queue is one process's: "queues made for one bot" are the same queue (a process shares
 * one queue among its shards).
 */
function localHarness(
  wrap: (queue: LocalIdentifyQueue, clock: ManualClock) => LocalIdentifyQueue | IdentifyGuard,
) {
  return (): Promise<IdentifyQueueHarness> => {
    const clock = new ManualClock();
    let shared: ReturnType<typeof wrap> | null = null;
    return Promise.resolve({
      make: (options) => (shared ??= wrap(new LocalIdentifyQueue({ ...options, clock }), clock)),
      interval: IDENTIFY_INTERVAL_MS + IDENTIFY_MARGIN_MS,
      slack: 0,
      now: () => clock.now(),
      advance: (ms) => clock.advance(ms),
      close: () => Promise.resolve(),
    });
  };
}

identifyQueueContract("LocalIdentifyQueue", localHarness((queue) => queue));

identifyQueueContract(
  "IdentifyGuard over LocalIdentifyQueue (no recent identifies)",
  localHarness((queue, clock) => {
    const history: number[] = [];
    return new IdentifyGuard({
      inner: queue,
      clock,
      // Each shard is asked for once per test: the guard never holds one back.
      history: { since: () => 0, record: (shard) => void history.push(shard) },
    });
  }),
);
