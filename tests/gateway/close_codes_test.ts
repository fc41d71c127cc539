import assert from "node:assert/strict";
import { CLOSE_CODES, closeRule } from "../../src/gateway/close_codes.ts";

// Every row of the protocol doc's §4 table, with the action we picked and the exit code for fatal ones.
const EXPECTED: Array<[number, "resume" | "identify" | "fatal", number | undefined]> = [
  [4000, "resume", undefined],
  [4001, "resume", undefined],
  [4002, "resume", undefined],
  [4003, "identify", undefined],
  [4004, "fatal", 3],
  [4005, "resume", undefined],
  [4007, "identify", undefined],
  [4008, "resume", undefined],
  [4009, "identify", undefined],
  [4010, "fatal", 5],
  [4011, "fatal", 5],
  [4012, "fatal", 2],
  [4013, "fatal", 4],
  [4014, "fatal", 4],
];

for (const [code, action, exitCode] of EXPECTED) {
  Deno.test(`close code ${code}: ${action}${exitCode ? ` (exit ${exitCode})` : ""}`, () => {
    const rule = closeRule(code);
    assert.equal(rule.action, action);
    assert.equal(rule.exitCode, exitCode);
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
