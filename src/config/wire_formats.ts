/**
 * The wire formats of the Redis and RabbitMQ sinks and command sources (`[broker] format`), and the
 * names they give streams and queues. Kept apart from the encoders (src/sinks/wire_format.ts), so the
 * configuration can name them without loading msgpack.
 *
 * - `gatehouse`: an event is its NDJSON line; commands are gatehouse's JSON commands.
 * - `spectacles`: what Spectacles consumers read (spec-tacles/spec, spec-tacles/go's brokers): a
 *   stream per event name, entry field `data` = the event's `d` (JSON bytes) as msgpack binary;
 *   RabbitMQ: the direct exchange named after the group, routing key = event name, the same body;
 *   commands `{guild_id, packet: {op, d}}` from the `SEND` stream (or the `<group>:SEND` queue).
 * - `discordjs`: what @discordjs/brokers' `PubSubRedisBroker` and `RedisGateway` read: a stream per
 *   event name, `data` = msgpack `{shardId, payload: d}`; commands `{payload: {op, d}, shardId}` from
 *   the `gateway_send` stream.
 */
export const WIRE_FORMATS = ["gatehouse", "spectacles", "discordjs"] as const;
export type WireFormat = (typeof WIRE_FORMATS)[number];

/** The commands' inbox stream of a format (`prefix`: `[redis] prefix`; `streamPrefix`: the loader's). */
export function commandInbox(format: WireFormat, prefix: string, streamPrefix: string): string {
  switch (format) {
    case "gatehouse":
      return `${prefix}:commands`;
    case "spectacles":
      return `${streamPrefix}SEND`;
    case "discordjs":
      return `${streamPrefix}gateway_send`;
  }
}

/** Spectacles' commands queue on RabbitMQ (`<group>:SEND`, bound to the group's exchange with key SEND). */
export function spectaclesCommandQueue(group: string): string {
  return `${group}:SEND`;
}

/** Spectacles' queue of one event on RabbitMQ, as its consumers declare it: `<group>:<EVENT>`. */
export function spectaclesEventQueue(group: string, t: string): string {
  return `${group}:${t}`;
}
