/**
 * Spectacles' exchange on RabbitMQ: the direct exchange named after the group, which the `spectacles`
 * wire format's sink publishes to and its command source binds `<group>:SEND` to. Spectacles' own
 * libraries declare it with differing flags (durable, auto-delete or not), and declaring it with other
 * flags than the existing one's is a channel error: so one that exists is used as it is, and a missing
 * one is declared durable and direct, as Spectacles' gateway does. The check runs on a channel of its
 * own (a missing exchange closes the channel that asked), so the caller's channels stay open.
 */
import type { AMQPChannel, AMQPClient } from "@cloudamqp/amqp-client";

/** Makes sure the exchange `name` exists; `checking` is told the channel of the check (closed when missing). */
export async function spectaclesExchange(
  client: AMQPClient,
  name: string,
  checking?: (channel: AMQPChannel) => void,
): Promise<void> {
  const check = await client.channel();
  checking?.(check);
  try {
    await check.exchangeDeclare(name, "direct", { passive: true });
    await check.close().catch(() => {});
  } catch {
    const declare = await client.channel();
    await declare.exchangeDeclare(name, "direct", { durable: true, autoDelete: false });
    await declare.close().catch(() => {});
  }
}
