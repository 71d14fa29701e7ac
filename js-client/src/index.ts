/**
 * The Hearth client: Phoenix Channels ergonomics with jittered reconnects,
 * recovery of missed messages, tokens refreshed by the server and bounded
 * buffers. It speaks the Phoenix V2 protocol, so it also talks to Phoenix
 * servers (with `{hearth: false}`).
 *
 *     import { Socket } from "@hearth-rt/client"
 *     const socket = new Socket("/socket", { params: { token } })
 *     socket.connect()
 *     const room = socket.channel("room:lobby")
 *     room.on("new_msg", (msg) => console.log(msg))
 *     room.onRecover(({ recovered }) => { if (!recovered) refetch() })
 *     room.join().receive("ok", () => room.push("new_msg", { body: "hi" }))
 *
 * @module
 */

export { Socket, base64url, browserEnvironment } from "./socket"
export { LongPoll } from "./longpoll"
export type {
  CloseInfo,
  Environment,
  EnvironmentEvent,
  MaybePromise,
  Params,
  ReconnectInfo,
  SocketOptions,
  TokenInfo,
  WebSocketConstructor,
  WebSocketLike,
} from "./socket"
export { Channel } from "./channel"
export type { ChannelParams, ChannelState, EventCallback, Position, RecoverInfo } from "./channel"
export { Push } from "./push"
export type { ChannelEvents, TypedChannel, TypedPush } from "./events"
export type { PushStatus, ReplyCallback } from "./push"
export { Serializer, KIND } from "./serializer"
export type { Message } from "./serializer"
export { Presence, listPresences, syncDiff, syncState } from "./presence"
export type { JoinCallback, LeaveCallback, PresenceChannel, PresenceDiff, PresenceEntry, PresenceMeta, PresenceOptions, PresenceState } from "./presence"
export { backoff, retryHint, isTerminal, RetryTimer } from "./timer"
export type { Random } from "./timer"
export { CLOSE, DEFAULTS, EVENTS, HEARTH_KEY, VSN } from "./constants"
