/**
 * Part of `deno task check`: every workflow in `.github/workflows/` against GitHub's workflow schema, with
 * action-validator (its npm CLI, run by Deno: installed on first use, no global install). Fails when one
 * is invalid, naming the file and what is wrong, or when there is no workflow to check.
 *
 *   deno run --allow-read --allow-run scripts/check_workflows.ts [workflow.yml ...]
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";

const VALIDATOR = "npm:@action-validator/cli@0.6.0";
const ROOT = fileURLToPath(new URL("../", import.meta.url));
const DIR = ".github/workflows";

interface ValidationError {
  code?: string;
  detail?: string;
  path?: string;
  title?: string;
  states?: Array<{ errors?: ValidationError[] }>;
}

/**
 * The innermost errors of action-validator's report. A one_of error lists each alternative it tried (a job
 * is a job with steps, or a call of a reusable workflow): only the closest one, with the fewest errors.
 */
function leaves(errors: ValidationError[]): string[] {
  const out = new Set<string>();
  for (const error of errors) {
    const alternatives = (error.states ?? []).map((state) => leaves(state.errors ?? []))
      .filter((found) => found.length > 0)
      .sort((a, b) => a.length - b.length);
    const found = alternatives.length > 0
      ? alternatives[0]
      : [`${error.path || "/"}: ${error.detail ?? error.title ?? error.code}`];
    for (const leaf of found) out.add(leaf);
  }
  return [...out];
}

/**
 * Problems of one workflow file (an absolute path; empty when valid), as action-validator reports them; throws when the
 * validator gave no report.
 */
async function validate(file: string): Promise<string[]> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", VALIDATOR, file],
    cwd: ROOT,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (code === 0) return [];
  const text = new TextDecoder().decode(stderr).trim() || new TextDecoder().decode(stdout).trim();
  try {
    // Its report is the JSON object that ends its output (after Deno's download lines on a first run).
    const report = JSON.parse(text.slice(text.indexOf("{\n"))) as { errors: ValidationError[] };
    return leaves(report.errors);
  } catch {
    // No report: the validator itself did not run (not installed, a crash).
    throw new Error(
      `action-validator exited with ${code} without a report:\n${text.split("\n").slice(-20).join("\n")}`,
    );
  }
}

if (import.meta.main) {
  // The files given (relative to the working directory), or every workflow of the repository.
  const files = Deno.args.map((arg) => ({ shown: arg, path: resolve(arg) }));
  if (files.length === 0) {
    for (const entry of Deno.readDirSync(`${ROOT}${DIR}`)) {
      if (!entry.isFile || !/\.ya?ml$/.test(entry.name)) continue;
      files.push({ shown: `${DIR}/${entry.name}`, path: `${ROOT}${DIR}/${entry.name}` });
    }
    files.sort((a, b) => a.shown.localeCompare(b.shown));
  }
  if (files.length === 0) {
    console.error(`check_workflows: no workflow in ${DIR}/`);
    Deno.exit(1);
  }
  let failed = 0;
  for (const { shown, path } of files) {
    let problems: string[];
    try {
      problems = await validate(path);
    } catch (error) {
      console.error(`check_workflows: could not validate ${shown}: ${(error as Error).message}`);
      Deno.exit(1);
    }
    if (problems.length === 0) {
      console.error(`workflow ok: ${shown}`);
      continue;
    }
    failed++;
    console.error(`workflow INVALID: ${shown} (${VALIDATOR.slice(4)})`);
    for (const problem of problems) console.error(`  ${problem}`);
  }
  if (failed > 0) {
    console.error(`check_workflows: ${failed} of ${files.length} workflows invalid`);
    Deno.exit(1);
  }
}
