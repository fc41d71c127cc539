/**
 * `replay --serve` on a hand-made recording: which recorded READY a bot's READY takes its guilds from
 * (re-identifies and --from in the middle of a recording), and shard layouts the recording cannot serve.
 * Black-box over a real WebSocket; the server runs in-process on a store written here.
 */
import assert from "node:assert/strict";
import { Store } from "../../src/journal/store.ts";
import { type Selection } from "../../src/replay/select.ts";
import { serveReplay } from "../../src/replay/serve.ts";
import { logger } from "../../src/util/log.ts";

const encoder = new TextEncoder();

interface Recorded {
  shard: number;
  t: string;
  d: unknown;
}

/** Two shards recorded; each re-identified once (id 5 and 7), shard 0 having joined guild 13 by then. */
const RECORDING: Recorded[] = [
  { shard: 0, t: "READY", d: ready(0, ["10", "11"]) }, // 1
  { shard: 1, t: "READY", d: ready(1, ["20"]) }, // 2
  { shard: 0, t: "GUILD_CREATE", d: { id: "10" } }, // 3
  { shard: 1, t: "MESSAGE_CREATE", d: { n: 4 } }, // 4
  { shard: 0, t: "READY", d: ready(0, ["10", "11", "13"]) }, // 5
  { shard: 0, t: "MESSAGE_CREATE", d: { n: 6 } }, // 6
  { shard: 1, t: "READY", d: ready(1, ["20", "21"]) }, // 7
  { shard: 1, t: "MESSAGE_CREATE", d: { n: 8 } }, // 8
];

function ready(shard: number, guilds: string[]) {
  return {
    v: 10,
    user: { id: "4242", username: "recorded-bot", discriminator: "0", bot: true, avatar: null },
    guilds: guilds.map((id) => ({ unavailable: true, id })),
    session_id: `recorded-${shard}`,
    shard: [shard, 2],
  };
}

async function withRecording(fn: (store: Store) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-serve-" });
  const path = `${dir}/gatehouse.db`;
  const writer = Store.open(path);
  writer.transaction("recording", () => {
    RECORDING.forEach((e, i) => {
      const frame = JSON.stringify({ t: e.t, s: i + 1, op: 0, d: e.d });
      writer.events.insert(
        i + 1,
        e.shard,
        `recorded-${e.shard}`,
        i + 1,
        e.t,
        1000 + i,
        encoder.encode(frame),
      );
    });
  });
  writer.close();
  const store = Store.open(path, { readOnly: true });
  try {
    await fn(store);
  } finally {
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
}

type Outcome = { ready: { guilds: unknown; shard: unknown; user: unknown } } | {
  closed: number;
  reason: string;
};

/** Serves `selection`, identifies as `shard` and returns the READY received or how the socket closed. */
async function identify(
  store: Store,
  selection: Partial<Selection>,
  shard: [number, number],
): Promise<Outcome> {
  const stop = new AbortController();
  const served = serveReplay({
    store,
    selection: { fromId: 1, toId: Infinity, shard: null, events: null, ...selection },
    hostname: "127.0.0.1",
    port: 0,
    speed: 0,
    follow: false,
    logger: logger("replay"),
    signal: stop.signal,
  });
  try {
    const socket = new WebSocket(`${served.url}/?v=10&encoding=json`);
    return await new Promise<Outcome>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no READY and no close within 5 s")), 5000);
      socket.onmessage = (event) => {
        const message = JSON.parse(event.data);
        if (message.op === 10) {
          socket.send(JSON.stringify({ op: 2, d: { token: "x", intents: 1, properties: {}, shard } }));
        } else if (message.t === "READY") {
          clearTimeout(timer);
          socket.onclose = () => resolve({ ready: message.d });
          socket.close();
        }
      };
      socket.onclose = (event) => {
        clearTimeout(timer);
        resolve({ closed: event.code, reason: event.reason });
      };
      socket.onerror = () => {};
    });
  } finally {
    stop.abort();
    await served.finished;
  }
}

const unavailable = (...ids: string[]) => ids.map((id) => ({ id, unavailable: true }));

Deno.test("replay --serve: READY lists the guilds of the READY recorded at or before the selection's start", async () => {
  await withRecording(async (store) => {
    // From the start: shard 0's first READY (the rest of READY as the server makes it).
    const first = await identify(store, {}, [0, 2]);
    assert.ok("ready" in first, JSON.stringify(first));
    assert.deepEqual(first.ready.guilds, unavailable("10", "11"));
    assert.deepEqual(first.ready.shard, [0, 2]);
    assert.deepEqual(first.ready.user, ready(0, []).user);
    const guilds = async (selection: Partial<Selection>, shard: [number, number]) => {
      const outcome = await identify(store, selection, shard);
      assert.ok("ready" in outcome, JSON.stringify(outcome));
      return outcome.ready.guilds;
    };
    // Shard 1 has no READY at or before id 1: its first one inside the selection.
    assert.deepEqual(await guilds({}, [1, 2]), unavailable("20"));
    // After the re-identify of shard 0 (id 5), before that of shard 1 (id 7).
    assert.deepEqual(await guilds({ fromId: 6 }, [0, 2]), unavailable("10", "11", "13"));
    assert.deepEqual(await guilds({ fromId: 6 }, [1, 2]), unavailable("20"));
    assert.deepEqual(await guilds({ fromId: 7 }, [1, 2]), unavailable("20", "21"));
    // A bot with one shard gets every recorded shard's guilds, once each.
    assert.deepEqual(await guilds({}, [0, 1]), unavailable("10", "11", "20"));
    assert.deepEqual(await guilds({ fromId: 8 }, [0, 1]), unavailable("10", "11", "13", "20", "21"));
    // No READY of shard 1 at or before id 1, nor inside 1..1: no guilds for it.
    assert.deepEqual(await guilds({ toId: 1 }, [1, 2]), []);
    // --shard 1 to a one-shard bot: only shard 1's events come, so only its guilds are listed.
    assert.deepEqual(await guilds({ shard: 1, fromId: 8 }, [0, 1]), unavailable("20", "21"));
  });
});

Deno.test("replay --serve closes with 4010 (Invalid shard) a bot whose shard layout the recording cannot serve", async () => {
  await withRecording(async (store) => {
    for (const shard of [[0, 3], [2, 2], [-1, 2]] as Array<[number, number]>) {
      const outcome = await identify(store, {}, shard);
      assert.ok("closed" in outcome, `shard ${JSON.stringify(shard)}: ${JSON.stringify(outcome)}`);
      assert.equal(outcome.closed, 4010);
      assert.match(outcome.reason, /Invalid shard/);
    }
  });
});

/** Sockets `connect` opened, closed at the end of each test even when it fails (or the server waits for them). */
const opened: WebSocket[] = [];

/** A raw gateway client: every message it gets, and a way to send. */
function connect(url: string) {
  const socket = new WebSocket(`${url}/?v=10&encoding=json`);
  opened.push(socket);
  const messages: Array<{ op: number; t: string | null; s: number | null; d: unknown }> = [];
  const closed = new Promise<number>((resolve) => (socket.onclose = (event) => resolve(event.code)));
  socket.onmessage = (event) => messages.push(JSON.parse(event.data));
  socket.onerror = () => {};
  return {
    messages,
    closed,
    send: (payload: unknown) => socket.send(JSON.stringify(payload)),
    close: (code = 4000) => socket.close(code),
    async until(predicate: () => boolean, what: string) {
      const deadline = Date.now() + 5000;
      while (!predicate()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    },
  };
}

Deno.test("replay --serve: RESUME continues after the confirmed event; a seq older than what it keeps is refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-serve-" });
  const path = `${dir}/gatehouse.db`;
  const total = 25_000;
  const writer = Store.open(path);
  writer.transaction("recording", () => {
    writer.events.insert(
      1,
      0,
      "r",
      1,
      "READY",
      0,
      encoder.encode(JSON.stringify({ t: "READY", d: ready(0, []) })),
    );
    for (let id = 2; id <= total; id++) {
      writer.events.insert(
        id,
        0,
        "r",
        id,
        "TYPING_START",
        0,
        encoder.encode(`{"t":"TYPING_START","d":{"n":${id}}}`),
      );
    }
  });
  writer.close();
  const store = Store.open(path, { readOnly: true });
  const stop = new AbortController();
  const served = serveReplay({
    store,
    selection: { fromId: 1, toId: Infinity, shard: null, events: null },
    hostname: "127.0.0.1",
    port: 0,
    speed: 0,
    follow: false,
    logger: logger("replay"),
    signal: stop.signal,
  });
  try {
    const first = connect(served.url);
    await first.until(() => first.messages.length > 0, "HELLO");
    first.send({ op: 2, d: { token: "x", intents: 1, properties: {}, shard: [0, 1] } });
    // READY is seq 1; TYPING_START n has seq n (the recording's ids 2..total).
    await first.until(() => first.messages.at(-1)?.s === total, "every event");
    const sessionId = (first.messages.find((m) => m.t === "READY")!.d as { session_id: string }).session_id;
    first.close();
    await first.closed;

    const resumed = connect(served.url);
    await resumed.until(() => resumed.messages.length > 0, "HELLO");
    resumed.send({ op: 6, d: { token: "x", session_id: sessionId, seq: total - 100 } });
    // RESUMED (which takes a seq, as Discord's does), then the events after the confirmed one, in order.
    await resumed.until(
      () => (resumed.messages.at(-1)?.d as { n?: number })?.n === total,
      "the events after seq",
    );
    const after = resumed.messages.slice(1);
    assert.deepEqual([after[0].t, after[0].s], ["RESUMED", total - 99]);
    assert.deepEqual(
      after.slice(1).map((m) => [m.s, (m.d as { n: number }).n]),
      Array.from({ length: 100 }, (_, i) => [total - 98 + i, total - 99 + i]),
    );
    resumed.close();
    await resumed.closed;

    // Seq 5's successors are no longer kept: INVALID_SESSION (not resumable), as Discord answers.
    const late = connect(served.url);
    await late.until(() => late.messages.length > 0, "HELLO");
    late.send({ op: 6, d: { token: "x", session_id: sessionId, seq: 5 } });
    await late.until(() => late.messages.length > 1, "an answer to RESUME");
    await new Promise((resolve) => setTimeout(resolve, 100));
    // (A bounded slice: a diff of thousands of wrongly sent events would take assert minutes to build.)
    assert.deepEqual(late.messages.slice(1, 3), [{ t: null, s: null, op: 9, d: false }]);
    late.close();
    await late.closed;
  } finally {
    for (const socket of opened.splice(0)) {
      if (socket.readyState === WebSocket.CLOSED) continue;
      const gone = new Promise((resolve) => socket.addEventListener("close", resolve));
      socket.close();
      await gone;
    }
    stop.abort();
    await served.finished;
    store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("replay --serve refuses encoding=etf (recorded payloads are JSON) with a 400 that says so", async () => {
  await withRecording(async (store) => {
    const stop = new AbortController();
    const served = serveReplay({
      store,
      selection: { fromId: 1, toId: Infinity, shard: null, events: null },
      hostname: "127.0.0.1",
      port: 0,
      speed: 0,
      follow: false,
      logger: logger("replay"),
      signal: stop.signal,
    });
    try {
      const response = await fetch(`http://127.0.0.1:${served.port}/?v=10&encoding=etf`, {
        headers: {
          upgrade: "websocket",
          connection: "Upgrade",
          "sec-websocket-version": "13",
          "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
      });
      assert.equal(response.status, 400);
      assert.match((await response.json()).message, /only encoding=json, not encoding=etf/);
      // encoding=json (and none given) still connect.
      for (const query of ["?v=10&encoding=json", "?v=10"]) {
        const socket = new WebSocket(`${served.url}/${query}`);
        const first = await new Promise<{ op: number }>((resolve, reject) => {
          socket.onmessage = (event) => resolve(JSON.parse(event.data));
          socket.onerror = () => reject(new Error(`${query}: no HELLO`));
        });
        assert.equal(first.op, 10);
        const gone = new Promise((resolve) => (socket.onclose = resolve));
        socket.close();
        await gone;
      }
    } finally {
      stop.abort();
      await served.finished;
    }
  });
});
