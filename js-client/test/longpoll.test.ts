// The long-poll fallback: a WebSocket that does not open in time, or fails
// before opening, makes the socket switch to long-poll and remember it for
// the tab; a socket whose WebSocket opened once never falls back. The
// server is a fake fetch; time is mocked.

import { afterEach, beforeEach, mock, test } from "node:test"
import assert from "node:assert/strict"
import { LongPoll, Socket } from "../src/index"
import { fakeTransport, flush } from "./helpers"

type G = { WebSocket?: unknown; fetch?: unknown; sessionStorage?: unknown }
const g = globalThis as G
const saved = { WebSocket: g.WebSocket, fetch: g.fetch, sessionStorage: g.sessionStorage }
let requests: Array<{ method: string; url: string; body: string | null; answer: (a: object) => void }>
let storage: Map<string, string>

beforeEach(() => {
  mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_700_000_000_000 })
  requests = []
  storage = new Map()
  g.sessionStorage = { getItem: (k: string) => storage.get(k) ?? null, setItem: (k: string, v: string) => storage.set(k, v) }
  g.fetch = (url: string, init: { method: string; body: string | null }) =>
    new Promise((resolve) => {
      requests.push({ method: init.method, url, body: init.body, answer: (a) => resolve({ json: async () => a }) })
    })
})

afterEach(() => {
  mock.timers.reset()
  Object.assign(g, saved)
})

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) {
    mock.timers.tick(1)
    await flush()
  }
}

test("a WebSocket that does not open in time falls back to long-poll, remembered for the tab", async () => {
  const tr = fakeTransport()
  g.WebSocket = tr.Transport
  const socket = new Socket("ws://example.test/socket", { longPollFallbackMs: 1000, environment: null, params: { user: "ann" } })
  const opened: string[] = []
  socket.onOpen(() => opened.push(socket.conn instanceof LongPoll ? "longpoll" : "websocket"))
  socket.connect()
  assert.equal(tr.sockets.length, 1)
  mock.timers.tick(990)
  await flush()
  assert.equal(requests.length, 0, "no fallback before longPollFallbackMs")
  mock.timers.tick(10)
  await settle()
  assert.notEqual(tr.latest().closedWith, null, "the WebSocket attempt was abandoned")
  assert.equal(storage.get("hearth:fallback:LongPoll"), "true")
  assert.equal(requests.length, 1)
  const url = new URL(requests[0].url)
  assert.equal(url.origin + url.pathname, "http://example.test/socket/longpoll")
  assert.equal(url.searchParams.get("user"), "ann")
  assert.equal(url.searchParams.get("_hearth"), "1")
  requests[0].answer({ status: 410, token: "T1", messages: [] })
  await settle()
  assert.deepEqual(opened, ["longpoll"])
  assert.equal(new URL(requests[1].url).searchParams.get("token"), "T1")

  // Pushes go out in a POST; a binary frame arrives base64 and is decoded.
  const ch = socket.channel("room:1")
  const replies: unknown[] = []
  ch.join().receive("ok", (r) => replies.push(r))
  await settle()
  const post = requests.find((r) => r.method === "POST")
  assert.ok(post, "the join was posted")
  const [joinRef, ref] = JSON.parse(post.body as string)
  post.answer({ status: 200 })
  requests[1].answer({ status: 200, token: "T1", messages: [JSON.stringify([joinRef, ref, "room:1", "phx_reply", { status: "ok", response: { a: 1 } }])] })
  await settle()
  assert.deepEqual(replies, [{ a: 1 }])
  socket.disconnect()

  // The next socket of the tab goes to long-poll at once.
  const again = new Socket("ws://example.test/socket", { longPollFallbackMs: 1000, environment: null })
  const before = tr.sockets.length
  again.connect()
  await settle()
  assert.equal(tr.sockets.length, before, "no WebSocket attempt once the fallback is remembered")
  assert.ok(again.conn instanceof LongPoll)
  again.disconnect()
})

test("a WebSocket that fails before opening falls back at once", async () => {
  const tr = fakeTransport()
  g.WebSocket = tr.Transport
  const socket = new Socket("ws://example.test/socket", { longPollFallbackMs: 5000, environment: null })
  socket.connect()
  tr.latest().drop()
  await settle()
  assert.ok(socket.conn instanceof LongPoll)
  assert.equal(requests.length, 1)
  socket.disconnect()
})

test("a socket whose WebSocket opened once does not fall back", async () => {
  const tr = fakeTransport()
  g.WebSocket = tr.Transport
  const socket = new Socket("ws://example.test/socket", { longPollFallbackMs: 1000, environment: null, reconnectAfterMs: () => 100 })
  socket.connect()
  tr.latest().open()
  tr.latest().drop()
  mock.timers.tick(100)
  await settle()
  assert.equal(tr.sockets.length, 2)
  mock.timers.tick(5000)
  await settle()
  assert.equal(requests.length, 0)
  assert.equal(storage.size, 0)
  socket.disconnect()
})
