/**
 * The Phoenix V2 wire format, JSON and binary, with Hearth's binary
 * broadcast that carries a stream position.
 * @module
 */

import { EVENTS } from "./constants.js"

/**
 * One decoded message. Refs are strings or null, as on the wire. The payload
 * is a JSON value, or an ArrayBuffer for binary frames (a binary reply's
 * payload is `{status, response: ArrayBuffer}`).
 */
export interface Message {
  join_ref: string | null
  ref: string | null
  topic: string
  event: string
  payload: any
}

/** Binary frame kinds. */
export const KIND = { push: 0, reply: 1, broadcast: 2, broadcastPos: 3 } as const

const HEADER = { push: 5, serverPush: 4, reply: 5, broadcast: 3, broadcastPos: 4 } as const

/** Reports whether v is binary data the client sends as a binary frame. */
export function isBinary(v: unknown): v is ArrayBuffer | ArrayBufferView {
  return v instanceof ArrayBuffer || ArrayBuffer.isView(v) || Object.prototype.toString.call(v) === "[object ArrayBuffer]"
}

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
export class Serializer {
  private readonly encoder = new TextEncoder()
  private readonly decoder = new TextDecoder()

  /** Encodes a message to a text or binary frame. It throws when a binary header field is longer than 255 bytes. */
  encode(msg: Message): string | ArrayBuffer {
    if (isBinary(msg.payload)) return this.encodeBinary(msg, msg.payload)
    return JSON.stringify([msg.join_ref, msg.ref, msg.topic, msg.event, msg.payload])
  }

  /** Decodes a frame. It throws an Error saying what is wrong with a malformed one. */
  decode(raw: string | ArrayBuffer): Message {
    if (typeof raw === "string") return this.decodeText(raw)
    if (isBinary(raw)) return this.decodeBinary(raw as ArrayBuffer)
    throw new Error("hearth: cannot decode a frame of type " + typeof raw)
  }

  private decodeText(raw: string): Message {
    const a: unknown = JSON.parse(raw)
    if (!Array.isArray(a) || a.length !== 5) throw new Error("hearth: message is not a 5-element JSON array")
    const [joinRef, ref, topic, event, payload] = a as unknown[]
    if (!isRef(joinRef) || !isRef(ref)) throw new Error("hearth: message refs must be strings or null")
    if (typeof topic !== "string" || typeof event !== "string") throw new Error("hearth: message topic and event must be strings")
    return { join_ref: joinRef, ref, topic, event, payload }
  }

  private encodeBinary(msg: Message, payload: ArrayBuffer | ArrayBufferView): ArrayBuffer {
    const fields = [msg.join_ref ?? "", msg.ref ?? "", msg.topic, msg.event].map((s, i) => {
      const b = this.encoder.encode(s)
      if (b.length > 255) throw new Error(`hearth: ${FIELD_NAMES[i]} is longer than 255 bytes and cannot be sent in a binary frame`)
      return b
    })
    const body = ArrayBuffer.isView(payload)
      ? new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength)
      : new Uint8Array(payload)
    let size = HEADER.push + body.length
    for (const f of fields) size += f.length
    const out = new Uint8Array(size)
    out[0] = KIND.push
    let p = 1
    for (const f of fields) out[p++] = f.length
    for (const f of fields) {
      out.set(f, p)
      p += f.length
    }
    out.set(body, p)
    return out.buffer
  }

  private decodeBinary(buf: ArrayBuffer): Message {
    const b = new Uint8Array(buf)
    if (b.length === 0) throw new Error("hearth: empty binary message")
    const kind = b[0]
    const header = kind === KIND.push ? HEADER.serverPush
      : kind === KIND.reply ? HEADER.reply
        : kind === KIND.broadcast ? HEADER.broadcast
          : kind === KIND.broadcastPos ? HEADER.broadcastPos
            : -1
    if (header < 0) throw new Error(`hearth: unknown binary message kind ${kind}`)
    if (b.length < header) throw new Error("hearth: binary message shorter than its header")
    let p = header
    const field = (len: number): string => {
      if (p + len > b.length) throw new Error("hearth: binary message shorter than its header says")
      const s = this.decoder.decode(b.subarray(p, p + len))
      p += len
      return s
    }
    const rest = (): ArrayBuffer => buf.slice(p)
    switch (kind) {
      case KIND.push: {
        const joinRef = field(b[1]), topic = field(b[2]), event = field(b[3])
        return { join_ref: orNull(joinRef), ref: null, topic, event, payload: rest() }
      }
      case KIND.reply: {
        const joinRef = field(b[1]), ref = field(b[2]), topic = field(b[3]), status = field(b[4])
        return { join_ref: orNull(joinRef), ref: orNull(ref), topic, event: EVENTS.reply, payload: { status, response: rest() } }
      }
      case KIND.broadcast: {
        const topic = field(b[1]), event = field(b[2])
        return { join_ref: null, ref: null, topic, event, payload: rest() }
      }
      default: {
        const topic = field(b[1]), event = field(b[2]), pos = field(b[3])
        return { join_ref: null, ref: orNull(pos), topic, event, payload: rest() }
      }
    }
  }
}

const FIELD_NAMES = ["join_ref", "ref", "topic", "event"]

function isRef(v: unknown): v is string | null {
  return v === null || typeof v === "string"
}

function orNull(s: string): string | null {
  return s === "" ? null : s
}
