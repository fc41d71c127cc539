/**
 * The sink series of /metrics, from a view: the lag in events and seconds and the time held by pacing,
 * per sink, as the runners report them at the scrape.
 */
import assert from "node:assert/strict";
import { Metrics } from "../../src/control/metrics.ts";
import { fakeView } from "./fake_view.ts";

/** The value of `name{sink="<sink>"}` in the exposition text, or null when absent. */
function sample(text: string, name: string, sink: string): number | null {
  for (const line of text.split("\n")) {
    if (line.startsWith(`${name}{sink="${sink}"} `)) return Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return null;
}

Deno.test("metrics: per sink, the lag in events and seconds and the seconds held by pacing", async () => {
  const view = fakeView();
  const sinks = [
    { name: "stdout", cursor: 90, errors: 0, lagEvents: 1200, lagSeconds: 0.3, pacedSeconds: 2.5 },
    { name: "redis", cursor: 10, errors: 3, lagEvents: 0, lagSeconds: 0, pacedSeconds: 0 },
  ];
  view.sinks = () => sinks;
  const metrics = new Metrics(view);
  let text = await metrics.text();
  assert.match(text, /# TYPE gatehouse_sink_lag_seconds gauge/);
  assert.match(text, /# TYPE gatehouse_sink_paced_seconds_total counter/);
  assert.equal(
    sample(text, "gatehouse_sink_lag_events", "stdout"),
    1200,
    "the runner's lag, not the journal's",
  );
  assert.equal(sample(text, "gatehouse_sink_lag_seconds", "stdout"), 0.3);
  assert.equal(sample(text, "gatehouse_sink_paced_seconds_total", "stdout"), 2.5);
  assert.equal(sample(text, "gatehouse_sink_lag_events", "redis"), 0);
  assert.equal(sample(text, "gatehouse_sink_lag_seconds", "redis"), 0);
  // Read at each scrape.
  sinks[0].pacedSeconds = 4;
  sinks[0].lagSeconds = 0;
  text = await metrics.text();
  assert.equal(sample(text, "gatehouse_sink_paced_seconds_total", "stdout"), 4);
  assert.equal(sample(text, "gatehouse_sink_lag_seconds", "stdout"), 0);
});
