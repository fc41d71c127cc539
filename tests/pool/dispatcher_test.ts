import assert from "node:assert/strict";
import { GatewayStats } from "../../src/control/stats.ts";
import type { Journal } from "../../src/journal/journal.ts";
import { Dispatcher, type DispatchObserver } from "../../src/pool/dispatcher.ts";

/** The journal calls the dispatcher makes, recorded. */
function recordingJournal() {
  const calls: Array<[string, string, boolean]> = [];
  const journal = {
    event: (_shard: number, t: string, _s: number, _p: Uint8Array, _start: number, keep: boolean) =>
      calls.push(["event", t, keep]),
    internal: (_shard: number, t: string) => calls.push(["internal", t, true]),
  } as unknown as Journal;
  return { calls, journal };
}

Deno.test("dispatcher: the events allow-list filters dispatches and gatehouse's own events alike, and counts both", () => {
  const { calls, journal } = recordingJournal();
  const stats = new GatewayStats();
  const dispatcher = new Dispatcher({
    events: ["MESSAGE_CREATE", "GATEHOUSE_COMMAND_REJECTED"],
    journal,
    observer: stats,
  });
  const bytes = new TextEncoder().encode('{"t":"X","s":1,"op":0,"d":{}}');
  dispatcher.dispatch(0, "MESSAGE_CREATE", 1, bytes, 0);
  dispatcher.dispatch(0, "TYPING_START", 2, bytes, 0);
  dispatcher.internal(0, "GATEHOUSE_COMMAND_REJECTED", {});
  dispatcher.internal(0, "GATEHOUSE_INVALID_PAYLOAD", {});
  assert.deepEqual(calls, [
    ["event", "MESSAGE_CREATE", true],
    ["event", "TYPING_START", false], // its seq still counts
    ["internal", "GATEHOUSE_COMMAND_REJECTED", true],
  ]);
  assert.equal(dispatcher.filtered, 2);
  assert.equal(stats.filtered, 2, "the metric counts the filtered GATEHOUSE_* event too");
});

Deno.test("dispatcher: any DispatchObserver sees every dispatch and every event the allow-list leaves out", () => {
  const { journal } = recordingJournal();
  const seen: string[] = [];
  const observer: DispatchObserver = {
    event: (shard, t) => seen.push(`event ${shard} ${t}`),
    filteredOut: (shard, t) => seen.push(`filtered ${shard} ${t}`),
  };
  const dispatcher = new Dispatcher({ events: ["READY"], journal, observer });
  const bytes = new TextEncoder().encode('{"t":"X","s":1,"op":0,"d":{}}');
  dispatcher.dispatch(1, "READY", 1, bytes, 0);
  dispatcher.dispatch(2, "TYPING_START", 2, bytes, 0);
  dispatcher.internal(3, "GATEHOUSE_COMMAND_REJECTED", {});
  assert.deepEqual(seen, [
    "event 1 READY",
    "event 2 TYPING_START",
    "filtered 2 TYPING_START",
    "filtered 3 GATEHOUSE_COMMAND_REJECTED",
  ]);
});
