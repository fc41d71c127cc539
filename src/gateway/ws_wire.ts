/**
 * The bytes of a WebSocket connection that are not the read loop: the HTTP upgrade handshake (RFC 6455
 * §4) and the masked frames a client writes (§5.3).
 */
import { createHash } from "node:crypto";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A handshake or protocol failure, reported through onClose(1006 / 1002, reason). */
export class WsError extends Error {
  override name = "WsError";
}

/**
 * Sends the upgrade request on `conn` and checks the answer; returns the bytes read past the response
 * headers (the first frames, if the server sent them at once).
 */
export async function handshake(
  conn: Deno.Conn,
  url: URL,
  headers: Record<string, string>,
): Promise<Uint8Array> {
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  const target = `${url.pathname || "/"}${url.search}`;
  let request = `GET ${target} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\n` +
    `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n`;
  for (const [name, value] of Object.entries(headers)) request += `${name}: ${value}\r\n`;
  request += "\r\n";
  const bytes = encoder.encode(request);
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));

  let buffer = new Uint8Array(4096);
  let length = 0;
  for (;;) {
    if (length === buffer.length) {
      if (buffer.length >= 64 * 1024) {
        throw new WsError(`handshake with ${url.host}: response headers too large`);
      }
      const bigger = new Uint8Array(buffer.length * 2);
      bigger.set(buffer);
      buffer = bigger;
    }
    const n = await conn.read(buffer.subarray(length));
    if (n === null) {
      throw new WsError(`handshake with ${url.host}: connection closed before the response`);
    }
    length += n;
    const end = headerEnd(buffer, length);
    if (end < 0) continue;
    const head = decoder.decode(buffer.subarray(0, end));
    const [statusLine, ...lines] = head.split("\r\n");
    const status = Number(statusLine.split(" ")[1]);
    if (status !== 101) {
      throw new WsError(`handshake with ${url.host}: HTTP ${status || statusLine} instead of 101`);
    }
    const fields = new Map<string, string>();
    for (const line of lines) {
      const colon = line.indexOf(":");
      if (colon > 0) fields.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const expected = createHash("sha1").update(key + GUID).digest("base64");
    if (fields.get("sec-websocket-accept") !== expected) {
      throw new WsError(`handshake with ${url.host}: wrong Sec-WebSocket-Accept`);
    }
    if (fields.get("upgrade")?.toLowerCase() !== "websocket") {
      throw new WsError(`handshake with ${url.host}: no Upgrade: websocket`);
    }
    return buffer.slice(end + 4, length);
  }
}

/**
 * A connect failure in words an operator can act on. A refused certificate is this machine's problem
 * (missing CA certificates, a proxy that intercepts TLS), not Discord's, and retrying will not fix it.
 */
export function explainConnectError(host: string, message: string): string {
  if (/certificate|UnknownIssuer|CaUsedAsEndEntity|BadSignature|NotValidForName|Expired/i.test(message)) {
    return `the TLS certificate of ${host} is not trusted on this machine (${message}): check its CA ` +
      "certificates, or a proxy that intercepts TLS";
  }
  return message.startsWith("handshake with") ? message : `cannot connect to ${host}: ${message}`;
}

/** A masked client frame. */
export function frame(opcode: number, payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const header = n < 126 ? 2 : n < 65536 ? 4 : 10;
  const out = new Uint8Array(header + 4 + n);
  out[0] = 0x80 | opcode;
  if (n < 126) {
    out[1] = 0x80 | n;
  } else if (n < 65536) {
    out[1] = 0x80 | 126;
    out[2] = n >> 8;
    out[3] = n & 0xff;
  } else {
    out[1] = 0x80 | 127;
    new DataView(out.buffer).setBigUint64(2, BigInt(n));
  }
  const mask = crypto.getRandomValues(out.subarray(header, header + 4));
  for (let i = 0; i < n; i++) out[header + 4 + i] = payload[i] ^ mask[i & 3];
  return out;
}

function headerEnd(b: Uint8Array, length: number): number {
  for (let i = 0; i + 3 < length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i;
  }
  return -1;
}

/** A message that arrives in several frames, while it is put together (copies: frames are views). */
export class Fragments {
  #parts: Uint8Array[] = [];
  #length = 0;
  /** Whether the message is text (its first frame's opcode says). */
  text = false;

  /** A message has begun and not ended. */
  get open(): boolean {
    return this.#parts.length > 0;
  }

  /** Bytes so far. */
  get length(): number {
    return this.#length;
  }

  begin(payload: Uint8Array, text: boolean): void {
    this.#parts = [payload.slice()];
    this.#length = payload.length;
    this.text = text;
  }

  add(payload: Uint8Array): void {
    this.#parts.push(payload.slice());
    this.#length += payload.length;
  }

  /** The whole message; the next one starts afresh. */
  take(): Uint8Array {
    const whole = new Uint8Array(this.#length);
    let at = 0;
    for (const part of this.#parts) {
      whole.set(part, at);
      at += part.length;
    }
    this.clear();
    return whole;
  }

  clear(): void {
    this.#parts = [];
    this.#length = 0;
  }
}
