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

export { Socket, SignedOut, base64url, browserEnvironment } from "./socket.js"
export { LongPoll } from "./longpoll.js"
export type {
  BinaryType,
  CloseInfo,
  ConnectionState,
  MessageRef,
  SocketConnectOption,
  Decode,
  Encode,
  SessionStore,
  SocketErrorCallback,
  TransportConstructor,
  Environment,
  EnvironmentEvent,
  MaybePromise,
  Params,
  ReconnectInfo,
  SocketOptions,
  TokenInfo,
  WebSocketConstructor,
  WebSocketLike,
} from "./socket.js"
export { Channel } from "./channel.js"
export type { ChannelParams, ChannelState, EventCallback, Position, RecoverInfo, RecoverReason } from "./channel.js"
export { Push } from "./push.js"
export type { ChannelEvents, TypedChannel, TypedPush } from "./events.js"
export type { PushStatus, ReplyCallback } from "./push.js"
export { Serializer, KIND } from "./serializer.js"
export type { Message } from "./serializer.js"
export { Presence, listPresences, syncDiff, syncState } from "./presence.js"
export type { PresenceOpts, PresenceOnJoinCallback, PresenceOnLeaveCallback } from "./presence.js"
export type { JoinCallback, LeaveCallback, PresenceChannel, PresenceDiff, PresenceEntry, PresenceMeta, PresenceOptions, PresenceState } from "./presence.js"
export { backoff, retryHint, isTerminal, RetryTimer, phoenixReconnectAfterMs, phoenixRejoinAfterMs } from "./timer.js"
export type { Random } from "./timer.js"
export { CLOSE, DEFAULTS, EVENTS, HEARTH_KEY, VSN } from "./constants.js"
