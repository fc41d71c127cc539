/**
 * A secret value (the bot token) that cannot leak by accident: it prints as `<redacted>` through
 * String(), JSON.stringify() and Deno.inspect(). Only `reveal()` gives the value, at the few places
 * that must send it to Discord.
 */
export class Secret {
  readonly #value: string;

  constructor(value: string) {
    this.#value = value;
  }

  reveal(): string {
    return this.#value;
  }

  get isEmpty(): boolean {
    return this.#value.length === 0;
  }

  toString(): string {
    return "<redacted>";
  }

  toJSON(): string {
    return "<redacted>";
  }

  [Symbol.for("Deno.customInspect")](): string {
    return "Secret(<redacted>)";
  }
}
