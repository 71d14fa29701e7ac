// The Hearth client falls back to long-poll by itself in headless
// Chromium when WebSockets fail (the page replaces window.WebSocket with
// one that never opens), through a round-robin proxy over two `hearth
// serve` nodes on PostgreSQL: it joins, pushes, gets a binary reply,
// receives a broadcast from a WebSocket client on a node, and remembers
// the fallback for the tab.
//
// PostgreSQL: HEARTH_TEST_DATABASE_URL, default
// postgres://postgres@127.0.0.1:5432/test.

import { after, before, test } from "node:test"
import assert from "node:assert/strict"
import type http from "node:http"
import type { AddressInfo } from "node:net"
import { existsSync } from "node:fs"
import { chromium, type Browser } from "playwright-core"
import { Socket as PhoenixSocket } from "phoenix"
import WebSocket from "ws"
import { eventually, HearthServer, roundRobinProxy } from "./hearth-server"

const DATABASE_URL = process.env.HEARTH_TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test"
const ROOM = `room:lp-e2e-${Date.now().toString(36)}`

let nodes: HearthServer[] = []
let proxy: http.Server
let browser: Browser

before(async () => {
  const args = (name: string) => ["--database-url", DATABASE_URL, "--secret", "long-poll e2e secret shared by both nodes", "--node-name", name]
  nodes = await Promise.all([HearthServer.start(args("e2e-a")), HearthServer.start(args("e2e-b"))])
  proxy = await roundRobinProxy(nodes)
  const path = [process.env.CHROMIUM_PATH, "/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => p && existsSync(p))
  if (!path) throw new Error("chromium not found: install Debian's chromium or set CHROMIUM_PATH")
  browser = await chromium.launch({ executablePath: path, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"] })
})

after(async () => {
  await browser?.close()
  proxy?.closeAllConnections()
  proxy?.close()
  await Promise.all(nodes.map((n) => n.stop()))
})

const PAGE = `<!doctype html>
<meta charset="utf-8">
<script>
  // A network that breaks WebSockets: they never open.
  window.WebSocket = class BrokenWebSocket {
    constructor() {
      this.readyState = 0
      setTimeout(() => { this.readyState = 3; this.onerror && this.onerror({}); this.onclose && this.onclose({ code: 1006, reason: "", wasClean: false }) }, 50)
    }
    send() { throw new Error("not open") }
    close() {}
  }
</script>
<script src="/hearth.js"></script>
<script>
  window.log = []
  window.events = []
  window.trace = []
  const socket = new Hearth.Socket("/socket", { longPollFallbackMs: 2000, logger: (kind, msg) => trace.push(msg) })
  socket.onOpen(() => events.push("open " + (socket.conn instanceof Hearth.LongPoll ? "longpoll" : "websocket")))
  socket.connect()
  const room = socket.channel(${JSON.stringify(ROOM)})
  room.on("new_msg", (m) => log.push(m.user + ":" + m.body))
  room.join().receive("ok", () => events.push("joined"))
  window.push = (event, payload) => new Promise((resolve) =>
    room.push(event, payload)
      .receive("ok", (r) => resolve(["ok", r instanceof ArrayBuffer ? Array.from(new Uint8Array(r)) : r]))
      .receive("error", (r) => resolve(["error", r]))
      .receive("timeout", () => resolve(["timeout"])))
</script>`

test("falls back to long-poll when WebSockets fail, through a round-robin proxy over two nodes", { timeout: 90_000 }, async () => {
  const base = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`
  const page = await (await browser.newContext()).newPage()
  page.on("pageerror", (err) => { throw new Error(`page error: ${err.message}`) })
  await page.goto(base + "/healthz")
  await page.setContent(PAGE)
  await page.waitForFunction(() => (window as any).events.includes("joined"), null, { timeout: 20_000 })
  const events = await page.evaluate(() => (window as any).events as string[])
  assert.deepEqual(events.slice(0, 1), ["open longpoll"])
  const trace = await page.evaluate(() => (window as any).trace as string[])
  assert.ok(trace.some((t) => t.includes("falling back to long-poll")), trace.join("\n"))
  assert.equal(await page.evaluate(() => sessionStorage.getItem("hearth:fallback:LongPoll")), "true")

  // Pushes answered (the POSTs alternate between the nodes), binary too.
  for (let n = 0; n < 4; n++) {
    assert.deepEqual(await page.evaluate((n) => (window as any).push("ping", { n }), n), ["ok", { n }])
  }
  assert.deepEqual(await page.evaluate(() => (window as any).push("ping", new Uint8Array([1, 2, 250]).buffer)), ["ok", [1, 2, 250]])

  // Broadcasts from WebSocket clients on each node arrive in order.
  const want: string[] = []
  for (const node of nodes) {
    const ws = new PhoenixSocket(`ws://127.0.0.1:${node.port}/socket`, { transport: WebSocket as never })
    ws.connect()
    const ch = ws.channel(ROOM)
    await new Promise((resolve) => ch.join().receive("ok", resolve))
    for (let i = 0; i < 5; i++) {
      want.push(`ws:${node.port}-${i}`)
      await new Promise((resolve) => ch.push("new_msg", { user: "ws", body: `${node.port}-${i}` }).receive("ok", resolve))
    }
    ws.disconnect()
  }
  await eventually("10 broadcasts in the page", async () => (await page.evaluate(() => (window as any).log.length)) >= 10, 20_000)
  assert.deepEqual(await page.evaluate(() => (window as any).log), want)
})
