// The socket: URL and credentials, heartbeats, reconnect backoff, server
// hints, terminal codes, token refresh, hidden tabs and offline browsers.
// The server is an in-memory WebSocket; time is mocked.

import { afterEach, beforeEach, mock, test } from "node:test"
import assert from "node:assert/strict"
import { base64url, Socket, SignedOut, type CloseInfo, type ReconnectInfo, type SocketOptions, type TokenInfo } from "../src/index"
import { FakeEnvironment, fakeTransport, flush } from "./helpers"

beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_700_000_000_000 }))
afterEach(() => mock.timers.reset())

function make(opts: SocketOptions = {}) {
  const tr = fakeTransport()
  const socket = new Socket("ws://example.test/socket", { transport: tr.Transport, environment: null, random: () => 0.5, ...opts })
  return { socket, tr }
}

function connected(opts: SocketOptions = {}) {
  const { socket, tr } = make(opts)
  socket.connect()
  tr.latest().open()
  return { socket, tr }
}

function record<T>(register: (cb: (x: T) => void) => unknown): T[] {
  const out: T[] = []
  register((x) => out.push(x))
  return out
}

test("the URL carries the params, the protocol version and the extension flag", () => {
  const { socket, tr } = make({ params: { user: "ann", n: 2, skip: undefined } })
  socket.connect()
  const url = new URL(tr.latest().url)
  assert.equal(url.origin + url.pathname, "ws://example.test/socket/websocket")
  assert.equal(url.searchParams.get("user"), "ann")
  assert.equal(url.searchParams.get("n"), "2")
  assert.equal(url.searchParams.get("vsn"), "2.0.0")
  assert.equal(url.searchParams.get("_hearth"), "1")
  assert.ok(!url.searchParams.has("skip"))
  assert.equal(tr.latest().binaryType, "arraybuffer")
  assert.equal(tr.latest().protocols, undefined)
})

test("endpoints: http(s) URLs become ws(s), relative paths use the page location", () => {
  assert.equal(new Socket("https://h.test/socket/").endPointURL(), "wss://h.test/socket/websocket?vsn=2.0.0&_hearth=1")
  assert.equal(new Socket("ws://h.test/socket/websocket", { hearth: false }).endPointURL(), "ws://h.test/socket/websocket?vsn=2.0.0")
  assert.equal(new Socket("wss://h.test/socket?tenant=a").endPointURL({ b: 2 }), "wss://h.test/socket/websocket?tenant=a&b=2&vsn=2.0.0&_hearth=1")
  assert.throws(() => new Socket("/socket").endPointURL(), /needs a page location/)
  const g = globalThis as { location?: unknown }
  g.location = { protocol: "https:", host: "app.test:8443" }
  try {
    assert.equal(new Socket("/socket").endPointURL({ a: 1 }), "wss://app.test:8443/socket/websocket?a=1&vsn=2.0.0&_hearth=1")
    assert.equal(new Socket("//other.test/socket").endPointURL(), "wss://other.test/socket/websocket?vsn=2.0.0&_hearth=1")
  } finally {
    delete g.location
  }
})

test("the auth token travels in Sec-WebSocket-Protocol as base64url without padding", () => {
  const token = "a+b/c?é~"
  const { socket, tr } = make({ authToken: token })
  socket.connect()
  const protocols = tr.latest().protocols as string[]
  assert.equal(protocols[0], "phoenix")
  const encoded = protocols[1].slice("base64url.bearer.phx.".length)
  assert.ok(protocols[1].startsWith("base64url.bearer.phx."))
  assert.match(encoded, /^[A-Za-z0-9_-]+$/)
  assert.equal(Buffer.from(encoded, "base64url").toString("utf8"), token)
  assert.equal(base64url(token), encoded)
  assert.ok(!new URL(tr.latest().url).search.includes("token"))
})

test("with tokenParam the token travels in the query instead", () => {
  const { socket, tr } = make({ authToken: "t1", tokenParam: "token" })
  socket.connect()
  assert.equal(new URL(tr.latest().url).searchParams.get("token"), "t1")
  assert.equal(tr.latest().protocols, undefined)
})

test("params and token functions, async too, are read on every connect", async () => {
  let p = 0
  let t = 0
  const { socket, tr } = make({
    params: async () => ({ p: ++p }),
    authToken: () => Promise.resolve(`tok${++t}`),
  })
  socket.connect()
  assert.equal(socket.connectionState(), "connecting")
  assert.equal(tr.sockets.length, 0)
  await flush()
  assert.equal(tr.sockets.length, 1)
  assert.equal(new URL(tr.latest().url).searchParams.get("p"), "1")
  tr.latest().open()
  tr.latest().drop()
  mock.timers.tick(250)
  await flush()
  assert.equal(tr.sockets.length, 2)
  assert.equal(new URL(tr.latest().url).searchParams.get("p"), "2")
  assert.equal((tr.latest().protocols as string[])[1], "base64url.bearer.phx." + base64url("tok2"))
})

test("a params function that fails is an error the app sees, and the socket retries", async () => {
  let fail = true
  const { socket, tr } = make({ params: async () => { if (fail) throw new Error("no session"); return {} } })
  const errors = record<unknown>((cb) => socket.onError(cb))
  const reconnects = record<ReconnectInfo>((cb) => socket.onReconnect(cb))
  socket.connect()
  await flush()
  assert.equal(tr.sockets.length, 0)
  assert.match(String(errors[0]), /no session/)
  assert.equal(reconnects.length, 1)
  fail = false
  mock.timers.tick(reconnects[0].delay)
  await flush()
  assert.equal(tr.sockets.length, 1)
})

test("heartbeats every interval; a missing reply drops the connection and reconnects", () => {
  const { socket, tr } = connected({ heartbeatIntervalMs: 30_000, heartbeatTimeoutMs: 10_000 })
  const ws = tr.latest()
  const closes = record<CloseInfo>((cb) => socket.onClose(cb))
  mock.timers.tick(29_999)
  assert.equal(ws.messages().length, 0)
  mock.timers.tick(1)
  const hb = ws.last("heartbeat")
  assert.deepEqual([hb.join_ref, hb.topic, hb.payload], [null, "phoenix", {}])
  ws.receive([null, hb.ref, "phoenix", "phx_reply", { status: "ok", response: {} }])
  mock.timers.tick(30_000)
  const hb2 = ws.last("heartbeat")
  assert.notEqual(hb2.ref, hb.ref)
  mock.timers.tick(9_999)
  assert.ok(socket.isConnected())
  mock.timers.tick(1)
  assert.ok(!socket.isConnected())
  assert.deepEqual(closes, [{ code: 1006, reason: "heartbeat timeout", wasClean: false }])
  mock.timers.tick(250)
  assert.equal(tr.sockets.length, 2)
})

test("a connection that does not open in time is abandoned and retried", () => {
  const { socket, tr } = make({ timeout: 5_000 })
  socket.connect()
  mock.timers.tick(5_000)
  assert.ok(tr.sockets[0].closedWith !== null || tr.sockets[0].onclose === null)
  mock.timers.tick(250)
  assert.equal(tr.sockets.length, 2)
})

test("reconnect delays follow full-jitter backoff and reset only after a stable connection", () => {
  const { socket, tr } = connected({ random: () => 0.999, reconnectBaseMs: 500, reconnectMaxMs: 20_000, stableAfterMs: 10_000 })
  const infos = record<ReconnectInfo>((cb) => socket.onReconnect(cb))
  // Connections that fail before opening, then one that opens briefly.
  for (let i = 0; i < 7; i++) {
    tr.latest().drop()
    mock.timers.tick(infos[infos.length - 1].delay)
  }
  assert.deepEqual(infos.map((x) => x.delay), [499, 999, 1998, 3996, 7992, 15984, 19980])
  assert.deepEqual(infos.map((x) => x.tries), [1, 2, 3, 4, 5, 6, 7])
  tr.latest().open()
  mock.timers.tick(9_999)
  tr.latest().drop()
  assert.equal(infos[infos.length - 1].tries, 8, "a short-lived connection does not reset the backoff")
  mock.timers.tick(infos[infos.length - 1].delay)
  tr.latest().open()
  mock.timers.tick(10_000)
  tr.latest().drop()
  assert.deepEqual(infos[infos.length - 1], { delay: 499, tries: 1, code: 1006, reason: "", hinted: false })
})

test("reconnectAfterMs replaces the backoff", () => {
  const { socket, tr } = connected({ reconnectAfterMs: (tries) => [10, 50][tries - 1] ?? 5000 })
  const infos = record<ReconnectInfo>((cb) => socket.onReconnect(cb))
  for (let i = 0; i < 3; i++) {
    tr.latest().drop()
    mock.timers.tick(infos[infos.length - 1].delay)
  }
  assert.deepEqual(infos.map((x) => x.delay), [10, 50, 5000])
})

test("server hints on 1012 and 1013 set the reconnect delay, with a little jitter", () => {
  const { socket, tr } = connected()
  const infos = record<ReconnectInfo>((cb) => socket.onReconnect(cb))
  tr.latest().drop(1012, "service restart retry_after_ms=3000")
  // random() = 0.5, hint jitter 0.2: 3000 + 0.5 * 0.2 * 3000
  assert.deepEqual(infos[0], { delay: 3300, tries: 1, code: 1012, reason: "service restart retry_after_ms=3000", hinted: true })
  mock.timers.tick(3299)
  assert.equal(tr.sockets.length, 1)
  mock.timers.tick(1)
  assert.equal(tr.sockets.length, 2)
  tr.latest().open()
  tr.latest().drop(1013, '{"reason":"overloaded","retry_after_ms":800}')
  assert.equal(infos[1].delay, 880)
  assert.ok(infos[1].hinted)
  mock.timers.tick(880)
  tr.latest().drop(1013, "try again later")
  assert.equal(infos[2].hinted, false, "no hint: backoff")
})

test("terminal close codes stop reconnecting and call onTerminal", () => {
  const { socket, tr } = connected({ authToken: "app-token" })
  const terminal: Array<[number, string]> = []
  socket.onTerminal((code, reason) => terminal.push([code, reason]))
  const ch = socket.channel("room:1")
  ch.join()
  tr.latest().reply("phx_join", "ok", {})
  tr.latest().receive([null, null, "phoenix", "token", { token: "fresh", expires_at: Date.now() / 1000 + 600 }])
  tr.latest().drop(4503, "session revoked")
  assert.deepEqual(terminal, [[4503, "session revoked"]])
  assert.equal(ch.state, "closed")
  mock.timers.tick(600_000)
  assert.equal(tr.sockets.length, 1, "reconnected after a terminal close")
  // After signing in again the app reconnects; the revoked session's token is gone.
  socket.connect()
  assert.equal(tr.sockets.length, 2)
  assert.equal((tr.latest().protocols as string[])[1], "base64url.bearer.phx." + base64url("app-token"))
  tr.latest().open()
  assert.equal(tr.latest().last("phx_join").topic, "room:1", "channels rejoin after the app reconnects")
})

test("a token pushed by the server is used on the next connect, until it expires", () => {
  let appCalls = 0
  const { socket, tr } = connected({ authToken: () => `app${++appCalls}` })
  const tokens = record<TokenInfo>((cb) => socket.onToken(cb))
  const expiresAt = Date.now() / 1000 + 600
  tr.latest().receive([null, null, "phoenix", "token", { token: "fresh1", expires_at: expiresAt }])
  assert.deepEqual(tokens, [{ token: "fresh1", expiresAt: expiresAt * 1000 }])
  tr.latest().drop()
  mock.timers.tick(250)
  assert.equal((tr.latest().protocols as string[])[1], "base64url.bearer.phx." + base64url("fresh1"))
  assert.equal(appCalls, 1, "the app's token function was asked although a fresh token was at hand")
  // A channel event named "token" is the app's, not a credential.
  tr.latest().open()
  const ch = socket.channel("room:1")
  ch.join()
  tr.latest().reply("phx_join", "ok", {})
  tr.latest().receive([ch.joinRef(), null, "room:1", "token", { token: "app text", expires_at: expiresAt + 60 }])
  assert.equal(tokens.length, 1)
  // Once expired, the app's function is asked again.
  mock.timers.tick(700_000)
  tr.latest().drop()
  mock.timers.tick(20_000)
  assert.equal((tr.latest().protocols as string[])[1], "base64url.bearer.phx." + base64url("app2"))
})

test("a refreshed token the server refuses is dropped for the app's own, once", () => {
  let appCalls = 0
  const { socket, tr } = connected({ authToken: () => `app${++appCalls}` })
  const terminal = record<number>((cb) => socket.onTerminal((code) => cb(code)))
  tr.latest().receive([null, null, "phoenix", "token", { token: "fresh", expires_at: Date.now() / 1000 + 600 }])
  tr.latest().drop()
  mock.timers.tick(250)
  assert.equal((tr.latest().protocols as string[])[1], "base64url.bearer.phx." + base64url("fresh"))
  // The server's clock says the refreshed token expired.
  tr.latest().drop(4502, "token expired")
  assert.deepEqual(terminal, [])
  mock.timers.tick(20_000)
  assert.equal(tr.sockets.length, 3)
  assert.equal((tr.latest().protocols as string[])[1], "base64url.bearer.phx." + base64url("app2"))
  // The app's own token refused: terminal.
  tr.latest().drop(4502, "token expired")
  assert.deepEqual(terminal, [4502])
})

test("revocation is terminal even with a refreshed token", () => {
  const { socket, tr } = connected({ authToken: "app" })
  const terminal = record<number>((cb) => socket.onTerminal((code) => cb(code)))
  tr.latest().receive([null, null, "phoenix", "token", { token: "fresh", expires_at: Date.now() / 1000 + 600 }])
  tr.latest().drop()
  mock.timers.tick(250)
  tr.latest().open()
  tr.latest().drop(4503, "session revoked")
  assert.deepEqual(terminal, [4503])
})

test("malformed token messages are ignored", () => {
  const { socket, tr } = connected({ authToken: "app" })
  const tokens = record<TokenInfo>((cb) => socket.onToken(cb))
  tr.latest().receive([null, null, "phoenix", "token", { token: 42 }])
  tr.latest().receive([null, null, "phoenix", "token", "tok"])
  tr.latest().receive([null, null, "phoenix", "token", { token: "" }])
  assert.equal(tokens.length, 0)
})

test("reconnects wait while the tab is hidden and resume with jitter when it shows", () => {
  const env = new FakeEnvironment()
  const { socket, tr } = connected({ environment: env, resumeJitterMs: 1_000 })
  assert.equal(env.listening, 1)
  env.isHidden = true
  tr.latest().drop()
  mock.timers.tick(60_000)
  assert.equal(tr.sockets.length, 1, "reconnected while hidden")
  env.emit("visible")
  mock.timers.tick(499)
  assert.equal(tr.sockets.length, 1)
  mock.timers.tick(1)
  assert.equal(tr.sockets.length, 2)
  socket.disconnect()
  assert.equal(env.listening, 0, "still listening after disconnect")
})

test("a tab that becomes visible or a browser back online reconnects soon, unless the server asked to wait", () => {
  const env = new FakeEnvironment()
  const { socket, tr } = connected({ environment: env, reconnectBaseMs: 60_000, reconnectMaxMs: 60_000, resumeJitterMs: 1_000 })
  tr.latest().drop()
  env.emit("visible")
  mock.timers.tick(500)
  assert.equal(tr.sockets.length, 2, "a visible tab kept waiting for a long backoff")
  tr.latest().open()
  tr.latest().drop(1013, "try again later retry_after_ms=30000")
  env.emit("online")
  mock.timers.tick(1_000)
  assert.equal(tr.sockets.length, 2, "the server's retry hint was cut short")
  mock.timers.tick(35_000)
  assert.equal(tr.sockets.length, 3)
  socket.disconnect()
})

test("coming back online checks an open connection with a heartbeat at once", () => {
  const env = new FakeEnvironment()
  const { socket, tr } = connected({ environment: env })
  const closes = record<CloseInfo>((cb) => socket.onClose(cb))
  env.emit("online")
  const hb = tr.latest().last("heartbeat")
  assert.equal(hb.topic, "phoenix")
  mock.timers.tick(10_000)
  assert.deepEqual(closes.map((c) => c.reason), ["heartbeat timeout"])
})

test("reconnects wait while offline, and so does the first connect", () => {
  const env = new FakeEnvironment()
  env.isOffline = true
  const { socket, tr } = make({ environment: env })
  socket.connect()
  assert.equal(tr.sockets.length, 0)
  env.emit("online")
  mock.timers.tick(500)
  assert.equal(tr.sockets.length, 1)
  tr.latest().open()
  env.isOffline = true
  tr.latest().drop()
  mock.timers.tick(60_000)
  assert.equal(tr.sockets.length, 1)
  env.emit("visible") // still offline
  mock.timers.tick(60_000)
  assert.equal(tr.sockets.length, 1)
  env.emit("online")
  mock.timers.tick(1_000)
  assert.equal(tr.sockets.length, 2)
})

test("pagehide closes the connection and pageshow reconnects", () => {
  const env = new FakeEnvironment()
  const { socket, tr } = connected({ environment: env })
  const ch = socket.channel("room:1")
  ch.join()
  tr.latest().reply("phx_join", "ok", {})
  env.emit("pagehide")
  assert.equal(tr.latest().closedWith?.code, 1001)
  mock.timers.tick(60_000)
  assert.equal(tr.sockets.length, 1)
  env.emit("pageshow")
  assert.equal(tr.sockets.length, 2)
  tr.latest().open()
  assert.equal(tr.latest().last("phx_join").topic, "room:1")
})

test("disconnect closes, stops reconnecting, and connect() rejoins the channels", () => {
  const { socket, tr } = connected()
  const ch = socket.channel("room:1")
  ch.join()
  tr.latest().reply("phx_join", "ok", {})
  const closes = record<CloseInfo>((cb) => socket.onClose(cb))
  let called = false
  socket.disconnect(() => { called = true }, 1000, "bye")
  assert.ok(called)
  assert.deepEqual(tr.latest().closedWith, { code: 1000, reason: "bye" })
  assert.deepEqual(closes, [{ code: 1000, reason: "bye", wasClean: true }])
  assert.equal(ch.state, "errored")
  assert.equal(socket.connectionState(), "closed")
  mock.timers.tick(600_000)
  assert.equal(tr.sockets.length, 1)
  socket.connect()
  tr.latest().open()
  assert.equal(tr.latest().last("phx_join").topic, "room:1")
})

test("connect while connected does nothing; while a reconnect waits it connects now", () => {
  const { socket, tr } = connected({ reconnectBaseMs: 60_000, reconnectMaxMs: 60_000 })
  socket.connect()
  assert.equal(tr.sockets.length, 1)
  tr.latest().drop()
  socket.connect()
  assert.equal(tr.sockets.length, 2)
  mock.timers.tick(60_000)
  assert.equal(tr.sockets.length, 2, "the cancelled reconnect fired")
})

test("an undecodable frame is reported and the connection stays", () => {
  const { socket, tr } = connected()
  const errors = record<unknown>((cb) => socket.onError(cb))
  tr.latest().receive("{not json")
  tr.latest().receive(new Uint8Array([9, 9]).buffer)
  assert.equal(errors.length, 2)
  assert.ok(socket.isConnected())
})

test("onMessage sees every message; off removes callbacks", () => {
  const { socket, tr } = connected()
  const seen: string[] = []
  const ref = socket.onMessage((m) => seen.push(m.event))
  tr.latest().receive([null, null, "room:9", "hello", {}])
  socket.off([ref])
  tr.latest().receive([null, null, "room:9", "again", {}])
  assert.deepEqual(seen, ["hello"])
})

test("events of an old connection are ignored", () => {
  const { socket, tr } = connected()
  const old = tr.latest()
  old.drop()
  mock.timers.tick(250)
  tr.latest().open()
  const seen: string[] = []
  socket.onMessage((m) => seen.push(m.event))
  const closes = record<CloseInfo>((cb) => socket.onClose(cb))
  old.receive([null, null, "room:9", "stale", {}])
  old.drop(1000)
  assert.deepEqual(seen, [])
  assert.deepEqual(closes, [])
  assert.ok(socket.isConnected())
})

test("connect without a WebSocket constructor says what to do", () => {
  const socket = new Socket("ws://example.test/socket", { environment: null })
  if (typeof (globalThis as { WebSocket?: unknown }).WebSocket === "function") return
  assert.throws(() => socket.connect(), /pass \{transport: WebSocket\}/)
})

test("with params: {token}, a refreshed token replaces the stale one in the query", () => {
  const { tr } = connected({ params: { token: "stale", room: "a" } })
  assert.equal(new URL(tr.latest().url).searchParams.get("token"), "stale")
  tr.latest().receive([null, null, "phoenix", "token", { token: "fresh", expires_at: Date.now() / 1000 + 600 }])
  tr.latest().drop()
  mock.timers.tick(1_000)
  const url = new URL(tr.latest().url)
  assert.deepEqual(url.searchParams.getAll("token"), ["fresh"])
  assert.equal(url.searchParams.get("room"), "a")
  assert.ok(!tr.latest().url.includes("stale"), "the stale token was sent again")
  assert.equal((tr.latest().protocols as string[])[1], "base64url.bearer.phx." + base64url("fresh"))
  // With tokenParam the refreshed token goes in that parameter only.
  const b = connected({ params: { jwt: "stale" }, tokenParam: "jwt" })
  b.tr.latest().receive([null, null, "phoenix", "token", { token: "fresh", expires_at: Date.now() / 1000 + 600 }])
  b.tr.latest().drop()
  mock.timers.tick(1_000)
  assert.deepEqual(new URL(b.tr.latest().url).searchParams.getAll("jwt"), ["fresh"])
  assert.equal(b.tr.latest().protocols, undefined)
})

test("a refreshed token refused before the upgrade (HTTP 403) is dropped for the app's own", () => {
  let appCalls = 0
  const { socket, tr } = connected({ authToken: () => `app${++appCalls}` })
  const errors: unknown[][] = []
  socket.onError((...args) => errors.push(args))
  tr.latest().receive([null, null, "phoenix", "token", { token: "fresh", expires_at: Date.now() / 1000 + 600 }])
  tr.latest().drop()
  mock.timers.tick(1_000)
  assert.equal((tr.latest().protocols as string[])[1], "base64url.bearer.phx." + base64url("fresh"))
  // Node's ws reports the refused upgrade, then the close.
  tr.latest().onerror?.({ message: "Unexpected server response: 403" })
  tr.latest().drop(1006)
  assert.equal(errors.length, 1)
  assert.equal(errors[0][1], tr.Transport, "onError gets the transport class")
  assert.equal(errors[0][2], 1, "and the number of connections established")
  mock.timers.tick(20_000)
  assert.equal((tr.latest().protocols as string[])[1], "base64url.bearer.phx." + base64url("app2"))
})

test("a refreshed token survives a server outage until it expires; one without expiry is dropped after 3 failed attempts", () => {
  let appCalls = 0
  const { tr } = connected({ authToken: () => `app${++appCalls}` })
  tr.latest().receive([null, null, "phoenix", "token", { token: "fresh", expires_at: Date.now() / 1000 + 600 }])
  for (let i = 0; i < 6; i++) {
    tr.latest().drop()
    mock.timers.tick(20_000)
    assert.equal((tr.latest().protocols as string[])[1], "base64url.bearer.phx." + base64url("fresh"), "a server down sent the client to the token service")
  }
  assert.equal(appCalls, 1)

  const b = connected({ authToken: () => `b${++appCalls}` })
  b.tr.latest().receive([null, null, "phoenix", "token", { token: "forever" }])
  const used: string[] = []
  for (let i = 0; i < 5; i++) {
    b.tr.latest().drop()
    mock.timers.tick(20_000)
    used.push(Buffer.from((b.tr.latest().protocols as string[])[1].slice("base64url.bearer.phx.".length), "base64url").toString())
  }
  assert.deepEqual(used, ["forever", "forever", "forever", "b3", "b4"])
})

test("an authToken that throws SignedOut stops the client with onTerminal; other errors are retried", async () => {
  let calls = 0
  let signedOut = false
  const { socket, tr } = make({
    authToken: async () => {
      calls++
      if (signedOut) throw new SignedOut()
      if (calls === 1) throw new Error("token service down")
      return "tok"
    },
  })
  const terminal = record<[number, string]>((cb) => socket.onTerminal((code, reason) => cb([code, reason])))
  const errors: unknown[] = []
  socket.onError((e) => errors.push(e))
  socket.connect()
  await flush()
  assert.equal(tr.sockets.length, 0)
  assert.equal(errors.length, 1, "a failing token service is an error, and retried")
  mock.timers.tick(1_000)
  await flush()
  assert.equal(tr.sockets.length, 1)
  tr.latest().open()
  const ch = socket.channel("room:1")
  ch.join()
  tr.latest().reply("phx_join", "ok", {})
  signedOut = true
  tr.latest().drop()
  mock.timers.tick(1_000)
  await flush()
  assert.deepEqual(terminal, [[4501, "signed out"]])
  assert.equal(ch.state, "closed")
  const before = calls
  mock.timers.tick(600_000)
  await flush()
  assert.equal(calls, before, "authToken was called again after SignedOut")
  assert.equal(tr.sockets.length, 1)

  // A synchronous throw, with a message, ends it too.
  const b = make({ authToken: () => { throw new SignedOut("session ended") } })
  const t2 = record<[number, string]>((cb) => b.socket.onTerminal((code, reason) => cb([code, reason])))
  b.socket.connect()
  assert.deepEqual(t2, [[4501, "session ended"]])
  assert.ok(new SignedOut() instanceof Error)
})

test("with hearth: false a token message is ignored", () => {
  const { socket, tr } = connected({ hearth: false, authToken: "app" })
  const tokens = record<TokenInfo>((cb) => socket.onToken(cb))
  tr.latest().receive([null, null, "phoenix", "token", { token: "fresh" }])
  assert.equal(tokens.length, 0)
})

test("phoenix.js members: ping, push, connect(params), replaceTransport, encode/decode, binaryType, logger", () => {
  const logs: string[] = []
  const encoded: unknown[] = []
  const { socket, tr } = make({
    binaryType: "blob",
    params: { a: "1" },
    logger: (kind, msg) => logs.push(`${kind}: ${msg}`),
    encode: (msg, cb) => { encoded.push(msg); cb(JSON.stringify([msg.join_ref, msg.ref, msg.topic, msg.event, msg.payload])) },
    decode: (frame, cb) => { const [join_ref, ref, topic, event, payload] = JSON.parse(frame); cb({ join_ref, ref, topic, event, payload }) },
  })
  assert.ok(socket.hasLogger())
  assert.equal(new Socket("ws://h.test/socket").hasLogger(), false)
  assert.equal(socket.protocol(), "ws")
  assert.match(socket.endPointURL(), /\?a=1&vsn=2\.0\.0/, "endPointURL() uses the params, as phoenix.js")
  assert.equal(socket.ping(() => {}), false, "ping while disconnected")
  socket.push({ topic: "phoenix", event: "custom", payload: { x: 1 } })
  socket.connect({ a: "2" })
  assert.equal(new URL(tr.latest().url).searchParams.get("a"), "2", "connect(params) replaces the params")
  assert.equal(tr.latest().binaryType, "blob")
  tr.latest().open()
  assert.deepEqual(tr.latest().messages().map((m) => m.event), ["custom"], "a push made while disconnected is sent on open")
  const rtts: number[] = []
  assert.equal(socket.ping((ms) => rtts.push(ms)), true)
  const ping = tr.latest().last("heartbeat")
  mock.timers.tick(42)
  tr.latest().receive([null, ping.ref, "phoenix", "phx_reply", { status: "ok", response: {} }])
  assert.deepEqual(rtts, [42])
  assert.ok(encoded.length >= 2, "the encode option was not used")
  assert.ok(logs.some((l) => l.startsWith("push: ")))

  const other = fakeTransport()
  socket.replaceTransport(other.Transport)
  assert.equal(socket.connectionState(), "closed")
  socket.connect()
  assert.equal(other.sockets.length, 1, "the new transport is used")
  assert.equal(socket.transport, other.Transport)
})

test("closeOnPageHide: false keeps the connection on pagehide", () => {
  const env = new FakeEnvironment()
  const { socket, tr } = connected({ environment: env, closeOnPageHide: false })
  env.emit("pagehide")
  assert.equal(socket.connectionState(), "open")
  assert.equal(tr.sockets.length, 1)
})

test("an app callback that throws is not reported as an undecodable frame", () => {
  const { socket, tr } = connected()
  const errors: unknown[] = []
  socket.onError((e) => errors.push(e))
  socket.onMessage(() => { throw new Error("app bug") })
  assert.throws(() => tr.latest().receive([null, null, "room:1", "x", {}]), /app bug/)
  assert.deepEqual(errors, [])
  tr.latest().receive("not json")
  assert.equal(errors.length, 1)
})

test("sessionStorage: the option, the global, and a global that throws", () => {
  const store = { getItem: () => null, setItem: () => {} }
  assert.equal(new Socket("ws://h.test/socket", { sessionStorage: store, environment: null }).sessionStore, store)
  const g = globalThis as { sessionStorage?: unknown }
  Object.defineProperty(globalThis, "sessionStorage", { configurable: true, get() { throw new Error("SecurityError") } })
  try {
    assert.equal(new Socket("ws://h.test/socket", { environment: null }).sessionStore, null)
  } finally {
    delete g.sessionStorage
  }
})
