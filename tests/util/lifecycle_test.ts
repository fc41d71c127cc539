import assert from "node:assert/strict";
import { Lifecycle } from "../../src/util/lifecycle.ts";
import { ManualClock } from "../../src/util/clock.ts";

function recorder(log: string[], name: string, stop: () => Promise<void> | void = () => {}) {
  return () => {
    log.push(`start ${name}`);
    return {
      stop: () => {
        log.push(`stop ${name}`);
        return stop();
      },
    };
  };
}

Deno.test("lifecycle: parts start in order and stop in reverse", async () => {
  const log: string[] = [];
  const life = new Lifecycle({ clock: new ManualClock() });
  for (const name of ["journal", "delivery", "pool", "control"]) await life.start(name, recorder(log, name));
  assert.deepEqual(life.names, ["journal", "delivery", "pool", "control"]);
  const stops = await life.stop();
  assert.deepEqual(log, [
    "start journal",
    "start delivery",
    "start pool",
    "start control",
    "stop control",
    "stop pool",
    "stop delivery",
    "stop journal",
  ]);
  assert.deepEqual(stops.map((s) => [s.name, s.outcome]), [
    ["control", "stopped"],
    ["pool", "stopped"],
    ["delivery", "stopped"],
    ["journal", "stopped"],
  ]);
});

Deno.test("lifecycle: a part that hangs is timed out at its bound and the parts before it still stop", async () => {
  const clock = new ManualClock();
  const log: string[] = [];
  const life = new Lifecycle({ clock, defaultBoundMs: 1000 });
  await life.start("journal", recorder(log, "journal"));
  await life.start("broker", recorder(log, "broker", () => new Promise<void>(() => {})), { boundMs: 2000 });
  const stopping = life.stop();
  await clock.advance(1999);
  assert.deepEqual(log.slice(2), ["stop broker"], "the journal waits for the broker's bound");
  await clock.advance(1);
  const stops = await stopping;
  assert.deepEqual(stops, [
    { name: "broker", ms: 2000, outcome: "timed out" },
    { name: "journal", ms: 0, outcome: "stopped" },
  ]);
  assert.equal(clock.pending, 0, "no timer left behind");
});

Deno.test("lifecycle: a stop that throws is reported and the rest go on", async () => {
  const log: string[] = [];
  const life = new Lifecycle({ clock: new ManualClock() });
  await life.start("a", recorder(log, "a"));
  await life.start("b", recorder(log, "b", () => Promise.reject(new Error("socket gone"))));
  const stops = await life.stop();
  assert.deepEqual(stops.map((s) => [s.name, s.outcome, s.error]), [
    ["b", "failed", "socket gone"],
    ["a", "stopped", undefined],
  ]);
});

Deno.test("lifecycle: a start that fails stops what started before it, and stop is done once", async () => {
  const log: string[] = [];
  const life = new Lifecycle({ clock: new ManualClock() });
  await life.start("journal", recorder(log, "journal"));
  await assert.rejects(
    life.start("sinks", () => {
      throw new Error("bad url");
    }),
    /bad url/,
  );
  assert.deepEqual(log, ["start journal", "stop journal"]);
  assert.equal(await life.stop(), await life.stop());
  assert.deepEqual(log, ["start journal", "stop journal"], "stopped once");
  await assert.rejects(life.start("late", recorder(log, "late")), /stopping/);
});
