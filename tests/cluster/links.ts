/**
 * One process's way to the shared lease store and membership, which a test can cut: "hang" = requests
 * are never answered (a killed process, as far as Redis goes), "fail" = they fail (Redis unreachable).
 */
import type { Membership } from "../../src/cluster/members.ts";
import type { LeaseStore } from "../../src/pool/ownership.ts";

export type LinkState = "ok" | "hang" | "fail";

export class Link {
  how: LinkState = "ok";

  call<T>(op: () => Promise<T>): Promise<T> {
    if (this.how === "hang") return new Promise<T>(() => {});
    if (this.how === "fail") return Promise.reject(new Error("connection refused"));
    return op();
  }

  store(inner: LeaseStore, onRelease?: (name: string, owner: string) => void): LeaseStore {
    return {
      acquire: (name, owner, ttlMs) => this.call(() => inner.acquire(name, owner, ttlMs)),
      renew: (name, owner, ttlMs) => this.call(() => inner.renew(name, owner, ttlMs)),
      release: (name, owner) =>
        this.call(() => {
          onRelease?.(name, owner);
          return inner.release(name, owner);
        }),
      holder: (name) => this.call(() => inner.holder(name)),
    };
  }

  members(inner: Membership): Membership {
    return {
      beat: (node, ttlMs) => this.call(() => inner.beat(node, ttlMs)),
      live: () => this.call(() => inner.live()),
      leave: (node) => this.call(() => inner.leave(node)),
    };
  }
}
