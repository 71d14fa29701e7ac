/**
 * The Phoenix V2 wire format, JSON and binary, with Hearth's binary
 * broadcast that carries a stream position.
 * @module
 */
/**
 * One decoded message. Refs are strings or null, as on the wire. The payload
 * is a JSON value, or an ArrayBuffer for binary frames (a binary reply's
 * payload is `{status, response: ArrayBuffer}`).
 */
export interface Message {
    join_ref: string | null;
    ref: string | null;
    topic: string;
    event: string;
    payload: any;
}
/** Binary frame kinds. */
export declare const KIND: {
    readonly push: 0;
    readonly reply: 1;
    readonly broadcast: 2;
    readonly broadcastPos: 3;
};
/** Reports whether v is binary data the client sends as a binary frame. */
export declare function isBinary(v: unknown): v is ArrayBuffer | ArrayBufferView;
/**
 * Encodes and decodes messages. Text frames are the JSON array
 * `[join_ref, ref, topic, event, payload]`. A push whose payload is an
 * ArrayBuffer (or a typed array) is sent as a binary frame
 * `[0, join_ref_len, ref_len, topic_len, event_len] join_ref ref topic event payload`,
 * lengths in UTF-8 bytes. Incoming binary frames are server pushes (kind 0),
 * replies (kind 1), broadcasts (kind 2) and Hearth's broadcasts with a
 * position (kind 3, `[3, topic_len, event_len, pos_len] topic event pos payload`,
 * the position decoded into the ref as on a JSON broadcast).
 */
export declare class Serializer {
    private readonly encoder;
    private readonly decoder;
    /** Encodes a message to a text or binary frame. It throws when a binary header field is longer than 255 bytes. */
    encode(msg: Message): string | ArrayBuffer;
    /** Decodes a frame. It throws an Error saying what is wrong with a malformed one. */
    decode(raw: string | ArrayBuffer): Message;
    private decodeText;
    private encodeBinary;
    private decodeBinary;
}
