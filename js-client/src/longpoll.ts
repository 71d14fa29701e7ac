/**
 * The long-poll transport: Phoenix's LongPoll wire over HTTP, behind the
 * WebSocket API the socket uses, for networks that break WebSockets.
 * Constructed like phoenix.js's `LongPoll` (`new LongPoll(url, protocols)`),
 * so either socket can take it as its `transport`.
 * @module
 */

import { CLOSE, READY_STATE, TOKEN_PROTOCOL_PREFIX } from "./constants.js"

/** The most messages in one POST, as phoenix.js. */
const MAX_BATCH = 100

/** A poll or batch answer. `close` is Hearth's: the code a WebSocket would have got. */
interface Answer {
  status: number
  token?: string
  messages?: string[]
  close?: { code: number; reason: string }
}

/** Sends one request; resolves with the parsed answer, or null when it failed. */
async function request(method: string, url: string, headers: Record<string, string>, body: string | null, signal: AbortSignal): Promise<Answer | null> {
  try {
    const res = await fetch(url, { method, headers, body, signal, cache: "no-store" })
    return (await res.json()) as Answer
  } catch (err) {
    if (signal.aborted) throw err
    return null
  }
}

function toBase64(data: ArrayBuffer | ArrayBufferView): string {
  const b = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : new Uint8Array(data)
  let s = ""
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i])
  return btoa(s)
}

function fromBase64(s: string): ArrayBuffer {
  const bin = atob(s)
  const b = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i)
  return b.buffer
}

/**
 * A WebSocket-like connection over long-poll HTTP requests to the socket's
 * `/longpoll` endpoint. Messages from the server arrive as the `data` of
 * message events: text frames as strings, binary ones as ArrayBuffers.
 */
export class LongPoll {
  binaryType = "arraybuffer"
  readyState: number = READY_STATE.connecting
  /** Request timeout (ms); a socket sets it. Must exceed the server's poll window (10 s). */
  timeout = 20_000
  onopen: ((ev: any) => void) | null = null
  onclose: ((ev: any) => void) | null = null
  onerror: ((ev: any) => void) | null = null
  onmessage: ((ev: any) => void) | null = null

  private readonly url: string
  private readonly authToken: string | null = null
  private token: string | null = null
  private ctl = new AbortController()
  private batch: string[] | null = null
  private sending = false

  constructor(endPoint: string, protocols?: string | string[]) {
    this.url = endPoint.replace(/^ws(s?):\/\//, "http$1://").replace(/\/websocket(?=\?|$)/, "/longpoll")
    if (Array.isArray(protocols) && protocols.length === 2 && protocols[1].startsWith(TOKEN_PROTOCOL_PREFIX)) {
      const enc = protocols[1].slice(TOKEN_PROTOCOL_PREFIX.length).replace(/-/g, "+").replace(/_/g, "/")
      this.authToken = new TextDecoder().decode(fromBase64(enc + "=".repeat((4 - (enc.length % 4)) % 4)))
    }
    // Callbacks are set after construction: start on the next turn.
    setTimeout(() => { void this.poll() }, 0)
  }

  private endpoint(): string {
    return this.token === null ? this.url : this.url + (this.url.includes("?") ? "&" : "?") + "token=" + encodeURIComponent(this.token)
  }

  private async call(method: string, headers: Record<string, string>, body: string | null): Promise<Answer | null> {
    const ctl = this.ctl
    const timer = setTimeout(() => ctl.abort(), this.timeout)
    try {
      return await request(method, this.endpoint(), headers, body, ctl.signal)
    } finally {
      clearTimeout(timer)
    }
  }

  private async poll(): Promise<void> {
    while (this.readyState === READY_STATE.connecting || this.readyState === READY_STATE.open) {
      const headers: Record<string, string> = { Accept: "application/json" }
      if (this.authToken) headers["X-Phoenix-AuthToken"] = this.authToken
      let a: Answer | null
      try {
        a = await this.call("GET", headers, null)
      } catch {
        if (this.readyState <= READY_STATE.open) this.fail(CLOSE.abnormal, "timeout")
        return
      }
      if (this.readyState > READY_STATE.open) return
      if (!a) return this.fail(CLOSE.abnormal, "long-poll request failed")
      if (a.status === 410 && this.token !== null) {
        return this.fail(a.close?.code ?? 3410, a.close?.reason ?? "session_gone")
      }
      if (a.token) this.token = a.token
      switch (a.status) {
        case 200:
          for (const m of a.messages ?? []) {
            if (this.readyState !== READY_STATE.open) return
            const data = m[0] === "[" || m[0] === "{" ? m : fromBase64(m)
            if (this.onmessage) this.onmessage({ data })
          }
          break
        case 204:
          break
        case 410:
          this.readyState = READY_STATE.open
          if (this.onopen) this.onopen({})
          break
        case 403:
          return this.fail(a.close?.code ?? 1008, a.close?.reason ?? "forbidden")
        default:
          return this.fail(a.close?.code ?? 1011, a.close?.reason ?? "internal server error")
      }
    }
  }

  /** Queues a frame; frames of one turn of the event loop go in one POST. */
  send(data: string | ArrayBuffer | ArrayBufferView): void {
    const line = typeof data === "string" ? data : toBase64(data)
    if (this.batch) {
      this.batch.push(line)
      return
    }
    this.batch = [line]
    if (!this.sending) setTimeout(() => { void this.flush() }, 0)
  }

  private async flush(): Promise<void> {
    this.sending = true
    while (this.batch && this.readyState === READY_STATE.open) {
      const lines = this.batch.splice(0, MAX_BATCH)
      if (this.batch.length === 0) this.batch = null
      let a: Answer | null
      try {
        a = await this.call("POST", { "Content-Type": "application/x-ndjson" }, lines.join("\n"))
      } catch {
        a = null
      }
      if (this.readyState !== READY_STATE.open) break
      if (!a || a.status !== 200) {
        this.fail(a?.close?.code ?? 1011, a?.close?.reason ?? "long-poll send failed")
        break
      }
    }
    this.sending = false
  }

  /** Closes: pending requests are cancelled and queued frames dropped. */
  close(code: number = CLOSE.normal, reason = ""): void {
    this.stop(code, reason, true)
  }

  private fail(code: number, reason: string): void {
    if (this.onerror) this.onerror({ type: "error", reason })
    this.stop(code, reason, false)
  }

  private stop(code: number, reason: string, wasClean: boolean): void {
    if (this.readyState === READY_STATE.closed) return
    this.readyState = READY_STATE.closed
    this.batch = null
    this.ctl.abort()
    if (this.onclose) this.onclose({ code, reason, wasClean })
  }
}
