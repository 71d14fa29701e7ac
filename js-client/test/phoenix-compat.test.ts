// Hearth as a drop-in for phoenix.js: a typical typed phoenix.js app
// (fixtures/phoenix-app.ts, written against @types/phoenix) compiles against
// Hearth's declarations with 0 errors, and phoenix.js's documented examples
// run with Hearth's classes against a real `hearth serve`.

import { after, before, describe, test } from "node:test"
import assert from "node:assert/strict"
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import WebSocket from "ws"
import { Presence, Socket, type Channel } from "../src/index"
import { eventually, HearthServer } from "./hearth-server"
import { repoRoot } from "./helpers"

function tsc(args: string[], cwd: string): Promise<string> {
  const bin = createRequire(join(repoRoot(), "package.json")).resolve("typescript/bin/tsc")
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { cwd, maxBuffer: 16 << 20 }, (_err, stdout, stderr) => resolve(stdout + stderr))
  })
}

test("a typed phoenix.js app compiles against Hearth's declarations with 0 errors", { timeout: 180_000 }, async () => {
  const root = repoRoot()
  const dir = mkdtempSync(join(tmpdir(), "hearth-phoenix-app-"))
  try {
    const app = join(root, "js-client", "test", "fixtures", "phoenix-app.ts")
    const base = { target: "ES2020", lib: ["ES2020", "DOM"], module: "esnext", moduleResolution: "bundler", strict: true, skipLibCheck: false, noEmit: true, types: [], baseUrl: root }
    // As itself: valid code for @types/phoenix.
    writeFileSync(join(dir, "phoenix.json"), JSON.stringify({ compilerOptions: base, files: [app] }))
    const asPhoenix = await tsc(["-p", "phoenix.json", "--listFiles", "--pretty", "false"], dir)
    assert.ok(!/error TS/.test(asPhoenix), `the app does not compile against @types/phoenix:\n${asPhoenix}`)
    assert.match(asPhoenix, /@types\/phoenix\/index\.d\.ts/)
    // With the import switched to Hearth.
    const hearthTypes = join(root, "js-client", "dist", "types", "index.d.ts")
    writeFileSync(join(dir, "hearth.json"), JSON.stringify({ compilerOptions: { ...base, paths: { phoenix: [hearthTypes] } }, files: [app] }))
    const asHearth = await tsc(["-p", "hearth.json", "--listFiles", "--pretty", "false"], dir)
    assert.ok(!/error TS/.test(asHearth), `the phoenix.js app does not compile against Hearth's types:\n${asHearth}`)
    assert.ok(asHearth.includes(hearthTypes), `"phoenix" was not mapped to Hearth's types:\n${asHearth}`)
    assert.ok(!asHearth.includes("@types/phoenix"))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

describe("phoenix.js's documented examples, with Hearth's classes, against hearth serve", { timeout: 90_000 }, () => {
  let srv: HearthServer
  const sockets: Socket[] = []
  before(async () => { srv = await HearthServer.start() })
  after(async () => {
    for (const s of sockets) s.disconnect()
    await srv.stop()
  })

  async function signedIn(user: string): Promise<string> {
    const login = await fetch(srv.httpURL + "/login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user }) })
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0]
    return ((await (await fetch(srv.httpURL + "/token", { headers: { cookie } })).json()) as { token: string }).token
  }

  test("socket, channel, push with receive, socket hooks, ping, presence", async () => {
    const log: string[] = []
    const userToken = await signedIn("ann")
    // let socket = new Socket("/socket", {params: {userToken: "123"}})
    const socket = new Socket(srv.socketURL, { params: { token: userToken }, transport: WebSocket })
    sockets.push(socket)
    // Socket hooks.
    socket.onOpen(() => log.push("socket opened"))
    socket.onError((_error, transport, established) => log.push(`socket error (${transport === WebSocket}, ${established})`))
    socket.onClose((e) => log.push("socket closed " + e.code))
    socket.connect()

    const room = `room:${Date.now().toString(36)}${Math.floor(Math.random() * 1e6)}`
    const channel: Channel = socket.channel(room, { token: "roomToken" })
    const got: any[] = []
    channel.on("new_msg", (msg) => got.push(msg))
    channel.onError(() => log.push("there was an error!"))
    channel.onClose(() => log.push("the channel has gone away gracefully"))
    // Presence: onJoin/onLeave/onSync, list with a chooser.
    const presence = new Presence(channel)
    const joins: string[] = []
    presence.onJoin((id, current) => { if (!current) joins.push(id) })
    let listed: string[] = []
    presence.onSync(() => { listed = presence.list((id, { metas: [first, ...rest] }) => `${id}:${rest.length + 1}:${typeof first.online_at}`) })

    const joined = await new Promise<string>((resolve) => {
      channel.join()
        .receive("ok", () => resolve("ok"))
        .receive("error", ({ reason }) => resolve("failed join " + reason))
        .receive("timeout", () => resolve("timeout"))
    })
    assert.equal(joined, "ok")
    assert.ok(channel.isJoined() && !channel.isJoining() && !channel.isClosed() && !channel.isErrored() && !channel.isLeaving())
    await eventually("presence sync", () => listed.length === 1)
    assert.deepEqual(listed, ["ann:1:number"])
    assert.deepEqual(joins, ["ann"])

    // channel.push("new_msg", {body}, 10000).receive("ok"|"error"|"timeout")
    const created = await new Promise<string>((resolve) => {
      channel.push("new_msg", { body: "hello" }, 10000)
        .receive("ok", () => resolve("created message"))
        .receive("error", (reasons) => resolve("create failed " + JSON.stringify(reasons)))
        .receive("timeout", () => resolve("Networking issue..."))
    })
    assert.equal(created, "created message")
    const refused = await new Promise<string>((resolve) => {
      channel.push("new_msg", {}, 10000).receive("ok", () => resolve("ok")).receive("error", (reasons) => resolve(reasons.reason))
    })
    assert.match(refused, /new_msg needs/)
    await eventually("the broadcast", () => got.length === 1)
    assert.equal(got[0].body, "hello")
    assert.equal(got[0].user, "ann", "the server took the user from the token in params")

    // ping
    const latency = await new Promise<number>((resolve) => assert.equal(socket.ping(resolve), true))
    assert.ok(latency >= 0)

    // Channel.onMessage: a hook every event passes through.
    channel.onMessage = (event, payload) => (event === "new_msg" ? { ...payload, seen: true } : payload)
    channel.push("new_msg", { body: "again" })
    await eventually("the second broadcast", () => got.length === 2)
    assert.equal(got[1].seen, true)

    // leave, then disconnect with a callback.
    await new Promise<void>((resolve) => channel.leave().receive("ok", () => resolve()))
    assert.ok(channel.isClosed())
    await new Promise<void>((resolve) => socket.disconnect(() => resolve(), 1000, "bye"))
    assert.deepEqual(log, ["socket opened", "the channel has gone away gracefully", "socket closed 1000"])
    assert.equal(socket.connectionState(), "closed")
  })

  test("Presence.syncState, syncDiff and list, the static helpers", () => {
    const joined: string[] = []
    const left: string[] = []
    let state = {}
    state = Presence.syncState(state, { ann: { metas: [{ phx_ref: "1" }] }, bob: { metas: [{ phx_ref: "2" }] } }, (key) => joined.push(key))
    state = Presence.syncDiff(state, { joins: { cy: { metas: [{ phx_ref: "3" }] } }, leaves: { bob: { metas: [{ phx_ref: "2" }] } } }, (key) => joined.push(key), (key) => left.push(key))
    assert.deepEqual(Presence.list(state, (id) => id).sort(), ["ann", "cy"])
    assert.deepEqual(joined, ["ann", "bob", "cy"])
    assert.deepEqual(left, ["bob"])
  })
})
