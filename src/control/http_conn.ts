/**
 * One connection of the HTTP server: its socket, the phase it is in, and the reads and writes on it
 * that end quietly when the client goes away or the server closes it (timeout, eviction, stop).
 */

/** After the response: how long, and how much, the rest of the client's bytes are read and dropped. */
const LINGER_MS = 1_000;
const LINGER_BYTES = 65_536;

/** Where a connection is: the cap closes `reading` and `lingering` ones, never `answering` ones. */
export type Phase = "reading" | "answering" | "lingering";

export class Connection {
  phase: Phase = "reading";
  closed = false;
  /** Resolves when the connection is closed, so that nothing waits on a connection that is gone. */
  readonly gone: Promise<void>;
  #resolveGone: () => void = () => {};

  constructor(readonly conn: Deno.TcpConn) {
    this.gone = new Promise((resolve) => (this.#resolveGone = resolve));
  }

  /** Closes the socket; a pending read or write on it rejects, which ends the connection's task. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.#resolveGone();
    try {
      this.conn.close();
    } catch {
      // Already closed.
    }
  }
}

/** The client went away, or the connection was closed under a read (timeout, eviction, stop). */
export class Gone extends Error {}

/** Reads at least one byte; throws Gone at end of stream or when the connection was closed. */
export async function read(c: Connection, into: Uint8Array): Promise<number> {
  let n: number | null;
  try {
    n = await c.conn.read(into);
  } catch (error) {
    if (c.closed || isConnectionError(error)) throw new Gone();
    throw error;
  }
  if (n === null) throw new Gone();
  return n;
}

export async function writeAll(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await conn.write(bytes.subarray(offset));
}

/**
 * Ends our side, then reads and drops what the client still sends (a body we refused, say) until it
 * closes, for at most LINGER_MS and LINGER_BYTES: closing with unread bytes would reset the
 * connection, and the client could lose the response.
 */
export async function linger(c: Connection, buffer: Uint8Array): Promise<void> {
  if (c.closed) return;
  try {
    await c.conn.closeWrite();
  } catch {
    return;
  }
  const timer = setTimeout(() => c.close(), LINGER_MS);
  try {
    let drained = 0;
    while (drained < LINGER_BYTES) {
      const n = await c.conn.read(buffer);
      if (n === null) break;
      drained += n;
    }
  } catch {
    // Closed by the timer or the client: done either way.
  } finally {
    clearTimeout(timer);
  }
}

export function closeQuietly(conn: Deno.TcpConn): void {
  try {
    conn.close();
  } catch {
    // Already closed.
  }
}

/** Errors a socket gives when the peer or a close of ours ended it: not worth a log line. */
export function isConnectionError(error: unknown): boolean {
  return error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted ||
    error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.ConnectionAborted ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.NotConnected ||
    error instanceof Deno.errors.UnexpectedEof;
}
