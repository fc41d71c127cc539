/**
 * Commands in a drop-in wire format (`[broker] format`, src/config/wire_formats.ts), read as gatehouse's
 * own JSON command text (`{op, d, shard?}`, validate.ts), which every source then checks and routes.
 *
 * - `spectacles`: `{guild_id, packet: {op, d}}` (spec-tacles/gateway's SEND), msgpack — a map, or
 *   binary or a string holding the same object as JSON. Routed by `guild_id` as Spectacles does: a
 *   guild command by its `d.guild_id` (the same guild), a presence (op 3, no guild in `d`) to the shard of
 *   `guild_id`.
 * - `discordjs`: `{payload: {op, d}, shardId}` (@discordjs/brokers' RedisGateway `send`), msgpack.
 *
 * What cannot be read is refused with a reason that names what is wrong; it is never sent.
 */
import { Decoder, ExtData } from "@msgpack/msgpack";
import { shardForGuild } from "../gateway/protocol.ts";
import type { WireFormat } from "../config/wire_formats.ts";

export type WireCommand = { ok: true; text: string } | { ok: false; reason: string; head: string };

const decoder = new TextDecoder();
/** A msgpack binary inside a command is text: bytes that are not UTF-8 are refused, not replaced. */
const utf8 = new TextDecoder("utf-8", { fatal: true });
/** int64/uint64 as bigint: a snowflake sent as a number keeps every digit. */
const msgpack = new Decoder({ useBigInt64: true });
const HEAD_BYTES = 120;
/**
 * Deepest nesting a command is read with (Discord's commands nest 4 deep; @msgpack/msgpack decodes any
 * depth without recursing, but reading it as JSON recurses).
 */
export const MAX_COMMAND_DEPTH = 64;

/** What makes a decoded value unfit to be sent as JSON (plain() throws it; wireCommand refuses). */
class Unfit extends Error {}

/** One command's bytes (a `data` field, a message body) as command text, for `shardCount` shards. */
export function wireCommand(format: WireFormat, bytes: Uint8Array, shardCount: number): WireCommand {
  if (format === "gatehouse") return { ok: true, text: decoder.decode(bytes) };
  try {
    return read(format, bytes, shardCount);
  } catch (error) {
    // Unfit: what plain() found; anything else is a bug here, still refused rather than thrown at the
    // source (a throw there would leave the entry pending, and the ones read with it, for ever).
    const reason = (error as Error).message;
    return refuse(error instanceof Unfit ? reason : `cannot be read: ${reason}`, bytes);
  }
}

function read(format: Exclude<WireFormat, "gatehouse">, bytes: Uint8Array, shardCount: number): WireCommand {
  let value: unknown;
  try {
    value = msgpack.decode(bytes);
  } catch (error) {
    return refuse(`not msgpack: ${(error as Error).message}`, bytes);
  }
  // Spectacles' publishers may wrap JSON text as binary or a string.
  if (value instanceof Uint8Array || typeof value === "string") {
    const text = typeof value === "string" ? value : decoder.decode(value);
    try {
      value = JSON.parse(text);
    } catch (error) {
      return refuse(
        `msgpack ${typeof value === "string" ? "string" : "binary"} that is not JSON: ` +
          (error as Error).message,
        bytes,
      );
    }
  }
  if (!isRecord(value)) return refuse(`a ${format} command is a map, not ${kindOf(value)}`, bytes);
  return format === "spectacles" ? spectacles(value, bytes, shardCount) : discordjs(value, bytes);
}

function spectacles(value: Record<string, unknown>, bytes: Uint8Array, shardCount: number): WireCommand {
  const packet = value.packet;
  if (!isRecord(packet)) return refuse("a SEND command needs packet: {op, d}", bytes);
  const guild = snowflake(value.guild_id);
  if (guild === null) return refuse("a SEND command needs guild_id, a snowflake", bytes);
  const d = plain(packet.d);
  const command: Record<string, unknown> = { op: plain(packet.op), d };
  // A guild's own command is routed by its d.guild_id; anything else to the shard of guild_id.
  if (!(isRecord(d) && ("guild_id" in d || "guild_ids" in d))) {
    command.shard = shardForGuild(guild, shardCount);
  }
  return { ok: true, text: JSON.stringify(command) };
}

function discordjs(value: Record<string, unknown>, bytes: Uint8Array): WireCommand {
  const payload = value.payload;
  if (!isRecord(payload)) return refuse("a gateway_send command needs payload: {op, d}", bytes);
  const shard = plain(value.shardId);
  if (typeof shard !== "number" || !Number.isInteger(shard)) {
    return refuse("a gateway_send command needs shardId, an integer", bytes);
  }
  return { ok: true, text: JSON.stringify({ op: plain(payload.op), d: plain(payload.d), shard }) };
}

/**
 * msgpack values as JSON holds them. A 64-bit integer (bigint here: small ones decode as numbers) is a
 * snowflake sent as a number: Discord takes snowflakes as strings.
 */
function plain(value: unknown, depth = 0): unknown {
  if (depth > MAX_COMMAND_DEPTH) throw new Unfit(`nested deeper than ${MAX_COMMAND_DEPTH} levels`);
  if (typeof value === "bigint") return value.toString();
  // JSON.stringify would send NaN and ±Infinity as null: refused instead.
  if (typeof value === "number" && !Number.isFinite(value)) {
    throw new Unfit(`${value} is not a number JSON can hold`);
  }
  if (Array.isArray(value)) return value.map((v) => plain(v, depth + 1));
  if (value instanceof Uint8Array) {
    try {
      return utf8.decode(value);
    } catch {
      throw new Unfit(`a msgpack binary of ${value.length} bytes that is not UTF-8 text`);
    }
  }
  // An ext value (a timestamp decodes as a Date) has no JSON form: JSON.stringify would make it {} or
  // its fields, and a different command would be sent.
  if (value instanceof Date) throw new Unfit("a msgpack timestamp has no JSON form");
  if (value instanceof ExtData) throw new Unfit(`msgpack ext type ${value.type} has no JSON form`);
  if (isRecord(value)) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v, depth + 1)]));
  }
  return value;
}

function snowflake(value: unknown): string | null {
  // A number past 2^53 was a float (msgpack's 64-bit integers decode as bigint): its digits are lost.
  if (typeof value === "number" && !Number.isSafeInteger(value)) return null;
  const text = typeof value === "bigint" || typeof value === "number" ? String(value) : value;
  return typeof text === "string" && /^\d{1,20}$/.test(text) ? text : null;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) &&
    !(value instanceof Uint8Array) &&
    !(value instanceof Map);
}

function kindOf(value: unknown): string {
  if (value === null) return "nil";
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value}`;
}

function refuse(reason: string, bytes: Uint8Array): WireCommand {
  const head = Array.from(bytes.subarray(0, HEAD_BYTES), (b) => b.toString(16).padStart(2, "0")).join("");
  return { ok: false, reason, head: `msgpack ${head}${bytes.length > HEAD_BYTES ? "…" : ""}` };
}
