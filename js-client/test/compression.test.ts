// permessage-deflate against a real `hearth serve --compress`: the Hearth
// client in Node with ws (perMessageDeflate: true) and in headless Chromium
// (which always offers the extension). Payloads must arrive intact, and the
// bytes the server sends, counted by a TCP proxy in front of it, must be a
// third or less of what a client without compression receives.

import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { existsSync } from "node:fs"
import { connect, createServer, type Server, type Socket as NetSocket } from "node:net"
import WebSocket from "ws"
import { chromium, type Browser } from "playwright-core"
import { Socket, type Push } from "../src/index"
import { eventually, HearthServer } from "./hearth-server"

/** A TCP proxy to the server that counts the bytes sent to the clients. */
class CountingProxy {
  down = 0
  port = 0
  private readonly conns = new Set<NetSocket>()
  private readonly srv: Server

  private constructor(target: number) {
    this.srv = createServer((client) => {
      const upstream = connect(target, "127.0.0.1")
      this.conns.add(client).add(upstream)
      upstream.on("data", (d: Buffer) => {
        this.down += d.length
      })
      client.pipe(upstream)
      upstream.pipe(client)
      const end = () => {
        client.destroy()
        upstream.destroy()
        this.conns.delete(client)
        this.conns.delete(upstream)
      }
      client.on("close", end).on("error", end)
      upstream.on("close", end).on("error", end)
    })
  }

  static async start(target: number): Promise<CountingProxy> {
    const p = new CountingProxy(target)
    await new Promise<void>((resolve, reject) => {
      p.srv.once("error", reject)
      p.srv.listen(0, "127.0.0.1", () => resolve())
    })
    const addr = p.srv.address()
    p.port = typeof addr === "object" && addr ? addr.port : 0
    return p
  }

  async stop(): Promise<void> {
    for (const c of this.conns) c.destroy()
    await new Promise((resolve) => this.srv.close(resolve))
  }
}

/** Chat history as an application sends it: repetitive JSON-ish text. */
function repetitiveBody(n: number): string {
  let s = ""
  for (let i = 0; s.length < n; i++) s += `{"user":"ada","room":"lobby","text":"see you at the meeting ${String.fromCharCode(97 + (i % 26))}"} `
  return s
}

function outcome(push: Push): Promise<{ status: string; response: any }> {
  return new Promise((resolve) => {
    push
      .receive("ok", (response) => resolve({ status: "ok", response }))
      .receive("error", (response) => resolve({ status: "error", response }))
      .receive("timeout", () => resolve({ status: "timeout", response: null }))
  })
}

let server: HearthServer
const proxies: CountingProxy[] = []
const sockets: Socket[] = []

before(async () => {
  server = await HearthServer.start(["--compress", "--message-rate", "-1"])
})

after(async () => {
  for (const s of sockets) s.disconnect()
  for (const p of proxies) await p.stop()
  await server?.stop()
})

/** A Hearth socket in Node through its own counting proxy. */
async function nodeClient(perMessageDeflate: boolean, topic: string) {
  const proxy = await CountingProxy.start(server.port)
  proxies.push(proxy)
  const conns: WebSocket[] = []
  class Transport extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols, { perMessageDeflate })
      conns.push(this)
    }
  }
  const socket = new Socket(`ws://127.0.0.1:${proxy.port}/socket`, { transport: Transport })
  sockets.push(socket)
  socket.connect()
  const ch = socket.channel(topic)
  const bodies: string[] = []
  ch.on("new_msg", (p) => bodies.push(p.body))
  assert.equal((await outcome(ch.join())).status, "ok")
  return { proxy, conns, ch, bodies }
}

describe("permessage-deflate", { timeout: 90_000 }, () => {
  test("Node (ws, perMessageDeflate: true): payloads intact, a third or less of the plain bytes on the wire", async () => {
    const topic = "room:deflate-node"
    const z = await nodeClient(true, topic)
    const plain = await nodeClient(false, topic)
    assert.match(z.conns[0].extensions, /permessage-deflate/, "the server accepted the offer")
    assert.equal(plain.conns[0].extensions, "", "no extension without an offer")

    const body = repetitiveBody(4000)
    const z0 = z.proxy.down
    const p0 = plain.proxy.down
    // The compressing client sends: ws compresses messages above 1 KiB,
    // the server inflates them; every broadcast goes out compressed.
    for (let i = 0; i < 5; i++) {
      const r = await outcome(z.ch.push("new_msg", { user: "ada", body: body + i }))
      assert.equal(r.status, "ok", JSON.stringify(r.response))
    }
    await eventually("both clients got 5 broadcasts", () => z.bodies.length === 5 && plain.bodies.length === 5)
    for (let i = 0; i < 5; i++) {
      assert.equal(z.bodies[i], body + i)
      assert.equal(plain.bodies[i], body + i)
    }
    // The plain client's count includes only what the broadcasts cost it;
    // the compressing one also read 5 short replies.
    const zBytes = z.proxy.down - z0
    const pBytes = plain.proxy.down - p0
    console.log(`5 broadcasts of ${body.length} bytes: ${zBytes} bytes to the compressing client, ${pBytes} to the plain one`)
    assert.ok(zBytes * 3 <= pBytes, `compressed ${zBytes} bytes, plain ${pBytes}: want a third or less`)

    // An echo (a reply to one socket) is compressed by the connection.
    const r = await outcome(z.ch.push("ping", { echo: body }))
    assert.deepEqual(r, { status: "ok", response: { echo: body } })
  })

  test("Chromium (offers permessage-deflate): payloads intact and compressed on the wire", async () => {
    const proxy = await CountingProxy.start(server.port)
    proxies.push(proxy)
    const executablePath = [process.env.CHROMIUM_PATH, "/usr/bin/chromium", "/usr/bin/chromium-browser"].find((p) => p && existsSync(p))
    assert.ok(executablePath, "chromium not found: install Debian's chromium or set CHROMIUM_PATH")
    const browser: Browser = await chromium.launch({
      executablePath,
      headless: true,
      args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    })
    try {
      const page = await browser.newPage()
      // The page comes from the proxy's origin, as the socket does.
      await page.goto(`http://127.0.0.1:${proxy.port}/healthz`)
      await page.setContent(`<!doctype html><meta charset="utf-8"><script src="/hearth.js"></script>
<script>
  window.bodies = []
  const socket = new Hearth.Socket("/socket", {})
  socket.connect()
  const room = socket.channel("room:deflate-chromium")
  room.on("new_msg", (m) => bodies.push(m.body))
  window.joined = new Promise((resolve) => room.join().receive("ok", () => resolve("ok")).receive("error", (r) => resolve("error " + JSON.stringify(r))))
</script>`)
      assert.equal(await page.evaluate(() => (window as any).joined), "ok")

      const body = repetitiveBody(4000)
      const d0 = proxy.down
      const sender = await nodeClient(false, "room:deflate-chromium")
      for (let i = 0; i < 5; i++) {
        assert.equal((await outcome(sender.ch.push("new_msg", { user: "ada", body: body + i }))).status, "ok")
      }
      await eventually("the page got 5 broadcasts", async () => (await page.evaluate(() => (window as any).bodies.length)) === 5)
      const got: string[] = await page.evaluate(() => (window as any).bodies)
      assert.deepEqual(got, [0, 1, 2, 3, 4].map((i) => body + i))
      await eventually("the plain sender got 5 broadcasts", () => sender.bodies.length === 5)
      const chromiumBytes = proxy.down - d0
      const plainBytes = (body.length + 60) * 5 // at least what each plain frame carries
      console.log(`Chromium: 5 broadcasts of ${body.length} bytes took ${chromiumBytes} bytes on the wire (plain: over ${plainBytes})`)
      assert.ok(chromiumBytes * 3 <= plainBytes, `Chromium read ${chromiumBytes} bytes for ${plainBytes} of plain frames`)
    } finally {
      await browser.close()
    }
  })
})
