import assert from "node:assert/strict";
import { CLOSE_CODES, closeRule } from "../../src/gateway/close_codes.ts";

// Every row of the docs/protocol.md §4 table, with the action we picked (the exit codes of the fatal ones
// are the CLI's: tests/cli/exit_codes_test.ts).
const EXPECTED: Array<[number, "resume" | "identify" | "fatal"]> = [
  [4000, "resume"],
  [4001, "resume"],
  [4002, "resume"],
  [4003, "identify"],
  [4004, "fatal"],
  [4005, "resume"],
  [4007, "identify"],
  [4008, "resume"],
  [4009, "identify"],
  [4010, "fatal"],
  [4011, "fatal"],
  [4012, "fatal"],
  [4013, "fatal"],
  [4014, "fatal"],
];

for (const [code, action] of EXPECTED) {
  Deno.test(`close code ${code}: ${action}`, () => {
    const rule = closeRule(code);
    assert.equal(rule.action, action);
    assert.ok(rule.meaning.length > 0);
  });
}

Deno.test("the table has exactly the documented codes (no 4006 on the main gateway)", () => {
  assert.deepEqual(
    Object.keys(CLOSE_CODES).map(Number).sort(),
    EXPECTED.map(([code]) => code).sort(),
  );
});

Deno.test("codes outside the table resume: 1000, 1001, 1006 (dropped), 1011, 4006, 4999", () => {
  for (const code of [1000, 1001, 1006, 1011, 4006, 4999]) {
    assert.equal(closeRule(code).action, "resume", String(code));
  }
  assert.equal(closeRule(1006).meaning, "connection lost");
});
