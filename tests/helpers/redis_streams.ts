/** Reading back what gatehouse processes wrote into Redis Streams, for the exactly-once checks. */
import type { Redis } from "ioredis";
import type { Line } from "./gatehouse.ts";

/** Every entry of every event stream under `prefix`, parsed (command streams left out). */
export async function readStreams(client: Redis, prefix: string): Promise<Line[]> {
  const lines: Line[] = [];
  for (const key of await client.keys(`${prefix}:*`)) {
    if (key.includes("commands") || (await client.type(key)) !== "stream") continue;
    for (const [, fields] of await client.xrange(key, "-", "+")) lines.push(JSON.parse(fields[1]));
  }
  return lines;
}

/** A Discord event's uid, `<shard>:<session id>:<seq>`, taken apart; null for gatehouse's own events. */
export function uidParts(line: Line): { shard: number; session: string; seq: number } | null {
  const match = /^(\d+):([^:]+):(\d+)$/.exec(line.uid);
  if (!match || line.t.startsWith("GATEHOUSE_")) return null;
  return { shard: Number(match[1]), session: match[2], seq: Number(match[3]) };
}

/** Per fake session: the seqs found in the streams (from each line's uid). */
export function seqsBySession(
  lines: Line[],
  check?: (line: Line, uid: NonNullable<ReturnType<typeof uidParts>>) => void,
) {
  const bySession = new Map<string, number[]>();
  for (const line of lines) {
    const uid = uidParts(line);
    if (uid === null) continue;
    check?.(line, uid);
    let seqs = bySession.get(uid.session);
    if (!seqs) bySession.set(uid.session, seqs = []);
    seqs.push(line.s!);
  }
  return bySession;
}
