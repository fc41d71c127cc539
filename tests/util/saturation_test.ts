/** The saturation meter: the share of a core used over 200 ms windows, with an injected clock and CPU counter. */
import assert from "node:assert/strict";
import process from "node:process";
import { SaturationMeter, threadCpuMicros } from "../../src/util/saturation.ts";

Deno.test("saturation meter: busy windows read saturated, idle ones not; a short window keeps the last reading", () => {
  let now = 1000, cpuMicros = 0;
  const meter = new SaturationMeter(() => cpuMicros, () => now);
  // 200 ms with 190 ms of CPU (a flood): saturated.
  now += 200;
  cpuMicros += 190_000;
  assert.equal(meter.saturated(), true);
  // 50 ms later, whatever happened: the window is not over, the reading stays.
  now += 50;
  assert.equal(meter.saturated(), true);
  // The rest of that window, then a quiet one: 60 ms of CPU in 250 ms (paced traffic).
  now += 200;
  cpuMicros += 60_000;
  assert.equal(meter.saturated(), false);
  // Exactly 80 % counts; just under does not.
  now += 1000;
  cpuMicros += 800_000;
  assert.equal(meter.saturated(), true);
  now += 1000;
  cpuMicros += 799_000;
  assert.equal(meter.saturated(), false);
});

Deno.test("saturation meter: by default it counts this thread's CPU time", () => {
  // The clock is the test's; the CPU counter is the real one. Spin until 170 ms of CPU time are used,
  // then call it a 200 ms window: saturated. The next window takes no time at all: not.
  let now = 0;
  const meter = new SaturationMeter(undefined, () => now);
  const cpu = () => {
    const u = process.cpuUsage();
    return threadCpuMicros() ?? u.user + u.system;
  };
  const start = cpu();
  while (cpu() - start < 170_000) {
    // spin
  }
  now += 200;
  assert.equal(meter.saturated(), true);
  now += 200;
  assert.equal(meter.saturated(), false);
});

Deno.test({
  name: "saturation meter: another thread's work does not count against this one (Linux)",
  // Elsewhere the meter counts the process's time, as the test above shows.
  ignore: Deno.build.os !== "linux",
}, async () => {
  // A worker spins for 300 ms of CPU while this thread waits: this thread's share stays low.
  assert.notEqual(threadCpuMicros(), null, "Linux tells a thread's CPU time");
  let now = 0;
  const meter = new SaturationMeter(undefined, () => now);
  const source =
    `const start = performance.now(); while (performance.now() - start < 300) {} postMessage("done");`;
  const url = URL.createObjectURL(new Blob([source], { type: "application/javascript" }));
  const worker = new Worker(url, { type: "module" });
  await new Promise((resolve) => (worker.onmessage = resolve));
  worker.terminate();
  URL.revokeObjectURL(url);
  now += 200;
  assert.equal(meter.saturated(), false);
});
