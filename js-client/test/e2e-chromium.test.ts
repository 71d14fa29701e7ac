// End to end in headless Chromium (playwright-core driving Debian's
// chromium): two browser contexts chat through a real `hearth serve` in
// cluster mode (history in PostgreSQL), with the client bundle the server
// serves (/hearth.js, the IIFE with the global Hearth). The server is
// killed mid-test and started again; both pages reconnect and rejoin,
// messages typed while it was down go out afterwards, whichever page
// rejoined last recovers what the other sent before it was back, and both
// pages end with the same messages, none lost or doubled.
//
// PostgreSQL: HEARTH_TEST_DATABASE_URL, default
// postgres://postgres@127.0.0.1:5432/test. Without it the test fails.

import { after, before, test } from "node:test"
import assert from "node:assert/strict"
import { execFileSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { chromium, type Browser, type Page } from "playwright-core"
import { repoRoot } from "./helpers"
import { eventually, HearthServer } from "./hearth-server"

/** Debian's chromium, or CHROMIUM_PATH. */
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
// Postgres keeps history across runs: a fresh room per run.
const ROOM = `room:e2e-${Date.now().toString(36)}-${Math.floor(Math.random() * 1e9).toString(36)}`

let server: HearthServer
let browser: Browser

before(async () => {
  server = await HearthServer.start(["--database-url", DATABASE_URL]).catch((err: Error) => {
    throw new Error(`cannot start hearth serve with PostgreSQL at ${DATABASE_URL} (set HEARTH_TEST_DATABASE_URL): ${err.message}`)
  })
  browser = await chromium.launch({ executablePath: chromiumPath(), headless: true })
})

after(async () => {
  await browser?.close()
  await server?.stop()
})

// The test page: the page a developer would write with the IIFE bundle.
const PAGE = `<!doctype html>
<script>const ROOM = ${JSON.stringify(ROOM)}</script>
<meta charset="utf-8">
<script src="/hearth.js"></script>
<script>
  window.log = []
  window.events = []
  window.trace = []
  const socket = new Hearth.Socket("/socket", { reconnectBaseMs: 200, reconnectMaxMs: 1000, logger: (kind, msg) => trace.push(msg) })
  socket.onOpen(() => events.push("open"))
  socket.onClose((c) => events.push("close " + c.code))
  socket.connect()
  const room = socket.channel(ROOM, { from: "page" })
  room.on("new_msg", (m, ref) => log.push(m.user + ":" + m.body))
  room.onRecover((r) => events.push("recovered " + r.recovered + " " + r.replayed))
  room.join().receive("ok", () => events.push("joined"))
  window.send = (user, body) => new Promise((resolve) =>
    room.push("new_msg", { user, body }, 30000)
      .receive("ok", () => resolve("ok"))
      .receive("error", (r) => resolve("error " + JSON.stringify(r)))
      .receive("timeout", () => resolve("timeout")))
  window.state = () => room.state
</script>`

async function openPage(name: string): Promise<Page> {
  const context = await browser.newContext()
  const page = await context.newPage()
  page.on("pageerror", (err) => { throw new Error(`${name}: page error: ${err.message}`) })
  // The page must come from the server's origin (its origin check allows
  // the same host, and Chromium lets a loopback page reach loopback): load
  // a document from the server, then replace its content with the test page.
  await page.goto(server.httpURL + "/healthz")
  await page.setContent(PAGE)
  await page.waitForFunction(() => (window as unknown as { events: string[] }).events.includes("joined"), null, { timeout: 10_000 })
  return page
}

const send = (page: Page, user: string, body: string) =>
  page.evaluate(([u, b]) => (window as unknown as { send: (u: string, b: string) => Promise<string> }).send(u, b), [user, body])
const logOf = (page: Page) => page.evaluate(() => (window as unknown as { log: string[] }).log)
const eventsOf = (page: Page) => page.evaluate(() => (window as unknown as { events: string[] }).events)

test("two browsers chat through a server restart without losing a message", { timeout: 90_000 }, async () => {
  // The page loads the bundle embedded in the server (package jsclient).
  const res = await fetch(server.httpURL + "/hearth.js")
  assert.equal(res.status, 200, "hearth serve does not serve /hearth.js")
  assert.match(res.headers.get("content-type") ?? "", /^text\/javascript/)
  assert.equal(await res.text(), readFileSync(join(repoRoot(), "js-client", "dist", "hearth.js"), "utf8"))
  const ann = await openPage("ann")
  const bob = await openPage("bob")

  assert.equal(await send(ann, "ann", "a1"), "ok")
  assert.equal(await send(bob, "bob", "b1"), "ok")
  await eventually("both pages got a1 and b1", async () => (await logOf(ann)).length === 2 && (await logOf(bob)).length === 2)

  // The server crashes. Both pages notice, and the users keep typing.
  await server.stop("SIGKILL")
  await eventually("both pages saw the connection drop", async () =>
    (await eventsOf(ann)).some((e) => e.startsWith("close")) && (await eventsOf(bob)).some((e) => e.startsWith("close")))
  const pendingA = send(ann, "ann", "a2 (typed while down)")
  const pendingB = send(bob, "bob", "b2 (typed while down)")
  await server.resume()
  assert.equal(await pendingA, "ok")
  assert.equal(await pendingB, "ok")
  assert.equal(await send(ann, "ann", "a3"), "ok")
  assert.equal(await send(bob, "bob", "b3"), "ok")

  await eventually("both pages got all 6 messages", async () => (await logOf(ann)).length >= 6 && (await logOf(bob)).length >= 6, 15_000)
    .catch(async (err) => {
      throw new Error(`${err.message}\nann: ${(await logOf(ann)).join(" | ")} (${(await eventsOf(ann)).join(", ")})\nbob: ${(await logOf(bob)).join(" | ")} (${(await eventsOf(bob)).join(", ")})`)
    })
  const la = await logOf(ann)
  const lb = await logOf(bob)
  assert.deepEqual(lb, la, "the two pages saw different messages or orders")
  assert.equal(new Set(la).size, la.length, "a message was delivered twice: " + la.join(", "))
  assert.deepEqual(la.slice(0, 2), ["ann:a1", "bob:b1"])
  assert.deepEqual(la.slice(2, 4).sort(), ["ann:a2 (typed while down)", "bob:b2 (typed while down)"])
  assert.deepEqual(la.slice(4), ["ann:a3", "bob:b3"])
  // History lives in PostgreSQL: each page resumed from its position. A
  // page that rejoined after the other's buffered message went out got it
  // replayed; none had to refetch.
  for (const p of [ann, bob]) {
    const ev = await eventsOf(p)
    assert.ok(ev.some((e) => e.startsWith("recovered true")), ev.join(", "))
    assert.ok(!ev.some((e) => e.startsWith("recovered false")), ev.join(", "))
    assert.equal(ev.filter((e) => e === "open").length, 2, ev.join(", "))
  }
})

/** Opens the demo page in a fresh browser context, signs in as name and joins room. */
async function openDemo(name: string, room: string): Promise<Page> {
  const page = await (await browser.newContext()).newPage()
  page.on("pageerror", (err) => { throw new Error(`${name}: page error: ${err.message}`) })
  await page.goto(server.httpURL + "/")
  await page.fill("#name", name)
  await page.fill("#room", room)
  await page.click("#join button[type=submit]")
  await page.waitForSelector("#body:not([disabled])", { timeout: 10_000 })
  await page.waitForSelector("#status[data-state=connected]", { timeout: 10_000 })
  return page
}

test("the demo page: two signed-in browsers chat through the server", { timeout: 60_000 }, async () => {
  const room = ROOM.slice("room:".length) + "-demo"
  const ann = await openDemo("ann", room)
  const bob = await openDemo("bob", room)
  // Presence: each page lists both users (Phoenix Presence over Hearth).
  for (const page of [ann, bob]) {
    await eventually("both users in the presence list", async () =>
      JSON.stringify(await page.$$eval("#presence li", (lis) => lis.map((li) => li.textContent).sort())) === JSON.stringify(["ann", "bob"]))
  }
  const say = async (page: Page, text: string) => {
    await page.fill("#body", text)
    await page.click("#send-btn")
  }
  const lines = (page: Page) => page.$$eval("#messages li:not(.system)", (lis) => lis.map((li) => li.textContent))
  await say(ann, "hello from ann")
  await eventually("ann's message on bob's page", async () => (await lines(bob)).length === 1)
  await say(bob, "hello from bob")
  for (const page of [ann, bob]) {
    await eventually("both messages on the page", async () => (await lines(page)).length === 2)
    assert.deepEqual(await lines(page), ["ann:hello from ann", "bob:hello from bob"])
  }
})

test("the demo page shows its connection state across a server restart", { timeout: 90_000 }, async () => {
  const room = ROOM.slice("room:".length) + "-state"
  const status = (page: Page) => page.$eval("#status", (el) => ({ state: (el as HTMLElement).dataset.state, text: el.textContent ?? "" }))
  const pages = [await openDemo("ann", room), await openDemo("bob", room)]

  // The server crashes: both pages say they are reconnecting, with a countdown.
  await server.stop("SIGKILL")
  for (const page of pages) {
    await eventually("the page shows it is reconnecting", async () => {
      const s = await status(page)
      return s.state === "reconnecting" && /^reconnecting in \d+ s/.test(s.text)
    }, 15_000)
  }
  // Something is published while they are away (from outside, through Postgres).
  execFileSync(server.bin, ["emit", "--database-url", DATABASE_URL, "room:" + room, "new_msg", JSON.stringify({ user: "ops", body: "while you were away" })])
  await server.resume()
  // Both come back, say so, and show what they missed.
  for (const page of pages) {
    await eventually("the page shows it recovered the missed message", async () => {
      const s = await status(page)
      return s.state === "connected" && s.text.includes("recovered 1 missed")
    }, 30_000)
    const lines = await page.$$eval("#messages li", (lis) => lis.map((li) => li.textContent))
    assert.ok(lines.includes("ops:while you were away"), lines.join(" | "))
    assert.ok(lines.includes("recovered 1 missed message"), lines.join(" | "))
  }
})

test("offline in the browser: reconnects wait for the online event", { timeout: 60_000 }, async () => {
  const context = await browser.newContext()
  const page = await context.newPage()
  await page.goto(server.httpURL + "/healthz")
  await page.setContent(PAGE)
  await page.waitForFunction(() => (window as unknown as { events: string[] }).events.includes("joined"), null, { timeout: 10_000 })
  const env = () => page.evaluate(() => {
    const e = (window as unknown as { Hearth: { browserEnvironment(): { hidden(): boolean; offline(): boolean } | null } }).Hearth.browserEnvironment()
    return e && { hidden: e.hidden(), offline: e.offline() }
  })
  assert.deepEqual(await env(), { hidden: false, offline: false })
  await context.setOffline(true)
  assert.deepEqual(await env(), { hidden: false, offline: true })
  // Drop the connection while offline: when its reconnect comes due the
  // socket sees the browser offline and waits instead of connecting.
  await server.stop("SIGKILL")
  await eventually("the page saw the drop", async () => (await eventsOf(page)).some((e) => e.startsWith("close")))
  await server.resume()
  await eventually("the socket waiting for the network", async () =>
    (await page.evaluate(() => (window as unknown as { trace: string[] }).trace)).some((m) => m.includes("hidden or offline: waiting")))
  assert.equal((await eventsOf(page)).filter((e) => e === "open").length, 1, "reconnected while offline")
  await context.setOffline(false)
  await eventually("reconnected after online", async () => (await eventsOf(page)).filter((e) => e === "open").length === 2)
  await context.close()
})
