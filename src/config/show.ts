/** How configuration messages quote values: bounded, so a 1 MB typo does not become a 1 MB message. */

/** Longest value (in characters) an error message quotes. */
export const MAX_SHOWN = 100;

/**
 * `text` cut to MAX_SHOWN characters, saying how long it was: `"xxxx… (1000000 characters)"`. `length`
 * is the length reported (default: of `text`).
 */
export function bounded(text: string, length = text.length): string {
  if (text.length <= MAX_SHOWN) return text;
  let end = MAX_SHOWN - 1;
  // Do not split a surrogate pair.
  if (/[\uD800-\uDBFF]/.test(text[end - 1])) end--;
  return `${text.slice(0, end)}… (${length} characters)`;
}

/** A value as an error message quotes it: JSON (strings in quotes), bounded. */
export function showValue(value: unknown): string {
  let text: string;
  try {
    text = typeof value === "bigint" ? value.toString() : JSON.stringify(value) ?? String(value);
  } catch {
    text = String(value);
  }
  return bounded(text, typeof value === "string" ? value.length : text.length);
}
