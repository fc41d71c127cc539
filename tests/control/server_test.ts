/**
 * The control listener against clients that try to knock it out, on a real listener (127.0.0.1, port 0)
 * with a fake gateway view: slowloris connections, requests over the limits, a client that never reads
 * its response, and a real EMFILE in a child process whose descriptor limit is low.
 */
import assert from "node:assert/strict";
import { type ControlOptions, ControlServer } from "../../src/control/server.ts";
import { logger } from "../../src/util/log.ts";
import { Secret } from "../../src/util/secret.ts";
import { type FakeView, fakeView } from "./fake_view.ts";

const TOKEN = "test-control-token-0123456789";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function start(
  options: Partial<ControlOptions> = {},
): { server: ControlServer; view: FakeView; port: number; url: string } {
  const view = (options.view as FakeView | undefined) ?? fakeView();
  const server = new ControlServer({
    address: { hostname: "127.0.0.1", port: 0 },
    token: new Secret(TOKEN),
    metricsPath: "/metrics",
    view,
    logger: logger("control"),
    ...options,
  });
  const { port } = server.start();
  return { server, view, port, url: `http://127.0.0.1:${port}` };
}

function connect(port: number): Promise<Deno.TcpConn> {
  return Deno.connect({ hostname: "127.0.0.1", port });
}

/** Resolves with the time (performance.now()) the server closed the connection: end of stream or reset. */
async function closedAt(conn: Deno.Conn): Promise<number> {
  const buffer = new Uint8Array(65_536);
  try {
    while ((await conn.read(buffer)) !== null) { /* drop */ }
  } catch {
    // A reset is a close too.
  }
  return performance.now();
}

/** Everything the server sends until it closes. */
async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(65_536);
  for (;;) {
    let n: number | null;
    try {
      n = await conn.read(buffer);
    } catch {
      break;
    }
    if (n === null) break;
    chunks.push(buffer.slice(0, n));
  }
  const all = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    all.set(c, at);
    at += c.length;
  }
  return all;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

/** Sends raw bytes on a new connection and returns all the server answers, as text. */
async function exchange(port: number, request: string | Uint8Array): Promise<string> {
  const conn = await connect(port);
  try {
    await writeAll(conn, typeof request === "string" ? encoder.encode(request) : request);
    return decoder.decode(await readAll(conn));
  } finally {
    conn.close();
  }
}

async function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The promise's value, or a failure naming what did not happen within `ms`. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`not ${what} within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("slowloris: 200 half-sent requests neither block /healthz nor stay open past the header timeout", async () => {
  const headerTimeoutMs = 600;
  const { server, port, url } = start({ headerTimeoutMs });
  const idle: Array<{ conn: Deno.TcpConn; openedAt: number; closed: Promise<number> }> = [];
  try {
    for (let i = 0; i < 200; i++) {
      const openedAt = performance.now();
      const conn = await connect(port);
      await conn.write(encoder.encode("GET /healthz HT"));
      idle.push({ conn, openedAt, closed: closedAt(conn) });
    }
    let closedCount = 0;
    for (const c of idle) c.closed.then(() => closedCount++);

    const asked = performance.now();
    const health = await fetch(`${url}/healthz`);
    const tookMs = performance.now() - asked;
    assert.equal(health.status, 200);
    assert.equal((await health.json()).status, "ok");
    assert.equal(health.headers.get("connection"), "close");
    // (About 25 ms on an idle machine; the bound leaves room for a loaded CI machine.)
    assert.ok(tookMs < headerTimeoutMs, `/healthz took ${Math.round(tookMs)} ms`);
    assert.ok(closedCount < 200, "answered while half-sent requests were still held open");

    // Every half-sent request is closed: the oldest to make room (64 at most are open), the rest
    // once the header timeout has passed, and none of them much later.
    const closed = await within(Promise.all(idle.map((c) => c.closed)), headerTimeoutMs + 3000, "all closed");
    const lifetimes = idle.map((c, i) => closed[i] - c.openedAt);
    assert.ok(
      Math.max(...lifetimes) < headerTimeoutMs + 1500,
      `the longest lived ${Math.round(Math.max(...lifetimes))} ms`,
    );
    const timedOut = lifetimes.filter((ms) => ms >= headerTimeoutMs).length;
    assert.ok(timedOut >= 50, `${timedOut} closed by the header timeout`);
    await until(() => server.connections === 0, 2000, "no connection left");
  } finally {
    for (const c of idle) c.conn.close();
    await server.stop();
  }
});

Deno.test("limits: 431 for big headers, 413 for a big body, 411 for chunked; HEAD has no body; actions still work", async () => {
  const { server, view, port, url } = start();
  const auth = { authorization: `Bearer ${TOKEN}` };
  try {
    const big = await fetch(`${url}/healthz`, { headers: { "x-padding": "a".repeat(17_000) } });
    assert.equal(big.status, 431);
    assert.match((await big.json()).error, /more than 16384 bytes/);

    const tooLong = await fetch(`${url}/commands`, {
      method: "POST",
      headers: auth,
      body: `{"op":3,"d":{"pad":"${"x".repeat(9000)}"}}`,
    });
    assert.equal(tooLong.status, 413);
    assert.match((await tooLong.json()).error, /at most 8192 are accepted/);
    assert.equal(view.commands.length, 0);

    const chunked = await exchange(
      port,
      "POST /commands HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert.match(chunked, /^HTTP\/1\.1 411 Length Required\r\n/);
    assert.match(chunked, /\r\nconnection: close\r\n/);

    const head = await exchange(port, "HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert.match(head, /^HTTP\/1\.1 200 OK\r\n/);
    assert.match(head, /\r\ncontent-length: \d+\r\n/);
    assert.ok(head.endsWith("\r\n\r\n"), `nothing after the head: ${JSON.stringify(head)}`);

    // A body just under the limit, sent only once the server says 100 Continue (as curl does).
    const command = `{"op":3,"d":{"status":"idle","pad":"${"y".repeat(4000)}"}}`;
    const conn = await connect(port);
    try {
      await conn.write(encoder.encode(
        `POST /commands HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${TOKEN}\r\n` +
          `Content-Length: ${command.length}\r\nExpect: 100-continue\r\n\r\n`,
      ));
      const buffer = new Uint8Array(1024);
      const n = await conn.read(buffer);
      assert.equal(decoder.decode(buffer.subarray(0, n ?? 0)), "HTTP/1.1 100 Continue\r\n\r\n");
      await writeAll(conn, encoder.encode(command));
      assert.match(decoder.decode(await readAll(conn)), /^HTTP\/1\.1 202 Accepted\r\n[^]*"queued":true/);
    } finally {
      conn.close();
    }
    assert.deepEqual(view.commands, [command]);

    // The reconnect action is as before: token checked, the view asked.
    assert.equal((await fetch(`${url}/shards/1/reconnect`, { method: "POST" }).then(drain)).status, 401);
    const reconnect = await fetch(`${url}/shards/1/reconnect`, { method: "POST", headers: auth });
    assert.equal(reconnect.status, 202);
    assert.deepEqual(await reconnect.json(), { shard: 1, reconnecting: true });
    assert.deepEqual(view.reconnected, [1]);
    assert.equal(
      (await fetch(`${url}/shards/9/reconnect`, { method: "POST", headers: auth }).then(drain)).status,
      404,
    );
    assert.equal((await fetch(`${url}/healthz`, { method: "POST" }).then(drain)).status, 405);
    assert.equal((await fetch(`${url}/shards`).then((r) => r.json())).shards.length, 2);
    const metrics = await fetch(`${url}/metrics`);
    assert.match(metrics.headers.get("content-type") ?? "", /^text\/plain/);
    assert.match(await metrics.text(), /^gatehouse_shard_ready\{shard="1"\} 1$/m);
  } finally {
    await server.stop();
  }
});

async function drain(response: Response): Promise<Response> {
  await response.body?.cancel();
  return response;
}

Deno.test("write timeout: a client that never reads a large /shards is dropped; others are answered meanwhile", async () => {
  const writeTimeoutMs = 1000;
  // About 10 MB of /shards: more than twice what the socket buffers of both ends took (4 MB, measured).
  const { server, port, url } = start({ view: fakeView(50_000), writeTimeoutMs });
  const sent = performance.now();
  const stalled = await connect(port);
  try {
    await stalled.write(encoder.encode("GET /shards HTTP/1.1\r\nHost: x\r\n\r\n"));
    // Its first bytes arrive (the report is built; that takes a while for 50 000 shards), then it
    // reads no more.
    const first = new Uint8Array(1024);
    const n = await stalled.read(first);
    assert.ok(n !== null && n > 0);
    assert.match(decoder.decode(first.subarray(0, n)), /^HTTP\/1\.1 200 OK\r\n/);
    assert.equal(server.connections, 1);

    const t = performance.now();
    const health = await fetch(`${url}/healthz`);
    assert.equal(health.status, 200);
    await health.body?.cancel();
    assert.ok(
      performance.now() - t < writeTimeoutMs / 2,
      `/healthz took ${Math.round(performance.now() - t)} ms`,
    );
    assert.ok(server.connections >= 1, "answered while the stalled connection was still held");

    await until(() => server.connections === 0, writeTimeoutMs + 3000, "the stalled connection dropped");
    const droppedAfter = performance.now() - sent;
    assert.ok(droppedAfter >= writeTimeoutMs, `dropped after ${Math.round(droppedAfter)} ms`);

    // What the stalled client can still read is less than the response it was promised.
    const head = decoder.decode(first.subarray(0, n));
    const headEnd = head.indexOf("\r\n\r\n") + 4;
    const promised = Number(/content-length: (\d+)/.exec(head)![1]);
    const received = n - headEnd + (await readAll(stalled)).length;
    assert.ok(promised > 10_000_000, `the response is ${promised} bytes`);
    assert.ok(received < promised, `got ${received} of ${promised} bytes`);
  } finally {
    stalled.close();
    await server.stop();
  }
});

Deno.test("file descriptors run out (EMFILE) in a child with ulimit -n 64: /healthz answers again once they are back", async () => {
  const script = new URL("./fd_child.ts", import.meta.url).pathname;
  const child = new Deno.Command("sh", {
    args: ["-c", 'ulimit -n 64 && exec "$0" run --allow-all "$1"', Deno.execPath(), script],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", DENO_NO_UPDATE_CHECK: "1" },
  }).spawn();
  const logs: string[] = [];
  const stderr = (async () => {
    for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) logs.push(chunk);
  })();
  const stdout = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const held: Deno.TcpConn[] = [];
  try {
    let out = "";
    while (!/port (\d+)\n/.test(out)) {
      const { value, done } = await stdout.read();
      if (done) throw new Error(`the child ended before it listened: ${logs.join("")}`);
      out += value;
    }
    const port = Number(/port (\d+)\n/.exec(out)![1]);
    const url = `http://127.0.0.1:${port}`;
    assert.equal((await fetch(`${url}/healthz`).then(drain)).status, 200);

    // More connections than the child has descriptors: the kernel queues them, its accept fails.
    // (A listener that closed on the first accept error refuses them: Deno.serve did.)
    for (let i = 0; i < 120; i++) {
      const conn = await connect(port).catch(() => null);
      if (conn === null) break;
      held.push(conn);
    }
    await until(() => logs.join("").includes("accept failed"), 5000, "the child's accept to fail").catch(
      () => {},
    );
    const probe = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(300) }).then(
      (r) => drain(r).then(() => `answered ${r.status}`),
      () => "no answer",
    );
    assert.equal(probe, "no answer", "descriptors really ran out");

    // Descriptors back: the same listener answers again, without a restart.
    for (const conn of held.splice(0)) conn.close();
    let status = 0;
    const deadline = Date.now() + 10_000;
    while (status !== 200 && Date.now() < deadline) {
      status = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) }).then(
        (r) => drain(r).then(() => r.status),
        () => 0,
      );
    }
    assert.equal(status, 200, `/healthz after the descriptors came back; child log:\n${logs.join("")}`);

    const lines = logs.join("").split("\n").filter((l) => l !== "").map((l) => JSON.parse(l));
    const warnings = lines.filter((l) => /accept failed/.test(l.message));
    assert.equal(warnings.length, 1, "one warning line for the whole episode (at most one per 10 s)");
    assert.equal(warnings[0].level, "WARNING");
    assert.match(warnings[0].message, /Too many open files/);
    assert.equal(warnings[0].count, 1);
    const recovered = lines.filter((l) => /accepting connections again after \d+ failure/.test(l.message));
    assert.equal(recovered.length, 1, JSON.stringify(lines));
    assert.ok(recovered[0].failures >= 1);
  } finally {
    for (const conn of held) conn.close();
    try {
      Deno.kill(child.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
    await child.status;
    await stdout.cancel();
    await stderr;
  }
});
