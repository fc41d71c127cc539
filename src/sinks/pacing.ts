/**
 * Pacing, the rule a `SinkRunner` follows to hold reading (runner.ts keeps the state: lag marks, the
 * stall timer, the time held).
 *
 * The journal absorbs outages (a broker down, a reader that stopped reading), not scheduling:
 * while a sink is healthy but behind — taking events, only slower than the shards read them because
 * the process is saturated — its runner holds the one `Backpressure` signal (as "pace <sink>") so the
 * shards stop reading and TCP pushes back on Discord, until the sink is back under half the bound.
 *
 * - **lag**, in events: the highest committed id this runner heard of minus its cursor; in time: how
 *   long ago (on the runner's clock) the oldest committed event it has not acknowledged arrived (its
 *   batch's first receive time; events stored before this runner started count from its start).
 * - **behind**: lag above `PACE_BEHIND.events` (1000, one delivery read from the store) AND above
 *   `PACE_BEHIND.ms` (250 ms, five group commits of 50 ms). Both: a single big commit is not "behind"
 *   (the sink takes it in one delivery), nor is a sink a few events late that waits on a slow peer.
 *   Back under: lag at most half of either bound (500 events or 125 ms); the gap between the two keeps
 *   the signal from flapping at every commit.
 * - **healthy**: the last delivery succeeded, none failed or stalled in the last `HEALTH_WINDOW_MS`
 *   (5 s), and no delivery has been under way (with the storing of its cursor) for more than
 *   `STALL_MS` (1 s). A delivery that takes longer is **stalled**: a reader that stopped reading
 *   (stdout's write is asynchronous and stays open while the pipe is full), a broker that does not
 *   answer. A sink that is not healthy never holds the signal, and lets it go at once when it stops
 *   being healthy: the journal absorbs what arrives meanwhile, as it does for an outage. So pacing
 *   never holds reading for longer than `STALL_MS` without the sink taking something.
 * - **saturated**: the main thread used at least 80 % of a core over the last 200 ms
 *   (`SaturationMeter`, src/util/saturation.ts). Pacing starts only then: a sink that falls behind while
 *   the process has time to spare is slow on its own (a remote endpoint, a busy broker), and holding
 *   reading would only slow every shard and every other sink to its pace; the journal absorbs it, as an
 *   outage. Once holding, the hold lasts until the sink is back under (stopping reading frees the CPU,
 *   so saturation itself ends first).
 * - Events stored before this runner started (a restart after the process was down or stopped with a
 *   backlog) are such an outage too: while the sink delivers them, pacing does not hold (a shard held
 *   before it has read its HELLO sends no heartbeat and Discord closes it); past them, it does.
 */

/** `SinkRunner` reads a page of this many events from the store. */
export const PAGE = 1000;

/**
 * Behind (see the top of this file): more than one store read's worth of events (PAGE) and more than
 * 250 ms — a few group commits (50 ms each), and small next to Discord's heartbeat interval (~41 s), so
 * holding reading this long costs nothing while ingest never runs more than ~¼ s ahead of delivery.
 */
export const PACE_BEHIND = { events: PAGE, ms: 250 } as const;
/** Back under: half of either bound (hysteresis). */
export const PACE_UNDER = { events: PACE_BEHIND.events / 2, ms: PACE_BEHIND.ms / 2 } as const;
/**
 * A delivery (with the storing of its cursor) under way for longer than this is stalled: the sink is
 * unhealthy until it completes and for HEALTH_WINDOW_MS after. One delivery carries at most 1 MB, which
 * a reader that reads takes well within a second; four times the behind bound.
 */
export const STALL_MS = 1000;
/** After a failure or a stall, the sink is not healthy for this long (it may be flapping). */
export const HEALTH_WINDOW_MS = 5000;
/**
 * Whether a healthy sink holds reading now: once behind (both bounds) while the process is saturated;
 * while holding, until back under half of either bound, saturated or not.
 */
export function paceHolds(
  holding: boolean,
  lagEvents: number,
  lagMs: number,
  saturated: () => boolean,
): boolean {
  const bound = holding ? PACE_UNDER : PACE_BEHIND;
  return lagEvents > bound.events && lagMs > bound.ms && (holding || saturated());
}
