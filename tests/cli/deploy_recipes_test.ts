/**
 * The deployment recipes (deploy/) and the README's "Deployment" section, held to the code:
 *
 * - every `gatehouse` subcommand and flag they use exists (each subcommand's `--help`);
 * - every environment variable they name is a configuration key's (src/config/keys.ts), and the
 *   configurations they set load without error through the real loader;
 * - the systemd unit has the directives the README promises, and `systemd-analyze verify` (where it is
 *   installed) has nothing to say about it;
 * - the Dockerfile builds what `deno task compile` writes, as a numeric non-root user, with the store on its
 *   volume, STOPSIGNAL and a HEALTHCHECK that never returns 2;
 * - the Kubernetes YAML parses, its StatefulSets fit their Services, volumes and probes, and the entrypoint
 *   that derives shard ids from the pod's ordinal covers the shard count exactly once (run as the kubelet
 *   would: its $(VAR) expansion, then sh);
 * - the probe, health-check and cron commands, run as written against a gatehouse, pass while it is healthy,
 *   keep it alive (but not ready) while Discord is gone, and fail once it no longer answers;
 * - every stop is given more time than gatehouse's own bound (STOP_LIMIT_MS in src/cli/run.ts).
 */
import assert from "node:assert/strict";
import { parseAllDocuments } from "npm:yaml@2.9.1";
import { FATAL_CLOSE_EXIT_CODES } from "../../src/cli/exit_codes.ts";
import { ALL_KEYS } from "../../src/config/keys.ts";
import { loadConfig } from "../../src/config/load.ts";
import { NOT_YET_SUPPORTED } from "../../src/config/schema.ts";
import { FakeDiscord } from "../fake_discord/server.ts";
import { controlUrl, fakeEnv, ROOT, RUN_FLAGS, spawnGatehouse } from "../helpers/gatehouse.ts";

const DEPLOY = `${ROOT}deploy`;
const SUBCOMMANDS = ["run", "shards", "inspect", "replay"];
const KEY_ENVS = new Set(ALL_KEYS.flatMap((key) => key.env));
/** What looks like a configuration variable (gatehouse's own and Spectacles' prefixes). */
const ENV_LIKE = /\b(?:DISCORD|GATEHOUSE|BROKER|REDIS|AMQP|PROMETHEUS|SHARD_STORE)_[A-Z][A-Z0-9_]*\b/g;
/** Variables of the recipes that are not gatehouse's: the entrypoint's, the kubelet's, cron's. */
const HELPER_ENVS = new Set(["SHARDS_PER_POD"]);
const CRON_ENVS = new Set(["SHELL", "PATH", "MAILTO"]);

const text = (path: string) => Deno.readTextFileSync(`${ROOT}${path}`);

function deployFiles(dir = DEPLOY): string[] {
  const out: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) out.push(...deployFiles(path));
    else out.push(path.slice(ROOT.length));
  }
  return out.sort();
}

/** The README's "## Deployment" section, up to the next "## ". */
function readmeSection(): string {
  const readme = text("README.md");
  const start = readme.indexOf("\n## Deployment\n");
  assert.ok(start >= 0, 'README.md has a "## Deployment" section');
  const end = readme.indexOf("\n## ", start + 1);
  return readme.slice(start, end === -1 ? undefined : end);
}

/** Fenced code blocks and inline code spans of Markdown: where commands are. */
function markdownCode(markdown: string): string {
  const fenced = [...markdown.matchAll(/^```[^\n]*\n([\s\S]*?)^```/gm)].map((m) => m[1]);
  const prose = markdown.replace(/^```[^\n]*\n[\s\S]*?^```/gm, "");
  const spans = [...prose.matchAll(/`([^`\n]+)`/g)].map((m) => m[1]);
  return [...fenced, ...spans].join("\n");
}

/** The stop bound gatehouse gives itself, in seconds. */
function stopLimitSeconds(): number {
  const match = /const STOP_LIMIT_MS = ([\d_]+);/.exec(text("src/cli/run.ts"));
  assert.ok(match, "src/cli/run.ts defines STOP_LIMIT_MS");
  return Number(match[1].replaceAll("_", "")) / 1000;
}

// ---------------------------------------------------------------------------------------------------------
// Commands and flags

const helpCache = new Map<string, Promise<Set<string>>>();

/** The flags `gatehouse [sub] --help` lists (long and short), from the real CLI. */
function helpFlags(sub: string | null): Promise<Set<string>> {
  const key = sub ?? "";
  if (!helpCache.has(key)) {
    helpCache.set(
      key,
      (async () => {
        const out = await new Deno.Command(Deno.execPath(), {
          args: [...RUN_FLAGS, "main.ts", ...(sub ? [sub] : []), "--help"],
          cwd: ROOT,
          env: { NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).output();
        const help = new TextDecoder().decode(out.stdout);
        assert.equal(out.code, 0, `gatehouse ${key} --help exits 0`);
        return new Set([...help.matchAll(/(?<![\w-])(--?[A-Za-z][\w-]*)/g)].map((m) => m[1]));
      })(),
    );
  }
  return helpCache.get(key)!;
}

interface Invocation {
  /** null: gatehouse itself (`gatehouse --version`). */
  sub: string | null;
  args: string[];
  where: string;
}

/** One Damerau-Levenshtein step apart (a typo of a subcommand: `shrads`, `inpsect`, `runn`). */
function oneTypoFrom(word: string, target: string): boolean {
  if (word === target || Math.abs(word.length - target.length) > 1) return false;
  const d: number[][] = Array.from({ length: word.length + 1 }, (_, i) => [i]);
  for (let j = 1; j <= target.length; j++) d[0][j] = j;
  for (let i = 1; i <= word.length; i++) {
    for (let j = 1; j <= target.length; j++) {
      const cost = word[i - 1] === target[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && word[i - 1] === target[j - 2] && word[i - 2] === target[j - 1]) {
        d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[word.length][target.length] <= 1;
}

/** The tokens of a command line up to the end of the command (a shell operator, a quote, a comment). */
function commandTokens(rest: string): string[] {
  const tokens: string[] = [];
  for (const raw of rest.trim().split(/[ \t]+/)) {
    if (raw === "" || /^(?:[;|&<>#)]|\|\||&&|\\)/.test(raw)) break;
    const token = raw.replace(/^["'[]+/, "");
    const cut = token.search(/[;|&)"'`\],]/);
    if (cut === 0) break;
    tokens.push(cut > 0 ? token.slice(0, cut) : token);
    if (cut > 0) break;
  }
  return tokens;
}

/**
 * The `gatehouse …` command lines in a text: the program name followed by a subcommand (or what is one
 * typo from one), `/…/gatehouse --flag` for the program's own flags, and `gatehouse-check …`, whose
 * arguments go to `gatehouse shards --check`.
 */
function invocationsIn(source: string, where: string): Invocation[] {
  const out: Invocation[] = [];
  const joined = source.replace(/\\\n\s*/g, " ");
  for (const line of joined.split("\n")) {
    for (const match of line.matchAll(/(^|[^\w.@/-]|\/)gatehouse(-check)?(?=[ \t]|$)/g)) {
      const tokens = commandTokens(line.slice(match.index! + match[0].length));
      if (match[2]) {
        // The script as a command (not its syslog tag): at the start, after a path or a backquote.
        if (!["", "/", "`"].includes(match[1])) continue;
        out.push({ sub: "shards", args: ["--check", ...tokens], where });
        continue;
      }
      const [first, ...args] = tokens;
      if (first === undefined) continue;
      if (SUBCOMMANDS.includes(first)) out.push({ sub: first, args, where });
      else if (SUBCOMMANDS.some((sub) => first.length >= 3 && oneTypoFrom(first, sub))) {
        out.push({ sub: first, args, where });
      } else if (
        match[1] === "/" && /(?:bin|dist)$/.test(line.slice(0, match.index)) && first.startsWith("-")
      ) out.push({ sub: null, args: tokens, where });
    }
  }
  return out;
}

async function assertInvocation(inv: Invocation): Promise<void> {
  const shown = `gatehouse ${inv.sub ?? ""} ${inv.args.join(" ")}`.replace(/\s+/g, " ");
  if (inv.sub !== null) {
    assert.ok(SUBCOMMANDS.includes(inv.sub), `${inv.where}: \`${shown}\`: no subcommand ${inv.sub}`);
  }
  const flags = await helpFlags(inv.sub);
  for (const arg of inv.args) {
    if (!arg.startsWith("-")) continue;
    const flag = arg.split("=")[0];
    assert.ok(
      flags.has(flag),
      `${inv.where}: \`${shown}\`: ${flag} is not in gatehouse ${inv.sub ?? ""} --help`,
    );
  }
}

// ---------------------------------------------------------------------------------------------------------
// YAML, unit files, Dockerfile

// deno-lint-ignore no-explicit-any
type Json = any;

function manifests(path: string): Json[] {
  const docs = parseAllDocuments(text(path));
  for (const doc of docs) assert.deepEqual(doc.errors, [], `${path} parses as YAML`);
  return docs.map((doc) => doc.toJS()).filter((doc) => doc !== null);
}

/** Every array of strings in a YAML document (exec probes, command, args). */
function stringArrays(node: Json, out: string[][] = []): string[][] {
  if (Array.isArray(node)) {
    if (node.length > 0 && node.every((item) => typeof item === "string")) out.push(node);
    for (const item of node) stringArrays(item, out);
  } else if (node && typeof node === "object") {
    for (const value of Object.values(node)) stringArrays(value, out);
  }
  return out;
}

/** systemd's unit file syntax: section → key → values in order (an empty value resets a list). */
function parseUnit(source: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of source.replace(/\\\n/g, " ").split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const section = /^\[(.+)\]$/.exec(line);
    if (section) {
      current = sections.get(section[1]) ?? new Map();
      sections.set(section[1], current);
      continue;
    }
    const eq = line.indexOf("=");
    assert.ok(current && eq > 0, `unit line outside a section or without "=": ${line}`);
    const key = line.slice(0, eq).trim();
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return sections;
}

function seconds(value: string): number {
  const match = /^(\d+)\s*(s|sec|min|m)?$/.exec(value);
  assert.ok(match, `a duration systemd reads: ${value}`);
  return Number(match[1]) * (match[2] === "min" || match[2] === "m" ? 60 : 1);
}

/** `NAME=value` lines of an environment file; commented ones (`# NAME=value`) separately. */
function envFile(source: string): { set: Record<string, string>; commented: Record<string, string> } {
  const set: Record<string, string> = {};
  const commented: Record<string, string> = {};
  for (const line of source.split("\n")) {
    const match = /^(#\s*)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line.trim());
    if (match) (match[1] ? commented : set)[match[2]] = match[3];
  }
  return { set, commented };
}

interface Instruction {
  name: string;
  args: string;
}

function dockerfile(source: string): Instruction[] {
  return source.replace(/\\\n/g, " ").split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"))
    .map((line) => {
      const [name, ...rest] = line.split(/\s+/);
      return { name: name.toUpperCase(), args: rest.join(" ") };
    });
}

/** The configuration gatehouse loads from `env` (no config file), or the loader's error. */
function load(env: Record<string, string>) {
  return loadConfig({
    env: (name) => env[name],
    flags: {},
    readTextFile: () => {
      throw new Deno.errors.NotFound("no config file in this test");
    },
  });
}

/** Values for secrets that a recipe takes from elsewhere (a Secret, a credential). */
const SECRETS: Record<string, string> = {
  DISCORD_TOKEN: "test-token.part.two",
  REDIS_URL: "redis://redis:6379",
  GATEHOUSE_CONTROL_TOKEN: "a-control-token-of-32-characters",
};

/** Kubernetes' expansion of `$(VAR)` in command and args (`$$` is a `$`); unknown references stay. */
function kubeExpand(input: string, vars: Record<string, string>): string {
  let out = "";
  for (let i = 0; i < input.length; i++) {
    if (input[i] !== "$" || i + 1 >= input.length) {
      out += input[i];
      continue;
    }
    const next = input[i + 1];
    if (next === "$") {
      out += "$";
      i++;
    } else if (next === "(") {
      const close = input.indexOf(")", i + 2);
      if (close === -1) {
        out += "$(";
        i++;
        continue;
      }
      const name = input.slice(i + 2, close);
      out += name in vars ? vars[name] : `$(${name})`;
      i = close;
    } else out += "$";
  }
  return out;
}

/** The container's env as values: literals, secrets as SECRETS, the pod's name as `pod`. */
function containerEnv(container: Json, pod: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const item of container.env ?? []) {
    if (typeof item.value === "string") env[item.name] = item.value;
    else if (item.valueFrom?.secretKeyRef) env[item.name] = SECRETS[item.valueFrom.secretKeyRef.key];
    else if (item.valueFrom?.fieldRef?.fieldPath === "metadata.name") env[item.name] = pod;
    else assert.fail(`env ${item.name}: a value this test does not know how to give`);
    assert.ok(env[item.name] !== undefined, `env ${item.name} has a value`);
  }
  return env;
}

const MANIFESTS = ["deploy/kubernetes/statefulset.yaml", "deploy/kubernetes/statefulset-cluster.yaml"];

function statefulSet(path: string): { set: Json; service: Json; container: Json } {
  const docs = manifests(path);
  const set = docs.find((d) => d.kind === "StatefulSet");
  assert.ok(set, `${path} has a StatefulSet`);
  const service = docs.find((d) => d.kind === "Service" && d.metadata.name === set.spec.serviceName);
  assert.ok(service, `${path}: the Service ${set.spec.serviceName} the StatefulSet names`);
  const containers = set.spec.template.spec.containers;
  assert.equal(containers.length, 1);
  return { set, service, container: containers[0] };
}

/** A directory with a `gatehouse` on PATH that runs this checkout as the binary would be run. */
function gatehouseBin(): string {
  const dir = Deno.makeTempDirSync({ prefix: "gatehouse-bin-" });
  const perms = RUN_FLAGS.slice(1).join(" ");
  Deno.writeTextFileSync(
    `${dir}/gatehouse`,
    `#!/bin/sh\nexec "${Deno.execPath()}" run ${perms} "${ROOT}main.ts" "$@"\n`,
    { mode: 0o755 },
  );
  return dir;
}

async function sh(
  argv: string[],
  env: Record<string, string>,
  cwd?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd,
    env: { NO_COLOR: "1", ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

// ---------------------------------------------------------------------------------------------------------

Deno.test("deploy recipes: every gatehouse subcommand and flag in deploy/ and the README's Deployment section exists", async () => {
  const invocations: Invocation[] = [];
  for (const path of deployFiles()) {
    invocations.push(...invocationsIn(text(path), path));
    if (path.endsWith(".yaml")) {
      for (const doc of manifests(path)) {
        for (const array of stringArrays(doc)) {
          if (array[0] === "gatehouse") {
            invocations.push({ sub: array[1], args: array.slice(2), where: `${path} (exec)` });
          }
        }
      }
    }
  }
  invocations.push(...invocationsIn(markdownCode(readmeSection()), "README.md (Deployment)"));
  const subs = new Set(invocations.map((inv) => inv.sub));
  for (const sub of ["run", "shards"]) assert.ok(subs.has(sub), `the recipes use gatehouse ${sub}`);
  assert.ok(
    invocations.some((inv) =>
      inv.sub === "shards" && inv.args.includes("--check") && inv.args.includes("--url")
    ),
    "the probes call gatehouse shards --check --url",
  );
  for (const inv of invocations) await assertInvocation(inv);
});

Deno.test("deploy recipes: the command finder sees a wrong subcommand or flag", async () => {
  const found = invocationsIn("exec gatehouse shrads --check\n/usr/bin/gatehouse shards --chek", "sample");
  assert.deepEqual(found.map((inv) => inv.sub), ["shrads", "shards"]);
  await assert.rejects(() => assertInvocation(found[0]), /no subcommand shrads/);
  await assert.rejects(() => assertInvocation(found[1]), /--chek is not in gatehouse shards --help/);
  // Not commands: the container's name, the user's, paths.
  assert.deepEqual(
    invocationsIn(
      "docker run --name gatehouse --stop-timeout 50\nuseradd gatehouse\n/var/lib/gatehouse/x\n" +
        "logger -t gatehouse-check -p daemon.err",
      "s",
    ),
    [],
  );
});

Deno.test("deploy recipes: every environment variable is a configuration key's, and each recipe's configuration loads", () => {
  for (const path of deployFiles()) {
    for (const [name] of text(path).matchAll(ENV_LIKE)) {
      assert.ok(KEY_ENVS.has(name), `${path}: ${name} is no configuration key's environment variable`);
    }
  }
  // The README also lists Spectacles' variables that gatehouse accepts and ignores.
  for (const [name] of readmeSection().matchAll(ENV_LIKE)) {
    assert.ok(
      KEY_ENVS.has(name) || NOT_YET_SUPPORTED.env.includes(name),
      `README.md (Deployment): ${name} is neither a configuration key's variable nor one gatehouse ignores`,
    );
  }
  for (const name of NOT_YET_SUPPORTED.env) {
    assert.match(readmeSection(), new RegExp(`\`${name}\``), `the Spectacles guide says ${name} is ignored`);
  }

  // systemd: Environment= and the EnvironmentFile, each commented example too.
  const unit = parseUnit(text("deploy/systemd/gatehouse.service")).get("Service")!;
  const unitEnv: Record<string, string> = {};
  for (const value of unit.get("Environment") ?? []) {
    const [name, ...rest] = value.split("=");
    unitEnv[name] = rest.join("=").replace("%S", "/var/lib");
  }
  const file = envFile(text("deploy/systemd/gatehouse.env"));
  for (const name of [...Object.keys(unitEnv), ...Object.keys(file.set), ...Object.keys(file.commented)]) {
    assert.ok(KEY_ENVS.has(name), `gatehouse.service / gatehouse.env: ${name} is no configuration key's`);
  }
  const systemdEnv = {
    ...unitEnv,
    ...file.set,
    DISCORD_TOKEN: file.set.DISCORD_TOKEN || SECRETS.DISCORD_TOKEN,
  };
  const { config } = load(systemdEnv);
  assert.equal(config.store.path, "/var/lib/gatehouse/gatehouse.db");
  assert.ok(
    !config.broker.types.includes("stdout"),
    "under systemd the events go to a broker, not the journal",
  );
  for (const [name, value] of Object.entries(file.commented)) load({ ...systemdEnv, [name]: value });

  // The credential drop-in's --config is a real option of run.
  const dropIn = parseUnit(text("deploy/systemd/gatehouse.service.d/credentials.conf")).get("Service")!;
  const [credential] = dropIn.get("LoadCredential")!;
  const name = credential.split(":")[0];
  assert.deepEqual(dropIn.get("ExecStart"), ["", `/usr/local/bin/gatehouse run --config %d/${name}`]);

  // Docker: the image's ENV.
  const dockerEnv: Record<string, string> = {};
  for (const step of dockerfile(text("deploy/docker/Dockerfile")).filter((s) => s.name === "ENV")) {
    const [key, ...rest] = step.args.split("=");
    assert.ok(KEY_ENVS.has(key), `Dockerfile ENV ${key} is no configuration key's`);
    dockerEnv[key] = rest.join("=");
  }
  load({ ...dockerEnv, DISCORD_TOKEN: SECRETS.DISCORD_TOKEN });

  // Kubernetes: each container's env, as pod gatehouse-0 gets it.
  for (const path of MANIFESTS) {
    const { container } = statefulSet(path);
    for (const item of container.env) {
      assert.ok(KEY_ENVS.has(item.name) || HELPER_ENVS.has(item.name), `${path}: env ${item.name}`);
    }
    const env = containerEnv(container, "gatehouse-0");
    for (const helper of HELPER_ENVS) delete env[helper];
    if (!("GATEHOUSE_CLUSTER" in env)) env.DISCORD_SHARD_IDS = "0-3";
    load(env);
  }

  // cron: the crontab's variables are cron's or gatehouse's.
  const cron = envFile(text("deploy/cron/gatehouse.cron"));
  for (const name of [...Object.keys(cron.set), ...Object.keys(cron.commented)]) {
    assert.ok(CRON_ENVS.has(name) || KEY_ENVS.has(name), `gatehouse.cron: ${name}`);
  }
});

Deno.test("deploy recipes: every file in deploy/ is in the README, and every deploy/ path it names exists", () => {
  const section = readmeSection();
  const files = deployFiles();
  for (const path of files) {
    const base = path.split("/").pop()!;
    assert.ok(
      section.includes(path) || section.includes(`\`${base}\``),
      `README.md (Deployment) names ${path}`,
    );
  }
  for (const [path] of section.matchAll(/deploy\/[\w./-]+[\w]/g)) {
    assert.ok(
      files.some((f) => f === path || f.startsWith(`${path}/`)),
      `${path} (named in the README) exists`,
    );
  }
});

Deno.test("deploy recipes: the systemd unit", async () => {
  const limit = stopLimitSeconds();
  const service = parseUnit(text("deploy/systemd/gatehouse.service")).get("Service")!;
  const one = (key: string) => {
    const values = service.get(key);
    assert.ok(values && values.length === 1, `gatehouse.service sets ${key} once`);
    return values[0];
  };
  assert.equal(one("ExecStart"), "/usr/local/bin/gatehouse run");
  assert.equal(one("Restart"), "on-failure");
  assert.equal(one("KillSignal"), "SIGTERM");
  assert.ok(seconds(one("TimeoutStopSec")) > limit, `TimeoutStopSec leaves gatehouse its ${limit} s stop`);
  assert.equal(one("StateDirectory"), "gatehouse");
  assert.ok(service.get("Environment")!.includes("GATEHOUSE_STORE=%S/gatehouse/gatehouse.db"));
  assert.ok(service.has("EnvironmentFile"), "secrets through EnvironmentFile=");
  // Exit codes a restart cannot fix: configuration, and every fatal close code's.
  const prevented = new Set(one("RestartPreventExitStatus").split(/\s+/).map(Number));
  for (const code of [2, ...Object.values(FATAL_CLOSE_EXIT_CODES)]) {
    assert.ok(prevented.has(code), `no restart after exit ${code}`);
  }
  assert.ok(!prevented.has(1) && !prevented.has(6), "exit 1 and 6 are restarted");
  // Hardening that would break it.
  assert.notEqual(
    service.get("MemoryDenyWriteExecute")?.at(-1),
    "yes",
    "V8 needs writable+executable memory",
  );
  assert.notEqual(service.get("PrivateNetwork")?.at(-1), "yes");
  assert.ok(
    !service.has("IPAddressDeny") && !service.has("IPAddressAllow"),
    "Discord's addresses are not fixed",
  );
  assert.notEqual(service.get("ProcSubset")?.at(-1), "pid", "V8 reads /proc/meminfo");
  const families = one("RestrictAddressFamilies").split(/\s+/);
  for (const family of ["AF_INET", "AF_INET6", "AF_UNIX"]) assert.ok(families.includes(family), family);
  assert.match(one("SystemCallFilter"), /@system-service.*\bpkey_alloc\b/);
  assert.equal(one("PrivateTmp"), "yes", "SQLite's temporary files under ProtectSystem=strict");

  const analyze = await new Deno.Command("systemd-analyze", {
    args: ["--version"],
    stdout: "null",
    stderr: "null",
  })
    .output().catch(() => null);
  if (analyze === null) {
    console.log("systemd-analyze verify skipped: systemd-analyze is not installed");
    return;
  }
  // verify wants the unit's binary and the system's units under the root it checks.
  const root = await Deno.makeTempDir({ prefix: "gatehouse-unit-" });
  try {
    await Deno.mkdir(`${root}/etc/systemd/system/gatehouse.service.d`, { recursive: true });
    await Deno.mkdir(`${root}/usr/local/bin`, { recursive: true });
    await Deno.mkdir(`${root}/usr/lib/systemd`, { recursive: true });
    await Deno.writeTextFile(`${root}/usr/local/bin/gatehouse`, "#!/bin/sh\n", { mode: 0o755 });
    await Deno.copyFile(
      `${DEPLOY}/systemd/gatehouse.service`,
      `${root}/etc/systemd/system/gatehouse.service`,
    );
    await Deno.copyFile(
      `${DEPLOY}/systemd/gatehouse.service.d/credentials.conf`,
      `${root}/etc/systemd/system/gatehouse.service.d/credentials.conf`,
    );
    await new Deno.Command("cp", { args: ["-r", "/lib/systemd/system", `${root}/usr/lib/systemd/`] })
      .output();
    const out = await new Deno.Command("systemd-analyze", {
      args: ["verify", `--root=${root}`, "/etc/systemd/system/gatehouse.service"],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, said);
    assert.equal(said.trim(), "", `systemd-analyze verify has something to say:\n${said}`);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("deploy recipes: the Dockerfile", async () => {
  const steps = dockerfile(text("deploy/docker/Dockerfile"));
  const froms = steps.filter((s) => s.name === "FROM");
  assert.equal(froms.length, 2, "two stages");
  assert.match(froms[0].args, /^denoland\/deno:\$\{DENO_VERSION\} AS build$/);
  const version =
    steps.find((s) => s.name === "ARG" && s.args.startsWith("DENO_VERSION="))!.args.split("=")[1];
  assert.match(text("README.md"), new RegExp(`deno@${version.replaceAll(".", "\\.")}`), "the README's Deno");
  const runtime = steps.slice(steps.indexOf(froms[1]));
  const build = steps.slice(0, steps.indexOf(froms[1]));

  // It builds with `deno task compile`, and copies what that writes.
  assert.ok(build.some((s) => s.name === "RUN" && /\bdeno task compile\b/.test(s.args)));
  const deno = JSON.parse(text("deno.json"));
  const task: string = deno.tasks.compile;
  let output = /--output\s+(\S+)/.exec(task)?.[1];
  if (output === undefined) {
    const script = /\b(scripts\/\S+\.ts)\b/.exec(task)?.[1];
    assert.ok(script, `the compile task names its output or a script: ${task}`);
    const { parseCompileCli } = await import(`../../${script}`);
    output = parseCompileCli([]).output as string;
  }
  const copy = runtime.find((s) => s.name === "COPY" && s.args.startsWith("--from=build"))!;
  assert.equal(copy.args.split(/\s+/)[1], `/src/${output}`, "the runtime stage copies the compiled binary");
  // Every file the build copies exists, and the context lets it through.
  const ignore = text("deploy/docker/Dockerfile.dockerignore").split("\n").filter((l) => l.startsWith("!"));
  for (const step of build.filter((s) => s.name === "COPY")) {
    for (const source of step.args.split(/\s+/).slice(0, -1)) {
      await Deno.stat(`${ROOT}${source}`);
      assert.ok(ignore.includes(`!${source}`), `Dockerfile.dockerignore lets ${source} in`);
    }
  }
  const scriptOfTask = /\b(scripts\/\S+\.ts)\b/.exec(task)?.[1];
  if (scriptOfTask) assert.ok(build.some((s) => s.name === "COPY" && /\bscripts\//.test(s.args)));

  const last = (name: string) => runtime.filter((s) => s.name === name).at(-1)?.args;
  const [uid, gid] = last("USER")!.split(":").map(Number);
  assert.ok(Number.isInteger(uid) && uid > 0 && Number.isInteger(gid), "a numeric non-root USER");
  const store = /GATEHOUSE_STORE=(\S+)/.exec(last("ENV")!)![1];
  assert.equal(last("VOLUME"), store.slice(0, store.lastIndexOf("/")), "the store is on the VOLUME");
  assert.equal(last("STOPSIGNAL"), "SIGTERM");
  assert.match(last("HEALTHCHECK")!, /CMD gatehouse shards --check .*\|\| exit 1$/);
  assert.equal(last("ENTRYPOINT"), '["gatehouse"]');
  const cmd = JSON.parse(last("CMD")!);
  assert.ok(SUBCOMMANDS.includes(cmd[0]), `CMD ${cmd[0]} is a subcommand`);
  // Docker's default stop timeout is 10 s: the README gives it more than gatehouse's bound.
  const timeout = /--stop-timeout (\d+)/.exec(readmeSection());
  assert.ok(timeout && Number(timeout[1]) > stopLimitSeconds(), "docker run --stop-timeout in the README");

  // The Kubernetes pods run the image's user.
  for (const path of MANIFESTS) {
    const pod = statefulSet(path).set.spec.template.spec.securityContext;
    assert.equal(pod.runAsUser, uid, `${path}: runAsUser`);
    assert.equal(pod.runAsNonRoot, true);
  }
});

Deno.test("deploy recipes: the Kubernetes StatefulSets fit their Services, volumes and probes", () => {
  const limit = stopLimitSeconds();
  const probes: string[] = [];
  for (const path of MANIFESTS) {
    const { set, service, container } = statefulSet(path);
    const pod = set.spec.template.spec;
    const labels = set.spec.template.metadata.labels;
    assert.equal(service.spec.clusterIP, "None", `${path}: a headless Service`);
    for (const [k, v] of Object.entries(set.spec.selector.matchLabels)) assert.equal(labels[k], v);
    for (const [k, v] of Object.entries(service.spec.selector)) assert.equal(labels[k], v);
    assert.ok(
      pod.terminationGracePeriodSeconds > limit,
      `${path}: the grace period covers the ${limit} s stop`,
    );

    const env = containerEnv(container, "gatehouse-0");
    assert.equal(
      container.env.find((e: Json) => e.name === "DISCORD_TOKEN").valueFrom.secretKeyRef.key,
      "DISCORD_TOKEN",
      "the token from a Secret",
    );
    // The store on the pod's own claim, beside a read-only root (tests/journal/store_readonly_root_test.ts).
    const store = env.GATEHOUSE_STORE;
    const mounts = Object.fromEntries(container.volumeMounts.map((m: Json) => [m.mountPath, m.name]));
    const claim = mounts[store.slice(0, store.lastIndexOf("/"))];
    assert.ok(
      set.spec.volumeClaimTemplates.some((t: Json) => t.metadata.name === claim),
      `${path}: store claim`,
    );
    assert.equal(container.securityContext.readOnlyRootFilesystem, true, `${path}: a read-only root`);
    assert.deepEqual(
      Object.keys(mounts),
      [store.slice(0, store.lastIndexOf("/"))],
      `${path}: only the store writable`,
    );
    // The probes ask this pod's listener, where the Service points.
    const port = Number(env.GATEHOUSE_CONTROL_ADDRESS.split(":").at(-1));
    const control = container.ports.find((p: Json) => p.name === "control");
    assert.equal(control.containerPort, port);
    assert.ok(service.spec.ports.some((p: Json) => p.targetPort === "control" && p.port === port));
    const url = `http://127.0.0.1:${port}`;
    assert.deepEqual(container.readinessProbe.exec.command, ["gatehouse", "shards", "--check", "--url", url]);
    assert.deepEqual(container.startupProbe.exec.command, container.livenessProbe.exec.command);
    const [shell, flag, script] = container.livenessProbe.exec.command;
    assert.deepEqual([shell, flag], ["/bin/sh", "-c"]);
    assert.ok(script.includes(`gatehouse shards --check --url ${url}`), `${path}: liveness asks ${url}`);
    probes.push(script);

    if (env.GATEHOUSE_CLUSTER === "redis") {
      assert.ok(!("DISCORD_SHARD_IDS" in env), "cluster members list no shard ids");
      assert.ok(env.BROKER_TYPE.split(",").includes("redis"), "cluster mode delivers into Redis");
      assert.ok(
        SUBCOMMANDS.includes(container.args[0]),
        "the image's entrypoint is gatehouse: args[0] a subcommand",
      );
      assert.equal(set.spec.podManagementPolicy, "Parallel");
    } else assert.equal(set.spec.podManagementPolicy, "OrderedReady");
  }
  assert.equal(new Set(probes).size, 1, "both StatefulSets probe the same way");
});

Deno.test("deploy recipes: the ordinal entrypoint gives each pod its shards, the count exactly once", async () => {
  const path = "deploy/kubernetes/statefulset.yaml";
  const { set, container } = statefulSet(path);
  const replicas: number = set.spec.replicas;
  const bin = await Deno.makeTempDir({ prefix: "gatehouse-stub-" });
  try {
    // A stand-in binary that says what it was started with.
    await Deno.writeTextFile(`${bin}/gatehouse`, '#!/bin/sh\necho "$DISCORD_SHARD_IDS $*"\n', {
      mode: 0o755,
    });
    const runPod = async (ordinal: number) => {
      const env = { ...containerEnv(container, `gatehouse-${ordinal}`), HOSTNAME: `gatehouse-${ordinal}` };
      const argv = [...container.command, ...container.args].map((a: string) => kubeExpand(a, env));
      return await sh(argv, { ...env, PATH: `${bin}:/usr/bin:/bin` });
    };
    const env = containerEnv(container, "gatehouse-0");
    const count = Number(env.DISCORD_SHARD_COUNT);
    assert.equal(
      replicas * Number(env.SHARDS_PER_POD),
      count,
      "DISCORD_SHARD_COUNT = replicas × SHARDS_PER_POD",
    );
    const seen: number[] = [];
    for (let ordinal = 0; ordinal < replicas; ordinal++) {
      const { code, stdout, stderr } = await runPod(ordinal);
      assert.equal(code, 0, stderr);
      const [ids, ...args] = stdout.trim().split(" ");
      assert.deepEqual(args, ["run"]);
      const [first, last] = ids.split("-").map(Number);
      for (let id = first; id <= last; id++) seen.push(id);
      // The ids parse as the configuration reads DISCORD_SHARD_IDS.
      const { config } = load({ ...env, DISCORD_SHARD_IDS: ids, DISCORD_TOKEN: SECRETS.DISCORD_TOKEN });
      assert.equal(config.shards.ids!.length, Number(env.SHARDS_PER_POD));
    }
    assert.deepEqual(seen, Array.from({ length: count }, (_, i) => i), "every shard once, in order");
    // A pod past the count (replicas raised alone) refuses to start.
    const past = await runPod(replicas);
    assert.equal(past.code, 2);
    assert.equal(past.stdout, "");
    assert.match(past.stderr, /set DISCORD_SHARD_COUNT to replicas × SHARDS_PER_POD/);
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
});

Deno.test("deploy recipes: the cron recipe", async () => {
  const cron = text("deploy/cron/gatehouse.cron").split("\n").filter((l) => l.trim() && !l.startsWith("#"));
  const job = cron.find((l) => !/^[A-Z_]+=/.test(l))!;
  const fields = job.trim().split(/\s+/);
  assert.equal(fields.length, 7, "five time fields, the user, the command");
  assert.equal(fields[5], "gatehouse", "run as the service's user (the store's directory is 0700)");
  assert.match(readmeSection(), new RegExp(`install -m 0755 deploy/cron/gatehouse-check ${fields[6]}\\b`));
  const shellcheck = await new Deno.Command("shellcheck", {
    args: [`${DEPLOY}/cron/gatehouse-check`],
    stdout: "piped",
    stderr: "piped",
  }).output().catch(() => null);
  if (shellcheck === null) console.log("shellcheck skipped: not installed");
  else assert.equal(shellcheck.code, 0, new TextDecoder().decode(shellcheck.stdout));
});

Deno.test("deploy recipes: the probe, health-check and cron commands against a running gatehouse", async () => {
  const fake = await FakeDiscord.start({ shards: 2, maxConcurrency: 2 });
  const dir = await Deno.makeTempDir({ prefix: "gatehouse-probes-" });
  const bin = gatehouseBin();
  const store = `${dir}/gatehouse.db`;
  const g = spawnGatehouse({ env: { ...fakeEnv(fake.apiHost), GATEHOUSE_STORE: store } });
  try {
    const url = await controlUrl(store);
    const { container } = statefulSet("deploy/kubernetes/statefulset.yaml");
    const local = (s: string) => s.replaceAll("http://127.0.0.1:7979", url);
    const readiness = container.readinessProbe.exec.command.map(local);
    const liveness = container.livenessProbe.exec.command.map(local);
    const healthcheck = /^CMD (.*)$/.exec(
      dockerfile(text("deploy/docker/Dockerfile")).find((s) => s.name === "HEALTHCHECK")!.args.replace(
        /^(--\S+ )+/,
        "",
      ),
    )![1];
    // The stand-in runs Deno: it needs Deno's cache (HOME or DENO_DIR) and nothing else of this process.
    const env: Record<string, string> = { PATH: `${bin}:/usr/bin:/bin` };
    for (const name of ["HOME", "DENO_DIR", "XDG_CACHE_HOME"]) {
      const value = Deno.env.get(name);
      if (value !== undefined) env[name] = value;
    }
    // Run where no gatehouse.toml is, as the probes of an image would.
    const probe = async () => ({
      readiness: (await sh(readiness, env, dir)).code,
      liveness: (await sh(liveness, env, dir)).code,
      healthcheck: (await sh(["/bin/sh", "-c", local(healthcheck)], env, dir)).code,
      cron: await sh([`${DEPLOY}/cron/gatehouse-check`], { ...env, GATEHOUSE_STORE: store }, dir),
    });
    const waitFor = async (code: number, what: string) => {
      const deadline = Date.now() + 30_000;
      while ((await sh(readiness, env, dir)).code !== code) {
        assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    };

    await waitFor(0, "every shard ready");
    let seen = await probe();
    assert.deepEqual([seen.readiness, seen.liveness, seen.healthcheck], [0, 0, 0], "healthy");
    assert.deepEqual([seen.cron.code, seen.cron.stdout], [0, ""], "cron says nothing while healthy");

    // Discord gone: it answers, no shard is ready. Alive (a restart would not help), not ready.
    await fake.stop();
    await waitFor(2, "no shard ready");
    seen = await probe();
    assert.deepEqual([seen.readiness, seen.liveness, seen.healthcheck], [2, 0, 1], "Discord gone");
    assert.equal(seen.cron.code, 2);
    assert.match(
      seen.cron.stdout,
      /is down or unreachable \(gatehouse shards --check exited 2\):\nDOWN: 0\/2 /,
    );

    // No answer at all (killed: its control file still names the address): not alive either.
    g.kill("SIGKILL");
    await g.status;
    seen = await probe();
    assert.deepEqual([seen.readiness, seen.liveness, seen.healthcheck], [2, 1, 1], "gatehouse gone");
    assert.equal(seen.cron.code, 2);
    assert.match(seen.cron.stdout, /DOWN: no gatehouse answers at /);
  } finally {
    g.kill("SIGKILL");
    await g.status;
    await fake.stop();
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(bin, { recursive: true });
  }
});
