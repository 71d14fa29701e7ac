// The channel state machine: join, leave, rejoin, timeouts, stale join refs,
// the bounded push buffer and recovery positions. The server is played by
// the test through an in-memory WebSocket; time is mocked.

import { afterEach, beforeEach, mock, test } from "node:test"
import assert from "node:assert/strict"
import { Socket, base64url, type Channel, type RecoverInfo, type SocketOptions } from "../src/index"
import { fakeTransport, type FakeWebSocket } from "./helpers"

beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "Date"] }))
afterEach(() => mock.timers.reset())

const TOPIC = "room:1"

function setup(opts: SocketOptions = {}) {
  const tr = fakeTransport()
  const socket = new Socket("ws://example.test/socket", { transport: tr.Transport, environment: null, random: () => 0.5, ...opts })
  socket.connect()
  tr.latest().open()
  return { socket, tr, ws: () => tr.latest() }
}

/** Joins TOPIC and answers ok with a position. */
function joined(socket: Socket, ws: FakeWebSocket, response: Record<string, unknown> = { $hearth: { epoch: "e1", offset: 10 } }, params?: Record<string, unknown>): Channel {
  const ch = socket.channel(TOPIC, params)
  ch.join()
  ws.reply("phx_join", "ok", response)
  assert.equal(ch.state, "joined")
  return ch
}

/** Drops the connection and lets the socket reconnect (random 0.5: first delay 250 ms). */
function reconnect(tr: ReturnType<typeof fakeTransport>): FakeWebSocket {
  const before = tr.sockets.length
  tr.latest().drop()
  mock.timers.tick(20_000)
  assert.equal(tr.sockets.length, before + 1, "no reconnect attempt")
  tr.latest().open()
  return tr.latest()
}

test("join sends the app's params with $hearth, and strips $hearth from the reply", () => {
  const { socket, ws } = setup()
  const ch = socket.channel(TOPIC, { user: "ann" })
  let response: unknown
  ch.join().receive("ok", (r) => { response = r })
  assert.equal(ch.state, "joining")
  const j = ws().last("phx_join")
  assert.deepEqual(j.payload, { user: "ann", $hearth: {} })
  assert.equal(j.join_ref, j.ref)
  assert.equal(ch.joinRef(), j.ref)
  ws().reply("phx_join", "ok", { $hearth: { epoch: "e1", offset: 10 }, motd: "hi" })
  assert.deepEqual(response, { motd: "hi" })
  assert.equal(ch.state, "joined")
  assert.deepEqual(ch.position(), { epoch: "e1", offset: 10 })
})

test("a join made before the socket opens is sent when it opens", () => {
  const tr = fakeTransport()
  const socket = new Socket("ws://example.test/socket", { transport: tr.Transport, environment: null, random: () => 0.5 })
  const ch = socket.channel(TOPIC, { a: 1 })
  let ok = 0
  ch.join().receive("ok", () => ok++)
  socket.connect()
  assert.equal(ch.state, "joining")
  mock.timers.tick(9_999) // the connection may take up to `timeout` to open
  assert.equal(ch.state, "joining", "the join timed out before it could be sent")
  tr.latest().open()
  assert.deepEqual(tr.latest().last("phx_join").payload, { a: 1, $hearth: {} })
  tr.latest().reply("phx_join", "ok", {})
  assert.equal(ok, 1)
  assert.equal(ch.state, "joined")
})

test("a join whose connection attempt fails is sent on the next connection", () => {
  const tr = fakeTransport()
  const socket = new Socket("ws://example.test/socket", { transport: tr.Transport, environment: null, random: () => 0.5 })
  socket.connect()
  const ch = socket.channel(TOPIC)
  ch.join()
  tr.latest().drop()
  mock.timers.tick(250)
  tr.latest().open()
  assert.equal(tr.latest().last("phx_join").topic, TOPIC)
})

test("params given as a function are read on every join", () => {
  const { socket, tr, ws } = setup()
  let n = 0
  const ch = socket.channel(TOPIC, () => ({ n: ++n }))
  ch.join()
  assert.equal(ws().last("phx_join").payload.n, 1)
  ws().reply("phx_join", "ok", {})
  reconnect(tr)
  assert.equal(ws().last("phx_join").payload.n, 2)
  assert.equal(ch.state, "joining")
})

test("with hearth: false the join carries only the app's params", () => {
  const { socket, ws } = setup({ hearth: false })
  socket.channel(TOPIC, { a: 1 }).join()
  assert.deepEqual(ws().last("phx_join").payload, { a: 1 })
  assert.ok(!ws().url.includes("_hearth"))
})

test("broadcast positions advance the channel; duplicates are dropped", () => {
  const { socket, ws } = setup()
  const ch = joined(socket, ws())
  const got: unknown[] = []
  const refs: unknown[] = []
  ch.on("new_msg", (p, ref) => { got.push(p.n); refs.push(ref) })
  ws().receive([null, "@11", TOPIC, "new_msg", { n: 11 }])
  ws().receive([null, "@11", TOPIC, "new_msg", { n: 11 }])
  ws().receive([null, "@9", TOPIC, "new_msg", { n: 9 }])
  ws().receive([null, null, TOPIC, "new_msg", { n: 0 }])
  ws().receive([null, "@12", TOPIC, "new_msg", { n: 12 }])
  assert.deepEqual(got, [11, 0, 12])
  assert.deepEqual(refs, ["@11", null, "@12"])
  assert.deepEqual(ch.position(), { epoch: "e1", offset: 12 })
  // Hearth's binary broadcast with a position (kind 3).
  const enc = new TextEncoder()
  const parts = [TOPIC, "file", "@13"].map((x) => enc.encode(x))
  const frame = new Uint8Array(4 + parts.reduce((a, p) => a + p.length, 0) + 2)
  frame.set([3, parts[0].length, parts[1].length, parts[2].length])
  let o = 4
  for (const p of parts) { frame.set(p, o); o += p.length }
  frame.set([7, 8], o)
  let file: ArrayBuffer | undefined
  ch.on("file", (p) => { file = p })
  ws().receive(frame.buffer)
  assert.deepEqual(Array.from(new Uint8Array(file!)), [7, 8])
  assert.deepEqual(ch.position(), { epoch: "e1", offset: 13 })
})

test("a rejoin asks for the messages after the position and reports complete recovery", () => {
  const { socket, tr, ws } = setup()
  const ch = joined(socket, ws())
  const got: number[] = []
  ch.on("new_msg", (p) => got.push(p.n))
  const reports: RecoverInfo[] = []
  ch.onRecover((r) => reports.push(r))
  let oks = 0
  ch.joinPush.receive("ok", () => oks++) // runs at once: the join already succeeded
  const errors: unknown[] = []
  ch.onError((e) => errors.push(e))
  ws().receive([null, "@11", TOPIC, "new_msg", { n: 11 }])

  reconnect(tr)
  assert.equal(errors.length, 1, "connection loss errors the channel")
  const j = ws().last("phx_join")
  assert.deepEqual(j.payload.$hearth, { since: { epoch: "e1", offset: 11 } })
  ws().reply("phx_join", "ok", { $hearth: { epoch: "e1", offset: 13, recovered: true, replayed: 2 } })
  assert.deepEqual(reports, [{ recovered: true, replayed: 2, position: { epoch: "e1", offset: 13 } }])
  assert.deepEqual(ch.position(), { epoch: "e1", offset: 11 }, "position advances with the replay, not before")
  ws().receive([null, "@12", TOPIC, "new_msg", { n: 12 }])
  ws().receive([null, "@13", TOPIC, "new_msg", { n: 13 }])
  assert.deepEqual(got, [11, 12, 13])
  assert.deepEqual(ch.position(), { epoch: "e1", offset: 13 })
  assert.equal(oks, 2, "the ok callbacks run on the rejoin too")
})

test("a connection lost in the middle of a replay resumes where the replay stopped", () => {
  const { socket, tr, ws } = setup()
  const ch = joined(socket, ws())
  reconnect(tr)
  ws().reply("phx_join", "ok", { $hearth: { epoch: "e1", offset: 15, recovered: true, replayed: 5 } })
  ws().receive([null, "@11", TOPIC, "new_msg", {}])
  ws().receive([null, "@12", TOPIC, "new_msg", {}])
  reconnect(tr)
  assert.deepEqual(ws().last("phx_join").payload.$hearth, { since: { epoch: "e1", offset: 12 } })
  assert.equal(ch.state, "joining")
})

test("replayed messages that the server excluded still leave the channel at the top", () => {
  // The server reports `replayed` as what it sends; the join reply's offset
  // is the top, reached once the replay is through.
  const { socket, tr, ws } = setup()
  const ch = joined(socket, ws())
  reconnect(tr)
  ws().reply("phx_join", "ok", { $hearth: { epoch: "e1", offset: 20, recovered: true, replayed: 1 } })
  ws().receive([null, "@14", TOPIC, "new_msg", {}])
  assert.deepEqual(ch.position(), { epoch: "e1", offset: 20 })
})

test("incomplete recovery is reported, and the channel takes the new position", () => {
  const { socket, tr, ws } = setup()
  const ch = joined(socket, ws())
  const reports: RecoverInfo[] = []
  const off = ch.onRecover((r) => reports.push(r))
  reconnect(tr)
  ws().reply("phx_join", "ok", { $hearth: { epoch: "e2", offset: 3, recovered: false } })
  assert.deepEqual(reports, [{ recovered: false, replayed: 0, reason: "new_epoch", position: { epoch: "e2", offset: 3 } }], "an older server gives no reason: the client infers the new epoch")
  assert.deepEqual(ch.position(), { epoch: "e2", offset: 3 })
  off()
  reconnect(tr)
  ws().reply("phx_join", "ok", { $hearth: { epoch: "e2", offset: 3, recovered: true } })
  assert.equal(reports.length, 1, "unsubscribed callback ran")
})

test("a server that does not track positions makes every rejoin an incomplete recovery", () => {
  const { socket, tr, ws } = setup()
  const ch = joined(socket, ws(), {})
  assert.equal(ch.position(), null)
  const reports: RecoverInfo[] = []
  ch.onRecover((r) => reports.push(r))
  reconnect(tr)
  assert.deepEqual(ws().last("phx_join").payload.$hearth, {})
  ws().reply("phx_join", "ok", {})
  assert.deepEqual(reports, [{ recovered: false, replayed: 0, reason: "untracked", position: null }])
})

test("recovered: false carries the server's reason; caught up fires once the replay is through", () => {
  const { socket, tr, ws } = setup()
  const ch = joined(socket, ws())
  const order: string[] = []
  ch.on("new_msg", (p) => order.push("msg " + p.n))
  ch.onRecover((r) => order.push(`recover ${r.recovered} ${r.reason ?? "-"}`))
  ch.onCaughtUp((r) => order.push(`caught up ${r.replayed}`))
  for (const reason of ["trimmed", "limit", "ahead", "unavailable"]) {
    reconnect(tr)
    ws().reply("phx_join", "ok", { $hearth: { epoch: "e1", offset: 10, recovered: false, reason } })
  }
  assert.deepEqual(order, [
    "recover false trimmed", "caught up 0",
    "recover false limit", "caught up 0",
    "recover false ahead", "caught up 0",
    "recover false unavailable", "caught up 0",
  ])
  order.length = 0
  reconnect(tr)
  ws().reply("phx_join", "ok", { $hearth: { epoch: "e1", offset: 12, recovered: true, replayed: 2 } })
  ws().receive([null, "@11", TOPIC, "new_msg", { n: 11 }])
  assert.deepEqual(order, ["recover true -", "msg 11"], "not caught up in the middle of the replay")
  ws().receive([null, "@12", TOPIC, "new_msg", { n: 12 }])
  ws().receive([null, "@13", TOPIC, "new_msg", { n: 13 }])
  assert.deepEqual(order, ["recover true -", "msg 11", "msg 12", "caught up 2", "msg 13"])
  // History unavailable: no position at all, and the server says why.
  order.length = 0
  reconnect(tr)
  ws().reply("phx_join", "ok", { $hearth: { recovered: false, reason: "unavailable" } })
  assert.deepEqual(order, ["recover false unavailable", "caught up 0"])
  assert.equal(ch.position(), null)
})

test("a channel event named token is the app's: delivered once, recorded, never a credential", () => {
  const tr = fakeTransport()
  const socket = new Socket("ws://example.test/socket", { transport: tr.Transport, environment: null, random: () => 0.5, authToken: "app-token" })
  const tokens: unknown[] = []
  socket.onToken((t) => tokens.push(t))
  socket.connect()
  tr.latest().open()
  const ch = joined(socket, tr.latest())
  const got: string[] = []
  ch.on("token", (p) => got.push(p.token))
  tr.latest().receive([null, "@11", TOPIC, "token", { token: "Hello" }])
  tr.latest().receive([ch.joinRef(), null, TOPIC, "token", { token: " world" }])
  assert.deepEqual(tokens, [], "a channel event was taken for a credential")
  assert.deepEqual(ch.position(), { epoch: "e1", offset: 11 }, "the event's offset was not recorded")
  tr.latest().drop()
  mock.timers.tick(1_000)
  assert.equal((tr.latest().protocols as string[])[1], "base64url.bearer.phx." + base64url("app-token"))
  tr.latest().open()
  assert.deepEqual(tr.latest().last("phx_join").payload.$hearth, { since: { epoch: "e1", offset: 11 } })
  tr.latest().reply("phx_join", "ok", { $hearth: { epoch: "e1", offset: 11, recovered: true, replayed: 0 } })
  // A replay overlapping what the channel has is dropped as a duplicate.
  tr.latest().receive([null, "@11", TOPIC, "token", { token: "Hello" }])
  assert.deepEqual(got, ["Hello", " world"])
})

test("a terminal close closes the channels and fails waiting pushes at once with the reason", () => {
  const { socket, ws } = setup()
  const ch = joined(socket, ws())
  const sent = ch.push("a", {})
  const closes: unknown[] = []
  ch.onClose((p) => closes.push(p))
  ws().drop()
  const buffered = ch.push("b", {})
  const outcomes: string[] = []
  sent.receive("error", (r) => outcomes.push("sent: " + r.reason)).receive("timeout", () => outcomes.push("sent: timeout"))
  buffered.receive("error", (r) => outcomes.push("buffered: " + r.reason)).receive("timeout", () => outcomes.push("buffered: timeout"))
  mock.timers.tick(1_000)
  ws().drop(4503, "session revoked")
  assert.equal(ch.state, "closed")
  assert.ok(ch.isClosed())
  assert.deepEqual(outcomes.sort(), ["buffered: session revoked", "sent: session revoked"])
  assert.deepEqual(closes, [{ reason: "session revoked" }])
  const late: string[] = []
  ch.push("c", {}).receive("error", (r) => late.push(r.reason))
  assert.deepEqual(late, ["session revoked"], "a push on the closed channel fails at once")
  mock.timers.tick(60_000)
  assert.deepEqual(outcomes.length, 2, "a push timed out after failing")
})

test("a refused join is retried with jittered backoff", () => {
  const { socket, ws } = setup()
  const ch = socket.channel(TOPIC)
  let reason: unknown
  ch.join().receive("error", (r) => { reason = r.reason })
  const joins = () => ws().messages().filter((m) => m.event === "phx_join").length
  ws().reply("phx_join", "error", { reason: "unauthorized" })
  assert.equal(reason, "unauthorized")
  assert.equal(ch.state, "errored")
  // random() = 0.5: the first rejoin waits 0.5 * 1000 ms, the second 0.5 * 2000 ms.
  mock.timers.tick(499)
  assert.equal(joins(), 1)
  mock.timers.tick(1)
  assert.equal(joins(), 2)
  assert.equal(ch.state, "joining")
  ws().reply("phx_join", "error", { reason: "unauthorized" })
  mock.timers.tick(999)
  assert.equal(joins(), 2)
  mock.timers.tick(1)
  assert.equal(joins(), 3)
  ws().reply("phx_join", "ok", {})
  assert.equal(ch.state, "joined")
})

test("a join shed by admission control is retried after the server's hint, with jitter", () => {
  const { socket, ws } = setup()
  const ch = socket.channel(TOPIC)
  ch.join()
  const joins = () => ws().messages().filter((m) => m.event === "phx_join").length
  ws().reply("phx_join", "error", { reason: "try again later", retry_after_ms: 3000 })
  // random() = 0.5, hintJitter 0.2: 3000 + 0.5 * 0.2 * 3000 = 3300 ms (the backoff alone would be 500 ms).
  mock.timers.tick(3299)
  assert.equal(joins(), 1)
  mock.timers.tick(1)
  assert.equal(joins(), 2)
  ws().reply("phx_join", "ok", {})
  assert.equal(ch.state, "joined")
})

test("a join timeout leaves the half-made join and tries again", () => {
  const { socket, ws } = setup({ timeout: 5_000 })
  const ch = socket.channel(TOPIC)
  let timedOut = 0
  ch.join().receive("timeout", () => timedOut++)
  const first = ws().last("phx_join")
  mock.timers.tick(5_000)
  assert.equal(timedOut, 1)
  assert.equal(ch.state, "errored")
  const leave = ws().last("phx_leave")
  assert.equal(leave.join_ref, first.join_ref)
  mock.timers.tick(500)
  const second = ws().last("phx_join")
  assert.notEqual(second.join_ref, first.join_ref)
  // A late reply to the first join is ignored.
  ws().receive([first.join_ref, first.ref, TOPIC, "phx_reply", { status: "ok", response: {} }])
  assert.equal(ch.state, "joining")
  ws().reply("phx_join", "ok", {})
  assert.equal(ch.state, "joined")
})

test("phx_error from the server errors the channel, which rejoins", () => {
  const { socket, ws } = setup()
  const ch = joined(socket, ws())
  let errored = 0
  ch.onError(() => errored++)
  const jr = ch.joinRef()
  ws().receive([jr, jr, TOPIC, "phx_error", {}])
  assert.equal(errored, 1)
  assert.equal(ch.state, "errored")
  mock.timers.tick(500)
  assert.equal(ch.state, "joining")
  assert.notEqual(ws().last("phx_join").join_ref, jr)
})

test("phx_close from the server closes the channel for good", () => {
  const { socket, ws } = setup()
  const ch = joined(socket, ws())
  let closed = 0
  ch.onClose(() => closed++)
  const jr = ch.joinRef()
  ws().receive([jr, jr, TOPIC, "phx_close", {}])
  assert.equal(closed, 1)
  assert.equal(ch.state, "closed")
  assert.ok(!socket.channels.includes(ch))
  mock.timers.tick(60_000)
  assert.equal(ws().messages().filter((m) => m.event === "phx_join").length, 1)
})

test("messages with a stale join_ref are dropped", () => {
  const { socket, tr, ws } = setup()
  const ch = joined(socket, ws())
  const oldRef = ch.joinRef()
  reconnect(tr)
  ws().reply("phx_join", "ok", { $hearth: { epoch: "e1", offset: 10, recovered: true } })
  const got: string[] = []
  ch.on("evt", (p) => got.push(p.from))
  ws().receive([oldRef, null, TOPIC, "evt", { from: "old" }])
  ws().receive([ch.joinRef(), null, TOPIC, "evt", { from: "current" }])
  ws().receive([null, null, TOPIC, "evt", { from: "broadcast" }])
  ws().receive([oldRef, oldRef, TOPIC, "phx_close", {}])
  assert.deepEqual(got, ["current", "broadcast"])
  assert.equal(ch.state, "joined", "a stale phx_close closed the channel")
})

test("push replies are routed by ref: ok, error, timeout", () => {
  const { socket, ws } = setup()
  const ch = joined(socket, ws())
  const seen: string[] = []
  const a = ch.push("a", { x: 1 }).receive("ok", (r) => seen.push("a ok " + r.v)).receive("error", () => seen.push("a error"))
  const b = ch.push("b", {}).receive("error", (r) => seen.push("b error " + r.reason))
  ch.push("c", {}, 1_000).receive("timeout", () => seen.push("c timeout"))
  assert.ok(a.sent && b.sent)
  const ma = ws().last("a")
  assert.deepEqual(ma.payload, { x: 1 })
  assert.equal(ma.join_ref, ch.joinRef())
  ws().reply("b", "error", { reason: "nope" })
  ws().reply("a", "ok", { v: 2 })
  ws().reply("a", "ok", { v: 3 }) // a second reply to the same ref is ignored
  mock.timers.tick(1_000)
  assert.deepEqual(seen, ["b error nope", "a ok 2", "c timeout"])
  // A callback registered after the outcome runs at once.
  a.receive("ok", (r) => seen.push("late " + r.v))
  assert.equal(seen[seen.length - 1], "late 2")
})

test("pushes made while joining wait and go out in order after the join", () => {
  const { socket, ws } = setup()
  const ch = socket.channel(TOPIC)
  ch.join()
  ch.push("one", { n: 1 })
  ch.push("two", { n: 2 })
  assert.equal(ws().messages().filter((m) => m.event === "one" || m.event === "two").length, 0)
  ws().reply("phx_join", "ok", {})
  const after = ws().messages().map((m) => m.event)
  assert.deepEqual(after.slice(-2), ["one", "two"])
  assert.equal(ws().last("one").join_ref, ch.joinRef())
})

test("the push buffer is bounded: overflow fails the push at once", () => {
  const { socket, tr, ws } = setup({ pushBufferSize: 3 })
  const ch = joined(socket, ws())
  tr.latest().drop()
  assert.equal(ch.state, "errored")
  const outcomes: string[] = []
  for (let i = 0; i < 4; i++) {
    ch.push("m", { i }).receive("error", (r) => outcomes.push(`${i}: ${r.reason}`))
  }
  assert.deepEqual(outcomes, ["3: buffer full"])
  mock.timers.tick(250)
  tr.latest().open()
  ws().reply("phx_join", "ok", {})
  assert.deepEqual(ws().messages().filter((m) => m.event === "m").map((m) => m.payload.i), [0, 1, 2])
})

test("a buffered push that times out is never sent", () => {
  const { socket, tr, ws } = setup({ reconnectBaseMs: 60_000, reconnectMaxMs: 60_000 })
  const ch = joined(socket, ws())
  tr.latest().drop()
  let timedOut = 0
  ch.push("late", {}, 2_000).receive("timeout", () => timedOut++)
  mock.timers.tick(2_000)
  assert.equal(timedOut, 1)
  mock.timers.tick(60_000)
  tr.latest().open()
  ws().reply("phx_join", "ok", {})
  assert.equal(ws().messages().filter((m) => m.event === "late").length, 0)
})

test("leave: the channel closes once the server confirms", () => {
  const { socket, ws } = setup()
  const ch = joined(socket, ws())
  let closed = 0
  ch.onClose(() => closed++)
  let left = false
  ch.leave().receive("ok", () => { left = true })
  assert.equal(ch.state, "leaving")
  const l = ws().last("phx_leave")
  assert.equal(l.join_ref, ch.joinRef())
  ws().reply("phx_leave", "ok", {})
  assert.ok(left)
  assert.equal(ch.state, "closed")
  assert.equal(closed, 1)
  assert.ok(!socket.channels.includes(ch))
  let err: unknown
  ch.push("after", {}).receive("error", (r) => { err = r.reason })
  assert.equal(err, "channel closed")
})

test("leave while disconnected closes at once; no rejoin after reconnect", () => {
  const { socket, tr, ws } = setup()
  const ch = joined(socket, ws())
  tr.latest().drop()
  let left = false
  ch.leave().receive("ok", () => { left = true })
  assert.ok(left)
  assert.equal(ch.state, "closed")
  mock.timers.tick(20_000)
  tr.latest().open()
  assert.equal(ws().messages().filter((m) => m.event === "phx_join").length, 0)
})

test("join twice and push before join are programming errors", () => {
  const { socket } = setup()
  const ch = socket.channel(TOPIC)
  assert.throws(() => ch.push("x", {}), /before joining/)
  ch.join()
  assert.throws(() => ch.join(), /more than once/)
})

test("joining a second channel of a topic leaves the first", () => {
  const { socket, ws } = setup()
  const first = joined(socket, ws())
  const second = socket.channel(TOPIC)
  second.join()
  assert.equal(first.state, "leaving")
  assert.equal(ws().last("phx_leave").join_ref, first.joinRef())
})

test("a push with an ArrayBuffer payload goes out as a binary frame", () => {
  const { socket, ws } = setup()
  const ch = joined(socket, ws())
  ch.push("upload", new Uint8Array([1, 2, 3]).buffer)
  const frame = ws().sent[ws().sent.length - 1]
  assert.ok(frame instanceof ArrayBuffer)
  const b = new Uint8Array(frame)
  assert.equal(b[0], 0)
  assert.deepEqual(Array.from(b.slice(-3)), [1, 2, 3])
})

test("a push that cannot be encoded fails with an error reply instead of throwing later", () => {
  const { socket, ws } = setup()
  const ch = joined(socket, ws())
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  let reason = ""
  ch.push("bad", cyclic).receive("error", (r) => { reason = r.reason })
  assert.match(reason, /cannot encode/)
})

test("phoenix.js members: channel.params replaced for rejoins, push.hasReceived, is* states, onMessage", () => {
  const { socket, tr, ws } = setup()
  const ch = joined(socket, ws(), undefined, { room_token: "a" })
  assert.equal(ws().last("phx_join").payload.room_token, "a")
  ch.params = () => ({ room_token: "b", last_id: 7 })
  const p = ch.push("x", {})
  assert.equal(p.hasReceived("ok"), false)
  ws().reply("x", "ok", {})
  assert.equal(p.hasReceived("ok"), true)
  assert.equal(p.hasReceived("error"), false)
  reconnect(tr)
  assert.equal(ch.isJoining(), true)
  const j = ws().last("phx_join").payload
  assert.equal(j.room_token, "b")
  assert.equal(j.last_id, 7)
  ws().reply("phx_join", "ok", {})
  assert.ok(ch.isJoined() && !ch.isErrored() && !ch.isClosed() && !ch.isLeaving())
  const seen: unknown[] = []
  ch.on("m", (payload) => seen.push(payload))
  ch.onMessage = (event, payload) => (event === "m" ? { wrapped: payload } : payload)
  ws().receive([null, null, TOPIC, "m", { n: 1 }])
  assert.deepEqual(seen, [{ wrapped: { n: 1 } }])
  ch.leave()
  assert.ok(ch.isLeaving())
  assert.equal(socket.vsn, "2.0.0")
  assert.equal(socket.heartbeatIntervalMs, 30_000)
})
