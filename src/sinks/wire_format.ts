/**
 * How one event goes out in a wire format (`[broker] format`, names in src/config/wire_formats.ts):
 * the bytes of a Redis stream entry's `data` field, or of a RabbitMQ message body.
 *
 * - `gatehouse`: the event's NDJSON line (ndjson.ts).
 * - `spectacles`: the event's `d`, Discord's bytes untouched, wrapped as msgpack binary (bin 8/16/32:
 *   a header of 2, 3 or 5 bytes, written here; no copy through a library).
 * - `discordjs`: msgpack `{shardId, payload: d}`, as `RedisGateway.toPublishArgs` of @discordjs/brokers
 *   builds it — `d` is parsed and encoded by @msgpack/msgpack (the library @discordjs/brokers itself
 *   decodes with; chosen over msgpackr by bench/msgpack.ts: 17.8 against 22.3 µs per 1 KB event here,
 *   JSON.parse being 5.9 of it).
 *
 * The drop-in formats carry Discord's events only: gatehouse's own (`GATEHOUSE_*`) are not published.
 * An event a format cannot write (discordjs: a `d` nested deeper than msgpack's encoder goes) is left
 * out of that sink with a warning naming it; the journal and the other sinks keep it.
 */
import { Encoder } from "@msgpack/msgpack";
import { dataOf } from "../gateway/frame.ts";
import type { EventBatch } from "../journal/journal.ts";
import type { LineBuffer } from "./ndjson.ts";
import type { WireFormat } from "../config/wire_formats.ts";

const decoder = new TextDecoder();
const EMPTY_D = new TextEncoder().encode("null");

export interface EventWire {
  readonly format: WireFormat;
  /** Whether an event named `t` goes out in this format. */
  publishes(t: string): boolean;
  /**
   * Appends event `i`'s entry bytes to `out`, then one newline (the entries' separator there). Returns
   * null, or why the event cannot be written in this format (then nothing was appended).
   */
  append(out: LineBuffer, batch: EventBatch, i: number): string | null;
  /** RabbitMQ's content type of the bodies. */
  readonly contentType: string;
}

export function eventWire(format: WireFormat): EventWire {
  switch (format) {
    case "gatehouse":
      return {
        format,
        contentType: "application/json",
        publishes: () => true,
        append: (out, batch, i) => {
          out.appendEvent(batch, i);
          return null;
        },
      };
    case "spectacles":
      return {
        format,
        contentType: "application/msgpack",
        publishes: discordOnly,
        append: (out, batch, i) => {
          const d = dataOf(batch.payload(i)) ?? EMPTY_D;
          out.appendRaw(binHeader(d.length), d);
          return null;
        },
      };
    case "discordjs": {
      const msgpack = new Encoder();
      return {
        format,
        contentType: "application/msgpack",
        publishes: discordOnly,
        append: (out, batch, i) => {
          let bytes: Uint8Array;
          try {
            const d = dataOf(batch.payload(i));
            const payload = d === null ? null : JSON.parse(decoder.decode(d));
            bytes = msgpack.encodeSharedRef({ shardId: batch.shard(i), payload });
          } catch (error) {
            // Valid JSON that msgpack cannot hold as it is (nested past the encoder's depth of 100).
            return `msgpack cannot encode its d: ${(error as Error).message}`;
          }
          out.appendRaw(null, bytes);
          return null;
        },
      };
    }
  }
}

function discordOnly(t: string): boolean {
  return !t.startsWith("GATEHOUSE_");
}

/** The msgpack bin header for `n` bytes. */
export function binHeader(n: number): Uint8Array {
  if (n < 0x100) return new Uint8Array([0xc4, n]);
  if (n < 0x10000) return new Uint8Array([0xc5, n >>> 8, n & 0xff]);
  return new Uint8Array([0xc6, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
}
