/**
 * Black-box helpers: spawn the real `main.ts` as a child process (as users run it), collect stdout
 * as parsed NDJSON lines and stderr as text, and stop it by pid.
 */
import { fileURLToPath } from "node:url";

export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** The flags `deno task start` uses, so tests run what users run. */
export const RUN_FLAGS = [
  "run",
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-write",
  "--allow-sys",
  "--v8-flags=--max-semi-space-size=1",
];

export type Line = {
  id: number;
  uid: string;
  shard: number;
  op: number;
  s: number | null;
  t: string;
  // deno-lint-ignore no-explicit-any
  d: any;
};

export interface Gatehouse {
  child: Deno.ChildProcess;
  pid: number;
  /** Every stdout line, parsed. A line that is not JSON fails the test that reads it. */
  lines: Line[];
  /** stdout lines that did not parse as JSON (must stay empty). */
  badLines: string[];
  stderr(): string;
  waitFor(predicate: () => boolean, timeoutMs?: number, what?: string): Promise<void>;
  kill(signal?: Deno.Signal): void;
  /** Resolves with the exit status once stdout and stderr are drained. */
  status: Promise<Deno.CommandStatus>;
  /** Writes text to stdin (only with `stdin: true`). */
  write(text: string): Promise<void>;
  /** With `stallStdout`: starts reading stdout (until then nobody reads the pipe). */
  readStdout(): void;
}

export interface SpawnOptions {
  env?: Record<string, string>;
  args?: string[];
  /** Subcommand and its arguments; defaults to ["run"]. */
  command?: string[];
  cwd?: string;
  /** Give the process a stdin pipe (for commands); `write` then sends to it. */
  stdin?: boolean;
  /** Nobody reads stdout until `readStdout()`: a reader that stalls (`gatehouse run | less`). */
  stallStdout?: boolean;
  /**
   * Another Deno script instead of gatehouse (a bot process in the proxy tests), run with -A and `args`;
   * its stdout lines are collected the same way.
   */
  script?: string;
}

/** Environment pointing gatehouse at a fake Discord. */
export function fakeEnv(apiHost: string, token = "fake-token"): Record<string, string> {
  return {
    DISCORD_TOKEN: token,
    DISCORD_API_SCHEME: "http",
    DISCORD_API_HOST: apiHost,
    GATEHOUSE_LOG_LEVEL: "debug",
  };
}

/** The control listener's URL, which `run` records beside the store (`<store>.control`) once it listens. */
export async function controlUrl(store: string): Promise<string> {
  for (let i = 0; i < 200; i++) {
    try {
      return JSON.parse(await Deno.readTextFile(`${store}.control`)).url;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
  throw new Error("gatehouse did not record its control address");
}

/** The `host:port` gatehouse's proxy listens on, from its start-up log line (`[proxy] listen`). */
export async function proxyAddress(g: Gatehouse, timeoutMs = 20_000): Promise<string> {
  const listening = /proxy: listening on ws:\/\/([\d.]+:\d+)/;
  await g.waitFor(() => listening.test(g.stderr()), timeoutMs, "the proxy");
  return listening.exec(g.stderr())![1];
}

export function spawnGatehouse(options: SpawnOptions = {}): Gatehouse {
  // Tests run in parallel: each control listener takes a free port (run records it beside the store).
  const env: Record<string, string> = {
    NO_COLOR: "1",
    GATEHOUSE_CONTROL_ADDRESS: "127.0.0.1:0",
    ...options.env,
  };
  // Every run gets its own store unless the test chose one (restart tests share theirs).
  let tempDir: string | null = null;
  if (!options.script && !("GATEHOUSE_STORE" in env) && !options.args?.includes("--store")) {
    tempDir = Deno.makeTempDirSync({ prefix: "gatehouse-test-" });
    env.GATEHOUSE_STORE = `${tempDir}/gatehouse.db`;
  }
  const child = new Deno.Command(Deno.execPath(), {
    args: options.script
      ? ["run", "-A", options.script, ...(options.args ?? [])]
      : [...RUN_FLAGS, "main.ts", ...(options.command ?? ["run"]), ...(options.args ?? [])],
    cwd: options.cwd ?? ROOT,
    env,
    stdin: options.stdin ? "piped" : "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines: Line[] = [];
  const badLines: string[] = [];
  let stderrText = "";

  let startReading: () => void = () => {};
  const reading = options.stallStdout ? new Promise<void>((resolve) => (startReading = resolve)) : null;
  const readStdout = (async () => {
    if (reading) await reading;
    // Strict: a line that is not valid UTF-8 is a bad line too (a `| jq` reader would stop on it).
    const decoder = new TextDecoder("utf-8", { fatal: true });
    let rest = new Uint8Array(0);
    const take = (bytes: Uint8Array) => {
      let text: string;
      try {
        text = decoder.decode(bytes);
      } catch {
        badLines.push(`(invalid UTF-8) ${new TextDecoder().decode(bytes)}`);
        return;
      }
      try {
        lines.push(JSON.parse(text));
      } catch {
        badLines.push(text);
      }
    };
    for await (const chunk of child.stdout) {
      const joined = new Uint8Array(rest.length + chunk.length);
      joined.set(rest);
      joined.set(chunk, rest.length);
      let from = 0;
      let newline: number;
      while ((newline = joined.indexOf(0x0a, from)) !== -1) {
        take(joined.subarray(from, newline));
        from = newline + 1;
      }
      rest = joined.slice(from);
    }
    if (rest.length > 0) take(rest);
  })();
  const readStderr = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) stderrText += decoder.decode(chunk, { stream: true });
  })();

  const status = (async () => {
    const result = await child.status;
    await Promise.all([readStdout, readStderr]);
    if (tempDir) await Deno.remove(tempDir, { recursive: true }).catch(() => {});
    return result;
  })();

  return {
    child,
    pid: child.pid,
    lines,
    badLines,
    stderr: () => stderrText,
    readStdout: () => startReading(),
    write: async (text: string) => {
      const writer = child.stdin.getWriter();
      try {
        await writer.write(new TextEncoder().encode(text));
      } finally {
        writer.releaseLock();
      }
    },
    async waitFor(predicate, timeoutMs = 20_000, what = "condition") {
      const deadline = Date.now() + timeoutMs;
      let exited = false;
      status.then(() => (exited = true));
      while (!predicate()) {
        if (exited) {
          await new Promise((resolve) => setTimeout(resolve, 50));
          if (predicate()) return;
          throw new Error(`gatehouse exited while waiting for ${what}; stderr:\n${stderrText.slice(-3000)}`);
        }
        if (Date.now() > deadline) {
          throw new Error(`timed out waiting for ${what}; stderr:\n${stderrText.slice(-3000)}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    kill(signal: Deno.Signal = "SIGTERM") {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
    },
    status,
  };
}

/** Runs gatehouse to completion (for commands that exit on their own). */
export async function runGatehouse(options: SpawnOptions & { timeoutMs?: number } = {}) {
  const g = spawnGatehouse(options);
  const timer = setTimeout(() => g.kill("SIGKILL"), options.timeoutMs ?? 30_000);
  const status = await g.status;
  clearTimeout(timer);
  return { code: status.code, lines: g.lines, badLines: g.badLines, stderr: g.stderr() };
}
