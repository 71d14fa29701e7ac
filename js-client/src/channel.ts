/**
 * A channel: the client's membership of one topic.
 * @module
 */

import { EVENTS, HEARTH_KEY } from "./constants.js"
import { Push } from "./push.js"
import type { Message } from "./serializer.js"
import type { Socket } from "./socket.js"
import { RetryTimer } from "./timer.js"

/** A channel's state. */
export type ChannelState = "closed" | "errored" | "joined" | "joining" | "leaving"

/** Join params: a JSON object, or a function returning one, read on every join. */
export type ChannelParams = object | (() => object)

/** A point in a topic's stream: the history's epoch and the offset of the last message received. */
export interface Position {
  epoch: string
  offset: number
}

/**
 * Why a recovery is incomplete: the server's reason (`"new_epoch"`,
 * `"ahead"`, `"trimmed"`, `"limit"`, `"unavailable"`, see docs/protocol.md),
 * `"untracked"` when the server reports no positions (a plain Phoenix
 * server, or `hearth: false`), or `"unknown"` when an older server did not
 * say.
 */
export type RecoverReason = "new_epoch" | "ahead" | "trimmed" | "limit" | "unavailable" | "untracked" | "unknown"

/**
 * What a rejoin recovered. `recovered` is true when every message broadcast
 * while the channel was away is being replayed (`replayed` of them, delivered
 * to the channel's `on` callbacks right after the join reply, then
 * `onCaughtUp` runs); false when messages may have been missed, and the
 * application should refetch its state.
 */
export interface RecoverInfo {
  recovered: boolean
  replayed: number
  /** Why recovery is incomplete; absent when `recovered` is true. */
  reason?: RecoverReason
  /** The position the channel now stands at, or null if the server does not track one. */
  position: Position | null
}

/** A callback for a channel event: the payload, the message's ref and its join ref. */
export type EventCallback = (payload: any, ref?: string | null, joinRef?: string | null) => void

interface Binding {
  event: string
  ref: number
  callback: EventCallback
}

interface HearthInfo {
  epoch?: unknown
  offset?: unknown
  recovered?: unknown
  replayed?: unknown
  reason?: unknown
}

const REASONS: readonly string[] = ["new_epoch", "ahead", "trimmed", "limit", "unavailable"]

/**
 * A channel joins one topic over its socket, and rejoins it by itself after
 * the connection comes back or the server reports an error (with jittered
 * backoff). Create channels with `socket.channel(topic, params)`.
 *
 * On a Hearth server a channel keeps its topic's position (the offset of the
 * last broadcast received): a rejoin asks for everything after it, and
 * `onRecover` tells whether nothing was lost.
 */
export class Channel {
  /** The channel's state. */
  state: ChannelState = "closed"
  /** Default push timeout in milliseconds. */
  timeout: number
  /** @internal The join push, resent on every rejoin. */
  readonly joinPush: Push
  /** The join params, read on every join and rejoin (as phoenix.js): replace it to change them. */
  params: () => Record<string, unknown>
  private bindings: Binding[] = []
  private bindingRef = 0
  private joinedOnce = false
  private buffer: Push[] = []
  private readonly replies = new Map<string, Push>()
  private readonly rejoinTimer: RetryTimer
  private recoverHooks: Array<(info: RecoverInfo) => void> = []
  private caughtUpHooks: Array<(info: RecoverInfo) => void> = []
  private caughtUp: RecoverInfo | null = null
  private terminated = false
  private pos: Position | null = null
  private since: Position | null = null
  private replayLeft = 0
  private replayTop = 0
  private pendingRecover: RecoverInfo | null = null
  private hadJoined = false
  private closeReason = "channel closed"

  /** Channels are made with socket.channel(topic, params). */
  constructor(
    readonly topic: string,
    params: ChannelParams | undefined,
    readonly socket: Socket,
  ) {
    this.params = typeof params === "function" ? (params as () => Record<string, unknown>) : () => (params ?? {}) as Record<string, unknown>
    this.timeout = socket.timeout
    this.rejoinTimer = new RetryTimer(() => {
      if (this.socket.isConnected()) this.rejoin()
    }, (tries) => socket.rejoinAfterMs(tries))
    this.joinPush = new Push(this, EVENTS.join, () => this.joinPayload(), this.timeout)
    this.joinPush.receive("ok", () => {
      this.state = "joined"
      this.rejoinTimer.reset()
      const buffered = this.buffer
      this.buffer = []
      for (const p of buffered) p.send()
    })
    this.joinPush.receive("error", (resp: unknown) => {
      this.state = "errored"
      // A join refused by admission control carries the server's hint.
      const hint = (resp as { retry_after_ms?: unknown } | null)?.retry_after_ms
      if (this.socket.isConnected()) this.rejoinTimer.schedule(typeof hint === "number" ? this.socket.hintDelay(hint) : undefined)
    })
    this.joinPush.receive("timeout", () => {
      this.socket.log("channel", `join timed out: ${this.topic}`)
      // The server may still complete the join: leave it, then try again.
      new Push(this, EVENTS.leave, () => ({}), this.timeout).send()
      this.state = "errored"
      this.joinPush.reset()
      if (this.socket.isConnected()) this.rejoinTimer.schedule()
    })
  }

  /**
   * Joins the topic. Call it once; the channel rejoins by itself from then
   * on. The returned push receives "ok" (with the join reply) on every
   * successful join, rejoins included.
   */
  join(timeout: number = this.timeout): Push {
    if (this.joinedOnce) {
      throw new Error(`hearth: joined "${this.topic}" more than once (a channel rejoins by itself)`)
    }
    this.timeout = timeout
    this.joinedOnce = true
    this.rejoin(timeout)
    return this.joinPush
  }

  /**
   * Leaves the topic. The returned push receives "ok" once the server
   * confirmed (or at once while disconnected); the channel is closed then
   * and does not rejoin.
   */
  leave(timeout: number = this.timeout): Push {
    this.rejoinTimer.cancel()
    this.joinPush.cancelTimeout()
    this.state = "leaving"
    const done = (): void => {
      this.socket.log("channel", `left ${this.topic}`)
      this.trigger({ join_ref: null, ref: null, topic: this.topic, event: EVENTS.close, payload: "leave" })
    }
    const p = new Push(this, EVENTS.leave, () => ({}), timeout)
    p.receive("ok", done).receive("timeout", done)
    p.send()
    if (!this.socket.isConnected()) p.trigger("ok", {})
    return p
  }

  /**
   * Pushes an event to the server. The payload is a JSON value, or an
   * ArrayBuffer (or typed array) sent as a binary frame. While the channel
   * cannot send (not joined, or disconnected) pushes wait in a bounded
   * buffer; when it is full the push fails at once with
   * receive("error", {reason: "buffer full"}). On a closed channel (left, or
   * the socket closed for good) the push fails at once with the reason.
   */
  push(event: string, payload: unknown = {}, timeout: number = this.timeout): Push {
    if (!this.joinedOnce) {
      throw new Error(`hearth: push "${event}" to "${this.topic}" before joining`)
    }
    const p = new Push(this, event, () => payload, timeout)
    if (this.canPush()) {
      p.send()
    } else if (this.state === "closed" || this.state === "leaving") {
      p.trigger("error", { reason: this.closeReason })
    } else if (this.buffer.length >= this.socket.pushBufferSize) {
      this.socket.log("channel", `push buffer full: ${this.topic} ${event}`)
      p.trigger("error", { reason: "buffer full" })
    } else {
      p.startTimeout()
      this.buffer.push(p)
    }
    return p
  }

  /** Subscribes to an event; returns a ref for `off`. */
  on(event: string, callback: EventCallback): number {
    const ref = ++this.bindingRef
    this.bindings.push({ event, ref, callback })
    return ref
  }

  /** Unsubscribes the callback with the given ref, or every callback of the event. */
  off(event: string, ref?: number): void {
    this.bindings = this.bindings.filter((b) => !(b.event === event && (ref === undefined || ref === b.ref)))
  }

  /** Runs callback when the channel is closed for good (left, or closed by the server). */
  onClose(callback: EventCallback): number {
    return this.on(EVENTS.close, callback)
  }

  /** Runs callback when the channel errors (it then rejoins by itself). */
  onError(callback: EventCallback): number {
    return this.on(EVENTS.error, callback)
  }

  /**
   * Runs callback after every rejoin that asked the server for the messages
   * missed while away, telling whether recovery was complete. When it was
   * not, refetch state. Returns a function that unsubscribes.
   */
  onRecover(callback: (info: RecoverInfo) => void): () => void {
    this.recoverHooks.push(callback)
    return () => {
      this.recoverHooks = this.recoverHooks.filter((h) => h !== callback)
    }
  }

  /**
   * Runs callback once the messages replayed by a rejoin have all reached
   * the channel's `on` callbacks (right after `onRecover` when nothing was
   * replayed, or recovery was incomplete): from then on messages are live.
   * Returns a function that unsubscribes.
   */
  onCaughtUp(callback: (info: RecoverInfo) => void): () => void {
    this.caughtUpHooks.push(callback)
    return () => {
      this.caughtUpHooks = this.caughtUpHooks.filter((h) => h !== callback)
    }
  }

  /**
   * A hook every incoming event passes through before the `on` callbacks
   * (as phoenix.js's): it returns the payload they receive. Override it on
   * an instance to transform payloads; the default returns the payload.
   */
  onMessage(_event: string, payload: any, _ref?: string | null, _joinRef?: string | null): any {
    return payload
  }

  /** Reports whether the channel is closed. */
  isClosed(): boolean {
    return this.state === "closed"
  }

  /** Reports whether the channel errored (it rejoins by itself). */
  isErrored(): boolean {
    return this.state === "errored"
  }

  /** Reports whether the channel is joined. */
  isJoined(): boolean {
    return this.state === "joined"
  }

  /** Reports whether the channel is joining. */
  isJoining(): boolean {
    return this.state === "joining"
  }

  /** Reports whether the channel is leaving. */
  isLeaving(): boolean {
    return this.state === "leaving"
  }

  /** The channel's position in its topic's stream, or null when unknown. */
  position(): Position | null {
    return this.pos ? { ...this.pos } : null
  }

  /** The ref of the current join, which messages of this membership carry. */
  joinRef(): string | null {
    return this.joinPush.ref
  }

  /** Reports whether the channel is joined and its socket connected. */
  canPush(): boolean {
    return this.socket.isConnected() && this.state === "joined"
  }

  /** @internal Joins again after an error or a reconnect. */
  rejoin(timeout: number = this.timeout): void {
    if (this.state === "leaving") return
    this.socket.leaveOpenTopic(this.topic, this)
    this.state = "joining"
    if (!this.socket.isConnected()) {
      // Sent when the socket opens.
      this.joinPush.timeout = timeout
      this.joinPush.reset()
      return
    }
    this.joinPush.resend(timeout)
  }

  /** @internal The socket opened: join if waiting for it, rejoin if the connection loss errored the channel. */
  socketOpened(): void {
    this.rejoinTimer.reset()
    if (this.terminated) {
      // Closed by a terminal close: the app connected again (signed in).
      this.terminated = false
      this.closeReason = "channel closed"
      this.state = "errored"
    }
    if (this.state === "errored" || (this.state === "joining" && !this.joinPush.sent)) this.rejoin(this.joinPush.timeout)
  }

  /**
   * @internal The socket closed for good (a terminal close code, or the app
   * signed out): the channel is closed, its waiting pushes fail at once
   * with the reason. It rejoins if the app calls `socket.connect()` again.
   */
  socketTerminated(reason: string): void {
    if (this.state === "closed" || this.state === "leaving") return
    this.rejoinTimer.reset()
    const joining = this.state === "joining" && this.joinPush.sent
    this.state = "closed"
    this.terminated = true
    this.closeReason = reason
    const failed = new Set([...this.buffer, ...this.replies.values()])
    failed.delete(this.joinPush)
    this.buffer = []
    if (joining) this.joinPush.trigger("error", { reason })
    else this.joinPush.cancelTimeout()
    for (const p of failed) p.trigger("error", { reason })
    this.state = "closed"
    this.dispatch(EVENTS.close, { reason }, null, null)
  }

  /** @internal The socket lost its connection. */
  socketClosed(reason: string): void {
    this.rejoinTimer.cancel()
    if (this.state === "joined" || this.state === "joining") {
      this.fail({ reason })
    }
  }

  /** @internal Reports whether a message belongs to this channel's current membership. */
  isMember(msg: Message): boolean {
    if (msg.topic !== this.topic) return false
    if (msg.join_ref !== null && msg.join_ref !== this.joinRef()) {
      this.socket.log("channel", `dropping message with stale join_ref: ${msg.topic} ${msg.event}`)
      return false
    }
    return true
  }

  /** @internal Handles one message of this channel. */
  trigger(msg: Message): void {
    const { event, payload, ref, join_ref: joinRef } = msg
    switch (event) {
      case EVENTS.reply:
        this.handleReply(ref, payload)
        return
      case EVENTS.close:
        this.closed()
        break
      case EVENTS.error:
        if (this.state === "leaving" || this.state === "closed") return
        this.fail(payload)
        return
      default:
        if (ref !== null && joinRef === null && !this.advance(ref)) return
    }
    this.dispatch(event, payload, ref, joinRef)
    if (this.caughtUp && this.replayLeft === 0) this.fireCaughtUp()
  }

  /** @internal Registers the push waiting for a reply with this ref. */
  expectReply(ref: string, push: Push): void {
    this.replies.set(ref, push)
  }

  /** @internal Stops routing replies with this ref to push. */
  forgetReply(ref: string, push: Push): void {
    if (this.replies.get(ref) === push) this.replies.delete(ref)
  }

  /** @internal A push timed out: if it was still buffered, it will never be sent. */
  pushTimedOut(push: Push): void {
    this.buffer = this.buffer.filter((p) => p !== push)
  }

  private dispatch(event: string, payload: unknown, ref: string | null, joinRef: string | null): void {
    const handled = this.onMessage(event, payload, ref, joinRef)
    for (const b of this.bindings.slice()) {
      if (b.event === event) b.callback(handled, ref, joinRef)
    }
  }

  private fireCaughtUp(): void {
    const info = this.caughtUp
    this.caughtUp = null
    if (info) for (const h of this.caughtUpHooks.slice()) h(info)
  }

  private fail(payload: unknown): void {
    this.state = "errored"
    this.joinPush.reset()
    this.dispatch(EVENTS.error, payload, null, null)
    if (this.socket.isConnected()) this.rejoinTimer.schedule()
  }

  private closed(): void {
    this.rejoinTimer.reset()
    this.joinPush.cancelTimeout()
    this.state = "closed"
    this.terminated = false
    const buffered = this.buffer
    this.buffer = []
    for (const p of buffered) p.trigger("error", { reason: "channel closed" })
    this.socket.remove(this)
  }

  private handleReply(ref: string | null, payload: unknown): void {
    const push = ref === null ? undefined : this.replies.get(ref)
    if (!push) return
    let status = "error"
    let response: unknown = {}
    if (payload !== null && typeof payload === "object") {
      const p = payload as { status?: unknown; response?: unknown }
      if (typeof p.status === "string") status = p.status
      if ("response" in p) response = p.response
    }
    if (push === this.joinPush) {
      const info = takeHearth(response)
      if (status === "ok") this.joinOk(info)
    }
    push.trigger(status, response)
    const recover = this.pendingRecover
    this.pendingRecover = null
    if (recover) {
      this.caughtUp = recover
      for (const h of this.recoverHooks.slice()) h(recover)
      if (this.replayLeft === 0) this.fireCaughtUp()
    }
  }

  /** The join payload: the app's params and Hearth's key, with the position to resume from on a rejoin. */
  private joinPayload(): Record<string, unknown> {
    const params = this.params()
    if (!this.socket.hearth) {
      this.since = null
      return params
    }
    this.since = this.pos
    return { ...params, [HEARTH_KEY]: this.pos ? { since: { epoch: this.pos.epoch, offset: this.pos.offset } } : {} }
  }

  /**
   * Takes the position the server reported in a join reply and, on a
   * rejoin, prepares the recovery report.
   */
  private joinOk(info: HearthInfo | null): void {
    const since = this.since
    const rejoin = this.hadJoined
    this.hadJoined = true
    this.replayLeft = 0
    this.caughtUp = null
    const known = info !== null && typeof info.epoch === "string" && info.epoch !== "" && typeof info.offset === "number"
    if (!known) {
      // No position: a plain Phoenix server, or history unavailable.
      this.pos = null
      const reason = info !== null && typeof info.reason === "string" && REASONS.includes(info.reason) ? (info.reason as RecoverReason) : "untracked"
      if (rejoin) this.pendingRecover = { recovered: false, replayed: 0, reason, position: null }
      return
    }
    const top: Position = { epoch: info.epoch as string, offset: info.offset as number }
    const recovered = since !== null && info.recovered === true && since.epoch === top.epoch
    const replayed = recovered && typeof info.replayed === "number" ? info.replayed : 0
    if (replayed > 0 && since) {
      // Advance with the replayed messages, so that losing the connection
      // in the middle of the replay resumes where it stopped.
      this.replayLeft = replayed
      this.replayTop = top.offset
      this.pos = { ...since }
    } else {
      this.pos = top
    }
    if (!rejoin) return
    this.pendingRecover = { recovered, replayed, position: { ...top } }
    if (!recovered) {
      let reason: RecoverReason = "unknown"
      if (since === null) reason = "untracked"
      else if (typeof info.reason === "string" && REASONS.includes(info.reason)) reason = info.reason as RecoverReason
      else if (since.epoch !== top.epoch) reason = "new_epoch"
      this.pendingRecover.reason = reason
    }
  }

  /**
   * Takes the position of a broadcast ("@<offset>" in its ref). It returns
   * false for a message at or before the channel's position: a duplicate.
   */
  private advance(ref: string): boolean {
    if (ref.charCodeAt(0) !== 64 /* @ */ || !this.pos) return true
    const offset = Number(ref.slice(1))
    if (!Number.isSafeInteger(offset) || offset <= 0) return true
    if (offset <= this.pos.offset) {
      this.socket.log("channel", `dropping duplicate broadcast at offset ${offset}: ${this.topic}`)
      return false
    }
    this.pos = { epoch: this.pos.epoch, offset }
    if (this.replayLeft > 0 && --this.replayLeft === 0 && this.replayTop > offset) {
      this.pos = { epoch: this.pos.epoch, offset: this.replayTop }
    }
    return true
  }
}

/** Removes Hearth's key from a join reply's response and returns it. */
function takeHearth(response: unknown): HearthInfo | null {
  if (response === null || typeof response !== "object" || Array.isArray(response) || !(HEARTH_KEY in response)) return null
  const r = response as Record<string, unknown>
  const info = r[HEARTH_KEY]
  delete r[HEARTH_KEY]
  return info !== null && typeof info === "object" ? (info as HearthInfo) : null
}
