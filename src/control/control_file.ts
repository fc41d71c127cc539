/**
 * The control file: where `gatehouse run` records its control listener's address (with its pid and
 * start time) next to the store, so `gatehouse shards` finds the running instance.
 */

/** Where `gatehouse run` tells `gatehouse shards` its control address: next to the store. */
export function controlFilePath(storePath: string): string {
  return `${storePath}.control`;
}

/**
 * Writes the control file without following links: a new file (O_EXCL, 0600) renamed over the old
 * name, so a link planted there is replaced, not written through.
 */
export async function writeControlFile(path: string, text: string): Promise<void> {
  const temporary = `${path}.${Deno.pid}.${crypto.randomUUID().slice(0, 8)}.tmp`;
  await Deno.writeTextFile(temporary, text, { createNew: true, mode: 0o600 });
  try {
    await Deno.rename(temporary, path);
  } catch (error) {
    await Deno.remove(temporary).catch(() => {});
    throw error;
  }
}
