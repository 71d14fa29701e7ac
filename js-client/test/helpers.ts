// Test helpers: an in-memory WebSocket for unit tests of the state machines,
// a seeded random source, and the repository root.

import { existsSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import type { Environment, EnvironmentEvent, Message, WebSocketLike } from "../src/index"

/** The repository root: the nearest directory above this file with go.mod. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    if (existsSync(join(dir, "go.mod"))) return dir
    const parent = dirname(dir)
    if (parent === dir) throw new Error("no go.mod above " + fileURLToPath(import.meta.url))
    dir = parent
  }
}

/** A seeded PRNG (mulberry32), uniform in [0, 1). */
export function seeded(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/**
 * An in-memory WebSocket: the test plays the server with open(), receive(),
 * drop() and reads what the client sent from `sent`.
 */
export class FakeWebSocket implements WebSocketLike {
  binaryType = "blob"
  readyState = 0
  onopen: ((ev: any) => void) | null = null
  onclose: ((ev: any) => void) | null = null
  onerror: ((ev: any) => void) | null = null
  onmessage: ((ev: any) => void) | null = null
  sent: Array<string | ArrayBuffer> = []
  closedWith: { code?: number; reason?: string } | null = null

  constructor(readonly url: string, readonly protocols?: string | string[]) {}

  send(data: string | ArrayBuffer): void {
    if (this.readyState !== 1) throw new Error("FakeWebSocket: send while not open")
    this.sent.push(data)
  }

  close(code?: number, reason?: string): void {
    this.closedWith = { code, reason }
    if (this.readyState === 3) return
    this.readyState = 3
    this.onclose?.({ code: code ?? 1005, reason: reason ?? "", wasClean: true })
  }

  /** The server accepts the connection. */
  open(): void {
    this.readyState = 1
    this.onopen?.({})
  }

  /** The server sends a frame (an array is sent as JSON text). */
  receive(frame: unknown[] | string | ArrayBuffer): void {
    this.onmessage?.({ data: Array.isArray(frame) ? JSON.stringify(frame) : frame })
  }

  /** The connection ends from the server's side or the network's. */
  drop(code = 1006, reason = ""): void {
    this.readyState = 3
    this.onclose?.({ code, reason, wasClean: code !== 1006 })
  }

  /** The text frames the client sent, decoded. */
  messages(): Message[] {
    return this.sent.filter((f): f is string => typeof f === "string").map((f) => {
      const [join_ref, ref, topic, event, payload] = JSON.parse(f)
      return { join_ref, ref, topic, event, payload }
    })
  }

  /** The last text frame sent with the given event. */
  last(event: string): Message {
    const m = this.messages().filter((x) => x.event === event).pop()
    if (!m) throw new Error(`no ${event} sent; sent: ${this.messages().map((x) => x.event).join(", ")}`)
    return m
  }

  /** Answers the last push of an event with a reply. */
  reply(event: string, status: string, response: unknown = {}): Message {
    const m = this.last(event)
    this.receive([m.join_ref, m.ref, m.topic, "phx_reply", { status, response }])
    return m
  }
}

/** A transport constructor whose instances the test can reach. */
export function fakeTransport(): { Transport: new (url: string, protocols?: string | string[]) => FakeWebSocket; sockets: FakeWebSocket[]; latest(): FakeWebSocket } {
  const sockets: FakeWebSocket[] = []
  class Transport extends FakeWebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols)
      sockets.push(this)
    }
  }
  return {
    Transport,
    sockets,
    latest() {
      const s = sockets[sockets.length - 1]
      if (!s) throw new Error("no connection attempt yet")
      return s
    },
  }
}

/** A page environment the test controls. */
export class FakeEnvironment implements Environment {
  isHidden = false
  isOffline = false
  private listeners: Array<(ev: EnvironmentEvent) => void> = []

  hidden(): boolean {
    return this.isHidden
  }

  offline(): boolean {
    return this.isOffline
  }

  listen(onEvent: (ev: EnvironmentEvent) => void): () => void {
    this.listeners.push(onEvent)
    return () => {
      this.listeners = this.listeners.filter((l) => l !== onEvent)
    }
  }

  get listening(): number {
    return this.listeners.length
  }

  emit(ev: EnvironmentEvent): void {
    if (ev === "visible") this.isHidden = false
    if (ev === "online") this.isOffline = false
    for (const l of this.listeners.slice()) l(ev)
  }
}

/** Lets pending promise callbacks run. */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve()
}

/**
 * Advances mocked time by ms in steps. Node 20's mock timers run, within
 * one tick, only the timers that existed when it started, and Date.now()
 * reads the tick's end: stepping keeps timer chains and timestamps exact
 * to the step.
 */
export function advance(tick: (ms: number) => void, ms: number, step = 1): void {
  for (let t = 0; t < ms; t += step) tick(Math.min(step, ms - t))
}
