// The Hearth client over its long-poll transport (Node's fetch) against a
// real `hearth serve`: join, push, binary reply, broadcasts with positions;
// recovery of the messages missed while the session was lost; tokens
// refreshed over the channel, then revoked (terminal); an invalid token
// (terminal). The same guarantees as over WebSockets.

import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { LongPoll, Socket, type Channel, type CloseInfo, type Push, type RecoverInfo, type SocketOptions, type TokenInfo } from "../src/index"
import { eventually, HearthServer } from "./hearth-server"

const servers: HearthServer[] = []
const sockets: Socket[] = []
let server: HearthServer

before(async () => {
  server = await HearthServer.start()
  servers.push(server)
})

after(async () => {
  for (const s of sockets) s.disconnect()
  for (const s of servers) await s.stop()
})

/** A LongPoll that remembers its connections, so a test can cut them. */
function trackedLongPoll() {
  const conns: LongPoll[] = []
  class Tracked extends LongPoll {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols)
      conns.push(this)
    }
  }
  return { Transport: Tracked, conns }
}

/** Drops a long-poll connection as a failing network would. */
function cut(conn: LongPoll): void {
  (conn as unknown as { fail(code: number, reason: string): void }).fail(1006, "network lost")
}

function hearthSocket(opts: SocketOptions = {}, srv: HearthServer = server) {
  const tr = trackedLongPoll()
  const socket = new Socket(srv.socketURL, { transport: tr.Transport, reconnectBaseMs: 100, reconnectMaxMs: 500, ...opts })
  sockets.push(socket)
  socket.connect()
  return { socket, conns: tr.conns }
}

function outcome(push: Push): Promise<{ status: string; response: any }> {
  return new Promise((resolve) => {
    push
      .receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () => resolve({ status: "timeout", response: null }))
  })
}

async function join(socket: Socket, topic: string) {
  const ch = socket.channel(topic)
  const msgs: string[] = []
  const refs: unknown[] = []
  const recoveries: RecoverInfo[] = []
  ch.on("new_msg", (p, ref) => { msgs.push(p.body); refs.push(ref) })
  ch.onRecover((r) => recoveries.push(r))
  const r = await outcome(ch.join())
  assert.equal(r.status, "ok", `join ${topic}: ${JSON.stringify(r.response)}`)
  return { ch, msgs, refs, recoveries }
}

async function say(ch: Channel, body: string): Promise<void> {
  const r = await outcome(ch.push("new_msg", { user: "test", body }))
  assert.equal(r.status, "ok", `new_msg ${body}: ${JSON.stringify(r.response)}`)
}

describe("the hearth client over long-poll against hearth serve", { timeout: 90_000 }, () => {
  test("joins, pushes, gets binary replies and broadcasts with positions", async () => {
    const a = hearthSocket()
    const b = hearthSocket()
    const ja = await join(a.socket, "room:lpi-1")
    const jb = await join(b.socket, "room:lpi-1")
    assert.deepEqual(await outcome(ja.ch.push("ping", { n: 1 })), { status: "ok", response: { n: 1 } })
    const bin = await outcome(ja.ch.push("ping", new Uint8Array([9, 0, 255]).buffer))
    assert.equal(bin.status, "ok")
    assert.deepEqual(Array.from(new Uint8Array(bin.response as ArrayBuffer)), [9, 0, 255])
    await say(ja.ch, "one")
    await say(jb.ch, "two")
    await eventually("both got both", () => ja.msgs.length === 2 && jb.msgs.length === 2)
    assert.deepEqual(ja.msgs, ["one", "two"])
    assert.deepEqual(jb.msgs, ["one", "two"])
    for (const ref of ja.refs) assert.match(String(ref), /^@\d+$/)
    assert.ok(a.conns[0] instanceof LongPoll)
  })

  test("messages missed while the connection was lost are recovered on rejoin", async () => {
    let lost = false
    const a = hearthSocket({ reconnectAfterMs: () => (lost ? 1_000 : 100) })
    const b = hearthSocket()
    const ja = await join(a.socket, "room:lpi-recover")
    const jb = await join(b.socket, "room:lpi-recover")
    await say(jb.ch, "before")
    await eventually("a got 'before'", () => ja.msgs.length === 1)
    const closed = new Promise<CloseInfo>((resolve) => a.socket.onClose(resolve))
    lost = true
    cut(a.conns[a.conns.length - 1])
    assert.equal((await closed).code, 1006)
    for (const body of ["missed 1", "missed 2", "missed 3"]) await say(jb.ch, body)
    await eventually("a rejoined", () => ja.recoveries.length === 1 && ja.ch.state === "joined")
    assert.equal(ja.recoveries[0].recovered, true)
    assert.equal(ja.recoveries[0].replayed, 3)
    await say(jb.ch, "live")
    await eventually("a got everything", () => ja.msgs.length === 5)
    assert.deepEqual(ja.msgs, ["before", "missed 1", "missed 2", "missed 3", "live"])
    assert.equal(a.conns.length, 2)
  })

  test("a token pushed by the server is used for the next connect; revocation is terminal", async () => {
    const srv = await HearthServer.start(["--token-ttl", "3s", "--refresh-window", "0.2-0.4"])
    servers.push(srv)
    const login = await fetch(srv.httpURL + "/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user: "ann" }) })
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0]
    let fetched = 0
    const fetchToken = async (): Promise<string> => {
      fetched++
      const res = await fetch(srv.httpURL + "/token", { headers: { cookie } })
      return ((await res.json()) as { token: string }).token
    }
    const a = hearthSocket({ authToken: fetchToken }, srv)
    const tokens: TokenInfo[] = []
    a.socket.onToken((t) => tokens.push(t))
    const terminal: Array<[number, string]> = []
    a.socket.onTerminal((code, reason) => terminal.push([code, reason]))
    const ja = await join(a.socket, "private:ann")
    await eventually("a refreshed token", () => tokens.length >= 1, 5_000)
    cut(a.conns[a.conns.length - 1])
    await eventually("rejoined with the refreshed token", () => a.conns.length === 2 && ja.ch.state === "joined", 5_000)
    assert.equal(fetched, 1, "the token service was asked again although the server had handed over a token")
    const out = await fetch(srv.httpURL + "/logout", { method: "POST", headers: { cookie } })
    assert.equal(out.status, 204)
    await eventually("terminal close", () => terminal.length === 1, 5_000)
    assert.deepEqual(terminal[0], [4503, "session revoked"])
    assert.equal(a.conns.length, 2)
  })

  test("an invalid token is a terminal close the app hears about", async () => {
    const { socket, conns } = hearthSocket({ authToken: "not-a-token" })
    const terminal = await new Promise<[number, string]>((resolve) => socket.onTerminal((code, reason) => resolve([code, reason])))
    assert.deepEqual(terminal, [4501, "unauthorized"])
    assert.equal(conns.length, 1)
  })
})
