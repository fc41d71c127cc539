/** The signals that stop `gatehouse run`. */
import { logger } from "../util/log.ts";

/**
 * Resolves with the signal's name on SIGINT, SIGTERM or SIGHUP (SIGINT only on Windows). A second signal
 * while stopping ends the process at once, for an operator who will not wait.
 *
 * SIGHUP stops cleanly even under `nohup`: Deno installs its own SIGHUP handler at start, so the
 * ignored disposition nohup sets does not survive, and without a listener a hang-up would end the
 * process without closing the shards (reading /proc/self/status to tell would need --allow-all).
 */
export function stopSignal(): { signal: Promise<string>; dispose: () => void } {
  const names: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM", "SIGHUP"];
  let resolve: (name: string) => void = () => {};
  let received: { name: string; at: number } | null = null;
  const signal = new Promise<string>((r) => (resolve = r));
  const handlers = names.map((name) => {
    const handler = () => {
      if (received !== null) {
        // A hang-up often comes twice (the shell passes it on, then the kernel sends it): only another
        // signal, or the same one a second later, is an operator who will not wait.
        if (name === received.name && Date.now() - received.at < 1000) return;
        logger("run").warn("{signal} while stopping on {first}: exiting now", {
          signal: name,
          first: received.name,
        });
        Deno.exit(1);
      }
      received = { name, at: Date.now() };
      resolve(name);
    };
    Deno.addSignalListener(name, handler);
    return [name, handler] as const;
  });
  return {
    signal,
    dispose: () => {
      for (const [name, handler] of handlers) Deno.removeSignalListener(name, handler);
    },
  };
}
