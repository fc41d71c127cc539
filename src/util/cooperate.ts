/**
 * Fair turns for busy sockets.
 *
 * A read on a socket that already holds data completes without going back to Deno's event loop, and
 * the runtime polls the OS for sockets that had to wait only when the event loop goes idle. Under a
 * flood, a few always-ready connections therefore keep the loop busy and starve the others — their
 * reads (and even new connects) stay unserved for seconds, long enough to look like zombie connections
 * (reproduced with plain Deno TCP: 2 of 16 connections never served).
 *
 * The cure is a shared turn: once the process has been busy for SLICE_MS, every read loop that comes
 * by (between reads, and between the frames of one big read) waits on the same turn, and all
 * connections get theirs. Two kinds of turn, measured on Deno 2.9:
 * - `setImmediate`: about 7 µs. Sockets are polled, but a reply a sink waits for (a broker's answer
 *   over its own socket) rarely gets in: in a 4-shard flood, 2 200 events/s reached Redis.
 * - a zero-delay timer: the loop goes idle for about 2 ms, and everything waiting for the network gets
 *   in. In the same flood, 32 000 events/s reached Redis (the shards read less meanwhile; the journal
 *   holds the difference). A timer on every turn cost a quarter of the 16-shard stdout flood.
 * So a turn is a timer while some sink waits for the network (`awaitingNetwork`), else an immediate.
 */

import { setImmediate } from "node:timers";

const SLICE_MS = 8;
let sliceStart = performance.now();
let turn: Promise<void> | null = null;
let networkWaits = 0;

/** Returns a promise to await when the process has been busy for a whole slice, else null. */
export function yieldIfBusy(): Promise<void> | null {
  if (performance.now() - sliceStart <= SLICE_MS) return null;
  if (turn === null) {
    turn = new Promise((resolve) => {
      const done = () => {
        turn = null;
        sliceStart = performance.now();
        resolve();
      };
      if (networkWaits > 0) setTimeout(done, 0);
      else setImmediate(done);
    });
  }
  return turn;
}

/** Marks a wait on the network (a sink's delivery) until `settled` settles; returns `settled`. */
export function awaitingNetwork<T>(settled: Promise<T>): Promise<T> {
  networkWaits++;
  const release = () => networkWaits--;
  settled.then(release, release);
  return settled;
}
