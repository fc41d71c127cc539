import assert from "node:assert/strict";
import { Backpressure } from "../../src/util/backpressure.ts";

Deno.test("backpressure: paused while any source holds it; listeners hear each change once", () => {
  const signal = new Backpressure();
  const heard: boolean[] = [];
  const unsubscribe = signal.subscribe((paused) => heard.push(paused));
  assert.deepEqual(heard, [], "not paused: nothing to tell a new listener");
  signal.hold("journal", true);
  signal.hold("sink stdout", true);
  signal.hold("journal", true);
  assert.equal(signal.paused, true);
  assert.deepEqual(signal.holders, ["journal", "sink stdout"]);
  signal.hold("journal", false);
  assert.deepEqual(heard, [true], "still held by the sink");
  signal.hold("sink stdout", false);
  assert.deepEqual(heard, [true, false]);
  signal.hold("nobody", false);
  assert.deepEqual(heard, [true, false], "letting go of what was not held changes nothing");
  unsubscribe();
  signal.hold("journal", true);
  assert.deepEqual(heard, [true, false], "an unsubscribed listener hears nothing");
  const late: boolean[] = [];
  signal.subscribe((paused) => late.push(paused));
  assert.deepEqual(late, [true], "a listener that subscribes while paused hears it at once");
});
