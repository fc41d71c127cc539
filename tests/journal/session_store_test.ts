/** The session store contract against every implementation. */
import { MemorySessionStore } from "../../src/journal/sessions.ts";
import { Store } from "../../src/journal/store.ts";
import { sessionStoreContract } from "./session_store_contract.ts";

sessionStoreContract("memory", () => Promise.resolve({ store: new MemorySessionStore(), cleanup: () => {} }));

sessionStoreContract("sqlite", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-sessions-" });
  const store = Store.open(`${dir}/g.db`);
  return {
    store: store.sessions,
    cleanup: async () => {
      store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
});
