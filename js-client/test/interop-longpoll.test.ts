// Long-poll without sticky sessions: the OFFICIAL phoenix client with its
// LongPoll transport, through a round-robin proxy (every request to the
// next node) over two `hearth serve` nodes clustered on PostgreSQL. Also
// Phoenix's V1 serializer (vsn 1.0.0) on both transports.
//
// PostgreSQL: HEARTH_TEST_DATABASE_URL, default
// postgres://postgres@127.0.0.1:5432/test (`make test` provides one).

import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import http from "node:http"
import type { AddressInfo } from "node:net"
import { LongPoll, Socket as PhoenixSocket, type Channel as PhoenixChannel, type Push as PhoenixPush } from "phoenix"
import WebSocket from "ws"
import { eventually, HearthServer, roundRobinProxy } from "./hearth-server"

const DATABASE_URL = process.env.HEARTH_TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test"
const SECRET = "long-poll interop secret, shared by both nodes"

let nodes: HearthServer[] = []
let proxy: http.Server
let proxyURL = ""
const sockets: PhoenixSocket[] = []

before(async () => {
  const args = (name: string) => ["--database-url", DATABASE_URL, "--secret", SECRET, "--node-name", name]
  nodes = await Promise.all([HearthServer.start(args("lp-a")), HearthServer.start(args("lp-b"))]).catch((err: Error) => {
    throw new Error(`cannot start two hearth serve nodes on PostgreSQL at ${DATABASE_URL} (set HEARTH_TEST_DATABASE_URL): ${err.message}`)
  })
  proxy = await roundRobinProxy(nodes)
  proxyURL = `ws://127.0.0.1:${(proxy.address() as AddressInfo).port}/socket`
})

after(async () => {
  for (const s of sockets) s.disconnect()
  proxy?.closeAllConnections()
  proxy?.close()
  await Promise.all(nodes.map((n) => n.stop()))
})

function longPollSocket(opts: Record<string, unknown> = {}): PhoenixSocket {
  const s = new PhoenixSocket(proxyURL, { transport: LongPoll, ...opts } as never)
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

/** The node holding a long-poll socket's session, read from its token. */
function owner(s: PhoenixSocket): number {
  const token = (s as unknown as { conn: { token: string } }).conn.token
  const payload = Buffer.from(token.split(".")[0], "base64url").toString()
  return payload.startsWith("lp-a.") ? 0 : 1
}

describe("phoenix.js LongPoll through a round-robin proxy over two nodes", { timeout: 150_000 }, () => {
  test("joins, is refused, pushes (text and binary) and gets replies", async () => {
    const s = longPollSocket()
    await eventually("long-poll socket open", () => s.isConnected())
    const [ch, joined] = await join(s, "room:lp-1")
    assert.deepEqual(joined, { status: "ok", response: {} })
    const [, refused] = await join(s, "private:x")
    assert.deepEqual(refused, { status: "error", response: { reason: "unauthorized" } })
    for (let n = 0; n < 6; n++) { // the POSTs alternate between the nodes
      assert.deepEqual(await outcome(ch.push("ping", { n })), { status: "ok", response: { n } })
    }
    // A binary push travels base64 in the POST and reaches the handler as
    // binary (the demo's new_msg wants JSON, so it says so). phoenix.js
    // ignores custom decoders with LongPoll and cannot read binary frames
    // from any server over it: the Hearth client can (longpoll.test.ts).
    const r = await outcome(ch.push("new_msg", new Uint8Array([0, 1, 2, 250, 255]).buffer as never))
    assert.equal(r.status, "error")
    assert.match(String(r.response.reason), /new_msg needs/)
  })

  test("a stream from the other node arrives whole and in order", async () => {
    const s = longPollSocket()
    await eventually("long-poll socket open", () => s.isConnected())
    const [ch] = await join(s, "room:lp-2")
    const got: string[] = []
    ch.on("new_msg", (p: { body: string }) => { got.push(p.body) })
    const other = nodes[1 - owner(s)]
    const ws = new PhoenixSocket(`ws://127.0.0.1:${other.port}/socket`, { transport: WebSocket as never })
    sockets.push(ws)
    ws.connect()
    const [wch] = await join(ws, "room:lp-2")
    const want: string[] = []
    const pushes: Promise<Outcome>[] = []
    for (let i = 0; i < 100; i++) {
      want.push(`m${i}`)
      pushes.push(outcome(wch.push("new_msg", { user: "ws", body: `m${i}` })))
    }
    for (const p of await Promise.all(pushes)) assert.equal(p.status, "ok")
    await eventually("100 messages over long-poll", () => got.length >= 100, 30_000)
    assert.deepEqual(got, want)
  })

  // phoenix.js uses its own V2 serializer with LongPoll whatever the
  // options say: V1 over long-poll is tested in Go (server/longpoll_test.go).
  test("vsn 1.0.0 (V1 serializer) connects, joins, pushes and receives broadcasts", async () => {
    const encode = (m: any, cb: (s: string) => unknown) => cb(JSON.stringify({ join_ref: m.join_ref, ref: m.ref, topic: m.topic, event: m.event, payload: m.payload }))
    const decodeV1 = (raw: string, cb: (m: unknown) => unknown) => cb(JSON.parse(raw))
    const v1 = { vsn: "1.0.0", encode, decode: decodeV1 }
    const got: Record<string, string[]> = { a: [], b: [] }
    const chans: PhoenixChannel[] = []
    for (const [name, node] of [["a", nodes[0]], ["b", nodes[1]]] as const) {
      const s = new PhoenixSocket(`ws://127.0.0.1:${node.port}/socket`, { transport: WebSocket as never, ...v1 } as never)
      sockets.push(s)
      s.connect()
      const [ch, joined] = await join(s, "room:lp-v1")
      assert.equal(joined.status, "ok", `${name} join`)
      ch.on("new_msg", (p: { body: string }) => { got[name].push(p.body) })
      assert.deepEqual(await outcome(ch.push("ping", { v: 1 })), { status: "ok", response: { v: 1 } })
      chans.push(ch)
    }
    assert.equal((await outcome(chans[0].push("new_msg", { user: "a", body: "from a" }))).status, "ok")
    await eventually("a's broadcast on both V1 sockets", () => got.a.length === 1 && got.b.length === 1, 20_000)
    assert.equal((await outcome(chans[1].push("new_msg", { user: "b", body: "from b" }))).status, "ok")
    await eventually("b's broadcast on both V1 sockets", () => got.a.length === 2 && got.b.length === 2, 20_000)
    assert.deepEqual(got.a, ["from a", "from b"])
    assert.deepEqual(got.b, ["from a", "from b"])
  })

  test("a node dying under a long-poll client: 410, a new session on the other node, channels rejoined", async () => {
    const s = longPollSocket({ reconnectAfterMs: () => 100, rejoinAfterMs: () => 100 })
    await eventually("long-poll socket open", () => s.isConnected())
    const [ch] = await join(s, "room:lp-3")
    let joins = 0
    ch.on("phx_reply", () => {})
    ;(ch as unknown as { joinPush: PhoenixPush }).joinPush.receive("ok", () => { joins++ })
    const dead = owner(s)
    await nodes[dead].stop("SIGKILL")
    await eventually("the channel rejoined on the live node", () => joins >= 1 && s.isConnected() && owner(s) !== dead, 40_000)
    assert.deepEqual(await outcome(ch.push("ping", { after: "death" })), { status: "ok", response: { after: "death" } })
  })
})
