/**
 * Run by server_test.ts under a low descriptor limit (`ulimit -n`): a ControlServer on 127.0.0.1 port 0
 * with a fake view. Prints `port <n>` on stdout, logs (JSON lines) on stderr, and runs until killed.
 */
import { ControlServer } from "../../src/control/server.ts";
import { logger, setupLogging } from "../../src/util/log.ts";
import { fakeView } from "./fake_view.ts";

// As `gatehouse run` does first thing: listen for SIGTERM. Deno sets up its signal handling on the first
// listener, and panics when that first one comes while descriptors are out (seen with Deno 2.9.6:
// ext/signals/lib.rs "Too many open files").
Deno.addSignalListener("SIGTERM", () => Deno.exit(0));
setupLogging({ level: "info", format: "json" });
const server = new ControlServer({
  address: { hostname: "127.0.0.1", port: 0 },
  token: null,
  metricsPath: "/metrics",
  view: fakeView(),
  logger: logger("control"),
  // Connections wait for their request far longer than the test takes: only the limit ends them.
  headerTimeoutMs: 60_000,
  maxConnections: 1000,
});
const { port } = server.start();
console.log(`port ${port}`);
