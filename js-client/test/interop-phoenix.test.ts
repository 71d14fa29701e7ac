// Wire compatibility: the OFFICIAL phoenix npm client (with the ws package
// as its transport) against a real `hearth serve`: connect, join, push and
// reply, binary push and reply, broadcast between two sockets, a refused
// join, leave, heartbeats.

import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { Socket as PhoenixSocket, type Channel as PhoenixChannel, type Push as PhoenixPush } from "phoenix"
import WebSocket from "ws"
import { eventually, HearthServer } from "./hearth-server"

let server: HearthServer
const sockets: PhoenixSocket[] = []

before(async () => {
  server = await HearthServer.start()
})

after(async () => {
  for (const s of sockets) s.disconnect()
  await server?.stop()
})

function phoenixSocket(opts: Record<string, unknown> = {}): PhoenixSocket {
  const s = new PhoenixSocket(server.socketURL, { transport: WebSocket as never, ...opts })
  sockets.push(s)
  s.connect()
  return s
}

interface Outcome {
  status: "ok" | "error" | "timeout"
  response: any
}

function outcome(push: PhoenixPush): Promise<Outcome> {
  return new Promise((resolve) => {
    push
      .receive("ok", (response: unknown) => resolve({ status: "ok", response }))
      .receive("error", (response: unknown) => resolve({ status: "error", response }))
      .receive("timeout", () => resolve({ status: "timeout", response: null }))
  })
}

async function join(s: PhoenixSocket, topic: string, params: object = {}): Promise<[PhoenixChannel, Outcome]> {
  const ch = s.channel(topic, params)
  return [ch, await outcome(ch.join())]
}

describe("the official phoenix client against hearth serve", { timeout: 60_000 }, () => {
  test("connects, joins and gets replies to pushes", async () => {
    const s = phoenixSocket()
    await eventually("phoenix socket open", () => s.isConnected())
    const [ch, joined] = await join(s, "room:interop-1", { nick: "ann" })
    assert.deepEqual(joined, { status: "ok", response: {} }, "a plain Phoenix client sees no $hearth key")
    assert.deepEqual(await outcome(ch.push("ping", { n: 1, s: "é" })), { status: "ok", response: { n: 1, s: "é" } })
    const unknown = await outcome(ch.push("nope", {}))
    assert.equal(unknown.status, "error")
  })

  test("binary pushes get binary replies", async () => {
    const s = phoenixSocket()
    const [ch] = await join(s, "room:interop-bin")
    const bytes = new Uint8Array([0, 1, 2, 250, 255])
    const r = await outcome(ch.push("ping", bytes.buffer as never))
    assert.equal(r.status, "ok")
    assert.ok(r.response instanceof ArrayBuffer, "binary reply is an ArrayBuffer")
    assert.deepEqual(Array.from(new Uint8Array(r.response)), Array.from(bytes))
  })

  test("broadcasts reach every socket in the room, positions in the ref do not confuse heartbeats", async () => {
    const a = phoenixSocket({ heartbeatIntervalMs: 100 })
    const b = phoenixSocket({ heartbeatIntervalMs: 100 })
    const [chA] = await join(a, "room:interop-2")
    const [chB] = await join(b, "room:interop-2")
    const gotA: Array<[string, unknown]> = []
    const gotB: Array<[string, unknown]> = []
    // phoenix.js passes the message's ref as the second argument (its types omit it).
    const record = (into: Array<[string, unknown]>) => ((p: { body: string }, ref?: unknown) => { into.push([p.body, ref]) }) as (r?: unknown) => void
    chA.on("new_msg", record(gotA))
    chB.on("new_msg", record(gotB))
    for (let i = 1; i <= 5; i++) {
      assert.equal((await outcome(chA.push("new_msg", { user: "ann", body: `m${i}` }))).status, "ok")
    }
    await eventually("5 broadcasts on both sockets", () => gotA.length === 5 && gotB.length === 5)
    assert.deepEqual(gotA.map(([b]) => b), ["m1", "m2", "m3", "m4", "m5"])
    assert.deepEqual(gotB, gotA, "both sockets see the same messages and positions")
    for (const [, ref] of gotA) assert.match(String(ref), /^@\d+$/)
    // Heartbeats every 100 ms kept running alongside: the sockets stayed up.
    await new Promise((r) => setTimeout(r, 400))
    assert.ok(a.isConnected() && b.isConnected())
  })

  test("a refused join gets the handler's reason", async () => {
    const s = phoenixSocket()
    const [, r] = await join(s, "private:x")
    assert.deepEqual(r, { status: "error", response: { reason: "unauthorized" } })
  })

  test("leave ends delivery", async () => {
    const a = phoenixSocket()
    const b = phoenixSocket()
    const [chA] = await join(a, "room:interop-3")
    const [chB] = await join(b, "room:interop-3")
    let gotA = 0
    chA.on("new_msg", () => { gotA++ })
    let gotB = 0
    chB.on("new_msg", () => { gotB++ })
    assert.equal((await outcome(chA.leave())).status, "ok")
    await outcome(chB.push("new_msg", { user: "bob", body: "after leave" }))
    await eventually("b's own broadcast", () => gotB === 1)
    // b's broadcast was delivered to b after a's leave; had a still been
    // subscribed it would have been delivered to a in the same fanout.
    await outcome(chB.push("ping", {}))
    assert.equal(gotA, 0)
  })

  test("a bad channel gets an error reply and the socket's other channels carry on", async () => {
    const s = phoenixSocket()
    const [lobby, joined] = await join(s, "room:interop-bad")
    assert.equal(joined.status, "ok")
    const got: string[] = []
    lobby.on("new_msg", (p: { body: string }) => { got.push(p.body) })
    let errors = 0
    s.onError(() => { errors++ })
    const [empty, r] = await join(s, "")
    assert.deepEqual(r, { status: "error", response: { reason: "topic must not be empty" } })
    empty.leave() // phoenix.js would retry the join with backoff
    assert.deepEqual(await outcome(lobby.push("", {})), { status: "error", response: { reason: "event must not be empty" } })
    assert.equal((await outcome(lobby.push("new_msg", { user: "ann", body: "still here" }))).status, "ok")
    await eventually("the lobby still receives", () => got.length === 1)
    assert.deepEqual(got, ["still here"])
    const [, nick] = await join(s, "room:interop-nick", { nick: "$hearth" })
    assert.equal(nick.status, "ok", "the text $hearth in the app's params is the app's")
    assert.ok(s.isConnected())
    assert.equal(errors, 0, "the socket never closed")
  })

  test("heartbeats are answered: phoenix's ping measures the round trip", async () => {
    const s = phoenixSocket()
    await eventually("phoenix socket open", () => s.isConnected())
    const rtt = await new Promise<number>((resolve, reject) => {
      if (!s.ping(resolve)) reject(new Error("ping refused: not connected"))
    })
    assert.ok(rtt >= 0 && rtt < 5_000, `rtt ${rtt}`)
  })
})
