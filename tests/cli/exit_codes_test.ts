import assert from "node:assert/strict";
import { closeExitCode } from "../../src/cli/exit_codes.ts";
import { CLOSE_CODES } from "../../src/gateway/close_codes.ts";

// The README's exit-code table: 3 token, 4 intents, 5 shard layout, 2 configuration (API version).
const EXPECTED: Array<[number, number]> = [
  [4004, 3],
  [4010, 5],
  [4011, 5],
  [4012, 2],
  [4013, 4],
  [4014, 4],
];

for (const [code, exitCode] of EXPECTED) {
  Deno.test(`fatal close ${code} exits with ${exitCode}`, () => {
    assert.equal(closeExitCode(code), exitCode);
  });
}

Deno.test("every close code the gateway treats as fatal has its own exit code, and only those", () => {
  const fatal = Object.entries(CLOSE_CODES).filter(([, rule]) => rule.action === "fatal").map(([c]) =>
    Number(c)
  );
  assert.deepEqual(fatal.sort(), EXPECTED.map(([code]) => code).sort());
});

Deno.test("a close code without an exit code of its own exits with 1", () => {
  for (const code of [1000, 1006, 4000, 4003, 4999]) assert.equal(closeExitCode(code), 1, String(code));
});
