/**
 * The WebSocket client against Deno's own WebSocket server (an independent implementation) and against
 * raw TCP servers that do what Deno's server will not (fragment, ping, drop, answer a bad handshake).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { WS_CLOSED, WS_OPEN, WsClient, type WsHandlers } from "../../src/gateway/ws_client.ts";

interface Recorder extends WsHandlers {
  opened: boolean;
  messages: Array<{ data: Uint8Array; text: boolean }>;
  closed: { code: number; reason: string } | null;
  waitFor(predicate: () => boolean, what: string): Promise<void>;
}

function recorder(onMessage?: (data: Uint8Array) => void): Recorder {
  const r: Recorder = {
    opened: false,
    messages: [],
    closed: null,
    onOpen: () => (r.opened = true),
    onMessage: (data, text) => {
      r.messages.push({ data: data.slice(), text });
      onMessage?.(data);
    },
    onClose: (code, reason) => (r.closed = { code, reason }),
    waitFor: async (predicate, what) => {
      const deadline = Date.now() + 5000;
      while (!predicate()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
  };
  return r;
}

/** Deno's built-in server: `onSocket` drives each connection. */
function denoServer(onSocket: (socket: WebSocket) => void) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (request) => {
    const { socket, response } = Deno.upgradeWebSocket(request);
    onSocket(socket);
    return response;
  });
  return { url: `ws://127.0.0.1:${server.addr.port}/?v=10&encoding=json`, server };
}

Deno.test("messages of every length encoding arrive intact, text and binary, in order", async () => {
  const sizes = [0, 1, 125, 126, 127, 65535, 65536, 300_000, 2_000_000];
  const { url, server } = denoServer((socket) => {
    socket.onopen = () => {
      for (const size of sizes) socket.send(new Uint8Array(size).map((_, i) => (i * 7 + size) & 0xff));
      socket.send("héllo ✓");
    };
  });
  const r = recorder();
  const client = WsClient.connect(url, r);
  await r.waitFor(() => r.messages.length === sizes.length + 1, "all messages");
  assert.equal(client.readyState, WS_OPEN);
  sizes.forEach((size, k) => {
    const { data, text } = r.messages[k];
    assert.equal(text, false);
    assert.equal(data.length, size);
    for (let i = 0; i < size; i += 997) {
      assert.equal(data[i], (i * 7 + size) & 0xff, `size ${size} byte ${i}`);
    }
  });
  assert.equal(r.messages.at(-1)!.text, true);
  assert.equal(new TextDecoder().decode(r.messages.at(-1)!.data), "héllo ✓");
  await client.close(1000);
  await server.shutdown();
});

Deno.test("a burst of 20 000 small messages: all there, in order", async () => {
  const { url, server } = denoServer((socket) => {
    socket.onopen = () => {
      for (let i = 0; i < 20_000; i++) socket.send(`{"n":${i}}`);
    };
  });
  const r = recorder();
  const client = WsClient.connect(url, r);
  await r.waitFor(() => r.messages.length === 20_000, "burst");
  r.messages.forEach((m, i) => assert.equal(new TextDecoder().decode(m.data), `{"n":${i}}`));
  await client.close(1000);
  await server.shutdown();
});

Deno.test("client messages are masked correctly (Deno's server reads them), close codes reach the server", async () => {
  const received: string[] = [];
  let closeCode = 0;
  const closed = Promise.withResolvers<void>();
  const { url, server } = denoServer((socket) => {
    socket.onmessage = (e) => received.push(e.data);
    socket.onclose = (e) => {
      closeCode = e.code;
      closed.resolve();
    };
  });
  const r = recorder();
  const client = WsClient.connect(url, r);
  await r.waitFor(() => r.opened, "open");
  client.send('{"op":1,"d":null}');
  client.send("x".repeat(70_000));
  await r.waitFor(() => received.length === 2, "server got both");
  assert.deepEqual(received, ['{"op":1,"d":null}', "x".repeat(70_000)]);
  await client.close(4000);
  await closed.promise;
  assert.equal(closeCode, 4000);
  assert.equal(client.readyState, WS_CLOSED);
  assert.equal(r.closed, null, "onClose is not called for our own close");
  await server.shutdown();
});

Deno.test("a server close frame reports its code and reason", async () => {
  const { url, server } = denoServer((socket) => {
    socket.onopen = () => socket.close(4004, "Authentication failed.");
  });
  const r = recorder();
  const client = WsClient.connect(url, r);
  await r.waitFor(() => r.closed !== null, "close");
  assert.deepEqual(r.closed, { code: 4004, reason: "Authentication failed." });
  await client.closed;
  await server.shutdown();
});

/** A raw TCP server that completes the handshake, then runs `script` with the connection. */
function rawServer(script: (conn: Deno.Conn) => Promise<void>, response?: (key: string) => string) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    const conn = await listener.accept();
    const buffer = new Uint8Array(4096);
    let text = "";
    while (!text.includes("\r\n\r\n")) {
      const n = await conn.read(buffer);
      if (n === null) return;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    const key = /sec-websocket-key: (.*)\r\n/i.exec(text)![1].trim();
    const accept = createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
    await conn.write(new TextEncoder().encode(
      response?.(key) ??
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
    ));
    await script(conn);
  })();
  return { url: `ws://127.0.0.1:${listener.addr.port}`, done, close: () => listener.close() };
}

const serverFrame = (fin: boolean, opcode: number, payload: Uint8Array) => {
  const n = payload.length;
  const header = n < 126
    ? [(fin ? 0x80 : 0) | opcode, n]
    : [(fin ? 0x80 : 0) | opcode, 126, n >> 8, n & 0xff];
  return new Uint8Array([...header, ...payload]);
};

async function readFrame(conn: Deno.Conn): Promise<{ opcode: number; payload: Uint8Array }> {
  const head = new Uint8Array(2);
  await readExactly(conn, head);
  const length = head[1] & 0x7f;
  assert.ok(head[1] & 0x80, "client frames must be masked");
  const mask = new Uint8Array(4);
  await readExactly(conn, mask);
  const payload = new Uint8Array(length);
  await readExactly(conn, payload);
  for (let i = 0; i < length; i++) payload[i] ^= mask[i & 3];
  return { opcode: head[0] & 0x0f, payload };
}

async function readExactly(conn: Deno.Conn, into: Uint8Array) {
  let at = 0;
  while (at < into.length) {
    const n = await conn.read(into.subarray(at));
    if (n === null) throw new Error("eof");
    at += n;
  }
}

Deno.test("fragmented messages are reassembled; pings are answered with the same payload", async () => {
  const enc = (s: string) => new TextEncoder().encode(s);
  let pong: { opcode: number; payload: Uint8Array } | null = null;
  const server = rawServer(async (conn) => {
    await conn.write(
      new Uint8Array([
        ...serverFrame(false, 0x1, enc('{"op":0,')),
        ...serverFrame(true, 0x9, enc("ping!")), // control frames may come between fragments
        ...serverFrame(false, 0x0, enc('"d":')),
        ...serverFrame(true, 0x0, enc("1}")),
      ]),
    );
    pong = await readFrame(conn);
    await conn.write(serverFrame(true, 0x8, new Uint8Array([0x0f, 0xa0]))); // 4000
    await readFrame(conn);
    conn.close();
  });
  const r = recorder();
  WsClient.connect(server.url, r);
  await r.waitFor(() => r.closed !== null, "close");
  await server.done;
  server.close();
  assert.equal(new TextDecoder().decode(r.messages[0].data), '{"op":0,"d":1}');
  assert.equal(r.messages[0].text, true);
  assert.equal(pong!.opcode, 0xa);
  assert.equal(new TextDecoder().decode(pong!.payload), "ping!");
  assert.equal(r.closed!.code, 4000);
});

Deno.test("a TCP drop without a close frame is reported as 1006", async () => {
  const server = rawServer(async (conn) => {
    await conn.write(serverFrame(true, 0x1, new TextEncoder().encode("hi")));
    conn.close();
  });
  const r = recorder();
  WsClient.connect(server.url, r);
  await r.waitFor(() => r.closed !== null, "close");
  await server.done;
  server.close();
  assert.equal(r.messages.length, 1);
  assert.equal(r.closed!.code, 1006);
  assert.match(r.closed!.reason, /without a close frame/);
});

Deno.test("handshake failures: an HTTP error, a wrong accept key, a refused connection", async () => {
  const http503 = rawServer(
    (conn) => Promise.resolve(conn.close()),
    () => "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
  );
  const r1 = recorder();
  WsClient.connect(http503.url, r1);
  await r1.waitFor(() => r1.closed !== null, "close");
  await http503.done;
  http503.close();
  assert.equal(r1.opened, false);
  assert.equal(r1.closed!.code, 1006);
  assert.match(r1.closed!.reason, /HTTP 503 instead of 101/);

  const badKey = rawServer(
    (conn) => Promise.resolve(conn.close()),
    () =>
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: nope\r\n\r\n",
  );
  const r2 = recorder();
  WsClient.connect(badKey.url, r2);
  await r2.waitFor(() => r2.closed !== null, "close");
  await badKey.done;
  badKey.close();
  assert.match(r2.closed!.reason, /wrong Sec-WebSocket-Accept/);

  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const r3 = recorder();
  WsClient.connect(`ws://127.0.0.1:${port}`, r3);
  await r3.waitFor(() => r3.closed !== null, "close");
  assert.equal(r3.closed!.code, 1006);
  assert.match(r3.closed!.reason, /cannot connect/);
});

Deno.test("a message over the limit closes with 1009", async () => {
  const { url, server } = denoServer((socket) => {
    socket.onopen = () => socket.send(new Uint8Array(5000));
  });
  const r = recorder();
  WsClient.connect(url, r, { maxMessageBytes: 4096 });
  await r.waitFor(() => r.closed !== null, "close");
  assert.equal(r.closed!.code, 1009);
  await server.shutdown();
});

Deno.test("backpressure: a slow handler does not make the client read ahead", async () => {
  const message = new Uint8Array(1000).fill(65);
  const { url, server } = denoServer((socket) => {
    socket.onopen = () => {
      for (let i = 0; i < 20_000; i++) socket.send(message); // 20 MB offered at once
    };
  });
  let handled = 0;
  let maxAhead = 0;
  const box: { client?: WsClient } = {};
  const r = recorder(() => {
    handled++;
    // Busy work: the handler is much slower than loopback TCP.
    const until = performance.now() + 0.02;
    while (performance.now() < until) { /* spin */ }
    maxAhead = Math.max(maxAhead, box.client!.bytesRead - handled * 1004);
  });
  const client = box.client = WsClient.connect(url, r);
  await r.waitFor(() => handled === 20_000, "all handled");
  // Read at most one read buffer (256 KB) beyond what was handled, never the 20 MB on offer.
  assert.ok(maxAhead <= 300 * 1024, `read ${maxAhead} bytes ahead of the handler`);
  await client.close(1000);
  await server.shutdown();
});

Deno.test("fairness: 16 flooded connections with a slow handler are all served, none starved", async () => {
  // The server runs in its own process, as Discord would: sharing our event loop would hide the problem.
  const server = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", new URL("../helpers/ws_flood_server.ts", import.meta.url).pathname],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = server.stdout.getReader();
  const port = Number(new TextDecoder().decode((await reader.read()).value).trim());
  const N = 16;
  const last = new Array(N).fill(0);
  const gaps = new Array(N).fill(0);
  const counts = new Array(N).fill(0);
  let measuring = false;
  const connect = (i: number) =>
    WsClient.connect(`ws://127.0.0.1:${port}`, {
      onOpen() {},
      onMessage() {
        const now = performance.now();
        if (measuring && last[i] > 0) gaps[i] = Math.max(gaps[i], now - last[i]);
        last[i] = now;
        counts[i]++;
        const until = now + 0.01; // 10 µs per message: slower than loopback delivers
        while (performance.now() < until) { /* work */ }
      },
      onClose() {},
    });
  // 12 connections flood first; 4 more connect while the process is saturated (as after a reconnect).
  const clients = Array.from({ length: 12 }, (_, i) => connect(i));
  try {
    await new Promise((resolve) => setTimeout(resolve, 500));
    for (let i = 12; i < N; i++) clients.push(connect(i));
    await new Promise((resolve) => setTimeout(resolve, 500));
    measuring = true;
    counts.fill(0);
    await new Promise((resolve) => setTimeout(resolve, 2000));
    measuring = false;
  } finally {
    for (const client of clients) client.abort();
    server.kill("SIGKILL");
    await reader.cancel();
    await server.status;
  }
  assert.ok(counts.every((c) => c > 100), `messages per connection: ${counts}`);
  assert.ok(
    Math.max(...gaps) < 500,
    `longest wait of a connection: ${Math.round(Math.max(...gaps))} ms (${gaps.map(Math.round)})`,
  );
});
