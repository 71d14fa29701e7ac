/**
 * Typed channel events: the TypeScript side of the typed events a Go
 * handler declares (channels.HandleIn, channels.Emits). `hearth gen types`
 * writes an interface per topic pattern in this shape; pass it to
 * `socket.channel`:
 *
 *     import type { RoomEvents } from "./events.gen"
 *     const room = socket.channel<RoomEvents>("room:lobby")
 *     room.on("new_msg", (m) => console.log(m.user, m.body)) // m is typed
 *     room.push("new_msg", { body: "hi" })                   // checked
 *       .receive("ok", (ack) => console.log(ack.id))         // typed reply
 *
 * A wrong event name, a misspelt field or a wrong type is a compile error.
 * Types only: nothing here reaches the bundle.
 * @module
 */

import type { Channel } from "./channel"
import type { Push, ReplyCallback } from "./push"

/** The events of a channel: what clients push (payload and ok reply), and what the server pushes or broadcasts. */
export interface ChannelEvents {
  in: Record<string, { payload: unknown; reply: unknown }>
  out: Record<string, unknown>
}

/** A push whose ok reply carries R. */
export interface TypedPush<R> extends Omit<Push, "receive"> {
  receive(status: "ok", callback: (response: R) => void): this
  receive(status: "error" | "timeout", callback: ReplyCallback): this
}

/**
 * A Channel whose `on`, `off` and `push` know the events of E. It is the
 * same object as an untyped Channel at run time: for an event E does not
 * list (presence_state, ...), cast it, `room as unknown as Channel`.
 */
export interface TypedChannel<E extends ChannelEvents> extends Omit<Channel, "on" | "off" | "push"> {
  /** Calls callback for each event of that name the server sends. Returns a ref for `off`. */
  on<K extends keyof E["out"] & string>(
    event: K,
    callback: (payload: E["out"][K], ref?: string | null, joinRef?: string | null) => void,
  ): number
  /** Removes the callbacks of an event (only the one of ref, if given). */
  off(event: keyof E["out"] & string, ref?: number): void
  /** Pushes an event with its payload; the ok reply's response is typed. */
  push<K extends keyof E["in"] & string>(event: K, payload: E["in"][K]["payload"], timeout?: number): TypedPush<E["in"][K]["reply"]>
}
