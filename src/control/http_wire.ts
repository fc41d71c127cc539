/**
 * HTTP/1.1 on the wire for the control listener's server: one request read off a connection (request
 * line, headers, a `Content-Length` body, within the server's limits) and one response written whole,
 * always with `Connection: close`.
 */
import { type Connection, read, writeAll } from "./http_conn.ts";

const CR = 13;
const LF = 10;
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const REQUEST_LINE = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+) (\S+) HTTP\/(\d)\.(\d)$/;
const REASONS: Record<number, string> = {
  100: "Continue",
  200: "OK",
  202: "Accepted",
  204: "No Content",
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  411: "Length Required",
  413: "Content Too Large",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

/** What a request may be, and the authority (host:port) its URL gets. */
export interface RequestLimits {
  maxHeaderBytes: number;
  maxBodyBytes: number;
  authority: string;
}

/** Reads one request, or says which error response it gets instead. */
export async function readRequest(
  c: Connection,
  buffer: Uint8Array,
  limits: RequestLimits,
): Promise<{ request: Request } | { response: Response }> {
  let filled = 0;
  let end = -1;
  while (end < 0) {
    if (filled === buffer.length) {
      return {
        response: errorResponse(
          431,
          `the request line and headers are more than ${limits.maxHeaderBytes} bytes`,
        ),
      };
    }
    const n = await read(c, buffer.subarray(filled));
    end = headEnd(buffer, filled, filled + n);
    filled += n;
  }
  const head = parseHead(buffer.subarray(0, end));
  if ("status" in head) return { response: errorResponse(head.status, head.message) };
  if (head.transferEncoding) {
    return {
      response: errorResponse(
        411,
        "send the body with Content-Length; Transfer-Encoding (chunked) is not accepted",
      ),
    };
  }
  const length = head.contentLength;
  if (length > limits.maxBodyBytes) {
    return {
      response: errorResponse(
        413,
        `the body is ${length} bytes; at most ${limits.maxBodyBytes} are accepted`,
      ),
    };
  }
  const body = new Uint8Array(length);
  let got = Math.min(length, filled - end);
  body.set(buffer.subarray(end, end + got));
  if (got < length && head.minor >= 1 && head.headers.get("expect")?.toLowerCase() === "100-continue") {
    await writeAll(c.conn, latin1("HTTP/1.1 100 Continue\r\n\r\n"));
  }
  while (got < length) got += await read(c, body.subarray(got));

  const base = `http://${limits.authority}`;
  let url: URL;
  try {
    url = head.target.startsWith("/") ? new URL(base + head.target) : absolute(head.target, base);
  } catch {
    return { response: errorResponse(400, "the request target is not a path (/…) or an http:// URL") };
  }
  try {
    const hasBody = head.method !== "GET" && head.method !== "HEAD" && length > 0;
    return {
      request: new Request(url, {
        method: head.method,
        headers: head.headers,
        body: hasBody ? body : null,
      }),
    };
  } catch {
    return {
      response: errorResponse(405, `method ${head.method} is not served here (GET, HEAD, POST)`, {
        allow: "GET, HEAD, POST",
      }),
    };
  }
}

/** Writes the whole response, or closes the connection when the client does not take it in time. */
export async function writeResponse(
  c: Connection,
  response: Response,
  headOnly: boolean,
  timeoutMs: number,
): Promise<void> {
  const body = await Promise.race([response.arrayBuffer(), c.gone.then(() => null)]);
  if (body === null) return;
  const content = new Uint8Array(body);
  const status = response.status;
  const bodyless = status < 200 || status === 204 || status === 304;
  let head = `HTTP/1.1 ${status} ${response.statusText || REASONS[status] || ""}\r\n`;
  for (const [name, value] of response.headers) {
    if (!["content-length", "transfer-encoding", "connection", "keep-alive", "date"].includes(name)) {
      head += `${name}: ${value}\r\n`;
    }
  }
  head += `date: ${new Date().toUTCString()}\r\n`;
  if (!bodyless) head += `content-length: ${content.length}\r\n`;
  head += "connection: close\r\n\r\n";
  const headBytes = latin1(head);
  const sent = headOnly || bodyless ? new Uint8Array(0) : content;
  // One buffer, one write: no Nagle delay between the head and the body.
  const bytes = new Uint8Array(headBytes.length + sent.length);
  bytes.set(headBytes);
  bytes.set(sent, headBytes.length);
  if (c.closed) return;
  const timer = setTimeout(() => c.close(), timeoutMs);
  try {
    await writeAll(c.conn, bytes);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The offset just past the empty line ending the head, looking at the bytes in [from, to) (earlier
 * bytes were looked at before), or -1. A bare LF ends a line too.
 */
function headEnd(buffer: Uint8Array, from: number, to: number): number {
  for (let i = Math.max(from, 1); i < to; i++) {
    if (buffer[i] !== LF) continue;
    if (buffer[i - 1] === LF) return i + 1;
    if (buffer[i - 1] === CR && i >= 2 && buffer[i - 2] === LF) return i + 1;
  }
  return -1;
}

interface Head {
  method: string;
  target: string;
  minor: number;
  headers: Headers;
  contentLength: number;
  transferEncoding: boolean;
}

/** The request line and headers, or the error status and why. */
function parseHead(bytes: Uint8Array): Head | { status: number; message: string } {
  let text = "";
  for (let i = 0; i < bytes.length; i++) text += String.fromCharCode(bytes[i]);
  const lines = text.split(/\r?\n/);
  while (lines.length > 0 && lines[0] === "") lines.shift();
  const match = REQUEST_LINE.exec(lines[0] ?? "");
  if (!match) return { status: 400, message: "the request line is not METHOD /path HTTP/1.1" };
  const [, method, target, major, minor] = match;
  if (major !== "1") return { status: 505, message: `HTTP/${major}.${minor} is not served; use HTTP/1.1` };
  const headers = new Headers();
  const lengths: string[] = [];
  for (const line of lines.slice(1)) {
    if (line === "") break;
    const colon = line.indexOf(":");
    const name = colon > 0 ? line.slice(0, colon) : "";
    if (!TOKEN.test(name)) {
      return {
        status: 400,
        message: `a header line is not "name: value": ${JSON.stringify(line.slice(0, 80))}`,
      };
    }
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "");
    try {
      headers.append(name, value);
    } catch {
      return { status: 400, message: `header ${name} has a character not allowed in a header value` };
    }
    if (name.toLowerCase() === "content-length") lengths.push(...value.split(",").map((v) => v.trim()));
  }
  let contentLength = 0;
  if (lengths.length > 0) {
    if (!lengths.every((v) => /^\d{1,15}$/.test(v) && v === lengths[0])) {
      return {
        status: 400,
        message: `Content-Length ${JSON.stringify(lengths.join(", "))} is not one number`,
      };
    }
    contentLength = Number(lengths[0]);
  }
  return {
    method,
    target,
    minor: Number(minor),
    headers,
    contentLength,
    transferEncoding: headers.has("transfer-encoding"),
  };
}

/** An absolute-form target (`GET http://host/path`): its path and query on our own base. */
function absolute(target: string, base: string): URL {
  const parsed = new URL(target);
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") throw new Error("not http");
  return new URL(base + parsed.pathname + parsed.search);
}

export function errorResponse(
  status: number,
  message: string,
  headers: Record<string, string> = {},
): Response {
  return new Response(`${JSON.stringify({ error: message })}\n`, {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

export function latin1(text: string): Uint8Array {
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i) & 0xff;
  return bytes;
}
