/**
 * The long-poll transport: Phoenix's LongPoll wire over HTTP, behind the
 * WebSocket API the socket uses, for networks that break WebSockets.
 * Constructed like phoenix.js's `LongPoll` (`new LongPoll(url, protocols)`),
 * so either socket can take it as its `transport`.
 * @module
 */
/**
 * A WebSocket-like connection over long-poll HTTP requests to the socket's
 * `/longpoll` endpoint. Messages from the server arrive as the `data` of
 * message events: text frames as strings, binary ones as ArrayBuffers.
 */
export declare class LongPoll {
    binaryType: string;
    readyState: number;
    /** Request timeout (ms); a socket sets it. Must exceed the server's poll window (10 s). */
    timeout: number;
    onopen: ((ev: any) => void) | null;
    onclose: ((ev: any) => void) | null;
    onerror: ((ev: any) => void) | null;
    onmessage: ((ev: any) => void) | null;
    private readonly url;
    private readonly authToken;
    private token;
    private ctl;
    private batch;
    private sending;
    constructor(endPoint: string, protocols?: string | string[]);
    private endpoint;
    private call;
    private poll;
    /** Queues a frame; frames of one turn of the event loop go in one POST. */
    send(data: string | ArrayBuffer | ArrayBufferView): void;
    private flush;
    /** Closes: pending requests are cancelled and queued frames dropped. */
    close(code?: number, reason?: string): void;
    private fail;
    private stop;
}
