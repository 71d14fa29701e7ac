// The server API's dashboard (/dashboard, package server/api) in headless
// Chromium, against two `hearth serve --api-key` nodes on PostgreSQL: the
// page refuses a wrong key, shows both nodes once the key is given, its
// socket counts move when clients join on the other node, a search finds a
// client's sockets, and the disconnect button closes that client with the
// terminal 4503. A screenshot is written to a temporary file (and to
// docs/img/dashboard.png with HEARTH_UPDATE_SCREENSHOTS=1).
//
// PostgreSQL: HEARTH_TEST_DATABASE_URL, default
// postgres://postgres@127.0.0.1:5432/test. Without it the test fails.

import { after, before, test } from "node:test"
import assert from "node:assert/strict"
import { execFileSync } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, statSync, copyFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import WebSocket from "ws"
import { chromium, type Browser } from "playwright-core"
import { Socket } from "../src/index"
import { repoRoot } from "./helpers"
import { eventually, HearthServer } from "./hearth-server"

function chromiumPath(): string {
  const candidates = [process.env.CHROMIUM_PATH, "/usr/bin/chromium", "/usr/bin/chromium-browser"]
  for (const c of candidates) if (c && existsSync(c)) return c
  try {
    return execFileSync("sh", ["-c", "command -v chromium || command -v chromium-browser"], { encoding: "utf8" }).trim()
  } catch {
    throw new Error("chromium not found: install Debian's chromium (apt-get install chromium) or set CHROMIUM_PATH")
  }
}

const DATABASE_URL = process.env.HEARTH_TEST_DATABASE_URL || "postgres://postgres@127.0.0.1:5432/test"
const RUN = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e6).toString(36)}`
const KEY = `key-${RUN}`
const NODE_A = `dash-a-${RUN}`
const NODE_B = `dash-b-${RUN}`
const SECRET = `dashboard test secret ${RUN}`

let a: HearthServer
let b: HearthServer
let browser: Browser
const sockets: Socket[] = []
const tmp = mkdtempSync(join(tmpdir(), "hearth-dashboard-"))

before(async () => {
  const common = ["--database-url", DATABASE_URL, "--api-key", KEY, "--secret", SECRET]
  ;[a, b] = await Promise.all([
    HearthServer.start([...common, "--node-name", NODE_A]),
    HearthServer.start([...common, "--node-name", NODE_B]),
  ]).catch((err: Error) => {
    throw new Error(`cannot start hearth serve with PostgreSQL at ${DATABASE_URL} (set HEARTH_TEST_DATABASE_URL): ${err.message}`)
  })
  browser = await chromium.launch({
    executablePath: chromiumPath(),
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  })
})

after(async () => {
  for (const s of sockets) s.disconnect()
  await browser?.close()
  await Promise.all([a?.stop(), b?.stop()])
  rmSync(tmp, { recursive: true, force: true })
})

/** A Hearth client on srv signed in as user (the demo's login and token). */
async function client(srv: HearthServer, user: string, topic: string) {
  const login = await fetch(srv.httpURL + "/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user }) })
  assert.equal(login.status, 200)
  const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0]
  const authToken = async (): Promise<string> => {
    const res = await fetch(srv.httpURL + "/token", { headers: { cookie } })
    return ((await res.json()) as { token: string }).token
  }
  const socket = new Socket(srv.socketURL, { transport: WebSocket as any, authToken, reconnectBaseMs: 100, reconnectMaxMs: 500 })
  sockets.push(socket)
  const closes: number[] = []
  const terminal: number[] = []
  socket.onClose((info) => closes.push(info.code))
  socket.onTerminal((code) => terminal.push(code))
  socket.connect()
  const ch = socket.channel(topic)
  await new Promise<void>((resolve, reject) => {
    ch.join().receive("ok", () => resolve()).receive("error", (r) => reject(new Error("join refused: " + JSON.stringify(r)))).receive("timeout", () => reject(new Error("join timeout")))
  })
  return { socket, closes, terminal }
}

test("the dashboard shows both nodes, follows joins and disconnects a user", async () => {
  const page = await (await browser.newContext({ viewport: { width: 1400, height: 1000 } })).newPage()
  const errors: string[] = []
  page.on("pageerror", (e) => errors.push(String(e)))
  await page.goto(a.httpURL + "/dashboard")

  // A wrong key is refused at the channel join; the form stays.
  await page.fill("#key", "wrong")
  await page.click("#login-form button")
  await page.waitForFunction(() => document.getElementById("login-error")!.textContent!.includes("refused"))
  assert.equal(await page.isVisible("#app"), false)

  await page.fill("#key", KEY)
  await page.click("#login-form button")
  await page.waitForSelector("#app:not([hidden])")
  assert.equal(await page.evaluate(() => sessionStorage.getItem("hearth.dashboard.key")), KEY)

  const cell = (node: string, cls: string) =>
    page.evaluate(([n, c]) => document.querySelector(`#nodes tr[data-node="${n}"] td.${c}`)?.textContent ?? null, [node, cls])
  await eventually("both nodes on the dashboard", async () => (await cell(NODE_A, "sockets")) !== null && (await cell(NODE_B, "sockets")) !== null, 20_000)
  const before = Number(await cell(NODE_B, "sockets"))
  const beforeCh = Number(await cell(NODE_B, "channels"))

  // Clients join on node B: node B's counts move on the page served by A.
  const room = `room:dash-${RUN}`
  const victim = await client(b, `victim${RUN}`.slice(0, 30), room)
  await client(b, `carol${RUN}`.slice(0, 30), room)
  await client(a, `dave${RUN}`.slice(0, 30), room)
  await eventually("node B's sockets counted", async () => Number(await cell(NODE_B, "sockets")) >= before + 2, 20_000)
  await eventually("node B's channels counted", async () => Number(await cell(NODE_B, "channels")) >= beforeCh + 2, 20_000)

  // Some traffic for the plots, over a few seconds.
  for (let i = 0; i < 60; i++) {
    if (i % 10 === 9) await new Promise((r) => setTimeout(r, 500))
    const res = await fetch(a.httpURL + "/api/publish", {
      method: "POST",
      headers: { authorization: "Bearer " + KEY },
      body: JSON.stringify({ topic: room, event: "new_msg", payload: { user: "api", body: `tick ${i}` } }),
    })
    assert.equal(res.status, 200)
  }
  await eventually("the room among the top topics", () =>
    page.evaluate((r) => Array.from(document.querySelectorAll("#topics td")).some((td) => td.textContent === r), room), 20_000)

  // The API needs the key.
  const refused = await fetch(b.httpURL + "/api/publish", { method: "POST", body: JSON.stringify({ topic: room, event: "new_msg", payload: {} }) })
  assert.equal(refused.status, 401)

  // Search the victim: its socket on node B, with a disconnect button.
  const user = `victim${RUN}`.slice(0, 30)
  await page.fill("#search", user)
  await page.click("#search-form button")
  await page.waitForSelector(`#results button[data-user="${user}"]`)
  const row = await page.evaluate(() => Array.from(document.querySelectorAll("#results tbody td")).map((td) => td.textContent))
  assert.equal(row[0], NODE_B)
  assert.equal(row[1], user)

  await page.waitForFunction((r) => document.getElementById("presence")!.textContent!.includes(r), room)

  const shot = join(tmp, "dashboard.png")
  await page.screenshot({ path: shot, fullPage: true })
  assert.ok(statSync(shot).size > 10_000, "screenshot written")
  if (process.env.HEARTH_UPDATE_SCREENSHOTS === "1") copyFileSync(shot, join(repoRoot(), "docs", "img", "dashboard.png"))

  await page.click(`#results button[data-user="${user}"]`)
  await eventually("the victim closed with 4503", () => victim.terminal.includes(4503), 20_000)
  await page.waitForFunction((u) => document.querySelector(`#results button[data-user="${u}"]`)?.textContent === "Disconnected", user)
  assert.deepEqual(errors, [])
})
