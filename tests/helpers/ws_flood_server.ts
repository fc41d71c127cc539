/**
 * A separate process that accepts WebSocket connections and floods each with 1000-byte binary frames
 * as fast as the client reads. Prints its port on the first stdout line. Used to test read fairness:
 * the server must not share an event loop with the client under test.
 */
import { createHash } from "node:crypto";

const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log(listener.addr.port);
const frames = new Uint8Array(64 * 1004);
for (let k = 0; k < 64; k++) frames.set([0x82, 126, 1000 >> 8, 1000 & 0xff], k * 1004);

for await (const conn of listener) {
  (async () => {
    try {
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
        `HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`,
      ));
      for (;;) {
        let at = 0;
        while (at < frames.length) at += await conn.write(frames.subarray(at));
      }
    } catch {
      // the client went away
    }
  })();
}
