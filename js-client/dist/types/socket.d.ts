/**
 * The socket: one WebSocket connection, its heartbeats and reconnects,
 * multiplexing the channels joined over it.
 * @module
 */
import { Channel, type ChannelParams } from "./channel.js";
import { type Message } from "./serializer.js";
import type { ChannelEvents, TypedChannel } from "./events.js";
import { type Random } from "./timer.js";
/**
 * The part of the WebSocket API the client uses: the browser's WebSocket
 * and the `ws` package's both fit.
 */
export interface WebSocketLike {
    binaryType: string;
    readonly readyState: number;
    onopen: ((ev: any) => void) | null;
    onclose: ((ev: any) => void) | null;
    onerror: ((ev: any) => void) | null;
    onmessage: ((ev: any) => void) | null;
    send(data: any): void;
    close(code?: number, reason?: string): void;
}
/** A WebSocket constructor: the browser's `WebSocket`, or `WebSocket` from the `ws` package in Node. */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;
/**
 * A transport class: a WebSocket constructor, or another class with the
 * WebSocket API (such as a long-poll transport), as phoenix.js accepts.
 */
export type TransportConstructor = WebSocketConstructor | (new (endPoint: string, protocols?: string | string[]) => object);
/** Encodes a message and hands the frame to callback (phoenix.js's `encode` option). */
export type Encode = (msg: Message, callback: (frame: any) => void) => void;
/** Decodes a frame and hands the message to callback (phoenix.js's `decode` option). */
export type Decode = (frame: any, callback: (msg: Message) => void) => void;
/** The part of the Web Storage API the socket uses (phoenix.js's `sessionStorage` option). */
export interface SessionStore {
    getItem(key: string): string | null;
    setItem(key: string, value: string): void;
    removeItem?(key: string): void;
}
/** A callback whose parameter is checked bivariantly, so that `(e: CloseEvent) => ...` fits. */
type Bivariant<T> = {
    bivarianceHack(arg: T): unknown;
}["bivarianceHack"];
/** A callback of `onError`: the error, the transport in use, and how many connections opened so far. */
export type SocketErrorCallback = (error: any, transport: TransportConstructor, establishedConnections: number) => unknown;
/** Connect params: sent as query parameters of the socket URL. */
export type Params = Record<string, unknown>;
/** phoenix.js's name of the socket options (@types/phoenix `SocketConnectOption`). */
export type SocketConnectOption = SocketOptions;
/** The connection's state, as `connectionState()` reports it. */
export type ConnectionState = "connecting" | "open" | "closing" | "closed";
/** The transport's binaryType. */
export type BinaryType = "arraybuffer" | "blob";
/** A ref returned by the socket's `on*` methods, for `off`. */
export type MessageRef = string;
/** A value, or a promise of it. */
export type MaybePromise<T> = T | Promise<T>;
/** Why a connection closed. */
export interface CloseInfo {
    code: number;
    reason: string;
    wasClean: boolean;
}
/** A scheduled reconnect. */
export interface ReconnectInfo {
    /** Milliseconds until the attempt. */
    delay: number;
    /** Attempts since the connection was last stable, this one included. */
    tries: number;
    /** The close code and reason that caused it. */
    code: number;
    reason: string;
    /** Whether the delay follows the server's retry hint. */
    hinted: boolean;
}
/** A token the server handed over for the next connect. */
export interface TokenInfo {
    token: string;
    /** When the token expires, in milliseconds since the epoch, or null if the server did not say. */
    expiresAt: number | null;
}
/** What the page tells the socket about itself. */
export type EnvironmentEvent = "visible" | "online" | "pagehide" | "pageshow";
/**
 * The page's state as the socket needs it: whether the tab is hidden and the
 * browser offline (reconnects wait), and the events that end such a wait.
 * The default reads `document.visibilityState` and `navigator.onLine` and
 * listens to visibilitychange, online, pagehide and pageshow.
 */
export interface Environment {
    hidden(): boolean;
    offline(): boolean;
    /** Calls onEvent for each event; returns a function that stops listening. */
    listen(onEvent: (event: EnvironmentEvent) => void): () => void;
}
/** Options of a Socket. Every field is optional. */
export interface SocketOptions {
    /** Connect params, or a function (possibly async) returning them, read on every connect. */
    params?: Params | object | (() => MaybePromise<Params | object>);
    /**
     * An auth token, or a function (possibly async) returning one, read on
     * every connect unless the server refreshed the token (event `token`).
     * Sent in Sec-WebSocket-Protocol as `base64url.bearer.phx.<token>`, or
     * as the query parameter `tokenParam` when that is set.
     */
    authToken?: string | null | (() => MaybePromise<string | null | undefined>);
    /** Send the token as this query parameter instead of in Sec-WebSocket-Protocol. */
    tokenParam?: string;
    /**
     * The transport class: the global WebSocket by default (in Node 20, pass
     * `WebSocket` from the `ws` package), or any class with its API.
     */
    transport?: TransportConstructor;
    /**
     * Fall back to long-poll when the WebSocket does not open within this
     * many ms, or fails before opening; the choice is remembered for the
     * browser tab (sessionStorage), as phoenix.js does. Default: no fallback.
     * Only with the default transport.
     */
    longPollFallbackMs?: number;
    /** Default timeout of pushes and joins, and of opening a connection (ms). Default 10 s. */
    timeout?: number;
    /** Interval between heartbeats (ms). Default 30 s. */
    heartbeatIntervalMs?: number;
    /** How long to wait for a heartbeat's reply before the connection counts as dead (ms). Default 10 s. */
    heartbeatTimeoutMs?: number;
    /** Backoff base of reconnects (ms): the first delay is random in [0, base). Default 500. */
    reconnectBaseMs?: number;
    /** Backoff cap of reconnects (ms). Default 20 s. */
    reconnectMaxMs?: number;
    /** A connection that stayed up this long resets the backoff (ms). Default 10 s. */
    stableAfterMs?: number;
    /** Replaces the reconnect backoff: the delay before attempt `tries` (1, 2, ...). */
    reconnectAfterMs?: (tries: number) => number;
    /** Backoff base of channel rejoins after a join error or timeout (ms). Default 1 s. */
    rejoinBaseMs?: number;
    /** Backoff cap of channel rejoins (ms). Default 10 s. */
    rejoinMaxMs?: number;
    /** Replaces the rejoin backoff: the delay before rejoin attempt `tries` (1, 2, ...). */
    rejoinAfterMs?: (tries: number) => number;
    /** Extra random delay added to a server's retry hint, as a fraction of it. Default 0.2. */
    hintJitter?: number;
    /** Spread of the reconnect when a hidden tab shows or the browser comes online (ms). Default 1 s. */
    resumeJitterMs?: number;
    /** How many pushes a channel keeps while it cannot send. Default 100. */
    pushBufferSize?: number;
    /**
     * Use Hearth's extensions (the `_hearth=1` query parameter, the `$hearth`
     * join key, recovery). Default true; false speaks plain Phoenix.
     */
    hearth?: boolean;
    /** The Phoenix serializer version. Default "2.0.0". */
    vsn?: string;
    /** Receives debug logs (never tokens or payloads). */
    logger?: (kind: string, msg: string, data?: any) => void;
    /** Logs to the console when no logger is given (phoenix.js's `debug`). */
    debug?: boolean;
    /** Replaces the serializer's encoding (phoenix.js's `encode`). */
    encode?: Encode;
    /** Replaces the serializer's decoding (phoenix.js's `decode`). */
    decode?: Decode;
    /** The transport's `binaryType`. Default "arraybuffer". */
    binaryType?: "arraybuffer" | "blob";
    /** Where the socket may keep per-tab state; default the browser's `sessionStorage` when there is one. */
    sessionStorage?: SessionStore | object;
    /**
     * Close the connection on `pagehide` (so the page can enter the
     * back-forward cache) and connect again on `pageshow`. Default true, as
     * phoenix.js 1.8 does.
     */
    closeOnPageHide?: boolean;
    /** The random source of all jitter. Default Math.random. */
    random?: Random;
    /** The page's visibility and connectivity; null for none. Default: the browser's, when there is one. */
    environment?: Environment | null;
}
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
export declare class Socket {
    /** The endpoint, as given. */
    readonly endPoint: string;
    /** Default push timeout (ms). */
    readonly timeout: number;
    /** The channels made with `channel()` and not removed. */
    channels: Channel[];
    /** The current WebSocket, or null. */
    conn: WebSocketLike | null;
    /** The transport class of the next connection (see `replaceTransport`). */
    transport: TransportConstructor | undefined;
    /** The transport's `binaryType`. */
    binaryType: "arraybuffer" | "blob";
    /** Encodes messages for the transport. */
    encode: Encode;
    /** Decodes the transport's frames. */
    decode: Decode;
    /** The logger, or null. */
    logger: ((kind: string, msg: string, data?: any) => void) | null;
    /** The per-tab storage, or null. */
    sessionStore: SessionStore | null;
    /** The Phoenix serializer version. */
    readonly vsn: string;
    /** Interval between heartbeats (ms). */
    readonly heartbeatIntervalMs: number;
    private readonly opts;
    private readonly random;
    private readonly serializer;
    private readonly reconnectTimer;
    private readonly env;
    private hooks;
    private ref;
    private gen;
    private wanted;
    private opening;
    private opened;
    private waiting;
    private suspended;
    private unlisten;
    private pendingHeartbeatRef;
    private heartbeatTimer;
    private heartbeatTimeoutTimer;
    private openTimer;
    private stableTimer;
    private paramsOverride;
    private sendBuffer;
    private pings;
    private refreshed;
    private usedRefreshed;
    private refused;
    private preOpenFailures;
    private established;
    private reconnectDueAt;
    private reconnectHinted;
    private fellBack;
    private wsOpened;
    /**
     * @param endPoint the socket's path or URL, e.g. "/socket" or
     *   "wss://example.com/socket"; "/websocket" is appended as Phoenix does.
     */
    constructor(endPoint: string, opts?: SocketOptions);
    /** The delay before reconnect attempt `tries` (1, 2, ...). */
    reconnectAfterMs(tries: number): number;
    /** The delay before channel rejoin attempt `tries` (1, 2, ...). */
    rejoinAfterMs(tries: number): number;
    /**
     * Connects, and keeps reconnecting after losses until `disconnect()` or a
     * terminal close. Calling it while connected or connecting does nothing;
     * while a reconnect is scheduled it connects at once. Params given here
     * replace the `params` option (deprecated in phoenix.js; kept for it).
     */
    connect(params?: SocketOptions["params"]): void;
    /**
     * Closes the connection (code 1000 unless given) and stops reconnecting.
     * Joined channels rejoin when `connect()` is called again. The callback
     * runs once the connection closed.
     */
    disconnect(callback?: () => void, code?: number, reason?: string): void;
    /**
     * Closes the connection (the channels rejoin over the next one) and makes
     * `transport` the transport class of later connections. Call `connect()`
     * to connect with it, as with phoenix.js.
     */
    replaceTransport(transport: TransportConstructor): void;
    /** "wss" on an https page, else "ws". */
    protocol(): "ws" | "wss";
    /** Reports whether a logger is set. */
    hasLogger(): boolean;
    /**
     * Sends a heartbeat and calls back with the round trip in milliseconds.
     * Returns false (and does not call back) when not connected.
     */
    ping(callback: (latency: number) => void): boolean;
    /**
     * Sends a raw message (as phoenix.js's `socket.push`): at once when
     * connected, else when the next connection opens.
     */
    push(data: {
        topic: string;
        event: string;
        payload?: unknown;
        ref?: string | null;
        join_ref?: string | null;
    }): void;
    /**
     * Makes a channel for a topic. Join it with `channel.join()`. With the
     * topic's typed events (`hearth gen types`), `socket.channel<RoomEvents>(topic)`
     * checks event names, payloads and replies at compile time.
     */
    channel(topic: string, params?: ChannelParams): Channel;
    channel<E extends ChannelEvents>(topic: string, params?: ChannelParams): TypedChannel<E>;
    /** Forgets a channel (done by the channel itself once closed). */
    remove(channel: Channel): void;
    /** Runs callback when a connection opens. Returns a ref for `off`. */
    onOpen(callback: () => unknown): string;
    /** Runs callback when a connection closes, with its close code and reason. Returns a ref for `off`. */
    onClose(callback: Bivariant<CloseInfo>): string;
    /**
     * Runs callback on a transport error, a failed connect or an undecodable
     * frame, with the transport class in use and the number of connections
     * that opened so far (as phoenix.js). Returns a ref for `off`.
     */
    onError(callback: SocketErrorCallback): string;
    /** Runs callback for every decoded message received. Returns a ref for `off`. */
    onMessage(callback: (msg: Message) => unknown): string;
    /**
     * Runs callback when the server closed the connection with a terminal
     * code (4500-4999: unauthorized, token expired, session revoked): the
     * socket stopped reconnecting. Sign in again, then call `connect()`.
     * Returns a ref for `off`.
     */
    onTerminal(callback: (code: number, reason: string) => void): string;
    /**
     * Runs callback when the server handed over a fresh token (event `token`
     * on any channel or on the socket topic). The socket uses it on its next
     * connect by itself; the callback is for keeping it elsewhere. Returns a
     * ref for `off`.
     */
    onToken(callback: (token: TokenInfo) => void): string;
    /** Runs callback whenever a reconnect is scheduled. Returns a ref for `off`. */
    onReconnect(callback: (info: ReconnectInfo) => void): string;
    /** Removes the callbacks with the given refs. */
    off(refs: string[]): void;
    /** Reports whether the connection is open. */
    isConnected(): boolean;
    /** The connection's state. */
    connectionState(): "connecting" | "open" | "closing" | "closed";
    /** The socket URL for the given connect params (default: the `params` option, when not a promise). */
    endPointURL(params?: Params): string;
    makeRef(): string;
    /** Logs through the logger, if any. */
    log(kind: string, msg: string, data?: unknown): void;
    /** The number of connections that opened so far. */
    get establishedConnections(): number;
    /** The connect params when they are at hand without waiting. */
    private syncParams;
    private transportClass;
    private hook;
    private emit;
    /** The token for the next connect: the server's refreshed one while valid, else the app's. */
    private currentToken;
    /** Starts a connection attempt, reading params and token first. */
    private open;
    private openFailed;
    private dial;
    private onConnOpen;
    private onConnMessage;
    private route;
    private onConnClose;
    /** Stops for good after a terminal close: no reconnect, channels closed, pushes failed. */
    private terminate;
    private scheduleReconnect;
    private reconnectNow;
    private listen;
    private environmentChanged;
    /** Closes the current connection on purpose, without reconnecting. */
    private closeConn;
    /** Drops a connection presumed dead and reconnects. */
    private abort;
    private clearConn;
    private resetHeartbeat;
    private sendHeartbeat;
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
export declare class SignedOut extends Error {
    constructor(message?: string);
}
/** Encodes a string's UTF-8 bytes as base64url without padding. */
export declare function base64url(s: string): string;
/** The browser's environment, or null outside a browser. */
export declare function browserEnvironment(): Environment | null;
export {};
