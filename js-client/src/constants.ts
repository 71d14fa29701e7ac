/**
 * Protocol constants and defaults shared by the Hearth client's classes.
 * @module
 */

/** The Phoenix serializer version the client speaks (V2: JSON arrays and binary frames). */
export const VSN = "2.0.0"

/** Phoenix's lifecycle events. */
export const EVENTS = {
  join: "phx_join",
  leave: "phx_leave",
  reply: "phx_reply",
  error: "phx_error",
  close: "phx_close",
} as const

/** The topic of socket-level messages (heartbeats). */
export const SOCKET_TOPIC = "phoenix"

/** The event with which a Hearth server hands the client a fresh token. */
export const TOKEN_EVENT = "token"

/** Hearth's reserved key in join params and join replies. */
export const HEARTH_KEY = "$hearth"

/** Query parameter announcing that the client understands Hearth's framing extensions. */
export const EXT_PARAM = "_hearth"

/** Prefix of the Sec-WebSocket-Protocol entry that carries the auth token. */
export const TOKEN_PROTOCOL_PREFIX = "base64url.bearer.phx."

/** WebSocket readyState values. */
export const READY_STATE = { connecting: 0, open: 1, closing: 2, closed: 3 } as const

/** WebSocket close codes the client acts on. */
export const CLOSE = {
  normal: 1000,
  goingAway: 1001,
  abnormal: 1006,
  serviceRestart: 1012,
  tryAgainLater: 1013,
  /** Unauthorized: the token is missing or invalid (also used when `authToken` throws SignedOut). */
  unauthorized: 4501,
  /** Session revoked: terminal whatever token was used. */
  revoked: 4503,
  /** First terminal code: 4500-4999 mean "do not reconnect". */
  terminalMin: 4500,
  terminalMax: 4999,
} as const

/** Defaults of the socket options, in milliseconds unless noted. */
export const DEFAULTS = {
  timeout: 10_000,
  heartbeatIntervalMs: 30_000,
  heartbeatTimeoutMs: 10_000,
  reconnectBaseMs: 500,
  reconnectMaxMs: 20_000,
  stableAfterMs: 10_000,
  rejoinBaseMs: 1_000,
  rejoinMaxMs: 10_000,
  /** Fraction of a server's retry hint added as random extra delay. */
  hintJitter: 0.2,
  /** Longest retry hint honoured (a larger one is clamped). */
  maxHintMs: 600_000,
  /** Spread of the reconnect when a hidden tab becomes visible or the browser comes online. */
  resumeJitterMs: 1_000,
  /** Pushes a channel keeps while it cannot send; more fail with "buffer full". */
  pushBufferSize: 100,
} as const
