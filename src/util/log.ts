/**
 * Logging: LogTape to stderr, human text on a terminal and JSON lines otherwise (so log shippers and
 * `jq` can read them). stdout carries events only, never logs.
 *
 * Secrets are redacted twice: values are `Secret` objects that print as `<redacted>`, and the sink
 * replaces any registered secret text that still reaches a formatted line (an error message from a
 * library, a URL, a password a library gives back percent-encoded) before it is written — in every
 * escaped form the line may hold it (see `addSecret`).
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
import { format } from "node:util";

export type { Logger, LogLevel };

const encoder = new TextEncoder();
/** Every form of every registered secret, longest first (a URL goes before the password inside it). */
let secrets: string[] = [];

/**
 * Parts of a secret (a URL's password or userinfo) shorter than this are not registered: redacting
 * "pw" or "u:a" would mangle every line that happens to hold those letters. A whole secret is
 * registered whatever its length.
 */
export const MIN_FRAGMENT_LENGTH = 4;

/**
 * Registers a text that must never appear in a log line (the bot token, a broker URL, a password). Its
 * escaped forms are registered with it, because a line may hold the secret only as JSON escaped it
 * (once, or twice when a message holding JSON is itself a JSON log line), as Deno.inspect quotes it, or
 * percent-encoded (as a library that rebuilds a URL writes it). `fragment`: the text is a part of a
 * secret (a URL's password); parts under MIN_FRAGMENT_LENGTH characters are skipped.
 */
export function addSecret(text: string, options: { fragment?: boolean } = {}): void {
  if (text.length === 0) return;
  if (options.fragment && text.length < MIN_FRAGMENT_LENGTH) return;
  const forms = new Set(secrets);
  for (const form of escapedForms(text)) if (form.length > 0) forms.add(form);
  secrets = [...forms].sort((a, b) => b.length - a.length);
}

/** The forms in which `text` can reach a formatted log line. */
function escapedForms(text: string): string[] {
  const json = JSON.stringify(text).slice(1, -1);
  const forms = [text, json, JSON.stringify(json).slice(1, -1), inspected(text)];
  for (const form of [text, ...tryDecode(text)]) {
    forms.push(encodeURIComponent(form), userinfoEncoded(form));
  }
  return forms;
}

/** The string as Deno.inspect (and node:util) print it inside an object, without its quotes. */
function inspected(text: string): string {
  const shown = Deno.inspect([text], { colors: false, strAbbreviateSize: Infinity });
  const start = shown.search(/['"`]/);
  const end = shown.lastIndexOf(shown[start]);
  return start >= 0 && end > start ? shown.slice(start + 1, end) : text;
}

/** How the URL standard percent-encodes `text` as a password (it leaves `$&+,` alone, unlike encodeURIComponent). */
function userinfoEncoded(text: string): string {
  const url = new URL("http://host/");
  url.password = text;
  return url.password;
}

function tryDecode(text: string): string[] {
  try {
    const decoded = decodeURIComponent(text);
    return decoded === text ? [] : [decoded];
  } catch {
    return [];
  }
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

/**
 * Libraries that print (ioredis warns with `console.warn`, for one) would put plain text among the
 * JSON log lines on stderr, or worse, on stdout, which carries events only. From here on the console
 * goes through the logger (category `gatehouse.library`), formatted as Node would, secrets redacted.
 */
export function captureConsole(): void {
  const log = logger("library");
  const route = (level: "debug" | "info" | "warn" | "error") => (...args: unknown[]) =>
    log[level]("{text}", { text: format(...args) });
  console.log = route("info");
  console.info = route("info");
  console.debug = route("debug");
  console.trace = route("debug");
  console.warn = route("warn");
  console.error = route("error");
}
