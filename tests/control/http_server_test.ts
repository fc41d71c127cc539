/**
 * The control listener's HTTP/1.1 server on its own, with a handler of the test's: what it parses and
 * refuses, the connection cap (the oldest idle connection makes room; 503 when all are busy), a
 * listening socket lost under it (bound again on the same port), and stop().
 */
import assert from "node:assert/strict";
import { HttpServer, type HttpServerOptions } from "../../src/control/http_server.ts";
import { logger, setupLogging } from "../../src/util/log.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const logLines: Array<{ level: string; message: string; [key: string]: unknown }> = [];
setupLogging({ level: "debug", format: "json", write: (line) => logLines.push(JSON.parse(line)) });

/** Echoes what it got as JSON; `/slow` waits for `release()`, `/throw` throws. */
function echoServer(options: Partial<HttpServerOptions> = {}) {
  let release: () => void = () => {};
  let gate = new Promise<void>((resolve) => (release = resolve));
  let slowEntered = 0;
  const server = new HttpServer({
    hostname: "127.0.0.1",
    port: 0,
    logger: logger("control"),
    handler: async (request) => {
      const url = new URL(request.url);
      if (url.pathname === "/slow") {
        slowEntered++;
        await gate;
      }
      if (url.pathname === "/throw") throw new Error("the handler broke");
      return Response.json({
        method: request.method,
        path: url.pathname,
        search: url.search,
        test: request.headers.get("x-test"),
        body: request.body === null ? null : await request.text(),
      });
    },
    ...options,
  });
  const { port } = server.start();
  return {
    server,
    port,
    url: `http://127.0.0.1:${port}`,
    slowEntered: () => slowEntered,
    release: () => {
      release();
      gate = new Promise<void>((resolve) => (release = resolve));
    },
  };
}

function connect(port: number): Promise<Deno.TcpConn> {
  return Deno.connect({ hostname: "127.0.0.1", port });
}

async function readAll(conn: Deno.Conn): Promise<string> {
  let text = "";
  const buffer = new Uint8Array(65_536);
  for (;;) {
    let n: number | null;
    try {
      n = await conn.read(buffer);
    } catch {
      break;
    }
    if (n === null) break;
    text += decoder.decode(buffer.subarray(0, n));
  }
  return text;
}

/** Sends the request (in pieces of `chunk` bytes if given) and returns all the server answered. */
async function exchange(port: number, request: string, chunk = 0): Promise<string> {
  const conn = await connect(port);
  try {
    const bytes = encoder.encode(request);
    const step = chunk > 0 ? chunk : bytes.length;
    for (let at = 0; at < bytes.length; at += step) {
      let offset = at;
      const end = Math.min(at + step, bytes.length);
      while (offset < end) offset += await conn.write(bytes.subarray(offset, end));
    }
    return await readAll(conn);
  } finally {
    conn.close();
  }
}

function status(response: string): number {
  return Number(/^HTTP\/1\.1 (\d{3}) /.exec(response)?.[1] ?? 0);
}

function body(response: string): Record<string, unknown> {
  return JSON.parse(response.slice(response.indexOf("\r\n\r\n") + 4));
}

async function until(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** "open" if the server has not closed the connection within `ms`, else "closed". */
async function stillOpen(conn: Deno.Conn, ms: number): Promise<"open" | "closed"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const wait = new Promise<"open">((resolve) => (timer = setTimeout(() => resolve("open"), ms)));
  const read = conn.read(new Uint8Array(16)).then(() => "closed" as const, () => "closed" as const);
  const result = await Promise.race([wait, read]);
  clearTimeout(timer);
  return result;
}

Deno.test("http server: requests as clients send them, and the malformed ones refused with 4xx/5xx", async () => {
  const { server, port } = echoServer();
  try {
    // Sent a byte at a time: the head is found across reads; the body comes with the request.
    const post = await exchange(
      port,
      "POST /commands?x=1 HTTP/1.1\r\nHost: a\r\nX-Test:  spaced \t\r\nContent-Length: 5\r\n\r\nhello",
      1,
    );
    assert.equal(status(post), 200, post);
    assert.deepEqual(body(post), {
      method: "POST",
      path: "/commands",
      search: "?x=1",
      test: "spaced",
      body: "hello",
    });
    assert.match(post, /\r\nconnection: close\r\n/);
    assert.match(post, /\r\ncontent-length: \d+\r\n/);

    // Bare LF line ends, a leading empty line, HTTP/1.0, an absolute-form target.
    assert.deepEqual(body(await exchange(port, "GET /healthz HTTP/1.0\n\n")).path, "/healthz");
    assert.equal(status(await exchange(port, "\r\nGET /healthz HTTP/1.1\r\n\r\n")), 200);
    const absolute = await exchange(port, "GET http://elsewhere:1/shards?a=b HTTP/1.1\r\n\r\n");
    assert.deepEqual([body(absolute).path, body(absolute).search], ["/shards", "?a=b"]);
    // A body on a GET is read (the framing stays right) and not handed on; bytes after the request are ignored.
    const get = await exchange(
      port,
      "GET /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /y HTTP/1.1\r\n\r\n",
    );
    assert.deepEqual([body(get).path, body(get).body], ["/x", null]);
    assert.equal(get.match(/HTTP\/1\.1 /g)?.length, 1, "one response per connection");

    const refused: Array<[string, number]> = [
      ["GARBAGE\r\n\r\n", 400],
      ["GET /x HTTP/1.1 extra\r\n\r\n", 400],
      ["GET x HTTP/1.1\r\n\r\n", 400],
      ["GET /x HTTP/2.0\r\n\r\n", 505],
      ["GET /x HTTP/1.1\r\nNo colon here\r\n\r\n", 400],
      ["GET /x HTTP/1.1\r\nBad Name: v\r\n\r\n", 400],
      ["GET /x HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400],
      ["GET /x HTTP/1.1\r\nA: b\rc\r\n\r\n", 400],
      ["POST /x HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400],
      ["POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400],
      ["POST /x HTTP/1.1\r\nContent-Length: 8193\r\n\r\n", 413],
      ["POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411],
      ["TRACE /x HTTP/1.1\r\n\r\n", 405],
      [`GET /${"a".repeat(20_000)} HTTP/1.1\r\n\r\n`, 431],
      ["GET /throw HTTP/1.1\r\n\r\n", 500],
    ];
    for (const [request, expected] of refused) {
      const response = await exchange(port, request);
      assert.equal(status(response), expected, `${JSON.stringify(request.slice(0, 60))} → ${response}`);
      assert.equal(typeof body(response).error, "string");
      assert.match(response, /\r\nconnection: close\r\n/);
    }
    assert.ok(logLines.some((l) => l.level === "WARNING" && /the handler broke/.test(l.message)));
    await until(() => server.connections === 0, 2000, "every connection closed");
  } finally {
    await server.stop();
  }
});

Deno.test("http server: at the cap the oldest idle connection makes room; when all are busy the newcomer gets 503", async () => {
  const { server, port, url, slowEntered, release } = echoServer({
    maxConnections: 3,
    headerTimeoutMs: 10_000,
  });
  const idle: Deno.TcpConn[] = [];
  try {
    // Three busy answering: a fourth is refused with 503 and closed, the three are answered.
    const slow = [0, 1, 2].map(() => fetch(`${url}/slow`));
    await until(() => slowEntered() === 3, 2000, "three requests in the handler");
    const refused = await exchange(port, "GET /fast HTTP/1.1\r\n\r\n");
    assert.equal(status(refused), 503, refused);
    assert.match(String(body(refused).error), /busy/);
    assert.ok(logLines.some((l) => /all 3 connections are busy answering/.test(l.message)));
    release();
    for (const response of await Promise.all(slow)) {
      assert.equal(response.status, 200);
      assert.equal((await response.json()).path, "/slow");
    }
    await until(() => server.connections === 0, 2000, "no connection left");

    // Three idle (nothing or half a request sent): a new request closes the oldest and is answered.
    for (const start of ["", "GET /", "GET /healthz HTTP/1.1\r\n"]) {
      const conn = await connect(port);
      if (start) await conn.write(encoder.encode(start));
      idle.push(conn);
      await until(() => server.connections === idle.length, 2000, `${idle.length} connection(s)`);
    }
    const answered = await fetch(`${url}/fast`);
    assert.equal(answered.status, 200);
    await answered.body?.cancel();
    assert.equal(await stillOpen(idle[0], 1000), "closed");
    assert.equal(await stillOpen(idle[1], 100), "open");
    assert.equal(await stillOpen(idle[2], 100), "open");
  } finally {
    for (const conn of idle) conn.close();
    await server.stop();
  }
});

Deno.test("http server: a listening socket lost under it is bound again on the same port", async () => {
  const listeners: Deno.TcpListener[] = [];
  const { server, port, url } = echoServer({
    listen: (address) => {
      const listener = Deno.listen({ hostname: address.hostname, port: address.port });
      listeners.push(listener);
      return listener;
    },
  });
  try {
    assert.equal((await fetch(`${url}/before`).then((r) => r.json())).path, "/before");
    listeners[0].close();
    await until(() => listeners.length === 2, 2000, "a new listening socket");
    assert.equal(listeners[1].addr.port, port);
    const after = await fetch(`${url}/after`);
    assert.equal(after.status, 200);
    assert.equal((await after.json()).path, "/after");
    const lost = logLines.filter((l) => /the listening socket is lost/.test(l.message));
    assert.equal(lost.length, 1);
    assert.equal(lost[0].level, "WARNING");
    assert.ok(
      logLines.some((l) => l.message.includes(`listening on 127.0.0.1:${port} again after 1 failure(s)`)),
      JSON.stringify(logLines.map((l) => l.message)),
    );
  } finally {
    await server.stop();
  }
});

Deno.test("http server: stop() closes the listener and every connection, idle or busy, and resolves", async () => {
  const { server, port, url, slowEntered } = echoServer({ headerTimeoutMs: 10_000 });
  const idle = await connect(port);
  const busy = fetch(`${url}/slow`).then((r) => r.status, () => "failed");
  await until(() => slowEntered() === 1 && server.connections === 2, 2000, "an idle and a busy connection");
  const started = performance.now();
  await server.stop();
  assert.ok(performance.now() - started < 1000, `stop() took ${Math.round(performance.now() - started)} ms`);
  assert.equal(server.connections, 0);
  assert.equal(await stillOpen(idle, 1000), "closed");
  assert.equal(await busy, "failed");
  idle.close();
  await assert.rejects(connect(port), Deno.errors.ConnectionRefused);
});
