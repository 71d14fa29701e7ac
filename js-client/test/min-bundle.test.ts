// The built IIFE bundles, as a page loads them (hearth.min.js shortens
// private members' names; see mangleProps in js-client/internal/build),
// against a real `hearth serve`: connect, join, push, broadcast, ping, a
// dropped connection recovered with onRecover and onCaughtUp, a terminal
// close that closes the channel and fails pushes.

import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import WebSocket from "ws"
import type * as HearthModule from "../src/index"
import { eventually, HearthServer } from "./hearth-server"
import { repoRoot } from "./helpers"

let srv: HearthServer
const sockets: HearthModule.Socket[] = []
before(async () => { srv = await HearthServer.start() })
after(async () => {
  for (const s of sockets) s.disconnect()
  await srv.stop()
})

/** Evaluates a built IIFE bundle and returns its global Hearth. */
function load(file: string): typeof HearthModule {
  const code = readFileSync(join(repoRoot(), "js-client", "dist", file), "utf8")
  return new Function(code + "\n;return Hearth")() as typeof HearthModule
}

for (const file of ["hearth.min.js", "hearth.js"]) {
  describe(file, { timeout: 60_000 }, () => {
    test("connect, join, push, broadcast, ping, recovery after a dropped connection", async () => {
      const Hearth = load(file)
      const conns: WebSocket[] = []
      class Tracked extends WebSocket {
        constructor(url: string, protocols?: string | string[]) {
          super(url, protocols)
          conns.push(this)
        }
      }
      let cut = false
      const a = new Hearth.Socket(srv.socketURL, { transport: Tracked, reconnectAfterMs: () => (cut ? 800 : 100) })
      const b = new Hearth.Socket(srv.socketURL, { transport: WebSocket })
      sockets.push(a, b)
      a.connect()
      b.connect()
      const room = `room:min-${file}-${Date.now().toString(36)}`
      const ca = a.channel(room)
      const cb = b.channel(room)
      const got: string[] = []
      ca.on("new_msg", (m) => got.push(m.body))
      const recoveries: HearthModule.RecoverInfo[] = []
      ca.onRecover((r) => recoveries.push(r))
      let caughtUpAt = -1
      ca.onCaughtUp(() => { caughtUpAt = got.length })
      for (const ch of [ca, cb]) await new Promise((resolve, reject) => ch.join().receive("ok", resolve).receive("error", reject))
      const say = (body: string) => new Promise((resolve, reject) => cb.push("new_msg", { user: "b", body }).receive("ok", resolve).receive("error", reject))
      await say("one")
      await eventually("a got one", () => got.length === 1)
      const rtt = await new Promise<number>((resolve) => assert.ok(a.ping(resolve)))
      assert.ok(rtt >= 0)

      cut = true
      conns[0].terminate()
      await eventually("a lost its connection", () => !a.isConnected())
      await say("two")
      await say("three")
      await eventually("a recovered", () => recoveries.length === 1 && got.length === 3, 10_000)
      assert.deepEqual(got, ["one", "two", "three"])
      assert.equal(recoveries[0].recovered, true)
      assert.equal(recoveries[0].replayed, 2)
      assert.equal(caughtUpAt, 3)
      assert.ok(ca.isJoined())
    })

    test("a terminal close closes the channel and fails pushes with the reason", async () => {
      const Hearth = load(file)
      const s = new Hearth.Socket(srv.socketURL, { transport: WebSocket, authToken: "not-a-token" })
      sockets.push(s)
      const ch = s.channel("room:min-terminal")
      ch.join()
      const terminal = await new Promise<[number, string]>((resolve) => {
        s.onTerminal((code, reason) => resolve([code, reason]))
        s.connect()
      })
      assert.deepEqual(terminal, [4501, "unauthorized"])
      assert.ok(ch.isClosed())
      const reason = await new Promise((resolve) => ch.push("x", {}).receive("error", (r) => resolve(r.reason)))
      assert.equal(reason, "unauthorized")
      assert.ok(new Hearth.SignedOut() instanceof Error)
    })
  })
}
