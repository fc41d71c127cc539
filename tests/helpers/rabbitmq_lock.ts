/**
 * The local RabbitMQ is shared by test files that run in parallel processes. Tests that use it hold a
 * shared lock; the outage test, which closes every connection on the broker
 * (`rabbitmqctl close_all_connections`), holds it exclusively, so it never cuts another test's
 * connection.
 */
import { tmpdir } from "node:os";

export async function withRabbitMq<T>(exclusive: boolean, fn: () => Promise<T>): Promise<T> {
  const file = await Deno.open(`${tmpdir()}/gatehouse-test-rabbitmq.lock`, { create: true, write: true });
  try {
    await file.lock(exclusive);
    return await fn();
  } finally {
    await file.unlock().catch(() => {});
    file.close();
  }
}
