/**
 * Logging: LogTape to stderr, human text on a terminal and JSON lines otherwise (so log shippers and
 * `jq` can read them). stdout carries events only, never logs.
 *
 * Secrets are redacted twice: values are `Secret` objects that print as `<redacted>`, and the sink
 * replaces any registered secret text that still reaches a formatted line (an error message from a
 * library, a URL) before it is written.
 */
import {
  configureSync,
  getAnsiColorFormatter,
  getLogger,
  type Logger,
  type LogLevel,
  type LogRecord,
  resetSync,
} from "@logtape/logtape";

export type { Logger, LogLevel };

const encoder = new TextEncoder();
const secrets = new Set<string>();

/** Registers a text that must never appear in a log line (the bot token). */
export function addSecret(text: string): void {
  if (text.length > 0) secrets.add(text);
}

/** Replaces every registered secret in `text` with `<redacted>`. */
export function redact(text: string): string {
  for (const secret of secrets) {
    if (text.includes(secret)) text = text.replaceAll(secret, "<redacted>");
  }
  return text;
}

export interface LoggingOptions {
  level: LogLevel;
  /** Defaults to JSON unless stderr is a terminal. */
  format?: "text" | "json";
  /** Where lines go; defaults to stderr (synchronously, so nothing is lost on exit). */
  write?: (line: string) => void;
}

export function setupLogging(options: LoggingOptions): void {
  const format = options.format ?? (Deno.stderr.isTerminal() ? "text" : "json");
  const formatter = format === "text"
    ? getAnsiColorFormatter({
      timestamp: "time",
      level: "FULL",
      category: ".",
      value: (value, inspect) => (typeof value === "string" ? value : inspect(value, { colors: true })),
    })
    : jsonLine;
  const write = options.write ?? writeStderr;
  const sink = (record: LogRecord) => write(redact(formatter(record)));
  resetSync();
  configureSync({
    reset: true,
    sinks: { stderr: sink },
    loggers: [
      { category: ["gatehouse"], lowestLevel: options.level, sinks: ["stderr"] },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** Strings are interpolated bare (no quotes): messages read as sentences in JSON logs too. */
function render(record: LogRecord): string {
  let text = "";
  for (let i = 0; i < record.message.length; i++) {
    const part = record.message[i];
    text += i % 2 === 0 || typeof part === "string" ? String(part) : safeJson(part);
  }
  return text;
}

function safeJson(value: unknown): string {
  try {
    return typeof value === "bigint" ? value.toString() : JSON.stringify(value) ?? String(value);
  } catch {
    return String(value);
  }
}

/** One JSON object per line: time, level, rendered message, logger, then the properties. */
function jsonLine(record: LogRecord): string {
  const line: Record<string, unknown> = {
    "@timestamp": new Date(record.timestamp).toISOString(),
    level: record.level.toUpperCase(),
    message: render(record),
    logger: record.category.join("."),
  };
  for (const [key, value] of Object.entries(record.properties)) {
    if (!(key in line)) line[key] = typeof value === "bigint" ? value.toString() : value;
  }
  return `${safeJson(line)}\n`;
}

function writeStderr(line: string): void {
  const bytes = encoder.encode(line);
  let offset = 0;
  try {
    while (offset < bytes.length) offset += Deno.stderr.writeSync(bytes.subarray(offset));
  } catch {
    // stderr closed: nowhere left to report to.
  }
}

/** A logger under the `gatehouse` category, e.g. `logger("shard")` → `gatehouse.shard`. */
export function logger(...category: string[]): Logger {
  return getLogger(["gatehouse", ...category]);
}
