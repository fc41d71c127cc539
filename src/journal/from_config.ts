/**
 * The store and the journal as `[store]` configures them: the store claimed for this process (a hard
 * size cap applied), and a journal whose small commits run on this thread and whose large ones on a
 * writer thread.
 */
import type { GatehouseConfig } from "../config/load.ts";
import type { Backpressure } from "../util/backpressure.ts";
import { logger } from "../util/log.ts";
import { Journal } from "./journal.ts";
import { hardCapPages, Store } from "./store.ts";
import { HybridWriter, InlineWriter, WorkerWriter } from "./write.ts";

/** Opens and claims the store; throws `StoreError` when it cannot be used (corrupt, locked, read-only). */
export function openStore(config: GatehouseConfig): Store {
  const store = Store.open(config.store.path);
  try {
    const pages = hardCapPages(config.store.hardMaxSizeBytes, store.pageSize());
    if (pages !== undefined) store.setMaxPageCount(pages);
    store.claim();
  } catch (error) {
    store.close();
    throw error;
  }
  return store;
}

export interface JournalHooks {
  /** Raised while the store cannot keep up. */
  backpressure: Backpressure;
  /** The store cannot be written any more. */
  onFatal: (error: Error) => void;
  /** The store is at its hard cap: make room (retention), then `journal.retryNow()`. */
  onFull: () => void;
}

export function openJournal(config: GatehouseConfig, store: Store, hooks: JournalHooks): Journal {
  const maxPageCount = hardCapPages(config.store.hardMaxSizeBytes, store.pageSize());
  return new Journal({
    store,
    keepEvents: config.store.journal,
    commitIntervalMs: config.store.commitIntervalMs,
    // SQLite works on its own thread while this one reads from Discord.
    // Small commits on this thread; a flood's large batches on a writer thread, beside the shards.
    writer: (events) => {
      // Checkpoints run on the writer thread, not inside a commit on this one (HybridWriter).
      store.setAutoCheckpoint(0);
      return new HybridWriter(
        new InlineWriter(store, events),
        new WorkerWriter(store.path, { maxPageCount }, events),
      );
    },
    logger: logger("journal"),
    backpressure: hooks.backpressure,
    onFatal: hooks.onFatal,
    onFull: hooks.onFull,
  });
}
