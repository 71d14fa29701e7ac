// Backoff, retry hints and the retry timer (pure logic, fake timers).

import { afterEach, beforeEach, mock, test } from "node:test"
import assert from "node:assert/strict"
import { backoff, isTerminal, retryHint, RetryTimer } from "../src/index"
import { seeded } from "./helpers"

beforeEach(() => mock.timers.enable({ apis: ["setTimeout"] }))
afterEach(() => mock.timers.reset())

test("backoff stays within [0, min(max, base*2^attempt))", () => {
  const r = seeded(1)
  for (let attempt = 0; attempt < 40; attempt++) {
    const cap = Math.min(20_000, 500 * 2 ** attempt)
    for (let i = 0; i < 200; i++) {
      const d = backoff(attempt, 500, 20_000, r)
      assert.ok(d >= 0 && d < cap, `attempt ${attempt}: ${d} outside [0, ${cap})`)
      assert.ok(Number.isInteger(d))
    }
  }
})

test("backoff jitters the whole window, also at the cap", () => {
  // The cap is applied before the jitter: at the cap the delays stay
  // uniform over [0, max) instead of piling up at max.
  const r = seeded(2)
  const n = 10_000
  const delays = Array.from({ length: n }, () => backoff(30, 500, 20_000, r))
  const mean = delays.reduce((a, b) => a + b, 0) / n
  assert.ok(Math.abs(mean - 10_000) < 300, `mean ${mean}`)
  const atCap = delays.filter((d) => d >= 19_900).length / n
  assert.ok(atCap < 0.01, `${atCap} of the delays sit at the cap`)
  const quarters = [0, 0, 0, 0]
  for (const d of delays) quarters[Math.floor(d / 5_000)]++
  for (const q of quarters) assert.ok(Math.abs(q / n - 0.25) < 0.02, `quarters ${quarters}`)
})

test("backoff uses the extremes of the random source", () => {
  assert.equal(backoff(0, 500, 20_000, () => 0), 0)
  assert.equal(backoff(0, 500, 20_000, () => 0.999999), 499)
  assert.equal(backoff(3, 500, 20_000, () => 0.5), 2000)
  assert.equal(backoff(1e9, 500, 20_000, () => 0.5), 10_000)
  assert.equal(backoff(-3, 500, 20_000, () => 0.5), 250)
})

test("retry hints", () => {
  const cases: Array<[string, number, string | undefined, number | null]> = [
    ["service restart with hint", 1012, "service restart retry_after_ms=2500", 2500],
    ["try again later with hint", 1013, "try again later retry_after_ms=750", 750],
    ["hint alone", 1013, "retry_after_ms=0", 0],
    ["JSON reason", 1013, '{"reason":"overloaded","retry_after_ms":1200}', 1200],
    ["JSON reason, string value", 1012, '{"retry_after_ms":"300"}', 300],
    ["no hint", 1012, "service restart", null],
    ["empty reason", 1013, "", null],
    ["no reason", 1013, undefined, null],
    ["malformed value", 1013, "retry_after_ms=soon", null],
    ["huge hint is clamped to 10 minutes", 1013, "retry_after_ms=99999999999", 600_000],
    ["other reconnectable code with hint", 4008, "slow consumer retry_after_ms=100", 100],
    ["terminal code ignores a hint", 4503, "revoked retry_after_ms=100", null],
  ]
  for (const [name, code, reason, want] of cases) {
    assert.equal(retryHint(code, reason), want, name)
  }
})

test("terminal codes are 4500-4999", () => {
  for (const [code, want] of [[1000, false], [1012, false], [4100, false], [4499, false], [4500, true], [4501, true], [4503, true], [4999, true], [5000, false]] as const) {
    assert.equal(isTerminal(code), want, String(code))
  }
})

test("RetryTimer counts tries, passes them to the delay function and resets", () => {
  const seen: number[] = []
  let fired = 0
  const t = new RetryTimer(() => fired++, (tries) => {
    seen.push(tries)
    return tries * 100
  })
  assert.equal(t.schedule(), 100)
  assert.ok(t.pending)
  mock.timers.tick(99)
  assert.equal(fired, 0)
  mock.timers.tick(1)
  assert.equal(fired, 1)
  assert.ok(!t.pending)
  assert.equal(t.schedule(), 200)
  t.cancel()
  mock.timers.tick(1000)
  assert.equal(fired, 1, "cancelled timer fired")
  assert.equal(t.tries, 2, "cancel keeps the tries")
  assert.equal(t.schedule(50), 50, "an explicit delay wins")
  assert.equal(t.tries, 3)
  t.start(10)
  assert.equal(t.tries, 3, "start does not count a try")
  mock.timers.tick(10)
  assert.equal(fired, 2)
  t.reset()
  assert.equal(t.tries, 0)
  t.schedule()
  assert.deepEqual(seen, [1, 2, 1])
})
