/**
 * A channel: the client's membership of one topic.
 * @module
 */
import { Push } from "./push.js";
import type { Socket } from "./socket.js";
/** A channel's state. */
export type ChannelState = "closed" | "errored" | "joined" | "joining" | "leaving";
/** Join params: a JSON object, or a function returning one, read on every join. */
export type ChannelParams = object | (() => object);
/** A point in a topic's stream: the history's epoch and the offset of the last message received. */
export interface Position {
    epoch: string;
    offset: number;
}
/**
 * Why a recovery is incomplete: the server's reason (`"new_epoch"`,
 * `"ahead"`, `"trimmed"`, `"limit"`, `"unavailable"`, see docs/protocol.md),
 * `"untracked"` when the server reports no positions (a plain Phoenix
 * server, or `hearth: false`), or `"unknown"` when an older server did not
 * say.
 */
export type RecoverReason = "new_epoch" | "ahead" | "trimmed" | "limit" | "unavailable" | "untracked" | "unknown";
/**
 * What a rejoin recovered. `recovered` is true when every message broadcast
 * while the channel was away is being replayed (`replayed` of them, delivered
 * to the channel's `on` callbacks right after the join reply, then
 * `onCaughtUp` runs); false when messages may have been missed, and the
 * application should refetch its state.
 */
export interface RecoverInfo {
    recovered: boolean;
    replayed: number;
    /** Why recovery is incomplete; absent when `recovered` is true. */
    reason?: RecoverReason;
    /** The position the channel now stands at, or null if the server does not track one. */
    position: Position | null;
}
/** A callback for a channel event: the payload, the message's ref and its join ref. */
export type EventCallback = (payload: any, ref?: string | null, joinRef?: string | null) => void;
/**
 * A channel joins one topic over its socket, and rejoins it by itself after
 * the connection comes back or the server reports an error (with jittered
 * backoff). Create channels with `socket.channel(topic, params)`.
 *
 * On a Hearth server a channel keeps its topic's position (the offset of the
 * last broadcast received): a rejoin asks for everything after it, and
 * `onRecover` tells whether nothing was lost.
 */
export declare class Channel {
    readonly topic: string;
    readonly socket: Socket;
    /** The channel's state. */
    state: ChannelState;
    /** Default push timeout in milliseconds. */
    timeout: number;
    /** The join params, read on every join and rejoin (as phoenix.js): replace it to change them. */
    params: () => Record<string, unknown>;
    private bindings;
    private bindingRef;
    private joinedOnce;
    private buffer;
    private readonly replies;
    private readonly rejoinTimer;
    private recoverHooks;
    private caughtUpHooks;
    private caughtUp;
    private terminated;
    private pos;
    private since;
    private replayLeft;
    private replayTop;
    private pendingRecover;
    private hadJoined;
    private closeReason;
    /** Channels are made with socket.channel(topic, params). */
    constructor(topic: string, params: ChannelParams | undefined, socket: Socket);
    /**
     * Joins the topic. Call it once; the channel rejoins by itself from then
     * on. The returned push receives "ok" (with the join reply) on every
     * successful join, rejoins included.
     */
    join(timeout?: number): Push;
    /**
     * Leaves the topic. The returned push receives "ok" once the server
     * confirmed (or at once while disconnected); the channel is closed then
     * and does not rejoin.
     */
    leave(timeout?: number): Push;
    /**
     * Pushes an event to the server. The payload is a JSON value, or an
     * ArrayBuffer (or typed array) sent as a binary frame. While the channel
     * cannot send (not joined, or disconnected) pushes wait in a bounded
     * buffer; when it is full the push fails at once with
     * receive("error", {reason: "buffer full"}). On a closed channel (left, or
     * the socket closed for good) the push fails at once with the reason.
     */
    push(event: string, payload?: unknown, timeout?: number): Push;
    /** Subscribes to an event; returns a ref for `off`. */
    on(event: string, callback: EventCallback): number;
    /** Unsubscribes the callback with the given ref, or every callback of the event. */
    off(event: string, ref?: number): void;
    /** Runs callback when the channel is closed for good (left, or closed by the server). */
    onClose(callback: EventCallback): number;
    /** Runs callback when the channel errors (it then rejoins by itself). */
    onError(callback: EventCallback): number;
    /**
     * Runs callback after every rejoin that asked the server for the messages
     * missed while away, telling whether recovery was complete. When it was
     * not, refetch state. Returns a function that unsubscribes.
     */
    onRecover(callback: (info: RecoverInfo) => void): () => void;
    /**
     * Runs callback once the messages replayed by a rejoin have all reached
     * the channel's `on` callbacks (right after `onRecover` when nothing was
     * replayed, or recovery was incomplete): from then on messages are live.
     * Returns a function that unsubscribes.
     */
    onCaughtUp(callback: (info: RecoverInfo) => void): () => void;
    /**
     * A hook every incoming event passes through before the `on` callbacks
     * (as phoenix.js's): it returns the payload they receive. Override it on
     * an instance to transform payloads; the default returns the payload.
     */
    onMessage(_event: string, payload: any, _ref?: string | null, _joinRef?: string | null): any;
    /** Reports whether the channel is closed. */
    isClosed(): boolean;
    /** Reports whether the channel errored (it rejoins by itself). */
    isErrored(): boolean;
    /** Reports whether the channel is joined. */
    isJoined(): boolean;
    /** Reports whether the channel is joining. */
    isJoining(): boolean;
    /** Reports whether the channel is leaving. */
    isLeaving(): boolean;
    /** The channel's position in its topic's stream, or null when unknown. */
    position(): Position | null;
    /** The ref of the current join, which messages of this membership carry. */
    joinRef(): string | null;
    /** Reports whether the channel is joined and its socket connected. */
    canPush(): boolean;
    private dispatch;
    private fireCaughtUp;
    private fail;
    private closed;
    private handleReply;
    /** The join payload: the app's params and Hearth's key, with the position to resume from on a rejoin. */
    private joinPayload;
    /**
     * Takes the position the server reported in a join reply and, on a
     * rejoin, prepares the recovery report.
     */
    private joinOk;
    /**
     * Takes the position of a broadcast ("@<offset>" in its ref). It returns
     * false for a message at or before the channel's position: a duplicate.
     */
    private advance;
}
