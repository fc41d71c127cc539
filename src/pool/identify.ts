/**
 * The identify queue of one process: Discord's buckets and daily budget (LocalIdentifyQueue), behind
 * the crash-loop guard that counts IDENTIFYs across restarts in the store. Cluster mode replaces the
 * local queue with one shared by every process of the bot (same contract suite).
 */
import type { GatehouseConfig } from "../config/load.ts";
import {
  IdentifyGuard,
  type IdentifyHistory,
  type IdentifyQueue,
  LocalIdentifyQueue,
  type SessionStartLimit,
} from "../gateway/identify_queue.ts";
import type { GatewayBotInfo } from "../gateway/protocol.ts";
import { type Clock, systemClock } from "../util/clock.ts";
import { logger } from "../util/log.ts";

export interface IdentifyParts {
  config: GatehouseConfig;
  /** /gateway/bot's answer at start. */
  info: GatewayBotInfo;
  /** Asks /gateway/bot again (the budget after a reset). */
  fetchInfo: () => Promise<GatewayBotInfo>;
  /** When each shard last identified (from the store). */
  lastIdentified: Map<number, number>;
  history: IdentifyHistory;
  clock?: Clock;
  /** Cluster mode: the bot's queue shared through Redis, in place of this process's own. */
  shared?: IdentifyQueue & IdentifyBudgetView;
}

/** What the control view shows of a queue's daily budget. */
export interface IdentifyBudgetView {
  readonly remaining: number;
  readonly budget: { total: number; resetAt: number; maxConcurrency: number; holding: boolean };
}

/** `/gateway/bot`'s `session_start_limit` as the identify queues take it. */
export function sessionStartLimit(l: GatewayBotInfo["session_start_limit"]): SessionStartLimit {
  return { total: l.total, remaining: l.remaining, resetAfter: l.reset_after };
}

export function createIdentifyQueue(
  parts: IdentifyParts,
): { queue: IdentifyQueue; local: IdentifyBudgetView } {
  const clock = parts.clock ?? systemClock;
  const log = logger("identify");
  if (parts.shared) {
    const queue = new IdentifyGuard({ inner: parts.shared, history: parts.history, clock, logger: log });
    return { queue, local: parts.shared };
  }
  const toLimit = sessionStartLimit;
  const limit = parts.info.session_start_limit;
  const local = new LocalIdentifyQueue({
    maxConcurrency: limit.max_concurrency,
    clock,
    limit: toLimit(limit),
    reserve: parts.config.gateway.identifyReserve,
    lastIdentified: parts.lastIdentified,
    refresh: async () => toLimit((await parts.fetchInfo()).session_start_limit),
    logger: log,
  });
  const queue = new IdentifyGuard({ inner: local, history: parts.history, clock, logger: log });
  return { queue, local };
}
