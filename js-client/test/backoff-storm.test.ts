// A reconnect storm, simulated with 1,000 real Socket instances on mocked
// time: every client loses its connection at t=0, the server refuses
// connections until it is back at t=10 s. We record every connection
// attempt and compare Hearth's default backoff with Phoenix's fixed steps
// and socket.io-client's formula (both run through the same Socket via
// reconnectAfterMs). The figures are printed as test diagnostics and
// recorded in docs/client.md.

import { afterEach, beforeEach, mock, test, type TestContext } from "node:test"
import assert from "node:assert/strict"
import { Socket, type SocketOptions } from "../src/index"
import { advance, FakeWebSocket, seeded } from "./helpers"

const CLIENTS = 1_000
const DOWN_MS = 10_000
const BUCKET_MS = 100

beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "Date"], now: 0 }))
afterEach(() => mock.timers.reset())

/** phoenix.js's default reconnectAfterMs. */
const phoenixSchedule = (tries: number): number => [10, 50, 100, 150, 200, 250, 500, 1000, 2000][tries - 1] ?? 5000

/**
 * socket.io-client's default delay: 1 s doubling, ±50% jitter, then capped
 * at 5 s (the cap applied after the jitter).
 */
function socketIoSchedule(random: () => number) {
  return (tries: number): number => {
    let ms = 1000 * 2 ** (tries - 1)
    const rand = random()
    const deviation = Math.floor(rand * 0.5 * ms)
    ms = (Math.floor(rand * 10) & 1) === 0 ? ms - deviation : ms + deviation
    return Math.min(ms, 5000) | 0
  }
}

interface Storm {
  /** Times of all connection attempts after the drop. */
  attempts: number[]
  /** Per client: when it got back (its first attempt once the server was up). */
  arrivals: number[]
}

function storm(options: (i: number) => SocketOptions): Storm {
  const attempts: number[] = []
  const arrivals: number[] = []
  let serverUp = true
  let recording = false
  let dropAt = 0
  const sockets: Socket[] = []
  for (let i = 0; i < CLIENTS; i++) {
    const conns: FakeWebSocket[] = []
    class Transport extends FakeWebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url, protocols)
        conns.push(this)
        const at = Date.now() - dropAt
        if (recording) attempts.push(at)
        // A refused connection fails after 1 ms; an accepted one opens.
        setTimeout(() => {
          if (!serverUp) {
            this.drop(1006)
            return
          }
          if (recording && arrivals[i] === undefined) arrivals[i] = at
          this.open()
        }, 1)
      }
    }
    const s = new Socket("ws://example.test/socket", { transport: Transport, environment: null, heartbeatIntervalMs: 3_600_000, ...options(i) })
    sockets.push(s)
    s.connect()
    mock.timers.tick(1)
    ;(s as unknown as { conns: FakeWebSocket[] }).conns = conns
  }
  mock.timers.tick(60_000) // everyone connected and stable
  serverUp = false
  recording = true
  dropAt = Date.now()
  for (const s of sockets) (s as unknown as { conns: FakeWebSocket[] }).conns.at(-1)!.drop(1006)
  const tick = (ms: number) => mock.timers.tick(ms)
  advance(tick, DOWN_MS)
  serverUp = true
  advance(tick, 60_000)
  for (const s of sockets) s.disconnect()
  assert.equal(arrivals.filter((x) => x !== undefined).length, CLIENTS, "not every client reconnected")
  return { attempts, arrivals }
}

function maxBucketShare(times: number[]): number {
  const buckets = new Map<number, number>()
  for (const t of times) buckets.set(Math.floor(t / BUCKET_MS), (buckets.get(Math.floor(t / BUCKET_MS)) ?? 0) + 1)
  return Math.max(...buckets.values()) / CLIENTS
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]
}

function summarize(t: TestContext, name: string, s: Storm) {
  const arrivals = s.arrivals.slice().sort((a, b) => a - b)
  const r = {
    peakArrivalShare: maxBucketShare(arrivals),
    peakAttemptShare: maxBucketShare(s.attempts),
    spreadP5P95: percentile(arrivals, 0.95) - percentile(arrivals, 0.05),
    medianWaitAfterUp: percentile(arrivals, 0.5) - DOWN_MS,
    p99WaitAfterUp: percentile(arrivals, 0.99) - DOWN_MS,
    attemptsPerClient: s.attempts.length / CLIENTS,
  }
  t.diagnostic(`${name}: peak arrivals in one ${BUCKET_MS} ms bucket ${(r.peakArrivalShare * 100).toFixed(1)}% of clients; ` +
    `peak attempts in one bucket ${(r.peakAttemptShare * 100).toFixed(1)}%; arrivals p5-p95 spread ${r.spreadP5P95} ms; ` +
    `wait after the server is back: median ${r.medianWaitAfterUp} ms, p99 ${r.p99WaitAfterUp} ms; ${r.attemptsPerClient.toFixed(1)} attempts per client`)
  return r
}

test("1,000 clients that fail together do not reconnect in lockstep", (t) => {
  const hearth = summarize(t, "hearth (full jitter, 500 ms base, 20 s cap)", storm((i) => ({ random: seeded(1000 + i) })))
  const phoenix = summarize(t, "phoenix.js schedule", storm(() => ({ reconnectAfterMs: phoenixSchedule })))
  const sio = summarize(t, "socket.io-client formula", storm((i) => ({ reconnectAfterMs: socketIoSchedule(seeded(5000 + i)) })))
  // The same full jitter with socket.io's 5 s cap, for a like-for-like comparison.
  const hearth5 = summarize(t, "hearth with a 5 s cap", storm((i) => ({ random: seeded(9000 + i), reconnectMaxMs: 5_000 })))
  // At its cap socket.io's formula gives most clients exactly the cap:
  // whatever clustering the fleet has then, it keeps.
  const sioDelays: number[] = []
  for (let i = 0; i < CLIENTS; i++) {
    const f = socketIoSchedule(seeded(7000 + i))
    for (let tries = 4; tries <= 8; tries++) sioDelays.push(f(tries))
  }
  const atCap = sioDelays.filter((d) => d === 5000).length / sioDelays.length
  t.diagnostic(`socket.io-client formula: ${(atCap * 100).toFixed(0)}% of the delays from the 4th attempt on are exactly the 5 s cap`)
  assert.ok(atCap > 0.8)
  assert.ok(hearth5.peakArrivalShare < 0.05, `hearth 5 s cap peak ${hearth5.peakArrivalShare}`)

  // Phoenix's fixed steps bring every client back in the same instant.
  assert.ok(phoenix.peakArrivalShare >= 0.99, `phoenix peak ${phoenix.peakArrivalShare}`)
  assert.ok(phoenix.spreadP5P95 === 0)
  // Full jitter spreads the fleet: no 100 ms window sees more than a few
  // percent of it coming back.
  assert.ok(hearth.peakArrivalShare < 0.05, `hearth peak arrival share ${hearth.peakArrivalShare}`)
  // During the outage the busiest window is the first: every client's first
  // retry falls in [0, 500 ms), about 20% per 100 ms, plus early second
  // retries. Phoenix sends the whole fleet twice within 100 ms.
  assert.ok(hearth.peakAttemptShare < 0.35, `hearth peak attempt share ${hearth.peakAttemptShare}`)
  assert.ok(phoenix.peakAttemptShare >= 1.99, `phoenix peak attempt share ${phoenix.peakAttemptShare}`)
  assert.ok(hearth.spreadP5P95 > 2_000, `hearth spread ${hearth.spreadP5P95}`)
  assert.ok(hearth.peakArrivalShare < sio.peakArrivalShare, "hearth spreads less than socket.io")
  // And it does not make clients wait unreasonably: the cap bounds the wait.
  assert.ok(hearth.p99WaitAfterUp < 20_000, `hearth p99 wait ${hearth.p99WaitAfterUp}`)
})
