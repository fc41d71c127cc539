/**
 * A process with a Redis command source whose shards never write (they hold what they queue), for the
 * test that kills it with SIGKILL. Args: inbox, shard count, claim idle ms, shard ids (comma separated).
 * Prints `queued <shard> <nonce>` for each command its shards queued.
 */
import { commandSource, FakeProcess, type Written } from "./redis_moves_helpers.ts";

const [inbox, count, claimIdleMs, ids] = Deno.args;
const written: Written[] = [];
const process = new FakeProcess("child", written);
const refusals: string[] = [];
for (const id of ids.split(",").map(Number)) {
  const shard = process.add(id, true);
  const send = shard.send.bind(shard);
  shard.send = (op, d, onSent) => {
    console.log(`queued ${id} ${(d as { nonce: string }).nonce}`);
    return send(op, d, onSent);
  };
}
commandSource(process, inbox, Number(count), Number(claimIdleMs), refusals).start();
console.log("started");
