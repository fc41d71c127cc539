/**
 * A small GatewayView for tests of the control listener on its own: `shards` ready shards (many of them
 * make a large /shards), and it records the reconnects and commands it is asked for.
 */
import { GatewayStats } from "../../src/control/stats.ts";
import type { GatewayView } from "../../src/control/status.ts";
import type { ShardStatus } from "../../src/gateway/shard.ts";

export interface FakeView extends GatewayView {
  readonly reconnected: number[];
  readonly commands: string[];
}

export function fakeView(shards = 2): FakeView {
  const startedAt = Date.now();
  const reconnected: number[] = [];
  const commands: string[] = [];
  const status = (id: number): ShardStatus => ({
    id,
    state: "ready",
    seq: 42,
    sessionId: `session-${id}`,
    latencyMs: 40,
    lastFrameAt: Date.now(),
    lastEventAt: Date.now(),
    events: 42,
    reconnects: 0,
    badFrames: 0,
    heartbeatIntervalMs: 41_250,
    sessionSince: startedAt,
    queuedCommands: 0,
    attempt: 0,
    waitingReason: null,
  });
  return {
    stats: new GatewayStats(),
    startedAt,
    shardCount: shards,
    reconnected,
    commands,
    now: () => Date.now(),
    shards: () => Array.from({ length: shards }, (_, id) => status(id)),
    sinks: () => [{ name: "stdout", cursor: 0, errors: 0 }],
    journal: () => ({
      enabled: true,
      lastId: 0,
      sizeBytes: 0,
      pendingEvents: 0,
      commits: 0,
      failedCommits: 0,
    }),
    identify: () => ({ remaining: 1000, total: 1000, resetAt: 0, maxConcurrency: 1 }),
    reconnect: (id) => {
      reconnected.push(id);
      return true;
    },
    command: (line) => {
      commands.push(line);
      return null;
    },
  };
}

/**
 * One process of a cluster: `ids` of `count` shards, named `node`; the `notReady` ones are resuming
 * (a state that is not ready), the others ready with 40 ms latency.
 */
export function clusterView(
  node: string,
  count: number,
  ids: number[],
  options: { notReady?: number[] } = {},
): FakeView {
  const base = fakeView(count);
  const all = base.shards();
  return {
    ...base,
    node,
    shards: () =>
      ids.map((id) => ({
        ...all[0],
        id,
        sessionId: `session-${id}`,
        state: options.notReady?.includes(id) ? "resuming" : "ready",
      })),
  };
}
