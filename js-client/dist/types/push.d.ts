/**
 * A message sent on a channel and the reply it waits for.
 * @module
 */
import type { Channel } from "./channel.js";
/** The outcomes a push can receive. */
export type PushStatus = "ok" | "error" | "timeout";
/** A reply callback. The response is the server's JSON value (or an ArrayBuffer for a binary reply). */
export type ReplyCallback = (response: any) => void;
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
export declare class Push {
    readonly channel: Channel;
    readonly event: string;
    /** The push's ref while it waits for a reply, else null. */
    ref: string | null;
    /** Milliseconds to wait for the reply. */
    timeout: number;
    private readonly hooks;
    private received;
    private timer;
    private wasSent;
    /** The payload, read on every send. */
    readonly payload: () => unknown;
    /**
     * Pushes are made by Channel.push, join and leave; there is no need to
     * construct one. The payload is a value, or a function returning it (read
     * on every send).
     */
    constructor(channel: Channel, event: string, payload: unknown, timeout: number);
    /** Registers a callback for an outcome and returns the push, for chaining. */
    receive(status: PushStatus, callback: (response?: any) => any): this;
    /** Reports whether the push received this outcome. */
    hasReceived(status: PushStatus): boolean;
    /** Reports whether the push went out on the connection. */
    get sent(): boolean;
    /** Sends the push with a fresh ref and starts waiting for its reply (made by Channel.push; there is no need to call it). */
    send(): void;
    /** Forgets the previous attempt and sends again with a new timeout. */
    resend(timeout: number): void;
}
