// The JavaScript examples of README.md and docs/*.md run against a real
// `hearth serve`, so that they cannot drift from the client and the demo.
// A block is run when the line before it is
//
//   <!-- doctest: node -->                      a complete Node script (HEARTH_URL is the server)
//   <!-- doctest: node prints "TEXT" -->        the same, and its output must contain TEXT
//   <!-- doctest: browser -->                   a snippet for a page: it runs with the globals a
//                                               page has (Hearth from /hearth.js, location, WebSocket)
//                                               and a token of the demo, until its first console.log
//
// Other blocks are not run.

import { test } from "node:test"
import assert from "node:assert/strict"
import { execFile } from "node:child_process"
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { promisify } from "node:util"
import { repoRoot } from "./helpers"
import { HearthServer } from "./hearth-server"

interface Example {
  where: string
  kind: "node" | "browser"
  prints: string | null
  code: string
}

const markerRE = /^<!--\s*doctest:\s*(node|browser)(?:\s+prints\s+"([^"]*)")?\s*-->$/

function examples(root: string): Example[] {
  const files = ["README.md", ...readdirSync(join(root, "docs")).filter((f) => f.endsWith(".md")).map((f) => "docs/" + f)]
  const out: Example[] = []
  for (const file of files) {
    const lines = readFileSync(join(root, file), "utf8").split("\n")
    for (let i = 1; i < lines.length; i++) {
      const m = markerRE.exec(lines[i - 1].trim())
      if (!m || !/^```(js|javascript)\s*$/.test(lines[i].trim())) continue
      const end = lines.indexOf("```", i + 1)
      out.push({ where: `${file}:${i + 1}`, kind: m[1] as "node" | "browser", prints: m[2] ?? null, code: lines.slice(i + 1, end).join("\n") + "\n" })
    }
  }
  return out
}

// What a page has that Node has not, for the browser snippets: the client
// as the global Hearth (the IIFE of /hearth.js), the page's location, a
// WebSocket, and a token as the demo page gets it. The snippet ends at its
// first console.log, which must happen.
function browserPrelude(): string {
  return `
import WebSocket from "ws"
import * as Hearth from "@hearth-rt/client"
const base = new URL(process.env.HEARTH_URL)
globalThis.location = { protocol: base.protocol, host: base.host, href: base.href }
globalThis.WebSocket = WebSocket
globalThis.Hearth = Hearth
const login = await fetch(base + "login", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ user: "ada" }) })
const cookie = login.headers.get("set-cookie").split(";")[0]
const { token } = await (await fetch(base + "token", { headers: { cookie } })).json()
const log = console.log
console.log = (...args) => { log(...args); process.exit(0) }
setTimeout(() => { log("no console.log within 20 s"); process.exit(1) }, 20_000)
`
}

test("the docs' JavaScript examples run", { timeout: 180_000 }, async () => {
  const root = repoRoot()
  const all = examples(root)
  assert.ok(all.some((e) => e.kind === "node"), "no Node example found in the docs")
  assert.ok(all.some((e) => e.kind === "browser"), "no browser example found in the docs")
  const server = await HearthServer.start(["--secret", "docs examples secret, 16+"])
  // Inside the package, so that "@hearth-rt/client" resolves to this
  // checkout (package.json exports) and "ws" to its node_modules.
  const dir = join(root, "js-client", ".build", "docs-examples")
  mkdirSync(dir, { recursive: true })
  try {
    for (const [i, ex] of all.entries()) {
      const file = join(dir, `example${i}.mjs`)
      writeFileSync(file, ex.kind === "browser" ? browserPrelude() + "{\n" + ex.code + "}\n" : ex.code)
      let stdout = ""
      try {
        const res = await promisify(execFile)(process.execPath, [file], { env: { ...process.env, HEARTH_URL: server.httpURL }, timeout: 60_000 })
        stdout = res.stdout
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string; message: string }
        assert.fail(`${ex.where}: ${e.message}\n${e.stdout ?? ""}${e.stderr ?? ""}\nserver:\n${server.output()}`)
      }
      if (ex.prints !== null) assert.ok(stdout.includes(ex.prints), `${ex.where} printed ${JSON.stringify(stdout)}, want ${JSON.stringify(ex.prints)}`)
      else assert.notEqual(stdout.trim(), "", `${ex.where} printed nothing`)
    }
  } finally {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})
