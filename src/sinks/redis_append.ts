/**
 * The Redis sink's append script and its packed arguments (outside cluster mode; redis.ts). A stream's
 * events travel as three arguments, not three per event: all their NDJSON lines back to back in one
 * buffer (each ending in its newline), one text of `scope position length` per event, and the batch's
 * distinct scopes. ioredis then encodes a handful of arguments per script call instead of thousands,
 * and gatehouse copies each line once (into the stream's buffer) instead of making a Buffer per event.
 * The script walks the text in C (`string.gmatch`) and cuts each line out with `string.sub`.
 *
 * What the script guarantees is unchanged (see redis.ts): per scope, only events above the scope's mark
 * are appended, and the marks move in the same atomic step as the appends.
 */
import { Buffer } from "node:buffer";

/**
 * KEYS: the stream, its marks (hash scope → position), its scopes by last use (zset, ms).
 * ARGV: maxlen (0 = no trimming), group ("" = none), lines, events (`scope position length ` each, the
 * scope as its index among the scopes, from 1; length without the newline), then the scopes.
 * Returns {appended, skipped}.
 */
export const APPEND_SCRIPT = `
local maxlen = tonumber(ARGV[1])
if ARGV[2] ~= "" then
  local created = redis.pcall("XGROUP", "CREATE", KEYS[1], ARGV[2], "0", "MKSTREAM")
  if type(created) == "table" and created.err and not string.find(created.err, "BUSYGROUP") then
    return redis.error_reply(created.err)
  end
end
local lines = ARGV[3]
local marks = {}
local appended, skipped = 0, 0
local from = 1
for s, p, l in string.gmatch(ARGV[4], "(%d+) (%d+) (%d+) ") do
  local scope, position, to = ARGV[4 + tonumber(s)], tonumber(p), from + tonumber(l)
  local mark = marks[scope]
  if mark == nil then mark = tonumber(redis.call("HGET", KEYS[2], scope) or "0") end
  if position > mark then
    if maxlen > 0 then
      redis.call("XADD", KEYS[1], "MAXLEN", "~", maxlen, "*", "data", string.sub(lines, from, to - 1))
    else
      redis.call("XADD", KEYS[1], "*", "data", string.sub(lines, from, to - 1))
    end
    mark = position
    appended = appended + 1
  else
    skipped = skipped + 1
  end
  marks[scope] = mark
  from = to + 1
end
local time = redis.call("TIME")
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
for scope, mark in pairs(marks) do
  redis.call("HSET", KEYS[2], scope, string.format("%.0f", mark))
  redis.call("ZADD", KEYS[3], now, scope)
end
local old = redis.call("ZRANGEBYSCORE", KEYS[3], "-inf", now - 604800000, "LIMIT", 0, 16)
for _, scope in ipairs(old) do
  redis.call("HDEL", KEYS[2], scope)
  redis.call("ZREM", KEYS[3], scope)
end
return {appended, skipped}
`;

/**
 * One stream's events of a batch, packed. Lines are given as ranges of a buffer shared by the batch's
 * streams (valid until `args` is called); `args` copies them into one buffer per stream.
 */
export class PackedEvents {
  #events = "";
  #ranges: number[] = [];
  #bytes = 0;
  #scopes = new Map<string, number>();
  #lastScope: string | null = null;
  #lastIndex = 0;

  /** Event with line bytes `[from, to)` (its newline last) of the shared buffer. */
  add(scope: string, position: number, from: number, to: number): void {
    let index = this.#lastIndex;
    if (scope !== this.#lastScope) {
      index = this.#scopes.get(scope) ?? 0;
      if (index === 0) this.#scopes.set(scope, index = this.#scopes.size + 1);
      this.#lastScope = scope;
      this.#lastIndex = index;
    }
    this.#events += `${index} ${position} ${to - from - 1} `;
    this.#ranges.push(from, to);
    this.#bytes += to - from;
  }

  /** ARGV[3…] of APPEND_SCRIPT: the lines (copied out of `shared`), the events, the scopes. */
  args(shared: Uint8Array): Array<string | Buffer> {
    const ranges = this.#ranges;
    let lines: Buffer;
    if (ranges.length === 2 || (ranges[0] === 0 && ranges[ranges.length - 1] === this.#bytes)) {
      // One event, or every line of the shared buffer in order (one stream): one copy.
      lines = Buffer.from(shared.subarray(ranges[0], ranges[ranges.length - 1]));
    } else {
      lines = Buffer.allocUnsafe(this.#bytes);
      let at = 0;
      for (let k = 0; k < ranges.length; k += 2) {
        lines.set(shared.subarray(ranges[k], ranges[k + 1]), at);
        at += ranges[k + 1] - ranges[k];
      }
    }
    return [lines, this.#events, ...this.#scopes.keys()];
  }
}
