// The serializer against the golden frames shared with the Go tests
// (testdata/golden): the client encodes client frames exactly, and decodes
// server frames to the expected messages.

import { test } from "node:test"
import assert from "node:assert/strict"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { Serializer, type Message } from "../src/index"
import { repoRoot } from "./helpers"

interface GoldenMessage {
  join_ref: string | null
  ref: string | null
  topic: string
  event: string
  payload?: unknown
  payload_hex?: string
  status?: string
}

interface Golden {
  frames: Array<{ name: string; encoding: "text" | "binary"; frame: string; message: GoldenMessage }>
  invalid: Array<{ name: string; encoding: "text" | "binary"; frame: string }>
}

function golden(name: string): Golden {
  const g = JSON.parse(readFileSync(join(repoRoot(), "testdata", "golden", name), "utf8")) as Golden
  assert.ok(g.frames.length > 0 && g.invalid.length > 0, name + " has no frames")
  return g
}

function fromHex(hex: string): ArrayBuffer {
  const b = new Uint8Array(hex.length / 2)
  for (let i = 0; i < b.length; i++) b[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16)
  return b.buffer
}

function toHex(buf: ArrayBuffer): string {
  return Array.from(new Uint8Array(buf), (x) => x.toString(16).padStart(2, "0")).join("")
}

const s = new Serializer()

for (const f of golden("client-frames.json").frames) {
  test(`encodes client frame: ${f.name}`, () => {
    const m = f.message
    const msg: Message = {
      join_ref: m.join_ref, ref: m.ref, topic: m.topic, event: m.event,
      payload: m.payload_hex !== undefined ? fromHex(m.payload_hex) : m.payload,
    }
    const out = s.encode(msg)
    if (f.encoding === "text") {
      assert.equal(typeof out, "string")
      assert.equal(out, f.frame)
    } else {
      assert.ok(out instanceof ArrayBuffer)
      assert.equal(toHex(out), f.frame)
    }
  })
}

for (const f of golden("server-frames.json").frames) {
  test(`decodes server frame: ${f.name}`, () => {
    const got = s.decode(f.encoding === "text" ? f.frame : fromHex(f.frame))
    const m = f.message
    assert.equal(got.join_ref, m.join_ref)
    assert.equal(got.ref, m.ref)
    assert.equal(got.topic, m.topic)
    assert.equal(got.event, m.event)
    if (m.payload_hex === undefined) {
      assert.deepEqual(got.payload, m.payload)
    } else if (m.event === "phx_reply") {
      assert.equal(got.payload.status, m.status)
      assert.ok(got.payload.response instanceof ArrayBuffer)
      assert.equal(toHex(got.payload.response), m.payload_hex)
    } else {
      assert.ok(got.payload instanceof ArrayBuffer)
      assert.equal(toHex(got.payload), m.payload_hex)
    }
  })
}

for (const f of golden("server-frames.json").invalid) {
  test(`rejects invalid server frame: ${f.name}`, () => {
    assert.throws(() => s.decode(f.encoding === "text" ? f.frame : fromHex(f.frame)), Error)
  })
}

test("binary payload may be a typed array view", () => {
  const backing = new Uint8Array([9, 9, 1, 2, 3, 9])
  const out = s.encode({ join_ref: "1", ref: "2", topic: "t", event: "e", payload: backing.subarray(2, 5) })
  assert.equal(toHex(out as ArrayBuffer), "0001010101" + "31" + "32" + "74" + "65" + "010203")
})

test("binary header fields over 255 bytes are refused, not truncated", () => {
  const topic = "room:" + "é".repeat(126) // 257 bytes, 131 characters
  assert.throws(() => s.encode({ join_ref: "1", ref: "2", topic, event: "e", payload: new ArrayBuffer(1) }), /topic is longer than 255 bytes/)
})

test("a decoded binary payload does not alias the frame", () => {
  const frame = fromHex("020104" + "74" + "66696c65" + "0102")
  const m = s.decode(frame)
  new Uint8Array(frame)[6] = 0xff
  assert.equal(toHex(m.payload), "0102")
})
