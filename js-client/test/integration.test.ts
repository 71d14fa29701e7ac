// The Hearth client in Node (ws as its WebSocket) against a real
// `hearth serve`: connect, join, push, broadcast; a refused join; recovery of
// the messages missed during a disconnect; the server restarted (graceful
// and killed) with reconnect and rejoin; tokens refreshed over the channel,
// then revoked; an invalid token.

import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { createServer, type Socket as NetSocket } from "node:net"
import WebSocket from "ws"
import { Socket, type Channel, type CloseInfo, type Push, type RecoverInfo, type SocketOptions, type TokenInfo } from "../src/index"
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

/** A ws transport that remembers its connections, so a test can cut them. */
function trackedTransport() {
  const conns: WebSocket[] = []
  class Tracked extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols)
      conns.push(this)
    }
  }
  return { Transport: Tracked, conns }
}

function hearthSocket(opts: SocketOptions = {}, srv: HearthServer | string = server) {
  const tr = trackedTransport()
  const socket = new Socket(typeof srv === "string" ? srv : srv.socketURL, { transport: tr.Transport, reconnectBaseMs: 100, reconnectMaxMs: 500, ...opts })
  sockets.push(socket)
  socket.connect()
  return { socket, conns: tr.conns }
}

interface Outcome {
  status: string
  response: any
}

function outcome(push: Push): Promise<Outcome> {
  return new Promise((resolve) => {
    push
      .receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () => resolve({ status: "timeout", response: null }))
  })
}

interface Joined {
  ch: Channel
  msgs: string[]
  recoveries: RecoverInfo[]
  response: any
}

async function join(socket: Socket, topic: string): Promise<Joined> {
  const ch = socket.channel(topic)
  const msgs: string[] = []
  const recoveries: RecoverInfo[] = []
  ch.on("new_msg", (p) => msgs.push(p.body))
  ch.onRecover((r) => recoveries.push(r))
  const r = await outcome(ch.join())
  assert.equal(r.status, "ok", `join ${topic}: ${JSON.stringify(r.response)}`)
  return { ch, msgs, recoveries, response: r.response }
}

async function say(ch: Channel, body: string): Promise<void> {
  const r = await outcome(ch.push("new_msg", { user: "test", body }))
  assert.equal(r.status, "ok", `new_msg ${body}: ${JSON.stringify(r.response)}`)
}

describe("the hearth client against hearth serve", { timeout: 90_000 }, () => {
  test("connects, joins, pushes and receives broadcasts with positions", async () => {
    const a = hearthSocket()
    const b = hearthSocket()
    const ja = await join(a.socket, "room:it-basic")
    const jb = await join(b.socket, "room:it-basic")
    assert.deepEqual(ja.response, {}, "$hearth is stripped from the join reply")
    const start = ja.ch.position()
    assert.ok(start && start.epoch !== "", "the join reply gave a position")
    assert.ok(new URL(a.conns[0].url).searchParams.get("_hearth") === "1")

    assert.deepEqual(await outcome(ja.ch.push("ping", { n: 7 })), { status: "ok", response: { n: 7 } })
    const bin = await outcome(ja.ch.push("ping", new Uint8Array([1, 2, 255])))
    assert.ok(bin.response instanceof ArrayBuffer)
    assert.deepEqual(Array.from(new Uint8Array(bin.response)), [1, 2, 255])

    for (const body of ["one", "two", "three"]) await say(ja.ch, body)
    await eventually("3 broadcasts on both sockets", () => ja.msgs.length === 3 && jb.msgs.length === 3)
    assert.deepEqual(ja.msgs, ["one", "two", "three"])
    assert.deepEqual(jb.msgs, ja.msgs)
    assert.deepEqual(ja.ch.position(), { epoch: start.epoch, offset: start.offset + 3 })
    assert.deepEqual(jb.ch.position(), ja.ch.position())
  })

  test("a refused join gets the reason", async () => {
    const { socket } = hearthSocket({ rejoinBaseMs: 60_000 })
    const ch = socket.channel("private:someone")
    const r = await outcome(ch.join())
    assert.deepEqual(r, { status: "error", response: { reason: "unauthorized" } })
    ch.leave()
  })

  test("messages missed during a disconnect are replayed on rejoin, without gaps or duplicates", async () => {
    // a waits a fixed second before reconnecting: time for b to talk.
    let cut = false
    const a = hearthSocket({ reconnectAfterMs: () => (cut ? 1_000 : 100) })
    const b = hearthSocket()
    const ja = await join(a.socket, "room:it-recover")
    const jb = await join(b.socket, "room:it-recover")
    await say(jb.ch, "before")
    await eventually("a got 'before'", () => ja.msgs.length === 1)

    const closed = new Promise<CloseInfo>((resolve) => a.socket.onClose(resolve))
    cut = true
    a.conns[a.conns.length - 1].terminate() // the network drops: no close frame
    assert.equal((await closed).code, 1006)
    for (const body of ["missed 1", "missed 2", "missed 3"]) await say(jb.ch, body)

    // "Caught up" comes once the replay reached the callbacks, not before.
    const caughtUp = new Promise<number>((resolve) => ja.ch.onCaughtUp(() => resolve(ja.msgs.length)))
    await eventually("a rejoined", () => ja.recoveries.length === 1 && ja.ch.state === "joined")
    assert.deepEqual(ja.recoveries[0].recovered, true)
    assert.equal(ja.recoveries[0].replayed, 3)
    assert.equal(ja.recoveries[0].reason, undefined)
    assert.equal(await caughtUp, 4, "caught up before the replayed messages were delivered")
    await say(jb.ch, "live")
    await eventually("a got the live message", () => ja.msgs.length === 5)
    assert.deepEqual(ja.msgs, ["before", "missed 1", "missed 2", "missed 3", "live"])
    assert.deepEqual(ja.ch.position(), jb.ch.position())
    assert.equal(a.conns.length, 2)
  })

  for (const signal of ["SIGTERM", "SIGKILL"] as const) {
    test(`server restarted (${signal}): the clients reconnect, rejoin and are told recovery was impossible`, async () => {
      const srv = await HearthServer.start()
      servers.push(srv)
      const a = hearthSocket({}, srv)
      const b = hearthSocket({}, srv)
      const ja = await join(a.socket, "room:it-restart")
      const jb = await join(b.socket, "room:it-restart")
      await say(ja.ch, "before restart")
      await eventually("b got it", () => jb.msgs.length === 1)
      const closes: CloseInfo[] = []
      a.socket.onClose((c) => closes.push(c))

      await srv.restart(signal)
      await eventually("both rejoined", () => ja.recoveries.length === 1 && jb.recoveries.length === 1 &&
        ja.ch.state === "joined" && jb.ch.state === "joined", 20_000)
      // SIGTERM drains: each socket is closed with 1012 and a reconnect
      // hint; SIGKILL just drops the connection.
      if (signal === "SIGTERM") {
        assert.equal(closes[0].code, 1012, JSON.stringify(closes))
        assert.match(closes[0].reason, /retry_after_ms=\d+/)
      } else {
        assert.equal(closes[0].code, 1006, JSON.stringify(closes))
      }
      // The demo keeps history in memory: a restart loses it, and the
      // clients are told so instead of silently missing messages.
      for (const r of [...ja.recoveries, ...jb.recoveries]) {
        assert.equal(r.recovered, false)
        assert.equal(r.reason, "new_epoch", "the server says why: a new epoch of the in-memory history")
      }
      await say(ja.ch, "after restart")
      await eventually("b got the message after the restart", () => jb.msgs.length === 2)
      assert.deepEqual(jb.msgs, ["before restart", "after restart"])
      await srv.stop()
    })
  }

  test("a token pushed by the server is used for the next connect; revocation stops the client", async () => {
    const srv = await HearthServer.start(["--token-ttl", "3s", "--refresh-window", "0.2-0.4"])
    servers.push(srv)
    const login = await fetch(srv.httpURL + "/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user: "ann" }) })
    assert.equal(login.status, 200)
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0]
    assert.match(cookie, /^hearth_session=/)
    let fetched = 0
    const fetchToken = async (): Promise<string> => {
      fetched++
      const res = await fetch(srv.httpURL + "/token", { headers: { cookie } })
      assert.equal(res.status, 200)
      return ((await res.json()) as { token: string }).token
    }
    const a = hearthSocket({ authToken: fetchToken }, srv)
    const tokens: TokenInfo[] = []
    a.socket.onToken((t) => tokens.push(t))
    const terminal: Array<[number, string]> = []
    a.socket.onTerminal((code, reason) => terminal.push([code, reason]))
    const ja = await join(a.socket, "private:ann")
    assert.equal(fetched, 1)

    await eventually("a refreshed token", () => tokens.length >= 1, 5_000)
    assert.ok(tokens[0].expiresAt !== null && tokens[0].expiresAt > Date.now())
    a.conns[a.conns.length - 1].terminate()
    await eventually("rejoined with the refreshed token", () => a.conns.length === 2 && ja.ch.state === "joined", 5_000)
    assert.equal(fetched, 1, "the token service was asked again although the server had handed over a token")
    const protocols = String(a.conns[1].protocol)
    assert.equal(protocols, "phoenix", "the server selected the phoenix subprotocol")

    // The session ends: the next refresh revokes the socket (4503, terminal).
    const out = await fetch(srv.httpURL + "/logout", { method: "POST", headers: { cookie } })
    assert.equal(out.status, 204)
    await eventually("terminal close", () => terminal.length === 1, 5_000)
    assert.deepEqual(terminal[0], [4503, "session revoked"])
    assert.equal(a.socket.connectionState(), "closed")
    assert.equal(a.conns.length, 2, "reconnected after revocation")
  })

  test("an invalid token is a terminal close the app hears about", async () => {
    const { socket, conns } = hearthSocket({ authToken: "not-a-token" })
    const terminal = await new Promise<[number, string]>((resolve) => socket.onTerminal((code, reason) => resolve([code, reason])))
    assert.deepEqual(terminal, [4501, "unauthorized"])
    assert.equal(conns.length, 1)
  })

  test("a server that never answers the handshake: connect timeout, retry, disconnect while connecting", async () => {
    // ws emits "error" when a connection is closed before it opened; the
    // client must keep a listener or Node would crash the process.
    const held: NetSocket[] = []
    const silent = createServer((c) => { held.push(c) })
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r))
    const port = (silent.address() as { port: number }).port
    try {
      const { socket, conns } = hearthSocket({ timeout: 300, reconnectAfterMs: () => 50 }, `ws://127.0.0.1:${port}/socket`)
      const closes: CloseInfo[] = []
      socket.onClose((c) => closes.push(c))
      await eventually("two connect timeouts", () => closes.length >= 2 && conns.length >= 3)
      assert.deepEqual(closes[0], { code: 1006, reason: "connect timeout", wasClean: false })
      socket.disconnect()
      await eventually("the aborted handshakes reported their errors", () => conns.every((c) => c.readyState === WebSocket.CLOSED))
      await new Promise((r) => setImmediate(r))
      assert.equal(socket.connectionState(), "closed")
    } finally {
      for (const c of held) c.destroy()
      await new Promise((r) => silent.close(r))
    }
  })
})
