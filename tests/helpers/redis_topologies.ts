/**
 * Redis Sentinel and Redis Cluster of a test's own: redis-server processes on free ports, in a temporary
 * directory, stopped by their pids.
 */
import { freePort, waitPing } from "./redis_server.ts";

async function redisCli(args: string[]): Promise<string> {
  const out = await new Deno.Command("redis-cli", { args, stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`redis-cli ${args.join(" ")}: ${text}`);
  return text;
}

class Processes {
  readonly children: Deno.ChildProcess[] = [];
  spawn(args: string[], cwd: string): void {
    this.children.push(
      new Deno.Command("redis-server", { args, cwd, stdout: "null", stderr: "null" }).spawn(),
    );
  }
  async stop(): Promise<void> {
    for (const child of this.children) {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone
      }
      await child.status;
    }
  }
}

/** A master and one sentinel watching it as `name`. */
export class RedisSentinel {
  readonly masterPort: number;
  readonly sentinelPort: number;
  readonly name = "gatehousemaster";
  readonly #dir: string;
  readonly #procs = new Processes();

  private constructor(dir: string, masterPort: number, sentinelPort: number) {
    this.#dir = dir;
    this.masterPort = masterPort;
    this.sentinelPort = sentinelPort;
  }

  static async start(): Promise<RedisSentinel> {
    const dir = await Deno.makeTempDir({ prefix: "gatehouse-sentinel-" });
    const s = new RedisSentinel(dir, freePort(), freePort());
    s.#procs.spawn(["--port", String(s.masterPort), "--bind", "127.0.0.1", "--save", "", "--dir", dir], dir);
    await waitPing(s.masterPort);
    // A sentinel rewrites its config file: it must be its own, writable.
    const conf = `${dir}/sentinel.conf`;
    await Deno.writeTextFile(
      conf,
      `port ${s.sentinelPort}\nbind 127.0.0.1\ndir ${dir}\nsentinel monitor ${s.name} 127.0.0.1 ${s.masterPort} 1\n`,
    );
    s.#procs.spawn([conf, "--sentinel"], dir);
    await waitPing(s.sentinelPort);
    // Wait until the sentinel knows the master.
    const deadline = Date.now() + 10_000;
    while (
      !(await redisCli(["-p", String(s.sentinelPort), "SENTINEL", "get-master-addr-by-name", s.name]))
        .includes(
          String(s.masterPort),
        )
    ) {
      if (Date.now() > deadline) throw new Error("the sentinel does not know its master");
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    return s;
  }

  get url(): string {
    return `redis+sentinel://127.0.0.1:${this.sentinelPort}/${this.name}`;
  }

  async stop(): Promise<void> {
    await this.#procs.stop();
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

/** Three masters, no replicas, every slot covered. */
export class RedisCluster {
  readonly ports: number[];
  readonly #dir: string;
  readonly #procs = new Processes();

  private constructor(dir: string, ports: number[]) {
    this.#dir = dir;
    this.ports = ports;
  }

  static async start(nodes = 3): Promise<RedisCluster> {
    const dir = await Deno.makeTempDir({ prefix: "gatehouse-cluster-" });
    const ports: number[] = [];
    while (ports.length < nodes) {
      const port = freePort();
      if (!ports.includes(port)) ports.push(port);
    }
    const c = new RedisCluster(dir, ports);
    for (const port of ports) {
      c.#procs.spawn([
        "--port",
        String(port),
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        `nodes-${port}.conf`,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        dir,
      ], dir);
    }
    for (const port of ports) await waitPing(port);
    await redisCli([
      "--cluster",
      "create",
      ...ports.map((p) => `127.0.0.1:${p}`),
      "--cluster-replicas",
      "0",
      "--cluster-yes",
    ]);
    const deadline = Date.now() + 20_000;
    for (const port of ports) {
      while (!(await redisCli(["-p", String(port), "CLUSTER", "INFO"])).includes("cluster_state:ok")) {
        if (Date.now() > deadline) throw new Error("the cluster did not come up");
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    return c;
  }

  get url(): string {
    return `redis+cluster://${this.ports.map((p) => `127.0.0.1:${p}`).join(",")}`;
  }

  async stop(): Promise<void> {
    await this.#procs.stop();
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

const FIXTURES = new URL("../fixtures/tls/", import.meta.url).pathname;

/** A redis-server that speaks TLS only, with the self-signed certificate in tests/fixtures/tls. */
export class RedisTls {
  readonly port: number;
  readonly caFile = `${FIXTURES}cert.pem`;
  readonly #dir: string;
  readonly #procs = new Processes();

  private constructor(dir: string, port: number) {
    this.#dir = dir;
    this.port = port;
  }

  static async start(): Promise<RedisTls> {
    const dir = await Deno.makeTempDir({ prefix: "gatehouse-redis-tls-" });
    const r = new RedisTls(dir, freePort());
    r.#procs.spawn([
      "--port",
      "0",
      "--tls-port",
      String(r.port),
      "--bind",
      "127.0.0.1",
      "--tls-cert-file",
      `${FIXTURES}cert.pem`,
      "--tls-key-file",
      `${FIXTURES}key.pem`,
      "--tls-ca-cert-file",
      `${FIXTURES}cert.pem`,
      "--tls-auth-clients",
      "no",
      "--save",
      "",
      "--dir",
      dir,
    ], dir);
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        (await Deno.connect({ hostname: "127.0.0.1", port: r.port })).close();
        return r;
      } catch {
        if (Date.now() > deadline) throw new Error(`TLS redis-server on ${r.port} did not start`);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  get url(): string {
    return `rediss://127.0.0.1:${this.port}`;
  }

  async stop(): Promise<void> {
    await this.#procs.stop();
    await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}
