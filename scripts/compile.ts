/**
 * `deno task compile`: gatehouse as one binary (`deno compile`). The release workflow builds each target
 * with this same script (`deno task compile --target <triple> --output dist/<name>`) and the compile test
 * imports `compileArgs`, so the flags below are the only copy.
 *
 *   deno task compile                                   # dist/gatehouse for this machine
 *   deno task compile --target aarch64-apple-darwin --output dist/gatehouse-macos-arm64
 *
 * `deno compile` downloads Deno's runtime stub (denort) for the target unless it is cached or `DENORT_BIN`
 * names one.
 */
import { fileURLToPath } from "node:url";

/** The project root: `deno compile` runs there, so `main.ts` and `--include` resolve the same from anywhere. */
export const ROOT = fileURLToPath(new URL("../", import.meta.url));

/** The targets of a release (`deno compile --target`), as `.github/workflows/release.yml` builds them. */
export const TARGETS = [
  "x86_64-unknown-linux-gnu",
  "aarch64-unknown-linux-gnu",
  "x86_64-pc-windows-msvc",
  "x86_64-apple-darwin",
  "aarch64-apple-darwin",
] as const;

/**
 * What the binary may do (the permissions of `deno task start`), the V8 flag `start` runs with, and the
 * journal's writer thread, which is loaded with `new Worker(new URL(...))` and so is not found by the
 * module graph on its own.
 */
export const COMPILE_FLAGS: readonly string[] = [
  "--allow-net",
  "--allow-env",
  "--allow-read",
  "--allow-write",
  "--allow-sys",
  "--v8-flags=--max-semi-space-size=1",
  "--include",
  "src/journal/writer_worker.ts",
];

/** The arguments of `deno` that compile gatehouse into `output` (for `target`, or this machine). */
export function compileArgs(options: { output: string; target?: string }): string[] {
  return [
    "compile",
    ...COMPILE_FLAGS,
    ...(options.target ? ["--target", options.target] : []),
    "--output",
    options.output,
    "main.ts",
  ];
}

/** `--target <triple>` and `--output <path>` (also as `--name=value`); anything else is an error. */
export function parseCompileCli(args: string[]): { output: string; target?: string } {
  const values: { output?: string; target?: string } = {};
  for (let i = 0; i < args.length; i++) {
    const match = /^--(target|output)(?:=(.*))?$/.exec(args[i]);
    if (!match) throw new Error(`unknown argument ${args[i]} (only --target <triple> and --output <path>)`);
    const value = match[2] ?? args[++i];
    if (value === undefined || value === "") throw new Error(`--${match[1]} needs a value`);
    values[match[1] as "target" | "output"] = value;
  }
  return { output: values.output ?? "dist/gatehouse", target: values.target };
}

if (import.meta.main) {
  let options: { output: string; target?: string };
  try {
    options = parseCompileCli(Deno.args);
  } catch (error) {
    console.error(`compile: ${(error as Error).message}`);
    Deno.exit(2);
  }
  const args = compileArgs(options);
  console.error(`deno ${args.join(" ")}`);
  const { code } = await new Deno.Command(Deno.execPath(), { args, cwd: ROOT }).spawn().status;
  Deno.exit(code);
}
