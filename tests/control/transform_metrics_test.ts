/** The transforms' series of /metrics: per sink, only when `[transforms]` is on. */
import assert from "node:assert/strict";
import { Metrics } from "../../src/control/metrics.ts";
import { TransformCounts } from "../../src/sinks/transforms.ts";
import { fakeView } from "./fake_view.ts";

Deno.test("metrics: events dropped, GUILD_CREATEs annotated by kind and renamed, per sink; absent with transforms off", async () => {
  const view = fakeView();
  view.sinks = () => [{ name: "stdout", cursor: 1, errors: 0 }];
  assert.doesNotMatch(await new Metrics(view).text(), /gatehouse_transform_/);

  const counts = Object.assign(new TransformCounts(), {
    droppedUnavailableGuildDelete: 2,
    droppedUnchangedMessageUpdate: 7,
    loading: 40,
    available: 1,
    joined: 3,
    renamed: 40,
  });
  view.sinks = () => [{ name: "stdout", cursor: 1, errors: 0, transforms: counts }];
  const metrics = new Metrics(view);
  let text = await metrics.text();
  for (
    const line of [
      'gatehouse_transform_dropped_total{sink="stdout",transform="unavailable_guild_delete"} 2',
      'gatehouse_transform_dropped_total{sink="stdout",transform="unchanged_message_update"} 7',
      'gatehouse_transform_guild_create_total{sink="stdout",kind="loading"} 40',
      'gatehouse_transform_guild_create_total{sink="stdout",kind="available"} 1',
      'gatehouse_transform_guild_create_total{sink="stdout",kind="joined"} 3',
      'gatehouse_transform_renamed_total{sink="stdout"} 40',
    ]
  ) assert.ok(text.split("\n").includes(line), line);
  counts.joined = 4;
  text = await metrics.text();
  assert.ok(
    text.includes('gatehouse_transform_guild_create_total{sink="stdout",kind="joined"} 4'),
    "read at each scrape",
  );
});
