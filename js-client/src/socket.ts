/**
 * The socket: one WebSocket connection, its heartbeats and reconnects,
 * multiplexing the channels joined over it.
 * @module
 */

import { Channel, type ChannelParams } from "./channel.js"
import { CLOSE, DEFAULTS, EXT_PARAM, READY_STATE, SOCKET_TOPIC, TOKEN_EVENT, TOKEN_PROTOCOL_PREFIX, VSN } from "./constants.js"
import { LongPoll } from "./longpoll.js"
import { Serializer, type Message } from "./serializer.js"
import type { ChannelEvents, TypedChannel } from "./events.js"
import { backoff, isTerminal, retryHint, RetryTimer, type Random } from "./timer.js"

/**
 * The part of the WebSocket API the client uses: the browser's WebSocket
 * and the `ws` package's both fit.
 */
export interface WebSocketLike {
  binaryType: string
  readonly readyState: number
  onopen: ((ev: any) => void) | null
  onclose: ((ev: any) => void) | null
  onerror: ((ev: any) => void) | null
  onmessage: ((ev: any) => void) | null
  send(data: any): void
  close(code?: number, reason?: string): void
}

/** A WebSocket constructor: the browser's `WebSocket`, or `WebSocket` from the `ws` package in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike

/**
 * A transport class: a WebSocket constructor, or another class with the
 * WebSocket API (such as a long-poll transport), as phoenix.js accepts.
 */
export type TransportConstructor = WebSocketConstructor | (new (endPoint: string, protocols?: string | string[]) => object)

/** Encodes a message and hands the frame to callback (phoenix.js's `encode` option). */
export type Encode = (msg: Message, callback: (frame: any) => void) => void

/** Decodes a frame and hands the message to callback (phoenix.js's `decode` option). */
export type Decode = (frame: any, callback: (msg: Message) => void) => void

/** The part of the Web Storage API the socket uses (phoenix.js's `sessionStorage` option). */
export interface SessionStore {
  getItem(key: string): string | null
  setItem(key: string, value: string): void
  removeItem?(key: string): void
}

/** A callback whose parameter is checked bivariantly, so that `(e: CloseEvent) => ...` fits. */
type Bivariant<T> = { bivarianceHack(arg: T): unknown }["bivarianceHack"]

/** A callback of `onError`: the error, the transport in use, and how many connections opened so far. */
export type SocketErrorCallback = (error: any, transport: TransportConstructor, establishedConnections: number) => unknown

/** Connect params: sent as query parameters of the socket URL. */
export type Params = Record<string, unknown>

/** phoenix.js's name of the socket options (@types/phoenix `SocketConnectOption`). */
export type SocketConnectOption = SocketOptions

/** The connection's state, as `connectionState()` reports it. */
export type ConnectionState = "connecting" | "open" | "closing" | "closed"

/** The transport's binaryType. */
export type BinaryType = "arraybuffer" | "blob"

/** A ref returned by the socket's `on*` methods, for `off`. */
export type MessageRef = string

/** A value, or a promise of it. */
export type MaybePromise<T> = T | Promise<T>

/** Why a connection closed. */
export interface CloseInfo {
  code: number
  reason: string
  wasClean: boolean
}

/** A scheduled reconnect. */
export interface ReconnectInfo {
  /** Milliseconds until the attempt. */
  delay: number
  /** Attempts since the connection was last stable, this one included. */
  tries: number
  /** The close code and reason that caused it. */
  code: number
  reason: string
  /** Whether the delay follows the server's retry hint. */
  hinted: boolean
}

/** A token the server handed over for the next connect. */
export interface TokenInfo {
  token: string
  /** When the token expires, in milliseconds since the epoch, or null if the server did not say. */
  expiresAt: number | null
}

/** What the page tells the socket about itself. */
export type EnvironmentEvent = "visible" | "online" | "pagehide" | "pageshow"

/**
 * The page's state as the socket needs it: whether the tab is hidden and the
 * browser offline (reconnects wait), and the events that end such a wait.
 * The default reads `document.visibilityState` and `navigator.onLine` and
 * listens to visibilitychange, online, pagehide and pageshow.
 */
export interface Environment {
  hidden(): boolean
  offline(): boolean
  /** Calls onEvent for each event; returns a function that stops listening. */
  listen(onEvent: (event: EnvironmentEvent) => void): () => void
}

/** Options of a Socket. Every field is optional. */
export interface SocketOptions {
  /** Connect params, or a function (possibly async) returning them, read on every connect. */
  params?: Params | object | (() => MaybePromise<Params | object>)
  /**
   * An auth token, or a function (possibly async) returning one, read on
   * every connect unless the server refreshed the token (event `token`).
   * Sent in Sec-WebSocket-Protocol as `base64url.bearer.phx.<token>`, or
   * as the query parameter `tokenParam` when that is set.
   */
  authToken?: string | null | (() => MaybePromise<string | null | undefined>)
  /** Send the token as this query parameter instead of in Sec-WebSocket-Protocol. */
  tokenParam?: string
  /**
   * The transport class: the global WebSocket by default (in Node 20, pass
   * `WebSocket` from the `ws` package), or any class with its API.
   */
  transport?: TransportConstructor
  /**
   * Fall back to long-poll when the WebSocket does not open within this
   * many ms, or fails before opening; the choice is remembered for the
   * browser tab (sessionStorage), as phoenix.js does. Default: no fallback.
   * Only with the default transport.
   */
  longPollFallbackMs?: number
  /** Default timeout of pushes and joins, and of opening a connection (ms). Default 10 s. */
  timeout?: number
  /** Interval between heartbeats (ms). Default 30 s. */
  heartbeatIntervalMs?: number
  /** How long to wait for a heartbeat's reply before the connection counts as dead (ms). Default 10 s. */
  heartbeatTimeoutMs?: number
  /** Backoff base of reconnects (ms): the first delay is random in [0, base). Default 500. */
  reconnectBaseMs?: number
  /** Backoff cap of reconnects (ms). Default 20 s. */
  reconnectMaxMs?: number
  /** A connection that stayed up this long resets the backoff (ms). Default 10 s. */
  stableAfterMs?: number
  /** Replaces the reconnect backoff: the delay before attempt `tries` (1, 2, ...). */
  reconnectAfterMs?: (tries: number) => number
  /** Backoff base of channel rejoins after a join error or timeout (ms). Default 1 s. */
  rejoinBaseMs?: number
  /** Backoff cap of channel rejoins (ms). Default 10 s. */
  rejoinMaxMs?: number
  /** Replaces the rejoin backoff: the delay before rejoin attempt `tries` (1, 2, ...). */
  rejoinAfterMs?: (tries: number) => number
  /** Extra random delay added to a server's retry hint, as a fraction of it. Default 0.2. */
  hintJitter?: number
  /** Spread of the reconnect when a hidden tab shows or the browser comes online (ms). Default 1 s. */
  resumeJitterMs?: number
  /** How many pushes a channel keeps while it cannot send. Default 100. */
  pushBufferSize?: number
  /**
   * Use Hearth's extensions (the `_hearth=1` query parameter, the `$hearth`
   * join key, recovery). Default true; false speaks plain Phoenix.
   */
  hearth?: boolean
  /** The Phoenix serializer version. Default "2.0.0". */
  vsn?: string
  /** Receives debug logs (never tokens or payloads). */
  logger?: (kind: string, msg: string, data?: any) => void
  /** Logs to the console when no logger is given (phoenix.js's `debug`). */
  debug?: boolean
  /** Replaces the serializer's encoding (phoenix.js's `encode`). */
  encode?: Encode
  /** Replaces the serializer's decoding (phoenix.js's `decode`). */
  decode?: Decode
  /** The transport's `binaryType`. Default "arraybuffer". */
  binaryType?: "arraybuffer" | "blob"
  /** Where the socket may keep per-tab state; default the browser's `sessionStorage` when there is one. */
  sessionStorage?: SessionStore | object
  /**
   * Close the connection on `pagehide` (so the page can enter the
   * back-forward cache) and connect again on `pageshow`. Default true, as
   * phoenix.js 1.8 does.
   */
  closeOnPageHide?: boolean
  /** The random source of all jitter. Default Math.random. */
  random?: Random
  /** The page's visibility and connectivity; null for none. Default: the browser's, when there is one. */
  environment?: Environment | null
}

interface Hooks {
  open: () => unknown
  close: Bivariant<CloseInfo>
  error: SocketErrorCallback
  message: (msg: Message) => unknown
  terminal: (code: number, reason: string) => void
  token: (token: TokenInfo) => void
  reconnect: (info: ReconnectInfo) => void
}

type HookLists = { [K in keyof Hooks]: Array<[string, Hooks[K]]> }

/**
 * A connection to a Hearth (or Phoenix) server, shared by the channels made
 * with `socket.channel(topic)`.
 *
 *     const socket = new Socket("/socket", {params: {user_id: 7}})
 *     socket.connect()
 *     const room = socket.channel("room:42")
 *     room.on("new_msg", (msg) => ...)
 *     room.join().receive("ok", () => ...)
 *
 * The socket reconnects after any loss with capped exponential backoff and
 * full jitter (`random(0, min(reconnectMaxMs, reconnectBaseMs * 2^n))`),
 * resets the backoff once a connection stayed up for `stableAfterMs`,
 * follows a server's `retry_after_ms` hint on close codes 1012 and 1013,
 * stops on terminal close codes 4500-4999 (see `onTerminal`), and waits
 * while the tab is hidden or the browser offline.
 */
export class Socket {
  /** The endpoint, as given. */
  readonly endPoint: string
  /** Default push timeout (ms). */
  readonly timeout: number
  /** @internal */
  readonly pushBufferSize: number
  /** @internal Whether Hearth's extensions are on. */
  readonly hearth: boolean
  /** The channels made with `channel()` and not removed. */
  channels: Channel[] = []
  /** The current WebSocket, or null. */
  conn: WebSocketLike | null = null
  /** The transport class of the next connection (see `replaceTransport`). */
  transport: TransportConstructor | undefined
  /** The transport's `binaryType`. */
  binaryType: "arraybuffer" | "blob"
  /** Encodes messages for the transport. */
  encode: Encode
  /** Decodes the transport's frames. */
  decode: Decode
  /** The logger, or null. */
  logger: ((kind: string, msg: string, data?: any) => void) | null
  /** The per-tab storage, or null. */
  sessionStore: SessionStore | null
  /** The Phoenix serializer version. */
  readonly vsn: string
  /** Interval between heartbeats (ms). */
  readonly heartbeatIntervalMs: number

  private readonly opts: SocketOptions
  private readonly random: Random
  private readonly serializer = new Serializer()
  private readonly reconnectTimer: RetryTimer
  private readonly env: Environment | null
  private hooks: HookLists = { open: [], close: [], error: [], message: [], terminal: [], token: [], reconnect: [] }
  private ref = 0
  private gen = 0
  private wanted = false
  private opening = false
  private opened = false
  private waiting = false
  private suspended = false
  private unlisten: (() => void) | null = null
  private pendingHeartbeatRef: string | null = null
  private heartbeatTimer: ReturnType<typeof setTimeout> | undefined
  private heartbeatTimeoutTimer: ReturnType<typeof setTimeout> | undefined
  private openTimer: ReturnType<typeof setTimeout> | undefined
  private stableTimer: ReturnType<typeof setTimeout> | undefined
  private paramsOverride: SocketOptions["params"] | undefined
  private sendBuffer: Message[] = []
  private pings = new Map<string, () => void>()
  private refreshed: TokenInfo | null = null
  private usedRefreshed = false
  private refused = false
  private preOpenFailures = 0
  private established = 0
  private reconnectDueAt = 0
  private reconnectHinted = false
  private fellBack = false
  private wsOpened = false

  /**
   * @param endPoint the socket's path or URL, e.g. "/socket" or
   *   "wss://example.com/socket"; "/websocket" is appended as Phoenix does.
   */
  constructor(endPoint: string, opts: SocketOptions = {}) {
    this.endPoint = endPoint
    this.opts = opts
    this.timeout = opts.timeout ?? DEFAULTS.timeout
    this.pushBufferSize = opts.pushBufferSize ?? DEFAULTS.pushBufferSize
    this.hearth = opts.hearth ?? true
    this.random = opts.random ?? Math.random
    this.env = opts.environment === undefined ? browserEnvironment() : opts.environment
    this.reconnectTimer = new RetryTimer(() => this.reconnectNow(), (tries) => this.reconnectAfterMs(tries))
    this.transport = opts.transport
    this.binaryType = opts.binaryType ?? "arraybuffer"
    this.vsn = opts.vsn ?? VSN
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? DEFAULTS.heartbeatIntervalMs
    this.encode = opts.encode ?? ((msg, cb) => cb(this.serializer.encode(msg)))
    this.decode = opts.decode ?? ((frame, cb) => cb(this.serializer.decode(frame)))
    this.logger = opts.logger ?? (opts.debug ? (kind, msg, data) => console.log(`${kind}: ${msg}`, data) : null)
    let store: unknown = opts.sessionStorage
    try {
      // Reading sessionStorage throws in sandboxed frames and with storage blocked.
      store = store ?? (globalThis as { sessionStorage?: SessionStore }).sessionStorage
    } catch {
      store = null
    }
    this.sessionStore = store && typeof (store as SessionStore).getItem === "function" ? (store as SessionStore) : null
  }

  /** The delay before reconnect attempt `tries` (1, 2, ...). */
  reconnectAfterMs(tries: number): number {
    if (this.opts.reconnectAfterMs) return this.opts.reconnectAfterMs(tries)
    return backoff(tries - 1, this.opts.reconnectBaseMs ?? DEFAULTS.reconnectBaseMs, this.opts.reconnectMaxMs ?? DEFAULTS.reconnectMaxMs, this.random)
  }

  /** The delay before channel rejoin attempt `tries` (1, 2, ...). */
  rejoinAfterMs(tries: number): number {
    if (this.opts.rejoinAfterMs) return this.opts.rejoinAfterMs(tries)
    return backoff(tries - 1, this.opts.rejoinBaseMs ?? DEFAULTS.rejoinBaseMs, this.opts.rejoinMaxMs ?? DEFAULTS.rejoinMaxMs, this.random)
  }

  /**
   * Connects, and keeps reconnecting after losses until `disconnect()` or a
   * terminal close. Calling it while connected or connecting does nothing;
   * while a reconnect is scheduled it connects at once. Params given here
   * replace the `params` option (deprecated in phoenix.js; kept for it).
   */
  connect(params?: SocketOptions["params"]): void {
    if (params) this.paramsOverride = params
    if (this.opts.longPollFallbackMs !== undefined && (fallbackRemembered() || typeof (globalThis as { WebSocket?: unknown }).WebSocket !== "function")) {
      this.fellBack = true
    }
    if (!this.transport && !this.fellBack && typeof (globalThis as { WebSocket?: unknown }).WebSocket !== "function") {
      throw new Error("hearth: no WebSocket: pass {transport: WebSocket} (ws in Node)")
    }
    if (this.wanted && (this.conn || this.opening)) return
    this.wanted = true
    this.suspended = false
    this.waiting = false
    this.reconnectTimer.cancel()
    this.listen()
    if (this.env && this.env.offline()) {
      this.waiting = true
      this.log("transport", "offline: waiting to connect")
      return
    }
    this.open()
  }

  /**
   * Closes the connection (code 1000 unless given) and stops reconnecting.
   * Joined channels rejoin when `connect()` is called again. The callback
   * runs once the connection closed.
   */
  disconnect(callback?: () => void, code: number = CLOSE.normal, reason?: string): void {
    this.wanted = false
    this.suspended = false
    this.waiting = false
    this.reconnectTimer.reset()
    if (this.unlisten) this.unlisten()
    this.unlisten = null
    this.closeConn(code, reason ?? "", callback)
  }

  /**
   * Closes the connection (the channels rejoin over the next one) and makes
   * `transport` the transport class of later connections. Call `connect()`
   * to connect with it, as with phoenix.js.
   */
  replaceTransport(transport: TransportConstructor): void {
    this.transport = transport
    if (this.wanted || this.conn || this.opening) this.disconnect()
  }

  /** "wss" on an https page, else "ws". */
  protocol(): "ws" | "wss" {
    const loc = (globalThis as { location?: { protocol: string } }).location
    return loc && /^https/.test(loc.protocol) ? "wss" : "ws"
  }

  /** Reports whether a logger is set. */
  hasLogger(): boolean {
    return this.logger !== null
  }

  /**
   * Sends a heartbeat and calls back with the round trip in milliseconds.
   * Returns false (and does not call back) when not connected.
   */
  ping(callback: (latency: number) => void): boolean {
    if (!this.isConnected()) return false
    const ref = this.makeRef()
    const start = Date.now()
    this.pings.set(ref, () => callback(Date.now() - start))
    this.send({ join_ref: null, ref, topic: SOCKET_TOPIC, event: "heartbeat", payload: {} })
    return true
  }

  /**
   * Sends a raw message (as phoenix.js's `socket.push`): at once when
   * connected, else when the next connection opens.
   */
  push(data: { topic: string; event: string; payload?: unknown; ref?: string | null; join_ref?: string | null }): void {
    const msg: Message = { join_ref: data.join_ref ?? null, ref: data.ref ?? null, topic: data.topic, event: data.event, payload: data.payload ?? {} }
    if (this.isConnected()) this.send(msg)
    else this.sendBuffer.push(msg)
  }

  /**
   * Makes a channel for a topic. Join it with `channel.join()`. With the
   * topic's typed events (`hearth gen types`), `socket.channel<RoomEvents>(topic)`
   * checks event names, payloads and replies at compile time.
   */
  channel(topic: string, params?: ChannelParams): Channel
  channel<E extends ChannelEvents>(topic: string, params?: ChannelParams): TypedChannel<E>
  channel(topic: string, params?: ChannelParams): Channel {
    const ch = new Channel(topic, params, this)
    this.channels.push(ch)
    return ch
  }

  /** Forgets a channel (done by the channel itself once closed). */
  remove(channel: Channel): void {
    this.channels = this.channels.filter((c) => c !== channel)
  }

  /** Runs callback when a connection opens. Returns a ref for `off`. */
  onOpen(callback: () => unknown): string {
    return this.hook("open", callback)
  }

  /** Runs callback when a connection closes, with its close code and reason. Returns a ref for `off`. */
  onClose(callback: Bivariant<CloseInfo>): string {
    return this.hook("close", callback)
  }

  /**
   * Runs callback on a transport error, a failed connect or an undecodable
   * frame, with the transport class in use and the number of connections
   * that opened so far (as phoenix.js). Returns a ref for `off`.
   */
  onError(callback: SocketErrorCallback): string {
    return this.hook("error", callback)
  }

  /** Runs callback for every decoded message received. Returns a ref for `off`. */
  onMessage(callback: (msg: Message) => unknown): string {
    return this.hook("message", callback)
  }

  /**
   * Runs callback when the server closed the connection with a terminal
   * code (4500-4999: unauthorized, token expired, session revoked): the
   * socket stopped reconnecting. Sign in again, then call `connect()`.
   * Returns a ref for `off`.
   */
  onTerminal(callback: (code: number, reason: string) => void): string {
    return this.hook("terminal", callback)
  }

  /**
   * Runs callback when the server handed over a fresh token (event `token`
   * on any channel or on the socket topic). The socket uses it on its next
   * connect by itself; the callback is for keeping it elsewhere. Returns a
   * ref for `off`.
   */
  onToken(callback: (token: TokenInfo) => void): string {
    return this.hook("token", callback)
  }

  /** Runs callback whenever a reconnect is scheduled. Returns a ref for `off`. */
  onReconnect(callback: (info: ReconnectInfo) => void): string {
    return this.hook("reconnect", callback)
  }

  /** Removes the callbacks with the given refs. */
  off(refs: string[]): void {
    const lists = this.hooks as unknown as Record<string, Array<[string, unknown]>>
    for (const kind of Object.keys(lists)) lists[kind] = lists[kind].filter(([ref]) => !refs.includes(ref))
  }

  /** Reports whether the connection is open. */
  isConnected(): boolean {
    return this.opened && this.conn !== null && this.conn.readyState === READY_STATE.open
  }

  /** The connection's state. */
  connectionState(): "connecting" | "open" | "closing" | "closed" {
    if (this.opening) return "connecting"
    switch (this.conn ? this.conn.readyState : READY_STATE.closed) {
      case READY_STATE.connecting: return "connecting"
      case READY_STATE.open: return "open"
      case READY_STATE.closing: return "closing"
      default: return "closed"
    }
  }

  /** The socket URL for the given connect params (default: the `params` option, when not a promise). */
  endPointURL(params: Params = this.syncParams()): string {
    const q = new URLSearchParams()
    for (const [k, v] of Object.entries(params)) {
      if (v === undefined || v === null) continue
      q.append(k, typeof v === "object" ? JSON.stringify(v) : String(v))
    }
    q.set("vsn", this.vsn)
    if (this.hearth) q.set(EXT_PARAM, "1")
    const at = this.endPoint.indexOf("?")
    let url = (at < 0 ? this.endPoint : this.endPoint.slice(0, at)).replace(/\/+$/, "")
    if (!/\/websocket$/.test(url)) url += "/websocket"
    url += "?" + (at < 0 ? "" : this.endPoint.slice(at + 1) + "&") + q.toString()
    if (/^https?:/.test(url)) return url.replace(/^http/, "ws")
    if (/^wss?:/.test(url)) return url
    const loc = (globalThis as { location?: { protocol: string; host: string } }).location
    const proto = loc && loc.protocol === "https:" ? "wss" : "ws"
    if (url.startsWith("//")) return `${proto}:${url}`
    if (!loc) throw new Error(`hearth: a relative endpoint (${this.endPoint}) needs a page location; give a full ws:// URL`)
    return `${proto}://${loc.host}${url}`
  }

  /** Makes a new message ref. */
  /**
   * @internal The wait before acting on a server's retry hint: the hint
   * plus up to `hintJitter` of it, so that clients told the same hint do
   * not come back in lockstep.
   */
  hintDelay(hintMs: number): number {
    const jitter = this.opts.hintJitter ?? DEFAULTS.hintJitter
    const hint = Math.min(Math.max(0, hintMs), DEFAULTS.maxHintMs)
    return hint + Math.floor(this.random() * hint * jitter)
  }

  makeRef(): string {
    this.ref = this.ref >= Number.MAX_SAFE_INTEGER ? 1 : this.ref + 1
    return String(this.ref)
  }

  /** @internal Sends a message now; it is dropped when the socket is not connected. Throws if it cannot be encoded. */
  send(msg: Message): void {
    const conn = this.conn
    if (!this.isConnected() || !conn) return
    this.log("push", `${msg.topic} ${msg.event} (${msg.join_ref}, ${msg.ref})`)
    this.encode(msg, (frame) => { if (this.conn === conn && this.isConnected()) conn.send(frame) })
  }

  /** @internal Leaves any other joined or joining channel of the topic. */
  leaveOpenTopic(topic: string, except: Channel): void {
    const dup = this.channels.find((c) => c !== except && c.topic === topic && (c.state === "joined" || c.state === "joining"))
    if (dup) {
      this.log("channel", `leaving duplicate topic ${topic}`)
      dup.leave()
    }
  }

  /** @internal Stores a token the server handed over. */
  storeToken(payload: unknown): void {
    if (payload === null || typeof payload !== "object") return
    const { token, expires_at: exp } = payload as { token?: unknown; expires_at?: unknown }
    if (typeof token !== "string" || token === "") return
    this.refreshed = { token, expiresAt: typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : null }
    this.log("auth", "token refreshed")
    this.emit("token", { ...this.refreshed })
  }

  /** Logs through the logger, if any. */
  log(kind: string, msg: string, data?: unknown): void {
    if (this.logger) this.logger(kind, msg, data)
  }

  /** The number of connections that opened so far. */
  get establishedConnections(): number {
    return this.established
  }

  /** The connect params when they are at hand without waiting. */
  private syncParams(): Params {
    const p = this.paramsOverride ?? this.opts.params
    const v = typeof p === "function" ? p() : p
    return v && !isThenable(v) ? (v as Params) : {}
  }

  private transportClass(): TransportConstructor {
    return this.transport ?? (this.fellBack ? LongPoll : (globalThis as unknown as { WebSocket: WebSocketConstructor }).WebSocket)
  }

  private hook<K extends keyof Hooks>(kind: K, callback: Hooks[K]): string {
    const ref = this.makeRef()
    this.hooks[kind].push([ref, callback])
    return ref
  }

  private emit<K extends keyof Hooks>(kind: K, ...args: Parameters<Hooks[K]>): void {
    for (const [, cb] of this.hooks[kind].slice()) (cb as (...a: Parameters<Hooks[K]>) => void)(...args)
  }

  /** The token for the next connect: the server's refreshed one while valid, else the app's. */
  private currentToken(): MaybePromise<string | null | undefined> {
    const r = this.refreshed
    this.usedRefreshed = false
    if (r && (r.expiresAt === null || Date.now() < r.expiresAt - TOKEN_MARGIN_MS)) {
      this.usedRefreshed = true
      return r.token
    }
    this.refreshed = null
    const t = this.opts.authToken
    return typeof t === "function" ? t() : t
  }

  /** Starts a connection attempt, reading params and token first. */
  private open(): void {
    const gen = ++this.gen
    this.opening = true
    let params: MaybePromise<Params>
    let token: MaybePromise<string | null | undefined>
    try {
      const p = this.paramsOverride ?? this.opts.params
      params = (typeof p === "function" ? p() : p ?? {}) as MaybePromise<Params>
      token = this.currentToken()
    } catch (err) {
      this.openFailed(gen, err)
      return
    }
    if (isThenable(params) || isThenable(token)) {
      Promise.all([params, token]).then(
        ([p, t]) => { if (gen === this.gen) this.dial(gen, p, t) },
        (err: unknown) => this.openFailed(gen, err),
      )
      return
    }
    this.dial(gen, params as Params, token as string | null | undefined)
  }

  private openFailed(gen: number, err: unknown): void {
    if (gen !== this.gen) return
    this.opening = false
    if (isSignedOut(err)) {
      this.log("auth", "signed out")
      this.terminate(CLOSE.unauthorized, (err as Error).message || "signed out")
      return
    }
    this.log("transport", "cannot connect: " + String(err))
    this.emit("error", err, this.transportClass(), this.established)
    if (this.wanted && !this.conn && !this.opening) this.scheduleReconnect(CLOSE.abnormal, "connect failed")
  }

  private dial(gen: number, params: Params, token: string | null | undefined): void {
    const query: Params = { ...params }
    const key = this.opts.tokenParam ?? "token"
    if (this.usedRefreshed && token && key in query) {
      // The Phoenix habit `params: {token}`: the refreshed token replaces
      // the stale one there too, so it is not sent anywhere any more.
      query[key] = token
    }
    let protocols: string[] | undefined
    if (token) {
      if (this.opts.tokenParam) query[this.opts.tokenParam] = token
      else protocols = ["phoenix", TOKEN_PROTOCOL_PREFIX + base64url(token)]
    }
    const Transport = this.transportClass()
    const Ctor = Transport as WebSocketConstructor
    // May this attempt fall back to long-poll if the WebSocket never opens?
    const canFall = !this.transport && !this.fellBack && !this.wsOpened && this.opts.longPollFallbackMs !== undefined
    const fallBack = (): void => {
      if (gen !== this.gen || this.opened) return
      this.log("transport", "WebSocket did not open: falling back to long-poll")
      this.fellBack = true
      rememberFallback()
      this.gen++
      detach(ws)
      ws.onclose = null
      try { ws.close() } catch { /* never opened */ }
      this.clearConn()
      this.dial(this.gen, params, token)
    }
    let ws: WebSocketLike
    try {
      const url = this.endPointURL(query)
      ws = protocols ? new Ctor(url, protocols) : new Ctor(url)
    } catch (err) {
      if (canFall) {
        this.fellBack = true
        rememberFallback()
        this.dial(gen, params, token)
        return
      }
      this.openFailed(gen, err)
      return
    }
    this.opening = false
    this.conn = ws
    ws.binaryType = this.binaryType
    if (Transport === LongPoll) (ws as LongPoll).timeout = this.timeout + 10_000
    ws.onopen = () => {
      if (gen !== this.gen) return
      if (Transport !== LongPoll) this.wsOpened = true
      this.onConnOpen()
    }
    ws.onerror = (ev: unknown) => {
      if (gen !== this.gen) return
      if (!this.opened && refusedUpgrade(ev)) this.refused = true
      this.emit("error", ev, Transport, this.established)
    }
    ws.onmessage = (ev: { data: unknown }) => { if (gen === this.gen) this.onConnMessage(ev.data) }
    ws.onclose = (ev: { code?: number; reason?: string; wasClean?: boolean }) => {
      if (gen !== this.gen) return
      if (canFall && !this.opened) return fallBack()
      this.onConnClose(ev.code ?? CLOSE.abnormal, ev.reason ?? "", ev.wasClean ?? false)
    }
    this.openTimer = setTimeout(() => this.abort("connect timeout"), this.timeout)
    if (canFall) setTimeout(fallBack, this.opts.longPollFallbackMs)
  }

  private onConnOpen(): void {
    clearTimeout(this.openTimer)
    this.opened = true
    this.established++
    this.preOpenFailures = 0
    this.log("transport", "connected")
    this.stableTimer = setTimeout(() => { this.reconnectTimer.tries = 0 }, this.opts.stableAfterMs ?? DEFAULTS.stableAfterMs)
    this.resetHeartbeat()
    for (const ch of this.channels.slice()) ch.socketOpened()
    const buffered = this.sendBuffer
    this.sendBuffer = []
    for (const m of buffered) this.send(m)
    this.emit("open")
  }

  private onConnMessage(data: unknown): void {
    const gen = this.gen
    // Messages decoded synchronously are routed after decode returns, so
    // that an app callback throwing is not taken for an undecodable frame.
    let decoded: Message[] | null = []
    try {
      this.decode(data, (msg) => {
        if (decoded) decoded.push(msg)
        else if (gen === this.gen) this.route(msg)
      })
    } catch (err) {
      decoded = null
      this.log("transport", "dropping undecodable frame: " + String(err))
      this.emit("error", err, this.transportClass(), this.established)
      return
    }
    const msgs = decoded
    decoded = null
    for (const msg of msgs) if (gen === this.gen) this.route(msg)
  }

  private route(msg: Message): void {
    if (msg.topic === SOCKET_TOPIC) {
      if (msg.ref !== null && msg.ref === this.pendingHeartbeatRef) this.resetHeartbeat()
      const ping = msg.ref !== null ? this.pings.get(msg.ref) : undefined
      if (ping && msg.ref !== null) {
        this.pings.delete(msg.ref)
        ping()
      }
      // A refreshed token comes only on the socket topic, and only from a
      // server that speaks Hearth's extension: a channel event named
      // "token" is the app's.
      if (msg.event === TOKEN_EVENT && this.hearth) this.storeToken(msg.payload)
    } else {
      for (const ch of this.channels.slice()) {
        if (ch.isMember(msg)) ch.trigger(msg)
      }
    }
    this.emit("message", msg)
  }

  private onConnClose(code: number, reason: string, wasClean: boolean): void {
    const opened = this.opened
    const refused = this.refused
    this.refused = false
    this.clearConn()
    this.log("transport", `closed ${code} ${reason}`)
    for (const ch of this.channels.slice()) ch.socketClosed("connection closed")
    this.emit("close", { code, reason, wasClean })
    if (!this.wanted || this.conn || this.opening) return
    if (this.usedRefreshed && !opened && !isTerminal(code)) this.preOpenFailures++
    const refusedRefreshed = this.usedRefreshed && ((isTerminal(code) && code !== CLOSE.revoked) || refused ||
      (this.refreshed !== null && this.refreshed.expiresAt === null && this.preOpenFailures >= REFRESHED_MAX_FAILURES))
    if (refusedRefreshed) {
      // The server refused the token it had handed over (expired by its
      // clock, signed with a retired key, or a proxy's 403 before the
      // upgrade): drop it and retry with the app's own.
      this.log("transport", `refreshed token refused (${code})`)
      this.refreshed = null
      this.usedRefreshed = false
      this.preOpenFailures = 0
      this.scheduleReconnect(code, reason)
      return
    }
    if (isTerminal(code)) {
      this.terminate(code, reason)
      return
    }
    this.scheduleReconnect(code, reason)
  }

  /** Stops for good after a terminal close: no reconnect, channels closed, pushes failed. */
  private terminate(code: number, reason: string): void {
    this.wanted = false
    this.refreshed = null
    this.usedRefreshed = false
    this.reconnectTimer.reset()
    if (this.unlisten) this.unlisten()
    this.unlisten = null
    this.log("transport", `terminal close ${code}`)
    for (const ch of this.channels.slice()) ch.socketTerminated(reason || `closed ${code}`)
    this.emit("terminal", code, reason)
  }

  private scheduleReconnect(code: number, reason: string): void {
    const hint = retryHint(code, reason)
    const delay = this.reconnectTimer.schedule(hint === null ? undefined : this.hintDelay(hint))
    this.reconnectDueAt = Date.now() + delay
    this.reconnectHinted = hint !== null
    this.log("transport", `reconnecting in ${delay} ms`)
    this.emit("reconnect", { delay, tries: this.reconnectTimer.tries, code, reason, hinted: hint !== null })
  }

  private reconnectNow(): void {
    if (!this.wanted || this.conn || this.opening) return
    if (this.env && (this.env.hidden() || this.env.offline())) {
      this.waiting = true
      this.log("transport", "hidden or offline: waiting")
      return
    }
    this.open()
  }

  private listen(): void {
    if (!this.env || this.unlisten) return
    this.unlisten = this.env.listen((ev) => this.environmentChanged(ev))
  }

  private environmentChanged(ev: EnvironmentEvent): void {
    const env = this.env
    if (!env) return
    switch (ev) {
      case "visible":
      case "online": {
        if (ev === "online" && this.isConnected() && this.pendingHeartbeatRef === null) {
          // The network changed under an open connection: check it now
          // rather than at the next heartbeat.
          clearTimeout(this.heartbeatTimer)
          this.sendHeartbeat()
          break
        }
        if (!this.wanted || this.conn || this.opening || env.hidden() || env.offline()) break
        // Someone is looking, or the network is back: reconnect soon (with
        // jitter), unless the server asked for a longer wait.
        const soon = Math.floor(this.random() * (this.opts.resumeJitterMs ?? DEFAULTS.resumeJitterMs))
        if (this.waiting || (this.reconnectTimer.pending && !this.reconnectHinted && this.reconnectDueAt - Date.now() > soon)) {
          this.waiting = false
          this.reconnectTimer.start(soon)
        }
        break
      }
      case "pagehide":
        // An open WebSocket keeps a page out of the back-forward cache.
        if (this.wanted && this.opts.closeOnPageHide !== false) {
          this.wanted = false
          this.waiting = false
          this.suspended = true
          this.reconnectTimer.cancel()
          this.closeConn(CLOSE.goingAway, "page hidden")
        }
        break
      case "pageshow":
        if (this.suspended) this.connect()
        break
    }
  }

  /** Closes the current connection on purpose, without reconnecting. */
  private closeConn(code: number, reason: string, callback?: () => void): void {
    this.gen++
    const ws = this.conn
    this.clearConn()
    if (!ws) {
      if (callback) callback()
      return
    }
    let done = false
    const finish = (): void => {
      if (done) return
      done = true
      clearTimeout(fallback)
      if (callback) callback()
    }
    const fallback = setTimeout(finish, 1000)
    detach(ws)
    ws.onclose = finish
    try {
      ws.close(code, reason)
    } catch {
      ws.close()
    }
    for (const ch of this.channels.slice()) ch.socketClosed("disconnected")
    this.emit("close", { code, reason, wasClean: true })
  }

  /** Drops a connection presumed dead and reconnects. */
  private abort(reason: string): void {
    const ws = this.conn
    if (!ws) return
    this.gen++
    this.log("transport", reason)
    detach(ws)
    ws.onclose = null
    const terminate = (ws as { terminate?: () => void }).terminate
    try {
      if (typeof terminate === "function") terminate.call(ws)
      else ws.close(CLOSE.normal, reason)
    } catch {
      // The connection is being dropped anyway.
    }
    this.onConnClose(CLOSE.abnormal, reason, false)
  }

  private clearConn(): void {
    clearTimeout(this.openTimer)
    clearTimeout(this.stableTimer)
    clearTimeout(this.heartbeatTimer)
    clearTimeout(this.heartbeatTimeoutTimer)
    this.pendingHeartbeatRef = null
    this.pings.clear()
    this.conn = null
    this.opened = false
    this.opening = false
  }

  private resetHeartbeat(): void {
    clearTimeout(this.heartbeatTimer)
    clearTimeout(this.heartbeatTimeoutTimer)
    this.pendingHeartbeatRef = null
    this.heartbeatTimer = setTimeout(() => this.sendHeartbeat(), this.heartbeatIntervalMs)
  }

  private sendHeartbeat(): void {
    if (!this.isConnected()) return
    this.pendingHeartbeatRef = this.makeRef()
    this.send({ join_ref: null, ref: this.pendingHeartbeatRef, topic: SOCKET_TOPIC, event: "heartbeat", payload: {} })
    this.heartbeatTimeoutTimer = setTimeout(() => this.abort("heartbeat timeout"), this.opts.heartbeatTimeoutMs ?? DEFAULTS.heartbeatTimeoutMs)
  }
}

const FALLBACK_KEY = "hearth:fallback:LongPoll"

/** Whether this tab fell back to long-poll before (sessionStorage). */
function fallbackRemembered(): boolean {
  try {
    return (globalThis as { sessionStorage?: Storage }).sessionStorage?.getItem(FALLBACK_KEY) === "true"
  } catch {
    return false
  }
}

function rememberFallback(): void {
  try {
    (globalThis as { sessionStorage?: Storage }).sessionStorage?.setItem(FALLBACK_KEY, "true")
  } catch {
    // Storage may be disabled: the fallback then holds for this socket only.
  }
}

/**
 * Stops a connection's events from reaching the socket. The error handler
 * stays, as a no-op: Node's ws emits "error" when a connection is closed
 * before it opened, and an EventEmitter without an error listener throws.
 */
function detach(ws: WebSocketLike): void {
  ws.onopen = ws.onmessage = null
  ws.onerror = () => {}
}

/**
 * Throw this from an `authToken` (or `params`) function to end the session:
 * the socket stops connecting and calls `onTerminal` with code 4501 and the
 * error's message as the reason (default "signed out"). Any other error is
 * retried with backoff, as a failing token service may come back.
 *
 *     authToken: async () => {
 *       const res = await fetch("/token")
 *       if (res.status === 401) throw new SignedOut()
 *       return (await res.json()).token
 *     }
 */
export class SignedOut extends Error {
  constructor(message = "signed out") {
    super(message)
    this.name = "SignedOut"
  }
}

/** Reports whether err is a SignedOut, from this bundle or another copy of the client. */
function isSignedOut(err: unknown): boolean {
  return err instanceof SignedOut || (err instanceof Error && err.name === "SignedOut")
}

/** Reports whether a transport error says the server refused the upgrade with an HTTP 4xx status (Node's ws says so; browsers do not). */
function refusedUpgrade(ev: unknown): boolean {
  const e = ev as { message?: unknown; error?: { message?: unknown } } | null
  const msg = String((e && (e.message ?? (e.error && e.error.message))) ?? "")
  return /Unexpected server response: 4\d\d/.test(msg)
}

/**
 * A refreshed token without an expiry is dropped after this many connection
 * attempts in a row failed before opening (a proxy refusing it with 403).
 * One with an expiry is kept until it expires: a server that is down must
 * not send a whole fleet to the token service.
 */
const REFRESHED_MAX_FAILURES = 3

/** A refreshed token this close to expiry (by the local clock) is not used: it could expire during the handshake. */
const TOKEN_MARGIN_MS = 1_000

function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === "object" && typeof (v as { then?: unknown }).then === "function"
}

/** Encodes a string's UTF-8 bytes as base64url without padding. */
export function base64url(s: string): string {
  const bytes = new TextEncoder().encode(s)
  let bin = ""
  for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i])
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "")
}

/** The browser's environment, or null outside a browser. */
export function browserEnvironment(): Environment | null {
  const g = globalThis as unknown as {
    document?: { visibilityState?: string; addEventListener?: Listen; removeEventListener?: Listen }
    navigator?: { onLine?: boolean }
    addEventListener?: Listen
    removeEventListener?: Listen
  }
  const doc = g.document
  if (!doc || typeof g.addEventListener !== "function") return null
  return {
    hidden: () => doc.visibilityState === "hidden",
    offline: () => !!g.navigator && g.navigator.onLine === false,
    listen(onEvent) {
      const handlers: Array<[{ addEventListener?: Listen; removeEventListener?: Listen }, string, () => void]> = [
        [doc, "visibilitychange", () => { if (doc.visibilityState !== "hidden") onEvent("visible") }],
        [g, "online", () => onEvent("online")],
        [g, "pagehide", () => onEvent("pagehide")],
        [g, "pageshow", () => onEvent("pageshow")],
      ]
      for (const [t, name, fn] of handlers) t.addEventListener?.(name, fn)
      return () => {
        for (const [t, name, fn] of handlers) t.removeEventListener?.(name, fn)
      }
    },
  }
}

type Listen = (name: string, fn: () => void) => void
