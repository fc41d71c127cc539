/**
 * The identity of an event: the same wherever and whenever it is delivered — across processes,
 * restarts, fresh stores and hosts — because it comes from what Discord gave it, not from a counter of
 * one store. A dispatch is `<shard>:<session id>:<seq>`: Discord numbers the events of a session, so a
 * repeat (a redelivery after a crash, the same seq sent again after a RESUME from an older checkpoint)
 * has the same identity. gatehouse's own events (`GATEHOUSE_*`, which Discord did not number) are
 * `gatehouse:<store producer>:<id>`.
 *
 * The identity is a scope and a position in it, the parts de-duplicating sinks compare: within one
 * scope, positions only grow in delivery order, so "already delivered" is "position not above the
 * highest delivered in this scope" (see the Redis sink).
 */

/**
 * Scopes already built, by session id (a session belongs to one shard) and by producer: every line names
 * one, and building it anew for every event and every sink would cost an allocation each time.
 */
const sessionScopes = new Map<string, string>();
const producerScopes = new Map<string, string>();

/** The scope: one per session, or one per store for events Discord did not number. */
export function eventScope(
  shard: number,
  session: string | null,
  seq: number | null,
  producer: string,
): string {
  if (session !== null && seq !== null && seq > 0) {
    let scope = sessionScopes.get(session);
    if (scope === undefined) {
      if (sessionScopes.size >= 4096) sessionScopes.clear();
      sessionScopes.set(session, scope = `${shard}:${session}`);
    }
    return scope;
  }
  let scope = producerScopes.get(producer);
  if (scope === undefined) producerScopes.set(producer, scope = `gatehouse:${producer}`);
  return scope;
}

/** The position within the scope: the seq, or the store's id. */
export function eventPosition(session: string | null, seq: number | null, id: number): number {
  return session !== null && seq !== null && seq > 0 ? seq : id;
}

/** `scope:position`: the `uid` of the NDJSON line, and the AMQP `message_id`. */
export function eventUid(scope: string, position: number): string {
  return `${scope}:${position}`;
}
