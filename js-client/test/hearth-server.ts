// Runs the real Go server (`hearth serve`, the demo app) for integration
// tests: built once per test process with `go build`, started on a free
// loopback port, restarted on the same port, stopped at the end.

import { execFile, spawn, type ChildProcess } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import http from "node:http"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { repoRoot } from "./helpers"

const run = promisify(execFile)

let built: Promise<string> | null = null
let buildDir: string | null = null

/**
 * Builds cmd/hearth into a temporary directory once per process (HEARTH_BIN
 * overrides). A missing Go toolchain or a build error fails the test with
 * the compiler's output.
 */
export function hearthBinary(): Promise<string> {
  if (process.env.HEARTH_BIN) return Promise.resolve(process.env.HEARTH_BIN)
  if (!built) {
    buildDir = mkdtempSync(join(tmpdir(), "hearth-js-test-"))
    const out = join(buildDir, "hearth")
    built = run("go", ["build", "-o", out, "./cmd/hearth"], { cwd: repoRoot(), maxBuffer: 16 << 20 }).then(
      () => out,
      (err: NodeJS.ErrnoException & { stderr?: string }) => {
        throw new Error(`cannot build the hearth server (go build ./cmd/hearth): ${err.code === "ENOENT" ? "go is not installed" : err.stderr || err.message}`)
      },
    )
    process.once("exit", () => { if (buildDir) rmSync(buildDir, { recursive: true, force: true }) })
  }
  return built
}

/** A free loopback port. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once("error", reject)
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address()
      srv.close(() => (typeof addr === "object" && addr ? resolve(addr.port) : reject(new Error("no port"))))
    })
  })
}

/** Polls fn until it returns a truthy value, failing after timeoutMs with what. */
export async function eventually<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ": " + String(last) : ""}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

/** A running `hearth serve`. */
export class HearthServer {
  private proc: ChildProcess | null = null
  private log = ""

  private constructor(readonly bin: string, readonly port: number, public args: string[]) {}

  /** Builds (once) and starts the server on a free port with extra serve flags. */
  static async start(args: string[] = []): Promise<HearthServer> {
    const s = new HearthServer(await hearthBinary(), await freePort(), args)
    await s.spawn()
    return s
  }

  get httpURL(): string {
    return `http://127.0.0.1:${this.port}`
  }

  /** The socket endpoint for Phoenix-style clients ("/websocket" is appended by them). */
  get socketURL(): string {
    return `ws://127.0.0.1:${this.port}/socket`
  }

  /** The server's output so far, for failure messages. */
  output(): string {
    return this.log
  }

  private async spawn(): Promise<void> {
    // DATABASE_URL from the environment would turn cluster mode on: only
    // --database-url in args does.
    const env = { ...process.env, DATABASE_URL: "" }
    const proc = spawn(this.bin, ["serve", "--addr", `127.0.0.1:${this.port}`, "--log-level", "warn", ...this.args], { stdio: ["ignore", "pipe", "pipe"], env })
    this.proc = proc
    proc.stdout?.on("data", (d) => { this.log += d })
    proc.stderr?.on("data", (d) => { this.log += d })
    let exited = false
    proc.once("exit", () => { exited = true })
    await eventually(`hearth serve on port ${this.port}`, async () => {
      if (exited) throw new Error("server exited: " + this.log)
      const res = await fetch(this.httpURL + "/healthz")
      return res.ok
    }, 20_000)
  }

  /** Stops the server: SIGTERM (graceful shutdown) or SIGKILL (a crash). */
  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const proc = this.proc
    this.proc = null
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return
    const exited = new Promise<void>((r) => proc.once("exit", () => r()))
    proc.kill(signal)
    const timer = setTimeout(() => proc.kill("SIGKILL"), 10_000)
    await exited
    clearTimeout(timer)
  }

  /** Starts a stopped server again on the same port. */
  async resume(): Promise<void> {
    if (this.proc) throw new Error("server is running")
    await this.spawn()
  }

  /** Stops the server and starts it again on the same port with other flags. */
  async restartWith(args: string[]): Promise<void> {
    await this.stop()
    this.args = args
    await this.spawn()
  }

  /** Stops the server and starts it again on the same port. */
  async restart(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    await this.stop(signal)
    await this.spawn()
  }
}

/**
 * A reverse proxy sending each request to the next of nodes in turn (no
 * stickiness at all), skipping a node once a request to it failed.
 * Listens on a free loopback port.
 */
export function roundRobinProxy(nodes: HearthServer[]): Promise<http.Server> {
  let next = 0
  const down = new Set<number>()
  const proxy = http.createServer((req, res) => {
    let i = next++ % nodes.length
    for (let k = 0; k < nodes.length && down.has(i); k++) i = (i + 1) % nodes.length
    const up = http.request({ host: "127.0.0.1", port: nodes[i].port, path: req.url, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode ?? 502, r.headers)
      r.pipe(res)
    })
    up.on("error", () => {
      down.add(i) // a dead node: the balancer takes it out
      if (!res.headersSent) res.writeHead(502)
      res.end()
    })
    req.pipe(up)
  })
  return new Promise((resolve) => proxy.listen(0, "127.0.0.1", () => resolve(proxy)))
}
