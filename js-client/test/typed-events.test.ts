// Typed events (js-client/src/events.ts): with the interfaces that
// `hearth gen types` writes, tsc accepts correct uses of a channel and
// rejects a wrong event name, a misspelt field, a wrong payload and a wrong
// use of a reply; untyped channels keep accepting anything.

import { test } from "node:test"
import assert from "node:assert/strict"
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { repoRoot } from "./helpers"

// What tstypes.Generate writes for a room channel (see its Example).
const generated = `
export interface NewMsg { body: string; reply_to?: number }
export interface Ack { id: string }
export interface Message { user: string; body: string; sent_at: string }
export interface RoomEvents {
  in: { new_msg: { payload: NewMsg; reply: Ack }; ping: { payload: Record<string, never>; reply: Record<string, never> } }
  out: { new_msg: Message; counts: Record<string, number> | null }
}
`

const good = `
import { Socket, type Channel } from "@hearth-rt/client"
import type { RoomEvents } from "./events.gen"
const socket = new Socket("ws://127.0.0.1:1/socket")
const room = socket.channel<RoomEvents>("room:lobby")
const ref: number = room.on("new_msg", (m) => console.log(m.user.toUpperCase(), m.body, m.sent_at))
room.off("new_msg", ref)
room.on("counts", (c) => console.log(c?.["ada"]))
room.join().receive("ok", () => {
  room.push("new_msg", { body: "hi", reply_to: 3 }).receive("ok", (ack) => console.log(ack.id.length)).receive("error", (e) => console.log(e))
  room.push("ping", {})
})
room.leave()
// Untyped channels take anything, as before.
const plain: Channel = socket.channel("room:other")
plain.on("whatever", (m) => console.log(m.anything))
plain.push("whatever", { any: 1 }).receive("ok", (r) => console.log(r.x))
`

const mistakes: Array<[string, string, RegExp]> = [
  ["misspelt field in on", `room.on("new_msg", (m) => console.log(m.bdy))`, /Property 'bdy' does not exist on type 'Message'/],
  ["unknown event in on", `room.on("new_mgs", (m) => console.log(m))`, /"new_mgs"/],
  ["misspelt field in push", `room.push("new_msg", { bdy: "hi" })`, /'bdy' does not exist in type 'NewMsg'/],
  ["wrong type in push", `room.push("new_msg", { body: 42 })`, /Type 'number' is not assignable to type 'string'/],
  ["unknown event in push", `room.push("new_mgs", { body: "hi" })`, /"new_mgs"/],
  ["wrong reply field", `room.push("new_msg", { body: "hi" }).receive("ok", (ack) => console.log(ack.ok))`, /Property 'ok' does not exist on type 'Ack'/],
]

async function tsc(dir: string, files: Record<string, string>): Promise<string> {
  const root = repoRoot()
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text)
  const config = {
    compilerOptions: {
      target: "ES2020", lib: ["ES2020", "DOM"], module: "ESNext", moduleResolution: "Bundler", strict: true,
      skipLibCheck: true, noEmit: true, types: [],
      paths: { "@hearth-rt/client": [join(root, "js-client", "src", "index.ts")] },
    },
    files: Object.keys(files),
  }
  writeFileSync(join(dir, "tsconfig.json"), JSON.stringify(config))
  const bin = createRequire(join(root, "package.json")).resolve("typescript/bin/tsc")
  try {
    await promisify(execFile)(process.execPath, [bin, "-p", join(dir, "tsconfig.json")], { cwd: dir })
    return ""
  } catch (err) {
    return String((err as { stdout?: string }).stdout ?? err)
  }
}

test("typed channels: correct code compiles, mistakes do not", { timeout: 180_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "hearth-typed-"))
  try {
    assert.equal(await tsc(dir, { "events.gen.ts": generated, "good.ts": good }), "", "correct code must compile")
    const files: Record<string, string> = { "events.gen.ts": generated }
    mistakes.forEach(([, line], i) => {
      files[`bad${i}.ts`] = `import { Socket } from "@hearth-rt/client"\nimport type { RoomEvents } from "./events.gen"\nconst room = new Socket("/socket").channel<RoomEvents>("room:1")\n${line}\n`
    })
    // One run for all: each file must have its own error.
    const out = await tsc(dir, files)
    mistakes.forEach(([name, , want], i) => {
      const errors = out.split("\n").filter((l) => l.startsWith(`bad${i}.ts(`)).join("\n")
      assert.match(errors, want, `${name}: tsc reported ${errors || "nothing"}`)
    })
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
