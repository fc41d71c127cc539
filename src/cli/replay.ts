/**
 * `gatehouse replay`: re-emit recorded events as NDJSON on stdout (same ids as when they were first
 * delivered), or serve them to a bot as a Discord-compatible gateway (`--serve`).
 */
import type { GatehouseConfig } from "../config/load.ts";
import { Store, StoreError } from "../journal/store.ts";
import { pacing, parsePoint, readSelection, resolveRange, type Selection } from "../replay/select.ts";
import { serveReplay } from "../replay/serve.ts";
import { LineBuffer } from "../sinks/ndjson.ts";
import { eventPosition, eventScope } from "../journal/identity.ts";
import { logger } from "../util/log.ts";
import { ExitError } from "./errors.ts";

export interface ReplayFlags {
  from?: string;
  to?: string;
  shard?: string;
  events?: string;
  follow?: boolean;
  serve?: string;
  speed?: string;
}

/** "max" → 0 (no waiting); a positive number → that many times the recorded pace. */
export function parseSpeed(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (text === "max") return 0;
  const speed = Number(text);
  if (!(speed > 0) || !Number.isFinite(speed)) {
    throw new ExitError(
      2,
      `--speed must be a positive number (1 = as recorded, 10 = ten times faster) or max, not "${text}"`,
    );
  }
  return speed;
}

/** "127.0.0.1:4000", ":4000", "4000", "[::1]:4000" → hostname and port (loopback unless given). */
export function parseAddress(text: string): { hostname: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*))?:?(\d{1,5})$/.exec(text.trim());
  const port = match ? Number(match[3]) : NaN;
  if (!match || !(port >= 0 && port <= 65535)) {
    throw new ExitError(2, `--serve needs an address like 127.0.0.1:4000 or :4000, not "${text}"`);
  }
  return { hostname: match[1] ?? (match[2] || "127.0.0.1"), port };
}

function selectionFrom(store: Store, flags: ReplayFlags, config: GatehouseConfig): Selection {
  let range: { fromId: number; toId: number };
  try {
    range = resolveRange(
      store,
      flags.from !== undefined ? parsePoint(flags.from) : null,
      flags.to !== undefined ? parsePoint(flags.to) : null,
    );
  } catch (error) {
    throw new ExitError(2, (error as Error).message);
  }
  let shard: number | null = null;
  if (flags.shard !== undefined) {
    shard = Number(flags.shard);
    if (!Number.isInteger(shard) || shard < 0) {
      throw new ExitError(2, `--shard must be a shard id, not "${flags.shard}"`);
    }
  }
  const names = flags.events?.split(",").map((n) => n.trim()).filter(Boolean) ?? config.events;
  return { ...range, shard, events: names && names.length > 0 ? new Set(names) : null };
}

export async function replay(config: GatehouseConfig, flags: ReplayFlags): Promise<number> {
  let store: Store;
  try {
    store = Store.open(config.store.path, { readOnly: true });
  } catch (error) {
    if (error instanceof StoreError) throw new ExitError(6, error.message);
    throw error;
  }
  const stop = new AbortController();
  const onSignal = () => stop.abort();
  Deno.addSignalListener("SIGINT", onSignal);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", onSignal);
  try {
    const selection = selectionFrom(store, flags, config);
    if (flags.serve !== undefined) {
      const { hostname, port } = parseAddress(flags.serve);
      const log = logger("replay");
      const served = serveReplay({
        store,
        selection,
        hostname,
        port,
        speed: parseSpeed(flags.speed, 1),
        follow: flags.follow ?? false,
        logger: log,
        signal: stop.signal,
      });
      log.info(
        "replay: serving recorded events as a Discord gateway on {url}; point the bot's API at http://{host} " +
          "(for example DISCORD_API_HOST) and stop with Ctrl-C",
        { url: served.url, host: served.url.slice(5) },
      );
      // The address on stdout, for scripts.
      Deno.stdout.writeSync(
        new TextEncoder().encode(
          `${JSON.stringify({ url: served.url, api: `http://${served.url.slice(5)}` })}\n`,
        ),
      );
      await served.finished;
      return 0;
    }
    await toStdout(store, selection, parseSpeed(flags.speed, 0), flags.follow ?? false, stop.signal);
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    if (Deno.build.os !== "windows") Deno.removeSignalListener("SIGTERM", onSignal);
    store.close();
  }
}

async function toStdout(
  store: Store,
  selection: Selection,
  speed: number,
  follow: boolean,
  signal: AbortSignal,
) {
  const buffer = new LineBuffer();
  let previousAt: number | null = null;
  const write = () => {
    const bytes = buffer.take();
    let offset = 0;
    try {
      while (offset < bytes.length) offset += Deno.stdout.writeSync(bytes.subarray(offset));
    } catch {
      throw new ExitError(0, ""); // the reader went away (replay | head)
    }
  };
  for await (const page of readSelection(store, selection, { follow, signal })) {
    for (const event of page) {
      if (speed > 0 && previousAt !== null) {
        const wait = pacing(event.receivedAt - previousAt, speed);
        if (wait > 0) {
          write();
          await new Promise((resolve) => setTimeout(resolve, wait));
          if (signal.aborted) return;
        }
      }
      previousAt = event.receivedAt;
      buffer.append(
        event.id,
        eventScope(event.shard, event.session, event.seq, store.producer),
        eventPosition(event.session, event.seq, event.id),
        event.shard,
        event.payload,
        0,
      );
    }
    write();
  }
}
