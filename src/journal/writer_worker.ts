/// <reference lib="deno.worker" />
/**
 * The journal's writer thread: stores batches, in order, in its own SQLite connection, so the main
 * thread keeps reading from Discord while SQLite works. Messages: open → opened | error; write →
 * committed (with the batch's bytes handed back) | failed (retried with backoff); checkpoint →
 * checkpointed (the WAL copied into the database here, after the writes before it); close → closed.
 */
import { Store } from "./store.ts";
import { backoffDelay } from "../util/backoff.ts";
import { asStoreError, type BatchData, WRITE_RETRY, writeBatch } from "./write.ts";

let store: Store | null = null;
const queue: BatchData[] = [];
let timer: ReturnType<typeof setTimeout> | undefined;
let failures = 0;

function pump(): void {
  timer = undefined;
  while (queue.length > 0 && store !== null) {
    const batch = queue[0];
    try {
      writeBatch(store, batch);
    } catch (error) {
      failures++;
      const e = asStoreError(error);
      self.postMessage({ type: "failed", kind: e.kind, message: e.message });
      if (e.kind === "corrupt") return;
      timer = setTimeout(pump, backoffDelay(WRITE_RETRY, failures));
      return;
    }
    failures = 0;
    queue.shift();
    if (batch.bytes.byteLength > 0) {
      self.postMessage({ type: "committed", no: batch.no, bytes: batch.bytes }, [
        batch.bytes.buffer as ArrayBuffer,
      ]);
    } else {
      self.postMessage({ type: "committed", no: batch.no });
    }
  }
}

self.onmessage = (event: MessageEvent) => {
  const message = event.data;
  switch (message.type) {
    case "open":
      try {
        store = Store.open(message.path);
        if (message.maxPageCount) store.setMaxPageCount(message.maxPageCount);
        self.postMessage({ type: "opened" });
      } catch (error) {
        const e = asStoreError(error);
        self.postMessage({ type: "error", kind: e.kind, message: e.message });
      }
      return;
    case "write":
      queue.push(message.batch);
      if (timer === undefined) pump();
      return;
    case "checkpoint": {
      // After the writes asked before it (a write waiting for a retry comes first).
      if (store === null || queue.length > 0) {
        self.postMessage({ type: "checkpointed", frames: 0, copied: 0 });
        return;
      }
      try {
        const { frames, copied } = store.checkpoint();
        self.postMessage({ type: "checkpointed", frames, copied });
      } catch (error) {
        const e = asStoreError(error);
        self.postMessage({ type: "checkpointed", frames: 0, copied: 0, error: e.message });
      }
      return;
    }
    case "retry-now":
      if (timer !== undefined) {
        clearTimeout(timer);
        pump();
      }
      return;
    case "close":
      clearTimeout(timer);
      store?.close();
      store = null;
      self.postMessage({ type: "closed", unwritten: queue.length });
      self.close();
      return;
  }
};
