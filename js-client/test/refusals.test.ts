// Refusals every client backs off from (issue 13): the OFFICIAL phoenix
// client (ws as its transport), which reads no close codes and resets its
// backoff on every successful upgrade, against a real `hearth serve`, one
// test per refusal path. Over 10 s it must stay within its own schedule (10,
// 50, 100, 150, 200, 250, 500 ms, 1, 2, 5 s: about 10 attempts; at most 15
// allowed), and the server's own counter (hearth_upgrades_total on
// /metrics) says how many of those attempts were upgraded. The Hearth
// client, which reads the close codes, is checked on the same paths.

import { after, describe, test } from "node:test"
import assert from "node:assert/strict"
import { LongPoll, Socket as PhoenixSocket } from "phoenix"
import WebSocket from "ws"
import { Socket, type SocketOptions } from "../src/index"
import { eventually, HearthServer } from "./hearth-server"

const WINDOW_MS = 10_000
const MAX_ATTEMPTS = 15

const servers: HearthServer[] = []
const closers: Array<() => void> = []

after(async () => {
  for (const c of closers) c()
  for (const s of servers) await s.stop()
})

async function start(args: string[] = []): Promise<HearthServer> {
  const s = await HearthServer.start(args)
  servers.push(s)
  return s
}

/** Reads one counter of the server's /metrics. */
async function metric(srv: HearthServer, name: string): Promise<number> {
  const body = await (await fetch(srv.httpURL + "/metrics")).text()
  const m = body.match(new RegExp(`^hearth_${name} (\\S+)$`, "m"))
  if (!m) throw new Error(`no hearth_${name} in /metrics:\n${body}`)
  return Number(m[1])
}

/** A ws transport that counts connection attempts and opens, with extra ws options (an Origin header). */
function countingTransport(wsOpts: WebSocket.ClientOptions = {}) {
  const attempts: WebSocket[] = []
  let opened = 0
  class Counting extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols, wsOpts)
      attempts.push(this)
      this.on("open", () => { opened++ })
      this.on("error", () => {}) // refused handshakes: the client's onerror reports them too
    }
  }
  return { Transport: Counting, attempts, opened: () => opened }
}

function phoenixSocket(srv: HearthServer, opts: Record<string, unknown> = {}, wsOpts: WebSocket.ClientOptions = {}) {
  const tr = countingTransport(wsOpts)
  const socket = new PhoenixSocket(srv.socketURL, { transport: tr.Transport as never, ...opts })
  closers.push(() => socket.disconnect())
  const closes: number[] = []
  socket.onClose((ev: { code: number }) => { closes.push(ev.code) })
  socket.connect()
  return { socket, closes, ...tr }
}

function hearthSocket(srv: HearthServer, opts: SocketOptions = {}, wsOpts: WebSocket.ClientOptions = {}) {
  const tr = countingTransport(wsOpts)
  const socket = new Socket(srv.socketURL, { transport: tr.Transport as never, ...opts })
  closers.push(() => socket.disconnect())
  const terminal: Array<[number, string]> = []
  socket.onTerminal((code, reason) => terminal.push([code, reason]))
  socket.connect()
  return { socket, terminal, ...tr }
}

interface Observed {
  attempts: number
  upgrades: number
  refused: number
}

/**
 * Watches for 10 s from now: the client's connection attempts and the
 * server's upgrades and HTTP refusals in that time.
 */
async function observe(srv: HearthServer, attempts: () => number): Promise<Observed> {
  const a0 = attempts()
  const u0 = await metric(srv, "upgrades_total")
  const r0 = await metric(srv, "connects_refused_http_total")
  await new Promise((r) => setTimeout(r, WINDOW_MS))
  return {
    attempts: attempts() - a0,
    upgrades: (await metric(srv, "upgrades_total")) - u0,
    refused: (await metric(srv, "connects_refused_http_total")) - r0,
  }
}

function withinSchedule(o: Observed, what: string): void {
  assert.ok(o.attempts <= MAX_ATTEMPTS, `${what}: ${o.attempts} connection attempts in 10 s (at most ${MAX_ATTEMPTS}): ${JSON.stringify(o)}`)
  assert.ok(o.attempts >= 5, `${what}: only ${o.attempts} attempts in 10 s: phoenix.js should keep retrying on its schedule`)
}

/** Logs in to the demo and returns the session cookie. */
async function login(srv: HearthServer, user: string): Promise<string> {
  const res = await fetch(srv.httpURL + "/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user }) })
  assert.equal(res.status, 200)
  return (res.headers.get("set-cookie") ?? "").split(";")[0]
}

async function fetchToken(srv: HearthServer, cookie: string): Promise<{ token: string; expires_at: number }> {
  const res = await fetch(srv.httpURL + "/token", { headers: { cookie } })
  assert.equal(res.status, 200)
  return (await res.json()) as { token: string; expires_at: number }
}

/** A token of the demo that has expired. */
async function expiredToken(srv: HearthServer): Promise<string> {
  const t = await fetchToken(srv, await login(srv, "sleepy"))
  await eventually("the token to expire", () => Date.now() > t.expires_at * 1000 + 200, 5_000)
  return t.token
}

describe("refusals phoenix.js backs off from", { timeout: 60_000, concurrency: true }, () => {
  test("expired token (4502): refused with 403 before every upgrade", async (t) => {
    const srv = await start(["--token-ttl", "1s"])
    const token = await expiredToken(srv)
    const p = phoenixSocket(srv, { authToken: token })
    const o = await observe(srv, () => p.attempts.length)
    t.diagnostic(`observed over 10 s: ${JSON.stringify(o)}`)
    withinSchedule(o, "expired token")
    assert.equal(o.upgrades, 0, "an expired token was upgraded")
    assert.equal(p.opened(), 0)
    assert.ok(o.refused >= o.attempts - 1, `the connect hook's refusals were answered with HTTP: ${JSON.stringify(o)}`)
  })

  test("invalid token (4501): refused with 403 before every upgrade", async (t) => {
    const srv = await start()
    const p = phoenixSocket(srv, { authToken: "not-a-token" })
    const o = await observe(srv, () => p.attempts.length)
    t.diagnostic(`observed over 10 s: ${JSON.stringify(o)}`)
    withinSchedule(o, "invalid token")
    assert.equal(o.upgrades, 0)
  })

  test("revoked session (4503 on an open socket): the reconnect with the same, still valid, token is refused before the upgrade", async (t) => {
    // Tokens live 30 s and are refreshed 1.5-3 s after they are issued.
    const srv = await start(["--token-ttl", "30s", "--refresh-window", "0.05-0.1"])
    const cookie = await login(srv, "ann")
    const { token } = await fetchToken(srv, cookie)
    const p = phoenixSocket(srv, { authToken: token })
    await eventually("phoenix socket open", () => p.socket.isConnected())
    const out = await fetch(srv.httpURL + "/logout", { method: "POST", headers: { cookie } })
    assert.equal(out.status, 204)
    await eventually("the revocation", () => p.closes.includes(4503), 10_000)
    const o = await observe(srv, () => p.attempts.length)
    t.diagnostic(`observed over 10 s: ${JSON.stringify(o)}`)
    withinSchedule(o, "revoked session")
    assert.equal(o.upgrades, 0, "the token of a revoked session was upgraded again")
    assert.equal(p.opened(), 1)
  })

  test("origin not allowed: 403 before the upgrade", async (t) => {
    const srv = await start()
    const p = phoenixSocket(srv, {}, { origin: "http://evil.example" })
    const o = await observe(srv, () => p.attempts.length)
    t.diagnostic(`observed over 10 s: ${JSON.stringify(o)}`)
    withinSchedule(o, "origin")
    assert.equal(o.upgrades, 0)
  })

  test("shed by admission control, from a browser (1013 for Hearth clients): 503 before the upgrade", async (t) => {
    // One connection per 1000 s per address, a burst of one: taken below.
    const srv = await start(["--conn-rate-per-ip", "0.001"])
    const first = new WebSocket(srv.socketURL + "/websocket?vsn=2.0.0")
    await new Promise((resolve, reject) => { first.once("open", resolve); first.once("error", reject) })
    first.close()
    const p = phoenixSocket(srv, {}, { origin: srv.httpURL })
    const o = await observe(srv, () => p.attempts.length)
    t.diagnostic(`observed over 10 s: ${JSON.stringify(o)}`)
    withinSchedule(o, "shed")
    assert.equal(o.upgrades, 0, "a shed phoenix.js was upgraded (and its backoff reset) to be told 1013")
  })

  test("message rate (4029), an app that floods on every open: a cooldown of 429s holds its backoff", async (t) => {
    const srv = await start()
    const p = phoenixSocket(srv)
    p.socket.onOpen(() => {
      for (let i = 0; i < 300; i++) p.socket.push({ topic: "phoenix", event: "heartbeat", payload: {}, ref: `f${i}` } as never)
    })
    await eventually("the first 4029", () => p.closes.includes(4029))
    const o = await observe(srv, () => p.attempts.length)
    t.diagnostic(`observed over 10 s: ${JSON.stringify(o)}`)
    withinSchedule(o, "4029")
    assert.ok(o.upgrades <= 1, `${o.upgrades} upgrades in 10 s after a 4029: the reconnects loop`)
  })

  test("message rate (4029) over long-poll (phoenix.js LongPoll), an app that floods on every open: the cooldown refuses its next sessions and its backoff climbs", async (t) => {
    const srv = await start()
    // phoenix.js reads only the answer's "status": a refused open must be
    // one it backs off from (500 or 403), not one that opens (410) and
    // resets its backoff, nor one it does not know (it throws on 429).
    const socket = new PhoenixSocket(srv.socketURL, { transport: LongPoll } as never)
    closers.push(() => socket.disconnect())
    const closes: number[] = []
    socket.onClose((ev: { code: number }) => { closes.push(ev.code) })
    socket.onOpen(() => {
      for (let i = 0; i < 300; i++) socket.push({ topic: "phoenix", event: "heartbeat", payload: {}, ref: `f${i}` } as never)
    })
    socket.connect()
    await eventually("the session closed for its flood", () => closes.length > 0, 10_000)
    const a0 = await metric(srv, "connections_accepted_total")
    const c0 = await metric(srv, "reconnects_cooled_down_total")
    await new Promise((r) => setTimeout(r, WINDOW_MS))
    const opened = (await metric(srv, "connections_accepted_total")) - a0
    const cooled = (await metric(srv, "reconnects_cooled_down_total")) - c0
    const o: Observed = { attempts: opened + cooled, upgrades: opened, refused: cooled }
    t.diagnostic(`observed over 10 s: ${JSON.stringify(o)}`)
    withinSchedule(o, "4029 over long-poll")
    assert.ok(opened <= 1, `${opened} sessions opened in 10 s after a 4029: the reconnects loop`)
  })

  test("message too big (1009), an app that sends it on every open: a cooldown of 429s holds its backoff", async (t) => {
    const srv = await start()
    const p = phoenixSocket(srv)
    const big = "x".repeat(70 << 10)
    p.socket.onOpen(() => { p.socket.push({ topic: "phoenix", event: "heartbeat", payload: { big }, ref: "big" } as never) })
    await eventually("the first 1009", () => p.closes.includes(1009))
    const o = await observe(srv, () => p.attempts.length)
    t.diagnostic(`observed over 10 s: ${JSON.stringify(o)}`)
    withinSchedule(o, "1009")
    assert.ok(o.upgrades <= 1, `${o.upgrades} upgrades in 10 s after a 1009: the reconnects loop`)
  })

  test("drain (1012): the draining node answers 503, then nothing", async (t) => {
    const srv = await start(["--drain-window", "0"])
    const p = phoenixSocket(srv)
    await eventually("phoenix socket open", () => p.socket.isConnected())
    const attempts = () => p.attempts.length
    const a0 = attempts()
    await srv.stop()
    await new Promise((r) => setTimeout(r, WINDOW_MS))
    assert.ok(p.closes.includes(1012), `closes ${p.closes}`)
    const n = attempts() - a0
    t.diagnostic(`attempts over 10 s after the drain: ${n}`)
    assert.ok(n <= MAX_ATTEMPTS && n >= 5, `${n} attempts in 10 s after a drain`)
  })
})

describe("the Hearth client on the same refusals", { timeout: 60_000, concurrency: true }, () => {
  test("expired token: upgraded to be told 4502, stops at once and tells the app", async () => {
    const srv = await start(["--token-ttl", "1s"])
    const token = await expiredToken(srv)
    const h = hearthSocket(srv, { authToken: token })
    await eventually("the terminal close", () => h.terminal.length === 1)
    assert.deepEqual(h.terminal, [[4502, "token expired"]])
    await new Promise((r) => setTimeout(r, 1_000))
    assert.equal(h.attempts.length, 1, "the Hearth client reconnected after a terminal close")
    assert.equal(h.socket.connectionState(), "closed")
  })

  test("origin not allowed (403 it cannot see): backs off, never loops", async (t) => {
    const srv = await start()
    const h = hearthSocket(srv, {}, { origin: "http://evil.example" })
    const o = await observe(srv, () => h.attempts.length)
    t.diagnostic(`observed over 10 s: ${JSON.stringify(o)}`)
    assert.ok(o.attempts >= 2 && o.attempts <= MAX_ATTEMPTS, `${o.attempts} attempts in 10 s`)
    assert.equal(o.upgrades, 0)
    assert.equal(h.opened(), 0)
  })

  test("revoked session: 4503 once, then nothing", async (t) => {
    const srv = await start(["--token-ttl", "30s", "--refresh-window", "0.05-0.1"])
    const cookie = await login(srv, "bob")
    const { token } = await fetchToken(srv, cookie)
    const h = hearthSocket(srv, { authToken: token })
    await eventually("connected", () => h.socket.isConnected())
    await fetch(srv.httpURL + "/logout", { method: "POST", headers: { cookie } })
    await eventually("the terminal close", () => h.terminal.length === 1, 10_000)
    assert.deepEqual(h.terminal, [[4503, "session revoked"]])
    const o = await observe(srv, () => h.attempts.length)
    t.diagnostic(`observed over 10 s: ${JSON.stringify(o)}`)
    assert.equal(o.attempts, 0)
  })
})
