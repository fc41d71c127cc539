/**
 * The control side of `gatehouse run`: the control listener (metrics, health, status, actions), the
 * control file recording its address next to the store, and the start-up progress. The listener's modules
 * (server.ts, and metrics.ts with prom-client on the first scrape) are imported only when it is on.
 */
import type { GatehouseConfig } from "../config/load.ts";
import { logger } from "../util/log.ts";
import { controlFilePath, writeControlFile } from "./control_file.ts";
import { StartupProgress } from "./progress.ts";
import type { GatewayView } from "./status.ts";

export interface StartControlOptions {
  /** Discord's max_concurrency, for the start-up progress's pace. */
  maxConcurrency: number;
}

/** The running control side; `stop` ends the progress, closes the listener and removes the control file. */
export interface Control {
  stop(): Promise<void>;
}

/**
 * Starts the control listener (unless `[control] address = "off"`), records its address next to the
 * store, and starts the start-up progress. A listener that cannot bind is logged and left out: the
 * gateway itself keeps running.
 */
export async function startControl(
  config: GatehouseConfig,
  storePath: string,
  view: GatewayView,
  options: StartControlOptions,
): Promise<Control> {
  const listener = await startListener(config, storePath, view);
  const progress = new StartupProgress({
    view,
    maxConcurrency: options.maxConcurrency,
    logger: logger("startup"),
    terminal: Deno.stderr.isTerminal(),
  });
  progress.start();
  return {
    stop: async () => {
      progress.stop();
      await listener?.stop();
    },
  };
}

async function startListener(
  config: GatehouseConfig,
  storePath: string,
  view: GatewayView,
): Promise<Control | null> {
  const log = logger("control");
  const address = config.control.address;
  if (address === null) {
    log.info("control listener off (control.address = off)");
    return null;
  }
  // The listener's modules are loaded only when it is on.
  const { ControlServer, listenerUrl } = await import("./server.ts");
  const server = new ControlServer({
    address,
    token: config.control.token,
    metricsPath: config.control.metricsPath,
    view,
    logger: log,
  });
  let bound: { hostname: string; port: number };
  try {
    bound = server.start();
  } catch (error) {
    log.error(
      "control listener: cannot listen on {address}: {error}; running without /metrics, /healthz, /readyz and " +
        "/shards (set [control] address or GATEHOUSE_CONTROL_ADDRESS)",
      { address: `${address.hostname}:${address.port}`, error: (error as Error).message },
    );
    return null;
  }
  const url = listenerUrl(bound.hostname, bound.port);
  log.info("control listener on {url} ({metrics}, /healthz, /readyz, /shards; actions {actions})", {
    url,
    metrics: config.control.metricsPath,
    actions: config.control.token === null ? "disabled (no control.token)" : "enabled",
  });
  const file = controlFilePath(storePath);
  try {
    await writeControlFile(
      file,
      `${JSON.stringify({ pid: Deno.pid, url, started_at: new Date(view.startedAt).toISOString() })}\n`,
    );
  } catch (error) {
    log.warn("cannot record the control address next to the store: {error}", {
      error: (error as Error).message,
    });
  }
  return {
    stop: async () => {
      await server.stop();
      await Deno.remove(file).catch(() => {});
    },
  };
}
