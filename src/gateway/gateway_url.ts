/** Gateway URLs: which ones a shard may connect to, and the query string it connects with. */
import type { Compression } from "./protocol.ts";

/** Whether `text` is a URL a shard can connect to: ws:// or wss:// with a host. */
export function isGatewayUrl(text: string): boolean {
  if (text.length === 0 || text.length > 2048) return false;
  try {
    const url = new URL(text);
    return (url.protocol === "ws:" || url.protocol === "wss:") && url.hostname.length > 0;
  } catch {
    return false;
  }
}

/** `<base>/?v=10&encoding=json[&compress=…]`, keeping any path the base URL has. */
export function gatewayConnectUrl(base: string, version: number, compression: Compression): string {
  const url = new URL(base);
  if (url.pathname === "") url.pathname = "/";
  url.searchParams.set("v", String(version));
  url.searchParams.set("encoding", "json");
  if (compression !== "none") url.searchParams.set("compress", compression);
  else url.searchParams.delete("compress");
  return url.toString();
}
