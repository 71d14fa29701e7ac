// The published declarations work for every kind of consumer: ESM and CJS
// under moduleResolution node16 and nodenext, bundler resolution, and the
// IIFE build's global `Hearth`. Each case is a small project that installs
// the package (a symlink to the repository root), compiles typical code
// with skipLibCheck off (0 errors), and a deliberate mistake that must fail:
// with broken declarations every type silently becomes `any` and the
// mistake compiles.

import { test } from "node:test"
import assert from "node:assert/strict"
import { execFile } from "node:child_process"
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { repoRoot } from "./helpers"

const GOOD_MODULE = `import { Socket, SignedOut, type Channel, type RecoverInfo } from "@hearth-rt/client"
const socket = new Socket("ws://127.0.0.1:4000/socket", { params: { user: "ann" }, authToken: () => { throw new SignedOut() } })
socket.connect()
const ch: Channel = socket.channel("room:1", { since: 1 })
ch.on("new_msg", (msg: { body: string }) => console.log(msg.body))
ch.onRecover((r: RecoverInfo) => { if (!r.recovered) console.log(r.reason) })
ch.join().receive("ok", () => ch.push("new_msg", { body: "hi" }))
export const state: "closed" | "errored" | "joined" | "joining" | "leaving" = ch.state
`
const BAD_MODULE = `import { Socket } from "@hearth-rt/client"
new Socket("x", { bogus: 1 })
new Socket("x").notAMethod()
`
const GOOD_GLOBAL = `/// <reference types="@hearth-rt/client/global" />
const socket = new Hearth.Socket("/socket", { params: { user: "ann" } })
const ch: Hearth.Channel = socket.channel("room:1")
ch.join().receive("ok", () => ch.push("new_msg", { body: "hi" }))
const opts: Hearth.SocketOptions = { timeout: 5000 }
console.log(opts, Hearth.VSN)
`
const BAD_GLOBAL = `/// <reference types="@hearth-rt/client/global" />
new Hearth.Socket("x", { bogus: 1 })
new Hearth.Socket("x").notAMethod()
`

interface Case {
  name: string
  type: "module" | "commonjs"
  module: string
  resolution: string
  good: string
  bad: string
  /** The declaration file the package must resolve to. */
  entry: string
}

const cases: Case[] = [
  { name: "ESM, node16", type: "module", module: "node16", resolution: "node16", good: GOOD_MODULE, bad: BAD_MODULE, entry: "js-client/dist/types/index.d.ts" },
  { name: "ESM, nodenext", type: "module", module: "nodenext", resolution: "nodenext", good: GOOD_MODULE, bad: BAD_MODULE, entry: "js-client/dist/types/index.d.ts" },
  { name: "ESM, bundler", type: "module", module: "esnext", resolution: "bundler", good: GOOD_MODULE, bad: BAD_MODULE, entry: "js-client/dist/types/index.d.ts" },
  { name: "CJS, node16", type: "commonjs", module: "node16", resolution: "node16", good: GOOD_MODULE, bad: BAD_MODULE, entry: "js-client/dist/types-cjs/index.d.ts" },
  { name: "CJS, nodenext", type: "commonjs", module: "nodenext", resolution: "nodenext", good: GOOD_MODULE, bad: BAD_MODULE, entry: "js-client/dist/types-cjs/index.d.ts" },
  { name: "IIFE global, node16", type: "commonjs", module: "node16", resolution: "node16", good: GOOD_GLOBAL, bad: BAD_GLOBAL, entry: "js-client/dist/global.d.ts" },
  { name: "IIFE global, bundler", type: "module", module: "esnext", resolution: "bundler", good: GOOD_GLOBAL, bad: BAD_GLOBAL, entry: "js-client/dist/global.d.ts" },
]

/** Runs tsc; resolves with its output whatever the exit code. */
function tsc(args: string[], cwd: string): Promise<string> {
  const bin = createRequire(join(repoRoot(), "package.json")).resolve("typescript/bin/tsc")
  return new Promise((resolve) => {
    execFile(process.execPath, [bin, ...args], { cwd, maxBuffer: 16 << 20 }, (_err, stdout, stderr) => resolve(stdout + stderr))
  })
}

for (const c of cases) {
  test(`declarations: ${c.name}`, { timeout: 120_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "hearth-types-"))
    try {
      mkdirSync(join(dir, "node_modules", "@hearth-rt"), { recursive: true })
      symlinkSync(repoRoot(), join(dir, "node_modules", "@hearth-rt", "client"), "dir")
      writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "consumer", private: true, type: c.type }))
      writeFileSync(join(dir, "tsconfig.json"), JSON.stringify({
        compilerOptions: {
          target: "ES2020", lib: ["ES2020", "DOM"], module: c.module, moduleResolution: c.resolution,
          strict: true, skipLibCheck: false, noEmit: true, types: [],
        },
        files: ["good.ts", "bad.ts"],
      }))
      writeFileSync(join(dir, "good.ts"), c.good)
      writeFileSync(join(dir, "bad.ts"), c.bad)
      const out = await tsc(["-p", ".", "--listFiles", "--pretty", "false"], dir)
      const errors = out.split("\n").filter((l) => /error TS\d+/.test(l))
      assert.deepEqual(errors.filter((l) => !l.startsWith("bad.ts")), [], `errors outside the deliberate mistakes:\n${out}`)
      const codes = errors.map((l) => /error (TS\d+)/.exec(l)?.[1]).sort()
      assert.deepEqual(codes, ["TS2339", "TS2353"], `the deliberate mistakes must fail (unknown option, unknown method):\n${out}`)
      assert.ok(out.split("\n").some((l) => l.replace(/\\/g, "/").endsWith(c.entry)), `the package did not resolve to ${c.entry}:\n${out}`)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
}

test("require() gets the CommonJS build, import the ES module, with the same API", async () => {
  const dir = mkdtempSync(join(tmpdir(), "hearth-cjs-"))
  try {
    mkdirSync(join(dir, "node_modules", "@hearth-rt"), { recursive: true })
    symlinkSync(repoRoot(), join(dir, "node_modules", "@hearth-rt", "client"), "dir")
    const req = createRequire(join(dir, "index.js"))
    const path = req.resolve("@hearth-rt/client")
    assert.match(path, /hearth\.cjs$/)
    const cjs = req("@hearth-rt/client") as Record<string, unknown>
    const esm = (await import(join(repoRoot(), "js-client", "dist", "hearth.mjs"))) as Record<string, unknown>
    assert.equal(typeof cjs.Socket, "function")
    assert.deepEqual(Object.keys(cjs).sort(), Object.keys(esm).sort())
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
