/**
 * Protocol constants and defaults shared by the Hearth client's classes.
 * @module
 */
/** The Phoenix serializer version the client speaks (V2: JSON arrays and binary frames). */
export declare const VSN = "2.0.0";
/** Phoenix's lifecycle events. */
export declare const EVENTS: {
    readonly join: "phx_join";
    readonly leave: "phx_leave";
    readonly reply: "phx_reply";
    readonly error: "phx_error";
    readonly close: "phx_close";
};
/** The topic of socket-level messages (heartbeats). */
export declare const SOCKET_TOPIC = "phoenix";
/** The event with which a Hearth server hands the client a fresh token. */
export declare const TOKEN_EVENT = "token";
/** Hearth's reserved key in join params and join replies. */
export declare const HEARTH_KEY = "$hearth";
/** Query parameter announcing that the client understands Hearth's framing extensions. */
export declare const EXT_PARAM = "_hearth";
/** Prefix of the Sec-WebSocket-Protocol entry that carries the auth token. */
export declare const TOKEN_PROTOCOL_PREFIX = "base64url.bearer.phx.";
/** WebSocket readyState values. */
export declare const READY_STATE: {
    readonly connecting: 0;
    readonly open: 1;
    readonly closing: 2;
    readonly closed: 3;
};
/** WebSocket close codes the client acts on. */
export declare const CLOSE: {
    readonly normal: 1000;
    readonly goingAway: 1001;
    readonly abnormal: 1006;
    readonly serviceRestart: 1012;
    readonly tryAgainLater: 1013;
    /** Unauthorized: the token is missing or invalid (also used when `authToken` throws SignedOut). */
    readonly unauthorized: 4501;
    /** Session revoked: terminal whatever token was used. */
    readonly revoked: 4503;
    /** First terminal code: 4500-4999 mean "do not reconnect". */
    readonly terminalMin: 4500;
    readonly terminalMax: 4999;
};
/** Defaults of the socket options, in milliseconds unless noted. */
export declare const DEFAULTS: {
    readonly timeout: 10000;
    readonly heartbeatIntervalMs: 30000;
    readonly heartbeatTimeoutMs: 10000;
    readonly reconnectBaseMs: 500;
    readonly reconnectMaxMs: 20000;
    readonly stableAfterMs: 10000;
    readonly rejoinBaseMs: 1000;
    readonly rejoinMaxMs: 10000;
    /** Fraction of a server's retry hint added as random extra delay. */
    readonly hintJitter: 0.2;
    /** Longest retry hint honoured (a larger one is clamped). */
    readonly maxHintMs: 600000;
    /** Spread of the reconnect when a hidden tab becomes visible or the browser comes online. */
    readonly resumeJitterMs: 1000;
    /** Pushes a channel keeps while it cannot send; more fail with "buffer full". */
    readonly pushBufferSize: 100;
};
