/**
 * The store's files on disk: created 0600 (they hold session ids), and never opened through a symbolic
 * link.
 */
import { StoreError } from "./store_errors.ts";

/**
 * Refuses a path that is a symbolic link. Opening one for writing would write (and chmod) whatever it
 * points to: a link planted at the store path, or at its `-wal`, `-shm`, `.lock` or `.control` file,
 * could make gatehouse overwrite a file of the attacker's choosing.
 */
export function refuseSymlink(path: string, what: string): void {
  let info: Deno.FileInfo;
  try {
    info = Deno.lstatSync(path);
  } catch {
    return; // missing: it will be created without following anything
  }
  if (info.isSymlink) {
    throw new StoreError(
      "io",
      `${what} ${path} is a symbolic link; gatehouse does not follow links for files it writes ` +
        "(point [store] path at the real file, or remove the link)",
    );
  }
  if (!info.isFile) throw new StoreError("io", `${what} ${path} is not a regular file`);
}

/** Creates the file 0600 if missing (never through a link); narrows an existing one that others could read. */
export function createPrivate(path: string): void {
  for (
    const [file, what] of [[path, "store"], [`${path}-wal`, "store file"], [`${path}-shm`, "store file"]]
  ) {
    refuseSymlink(file, what);
  }
  try {
    // O_CREAT|O_EXCL: fails rather than follow a link that appears in between.
    const file = Deno.openSync(path, { createNew: true, write: true, mode: 0o600 });
    file.close();
  } catch (error) {
    if (!(error instanceof Deno.errors.AlreadyExists)) {
      if (error instanceof Deno.errors.PermissionDenied) {
        throw new StoreError("readonly", `cannot create store ${path}: permission denied`, { cause: error });
      }
      if (error instanceof Deno.errors.NotFound) {
        throw new StoreError("io", `cannot create store ${path}: the directory does not exist`, {
          cause: error,
        });
      }
      throw new StoreError("io", `cannot create store ${path}: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  refuseSymlink(path, "store");
  if (Deno.build.os !== "windows") {
    try {
      const mode = Deno.lstatSync(path).mode ?? 0o600;
      if ((mode & 0o077) !== 0) Deno.chmodSync(path, 0o600);
    } catch {
      // best effort: an fs without modes
    }
  }
}

/** The host name for the owner row, or "unknown" where it cannot be read. */
export function safeHostname(): string {
  try {
    return Deno.hostname();
  } catch {
    return "unknown";
  }
}
