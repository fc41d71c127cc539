/**
 * The delivery check shared by the integration tests: compare what the fake Discord sent with the
 * NDJSON lines gatehouse wrote.
 */
import assert from "node:assert/strict";
import type { FakeDiscord } from "../fake_discord/server.ts";
import type { Line } from "./gatehouse.ts";

export interface DeliveryReport {
  /** Events gatehouse wrote, per fake session id. */
  perSession: Map<string, number[]>;
  lines: number;
}

/** Groups lines by session: on each shard, a READY line starts the session its `d.session_id` names. */
export function linesBySession(lines: Line[]): Map<string, number[]> {
  const current = new Map<number, string>();
  const perSession = new Map<string, number[]>();
  for (const line of lines) {
    if (line.t.startsWith("GATEHOUSE_")) continue;
    if (line.t === "READY") current.set(line.shard, line.d.session_id);
    const session = current.get(line.shard);
    assert.ok(session, `line ${line.id} (${line.t}) on shard ${line.shard} arrived before any READY`);
    let list = perSession.get(session);
    if (!list) perSession.set(session, list = []);
    list.push(line.s!);
  }
  return perSession;
}

/** True when every event of every live session has been written. */
export function caughtUp(fake: FakeDiscord, lines: Line[]): boolean {
  const perSession = linesBySession(lines);
  return fake.sessions().every((session) =>
    session.invalidated || session.expired || (perSession.get(session.id)?.at(-1) ?? 0) === session.lastSeq
  );
}

/**
 * `caughtUp` for long runs: each call reads only the lines added to each array since the previous
 * call, so waiting on hundreds of thousands of lines does not cost the machine the test measures.
 */
export class CatchUp {
  readonly #current = new Map<number, string>();
  readonly #last = new Map<string, number>();
  readonly #read = new Map<Line[], number>();

  check(fake: FakeDiscord, ...arrays: Line[][]): boolean {
    for (const lines of arrays) {
      let i = this.#read.get(lines) ?? 0;
      for (; i < lines.length; i++) {
        const line = lines[i];
        if (line.t.startsWith("GATEHOUSE_")) continue;
        if (line.t === "READY") this.#current.set(line.shard, line.d.session_id);
        const session = this.#current.get(line.shard);
        if (session !== undefined) this.#last.set(session, line.s!);
      }
      this.#read.set(lines, i);
    }
    return fake.sessions().every((session) =>
      session.invalidated || session.expired || (this.#last.get(session.id) ?? 0) === session.lastSeq
    );
  }
}

/**
 * Every event the fake sent on a session that was not invalidated appears exactly once, in seq order;
 * events of invalidated sessions appear at most once, in order; ids strictly increase.
 */
export function assertExactlyOnce(fake: FakeDiscord, lines: Line[]): DeliveryReport {
  for (let i = 1; i < lines.length; i++) {
    assert.ok(lines[i].id > lines[i - 1].id, `ids must increase: ${lines[i - 1].id} then ${lines[i].id}`);
  }
  const perSession = linesBySession(lines);
  const known = new Set(fake.sessions().map((s) => s.id));
  for (const id of perSession.keys()) {
    assert.ok(known.has(id), `lines for a session the fake never made: ${id}`);
  }
  for (const session of fake.sessions()) {
    const got = perSession.get(session.id) ?? [];
    for (let i = 1; i < got.length; i++) {
      assert.ok(
        got[i] > got[i - 1],
        `session ${session.id} (shard ${session.shard}): seq ${got[i]} after ${got[i - 1]}`,
      );
    }
    if (!session.invalidated && !session.expired) {
      const missing = session.lastSeq - got.length;
      assert.equal(
        got.length,
        session.lastSeq,
        `session ${session.id} (shard ${session.shard}): ${missing} of ${session.lastSeq} events missing`,
      );
      assert.equal(got.at(-1) ?? 0, session.lastSeq);
    } else {
      assert.ok(got.every((s) => s >= 1 && s <= session.lastSeq));
    }
  }
  return { perSession, lines: lines.length };
}
