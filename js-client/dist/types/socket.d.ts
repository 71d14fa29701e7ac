/**
 * The socket: one WebSocket connection, its heartbeats and reconnects,
 * multiplexing the channels joined over it.
 * @module
 */
import { Channel, type ChannelParams } from "./channel";
import { type Message } from "./serializer";
import type { ChannelEvents, TypedChannel } from "./events";
import { type Random } from "./timer";
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
/** Connect params: sent as query parameters of the socket URL. */
export type Params = Record<string, unknown>;
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
    params?: Params | (() => MaybePromise<Params>);
    /**
     * An auth token, or a function (possibly async) returning one, read on
     * every connect unless the server refreshed the token (event `token`).
     * Sent in Sec-WebSocket-Protocol as `base64url.bearer.phx.<token>`, or
     * as the query parameter `tokenParam` when that is set.
     */
    authToken?: string | null | (() => MaybePromise<string | null | undefined>);
    /** Send the token as this query parameter instead of in Sec-WebSocket-Protocol. */
    tokenParam?: string;
    /** The WebSocket constructor. Defaults to the global WebSocket (in Node 20, pass `WebSocket` from `ws`). */
    transport?: WebSocketConstructor;
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
    logger?: (kind: string, msg: string, data?: unknown) => void;
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
    private refreshed;
    private usedRefreshed;
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
     * while a reconnect is scheduled it connects at once.
     */
    connect(): void;
    /**
     * Closes the connection (code 1000 unless given) and stops reconnecting.
     * Joined channels rejoin when `connect()` is called again. The callback
     * runs once the connection closed.
     */
    disconnect(callback?: () => void, code?: number, reason?: string): void;
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
    onOpen(callback: () => void): string;
    /** Runs callback when a connection closes, with its close code and reason. Returns a ref for `off`. */
    onClose(callback: (info: CloseInfo) => void): string;
    /** Runs callback on a transport error or an undecodable frame. Returns a ref for `off`. */
    onError(callback: (error: unknown) => void): string;
    /** Runs callback for every decoded message received. Returns a ref for `off`. */
    onMessage(callback: (msg: Message) => void): string;
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
    /** The socket URL for the given connect params. */
    endPointURL(params?: Params): string;
    makeRef(): string;
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
    private onConnClose;
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
/** Encodes a string's UTF-8 bytes as base64url without padding. */
export declare function base64url(s: string): string;
/** The browser's environment, or null outside a browser. */
export declare function browserEnvironment(): Environment | null;
