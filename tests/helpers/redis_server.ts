/**
 * A redis-server of the test's own, on a free port, stopped by its pid. By default with AOF
 * (`appendfsync always`, so whatever Redis acknowledged survives a kill -9), for tests that kill the
 * broker; `durable: false` keeps nothing on disk, for tests that measure delivery rather than the disk.
 */
/** A port nothing listens on now, below `below` (a cluster node also listens on port + 10000). */
export function freePort(below = 55_000): number {
  for (;;) {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = listener.addr.port;
    listener.close();
    if (port < below) return port;
  }
}

/** Waits until the Redis on `port` answers PING. */
export async function waitPing(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      await conn.write(new TextEncoder().encode("PING\r\n"));
      const buf = new Uint8Array(16);
      const n = await conn.read(buf);
      conn.close();
      if (n !== null && new TextDecoder().decode(buf.subarray(0, n)).startsWith("+PONG")) return;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not start`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

export class RedisServer {
  readonly port: number;
  readonly dir: string;
  readonly #durable: boolean;
  #child: Deno.ChildProcess | null = null;

  private constructor(port: number, dir: string, durable: boolean) {
    this.port = port;
    this.dir = dir;
    this.#durable = durable;
  }

  static async start(options: { durable?: boolean } = {}): Promise<RedisServer> {
    const dir = await Deno.makeTempDir({ prefix: "gatehouse-redis-" });
    const server = new RedisServer(freePort(), dir, options.durable ?? true);
    await server.restart();
    return server;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  /** Starts (again) on the same port and directory: the AOF brings back what was acknowledged. */
  async restart(): Promise<void> {
    this.#child = new Deno.Command("redis-server", {
      args: [
        "--port",
        String(this.port),
        "--bind",
        "127.0.0.1",
        "--dir",
        this.dir,
        ...(this.#durable ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]),
        "--save",
        "",
      ],
      stdout: "null",
      stderr: "null",
    }).spawn();
    // Until it answers (it may still be loading the AOF).
    await waitPing(this.port);
  }

  /** kill -9, by pid. */
  async kill(): Promise<void> {
    const child = this.#child;
    this.#child = null;
    if (!child) return;
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
    await child.status;
  }

  async stop(): Promise<void> {
    await this.kill();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}
