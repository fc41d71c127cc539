/**
 * What IDENTIFY carries besides intents (docs/protocol.md §6, §9): transport compression and presence. A
 * leaf module, so configuration can check them without importing the gateway.
 */

/** Transport compression modes (§6). */
export type Compression = "zlib-stream" | "zstd-stream" | "none";
export const COMPRESSIONS: readonly Compression[] = ["zlib-stream", "zstd-stream", "none"];

/** Presence object sent in IDENTIFY and op 3 (§9). */
export interface Presence {
  since: number | null;
  activities: Array<{ name: string; type: number; url?: string | null; state?: string | null }>;
  status: "online" | "dnd" | "idle" | "invisible" | "offline";
  afk: boolean;
}
