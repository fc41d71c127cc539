/** What the journal and sink runner tests share: a store in a fresh directory, payloads and batches. */
import type { EventBatch } from "../../src/journal/journal.ts";
import { Store } from "../../src/journal/store.ts";

export const enc = (s: string) => new TextEncoder().encode(s);
export const dec = (b: Uint8Array) => new TextDecoder().decode(b);

/** A store in a new temporary directory, removed afterwards. */
export async function withStore(fn: (store: Store, path: string) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-journal-" });
  const path = `${dir}/g.db`;
  const store = Store.open(path);
  try {
    await fn(store, path);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** A dispatch as Discord sends it, with whitespace around it (the journal stores it from its `{`, at 2). */
export const payload = (t: string, s: number, extra = "") =>
  enc(`  {"t":"${t}","s":${s},"op":0,"d":{"x":"${extra}"}}\n`);

/** Batch `first…first+count-1` of payloads `size` bytes each, as the journal hands them to sinks. */
export function syntheticBatch(first: number, count: number, size: number): EventBatch {
  const body = new Uint8Array(size).fill(0x20);
  return {
    count,
    firstId: first,
    lastId: first + count - 1,
    size: count * size,
    id: (i) => first + i,
    shard: () => 0,
    t: () => "E",
    payload: () => body,
    scope: () => "0:s",
    position: (i) => first + i,
  };
}

/** Collects every committed batch (subscribe it to a journal). */
export function collector(onBatch: (batch: EventBatch) => void) {
  return { offer: onBatch };
}
