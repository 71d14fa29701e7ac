/**
 * A message sent on a channel and the reply it waits for.
 * @module
 */

import type { Channel } from "./channel.js"

/** The outcomes a push can receive. */
export type PushStatus = "ok" | "error" | "timeout"

/** A reply callback. The response is the server's JSON value (or an ArrayBuffer for a binary reply). */
export type ReplyCallback = (response: any) => void

interface Received {
  status: string
  response: unknown
}

/**
 * A push of one event to a channel's topic. Register what to do with its
 * reply with `receive`, chained:
 *
 *     channel.push("new_msg", {body})
 *       .receive("ok", (resp) => ...)
 *       .receive("error", (resp) => ...)
 *       .receive("timeout", () => ...)
 *
 * A callback registered after the outcome is known runs at once.
 */
export class Push {
  /** The push's ref while it waits for a reply, else null. */
  ref: string | null = null
  /** Milliseconds to wait for the reply. */
  timeout: number
  private readonly hooks: Array<{ status: string; callback: ReplyCallback }> = []
  private received: Received | null = null
  private timer: ReturnType<typeof setTimeout> | undefined
  private wasSent = false

  /** The payload, read on every send. */
  readonly payload: () => unknown

  /**
   * Pushes are made by Channel.push, join and leave; there is no need to
   * construct one. The payload is a value, or a function returning it (read
   * on every send).
   */
  constructor(
    readonly channel: Channel,
    readonly event: string,
    payload: unknown,
    timeout: number,
  ) {
    this.payload = typeof payload === "function" ? (payload as () => unknown) : () => payload ?? {}
    this.timeout = timeout
  }

  /** Registers a callback for an outcome and returns the push, for chaining. */
  receive(status: PushStatus, callback: (response?: any) => any): this {
    if (this.received && this.received.status === status) callback(this.received.response)
    this.hooks.push({ status, callback })
    return this
  }

  /** Reports whether the push received this outcome. */
  hasReceived(status: PushStatus): boolean {
    return this.received !== null && this.received.status === status
  }

  /** Reports whether the push went out on the connection. */
  get sent(): boolean {
    return this.wasSent
  }

  /** Sends the push with a fresh ref and starts waiting for its reply (made by Channel.push; there is no need to call it). */
  send(): void {
    if (this.received && this.received.status === "timeout") return
    this.startTimeout()
    this.wasSent = true
    try {
      this.channel.socket.send({
        topic: this.channel.topic,
        event: this.event,
        payload: this.payload(),
        ref: this.ref,
        join_ref: this.channel.joinRef(),
      })
    } catch (err) {
      this.trigger("error", { reason: "cannot encode: " + (err instanceof Error ? err.message : String(err)) })
    }
  }

  /** Forgets the previous attempt and sends again with a new timeout. */
  resend(timeout: number): void {
    this.timeout = timeout
    this.reset()
    this.send()
  }

  /** @internal Forgets the ref, the timer and the outcome. */
  reset(): void {
    this.cancelTimeout()
    this.ref = null
    this.received = null
    this.wasSent = false
  }

  /** @internal Takes a ref and starts the timeout, which triggers "timeout". */
  startTimeout(): void {
    this.cancelTimeout()
    this.ref = this.channel.socket.makeRef()
    this.channel.expectReply(this.ref, this)
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.channel.pushTimedOut(this)
      this.trigger("timeout", {})
    }, this.timeout)
  }

  /** @internal Stops waiting for the reply. */
  cancelTimeout(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    if (this.ref !== null) this.channel.forgetReply(this.ref, this)
  }

  /** @internal Settles the push with an outcome and runs its callbacks. */
  trigger(status: string, response: unknown): void {
    this.cancelTimeout()
    this.received = { status, response }
    for (const h of this.hooks.slice()) {
      if (h.status === status) h.callback(response)
    }
  }
}
