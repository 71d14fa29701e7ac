// Credentials against a real `hearth serve`: a channel event named "token" is
// the app's (delivered once, never a credential); a refreshed token replaces
// the stale one of `params: {token}`; a refreshed token the server refuses is
// dropped for authToken, and an authToken that says "signed out" stops the
// client. Needs PostgreSQL for `hearth emit` (go run ./internal/pgtest/withpg npm test).

import { after, describe, test } from "node:test"
import assert from "node:assert/strict"
import { execFileSync } from "node:child_process"
import WebSocket from "ws"
import { Socket, SignedOut, type Channel, type SocketOptions, type TokenInfo } from "../src/index"
import { eventually, HearthServer } from "./hearth-server"

const DATABASE_URL = process.env.HEARTH_TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test"
const servers: HearthServer[] = []
const sockets: Socket[] = []

after(async () => {
  for (const s of sockets) s.disconnect()
  for (const s of servers) await s.stop()
})

async function start(args: string[]): Promise<HearthServer> {
  const srv = await HearthServer.start(args)
  servers.push(srv)
  return srv
}

/** A ws transport that records each connection's URL and subprotocols. */
function recorded() {
  const conns: Array<{ ws: WebSocket; url: string; protocols: string[] }> = []
  class Recorded extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols)
      conns.push({ ws: this, url, protocols: typeof protocols === "string" ? [protocols] : protocols ?? [] })
    }
  }
  return { Transport: Recorded, conns }
}

function open(srv: HearthServer, opts: SocketOptions) {
  const tr = recorded()
  const socket = new Socket(srv.socketURL, { transport: tr.Transport, reconnectBaseMs: 100, reconnectMaxMs: 400, ...opts })
  sockets.push(socket)
  const tokens: TokenInfo[] = []
  const terminal: Array<[number, string]> = []
  socket.onToken((t) => tokens.push(t))
  socket.onTerminal((code, reason) => terminal.push([code, reason]))
  socket.connect()
  return { socket, conns: tr.conns, tokens, terminal }
}

async function login(srv: HearthServer, user: string): Promise<string> {
  const res = await fetch(srv.httpURL + "/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user }) })
  assert.equal(res.status, 200)
  return (res.headers.get("set-cookie") ?? "").split(";")[0]
}

function joinOK(ch: Channel): Promise<void> {
  return new Promise((resolve, reject) => {
    ch.join().receive("ok", () => resolve()).receive("error", (r) => reject(new Error("join refused: " + JSON.stringify(r))))
  })
}

/** The bearer token a connection carried in Sec-WebSocket-Protocol. */
function bearer(protocols: string[]): string | null {
  const p = protocols.find((x) => x.startsWith("base64url.bearer.phx."))
  return p ? Buffer.from(p.slice("base64url.bearer.phx.".length), "base64url").toString("utf8") : null
}

describe("credentials against hearth serve", { timeout: 120_000 }, () => {
  test("a channel event named token reaches the app once and is never used as a credential", async () => {
    const srv = await start(["--database-url", DATABASE_URL])
    const cookie = await login(srv, "ann")
    let fetched = 0
    const c = open(srv, {
      authToken: async () => {
        fetched++
        const res = await fetch(srv.httpURL + "/token", { headers: { cookie } })
        return ((await res.json()) as { token: string }).token
      },
    })
    const room = `room:tok-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`
    const ch = c.socket.channel(room)
    const got: string[] = []
    ch.on("token", (p) => got.push(p.token))
    await joinOK(ch)
    // An LLM-style stream: the app's text in an event called "token".
    execFileSync(srv.bin, ["emit", "--database-url", DATABASE_URL, room, "token", JSON.stringify({ token: "Hello" })])
    await eventually("the token event", () => got.length === 1)
    assert.equal(ch.position()?.offset, 1, "the event's offset was not recorded")
    // Reconnect: the app's credential, not the event's text, goes out; the
    // event is not replayed.
    c.conns[0].ws.terminate()
    await eventually("rejoined", () => c.conns.length === 2 && ch.state === "joined", 10_000)
    assert.ok(bearer(c.conns[1].protocols), "the reconnect carried no token")
    assert.notEqual(bearer(c.conns[1].protocols), "Hello")
    assert.equal(fetched, 2, "authToken was not asked for the reconnect")
    execFileSync(srv.bin, ["emit", "--database-url", DATABASE_URL, room, "token", JSON.stringify({ token: " world" })])
    await eventually("the second token event", () => got.length === 2)
    assert.deepEqual(got, ["Hello", " world"], "an event was lost or delivered twice")
    assert.deepEqual(c.tokens, [], "a channel event was taken for a refreshed token")
    assert.deepEqual(c.terminal, [])
  })

  test("with params: {token}, the refreshed token replaces the stale one, which is not sent again", async () => {
    const srv = await start(["--token-ttl", "2s", "--refresh-window", "0.2-0.4"])
    const cookie = await login(srv, "bob")
    const first = ((await (await fetch(srv.httpURL + "/token", { headers: { cookie } })).json()) as { token: string }).token
    const c = open(srv, { params: { token: first } })
    const ch = c.socket.channel("private:bob")
    await joinOK(ch)
    await eventually("a refreshed token", () => c.tokens.length >= 1, 10_000)
    // Past the first token's life: sending it again would get 4502.
    await new Promise((r) => setTimeout(r, 2_500))
    c.conns[c.conns.length - 1].ws.terminate()
    await eventually("rejoined with the refreshed token", () => c.conns.length >= 2 && c.socket.isConnected() && ch.state === "joined", 10_000)
    const later = c.conns.slice(1)
    for (const conn of later) {
      assert.ok(!conn.url.includes(encodeURIComponent(first)) && !conn.url.includes(first), "the stale token was sent in the query")
      assert.notEqual(bearer(conn.protocols), first)
      assert.equal(new URL(conn.url).searchParams.get("token"), bearer(conn.protocols), "query and header carry the same fresh token")
    }
    assert.deepEqual(c.terminal, [])
  })

  test("a refreshed token the server refuses is dropped for authToken; a signed-out authToken stops the client", async () => {
    const srv = await start(["--secret", "first-secret-for-the-test-000000", "--token-ttl", "20s", "--refresh-window", "0.05-0.1"])
    const cookie = await login(srv, "cy")
    let fetched = 0
    const statuses: number[] = []
    const c = open(srv, {
      authToken: async () => {
        fetched++
        const res = await fetch(srv.httpURL + "/token", { headers: { cookie } })
        statuses.push(res.status)
        if (res.status === 401) throw new SignedOut()
        return ((await res.json()) as { token: string }).token
      },
    })
    const ch = c.socket.channel("private:cy")
    await joinOK(ch)
    await eventually("a refreshed token", () => c.tokens.length >= 1, 10_000)
    const pushes: string[] = []
    // The server comes back with another signing key: the refreshed token
    // and the session cookie are both invalid now.
    await srv.restartWith(["--secret", "second-secret-for-the-test-11111", "--token-ttl", "20s"])
    await eventually("terminal close", () => c.terminal.length === 1, 20_000)
    ch.push("new_msg", { body: "x" }).receive("error", (r) => pushes.push(r.reason))
    assert.deepEqual(c.terminal[0], [4501, "signed out"])
    assert.ok(c.conns.some((conn) => bearer(conn.protocols) === c.tokens[0].token), "the refreshed token was never tried")
    assert.equal(fetched, 2, "authToken is asked once after the refreshed token was refused, then never again")
    assert.deepEqual(statuses, [200, 401])
    assert.equal(ch.state, "closed")
    assert.deepEqual(pushes, ["signed out"])
    const n = c.conns.length
    await new Promise((r) => setTimeout(r, 1_500))
    assert.equal(c.conns.length, n, "the client kept connecting after signing out")
    assert.equal(fetched, 2)
  })
})
