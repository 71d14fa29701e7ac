// Presence: syncState / syncDiff as pure functions (checked against the
// official phoenix.js implementation on random histories), and the
// Presence class bound to a channel.

import { test } from "node:test"
import assert from "node:assert/strict"
import { Presence as PhoenixPresence } from "phoenix"
import {
  Presence,
  listPresences,
  syncDiff,
  syncState,
  type PresenceChannel,
  type PresenceDiff,
  type PresenceEntry,
  type PresenceState,
} from "../src/presence"
import { seeded } from "./helpers"

const meta = (ref: string, extra: Record<string, unknown> = {}) => ({ phx_ref: ref, ...extra })
const entry = (...refs: string[]): PresenceEntry => ({ metas: refs.map((r) => meta(r)) })
const refsOf = (s: PresenceState): Record<string, string[]> => {
  const out: Record<string, string[]> = {}
  for (const k of Object.keys(s).sort()) out[k] = s[k].metas.map((m) => m.phx_ref)
  return out
}

/** Records callbacks as strings: "join key cur=[refs] new=[refs]". */
function recorder() {
  const calls: string[] = []
  const refs = (e: PresenceEntry | undefined) => (e ? "[" + e.metas.map((m) => m.phx_ref).join(",") + "]" : "-")
  return {
    calls,
    onJoin: (key: string, cur: PresenceEntry | undefined, joined: PresenceEntry) => calls.push(`join ${key} cur=${refs(cur)} new=${refs(joined)}`),
    onLeave: (key: string, cur: PresenceEntry, left: PresenceEntry) => calls.push(`leave ${key} cur=${refs(cur)} left=${refs(left)}`),
  }
}

/** Freezes a value deeply, so that a function that modifies it throws. */
function frozen<T>(v: T): T {
  if (v && typeof v === "object") {
    for (const k of Object.keys(v)) frozen((v as any)[k])
    Object.freeze(v)
  }
  return v
}

test("syncState from nothing joins every key", () => {
  const r = recorder()
  const s = syncState({}, frozen({ alice: entry("a1"), bob: entry("b1", "b2") }), r.onJoin, r.onLeave)
  assert.deepEqual(refsOf(s), { alice: ["a1"], bob: ["b1", "b2"] })
  assert.deepEqual(r.calls.sort(), ["join alice cur=- new=[a1]", "join bob cur=- new=[b1,b2]"])
  assert.equal(Object.getPrototypeOf(s), null)
})

test("syncState reports only what changed, and nothing for the same state twice", () => {
  const before = frozen(syncState({}, { alice: entry("a1", "a2"), bob: entry("b1") }))
  const r = recorder()
  const s = syncState(before, frozen({ alice: entry("a2", "a3"), carol: entry("c1") }), r.onJoin, r.onLeave)
  assert.deepEqual(refsOf(s), { alice: ["a2", "a3"], carol: ["c1"] })
  assert.deepEqual(r.calls.sort(), [
    "join alice cur=[a1,a2] new=[a3]",
    "join carol cur=- new=[c1]",
    "leave alice cur=[a2,a3] left=[a1]",
    "leave bob cur=[] left=[b1]",
  ])
  const again = recorder()
  assert.deepEqual(refsOf(syncState(s, { alice: entry("a2", "a3"), carol: entry("c1") }, again.onJoin, again.onLeave)), refsOf(s))
  assert.deepEqual(again.calls, [])
})

test("syncDiff: joins add metas after the present ones, leaves remove them, empty keys go", () => {
  const s0 = frozen(syncState({}, { alice: entry("a1") }))
  const r = recorder()
  const s1 = syncDiff(s0, frozen({ joins: { alice: entry("a2"), bob: entry("b1") }, leaves: {} }), r.onJoin, r.onLeave)
  assert.deepEqual(refsOf(s1), { alice: ["a1", "a2"], bob: ["b1"] })
  const s2 = syncDiff(s1, frozen({ joins: {}, leaves: { alice: entry("a1", "a2"), bob: entry("nope") } }), r.onJoin, r.onLeave)
  assert.deepEqual(refsOf(s2), { bob: ["b1"] })
  assert.deepEqual(r.calls, [
    "join alice cur=[a1] new=[a2]",
    "join bob cur=- new=[b1]",
    "leave alice cur=[] left=[a1,a2]",
    "leave bob cur=[b1] left=[nope]",
  ])
  assert.deepEqual(refsOf(s0), { alice: ["a1"] }, "the input state is untouched")
})

test("syncDiff: an update (old meta leaves, new one joins) keeps one meta with the new fields", () => {
  const s0 = syncState({}, { bob: { metas: [meta("b1", { status: "online" })] } })
  const diff: PresenceDiff = {
    joins: { bob: { metas: [meta("b2", { phx_ref_prev: "b1", status: "typing" })] } },
    leaves: { bob: { metas: [meta("b1", { status: "online" })] } },
  }
  const s1 = syncDiff(s0, frozen(diff))
  assert.deepEqual(s1.bob.metas, [{ phx_ref: "b2", phx_ref_prev: "b1", status: "typing" }])
})

test("syncDiff: a meta that joined and left within one diff is gone; a repeated join replaces", () => {
  const s = syncDiff(syncState({}, { k: entry("x") }), { joins: { k: entry("x", "y", "z") }, leaves: { k: entry("z") } })
  assert.deepEqual(refsOf(s), { k: ["x", "y"] })
})

test("keys that are Object.prototype names are plain keys", () => {
  const payload = JSON.parse('{"__proto__":{"metas":[{"phx_ref":"p1"}]},"constructor":{"metas":[{"phx_ref":"c1"}]}}')
  const s = syncState({}, payload)
  assert.deepEqual(Object.keys(s).sort(), ["__proto__", "constructor"])
  assert.deepEqual(s["__proto__"].metas, [{ phx_ref: "p1" }])
  assert.deepEqual(s["constructor"].metas, [{ phx_ref: "c1" }])
  const s2 = syncDiff(s, JSON.parse('{"joins":{},"leaves":{"__proto__":{"metas":[{"phx_ref":"p1"}]}}}'))
  assert.deepEqual(Object.keys(s2), ["constructor"])
  assert.equal(({} as any).metas, undefined, "Object.prototype untouched")
})

test("listPresences maps each key", () => {
  const s = syncState({}, { alice: entry("a1", "a2"), bob: entry("b1") })
  assert.deepEqual(listPresences(s, (key, p) => `${key}:${p.metas.length}`).sort(), ["alice:2", "bob:1"])
  assert.equal(listPresences(s).length, 2)
})

// The same random histories through phoenix.js's Presence and ours: the
// states (keys, refs, their order, metas) and the callbacks must agree.
test("syncState and syncDiff agree with phoenix.js on random histories", () => {
  const rand = seeded(42)
  const pick = <T>(a: T[]): T => a[Math.floor(rand() * a.length)]
  const keys = ["alice", "bob", "carol", "__proto__", "toString"]
  const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v))
  let refSeq = 0
  for (let run = 0; run < 300; run++) {
    let ours: PresenceState = {}
    let theirs: any = {}
    const live: { key: string; ref: string }[] = []
    for (let step = 0; step < 30; step++) {
      const ro = recorder()
      const rt = recorder()
      if (rand() < 0.2) {
        // A presence_state: the live metas, some of them lost or new.
        const st: PresenceState = Object.create(null)
        for (const l of live) {
          if (rand() < 0.8) (st[l.key] ??= { metas: [] }).metas.push(meta(l.ref, { n: step }))
        }
        if (rand() < 0.5) (st[pick(keys)] ??= { metas: [] }).metas.push(meta(`r${++refSeq}`))
        ours = syncState(ours, clone(st), ro.onJoin, ro.onLeave)
        theirs = PhoenixPresence.syncState(theirs, clone(st), rt.onJoin as any, rt.onLeave as any)
      } else {
        const diff: PresenceDiff = { joins: Object.create(null), leaves: Object.create(null) }
        const n = 1 + Math.floor(rand() * 4)
        for (let i = 0; i < n; i++) {
          const r = rand()
          if (r < 0.45 || live.length === 0) {
            const l = { key: pick(keys), ref: `r${++refSeq}` }
            live.push(l)
            ;(diff.joins[l.key] ??= { metas: [] }).metas.push(meta(l.ref, { s: "on" }))
          } else if (r < 0.85) {
            const l = live.splice(Math.floor(rand() * live.length), 1)[0]
            ;(diff.leaves[l.key] ??= { metas: [] }).metas.push(meta(l.ref))
          } else if (r < 0.93) {
            // A leave of something never seen.
            ;(diff.leaves[pick(keys)] ??= { metas: [] }).metas.push(meta(`ghost${++refSeq}`))
          } else {
            // A join repeated (as after a fresh state).
            const l = pick(live)
            ;(diff.joins[l.key] ??= { metas: [] }).metas.push(meta(l.ref, { again: true }))
          }
        }
        ours = syncDiff(ours, clone(diff), ro.onJoin, ro.onLeave)
        theirs = PhoenixPresence.syncDiff(theirs, clone(diff), rt.onJoin as any, rt.onLeave as any)
      }
      assert.deepEqual(clone(ours), clone(theirs), `run ${run} step ${step}: states differ`)
      assert.deepEqual(ro.calls, rt.calls, `run ${run} step ${step}: callbacks differ`)
    }
  }
})

/** A channel stand-in: the test triggers events and sets the join ref. */
function fakeChannel() {
  const bindings: { event: string; ref: number; cb: (p: any) => void }[] = []
  let n = 0
  const ch = {
    ref: null as string | null,
    on(event: string, cb: (p: any) => void) {
      bindings.push({ event, ref: ++n, cb })
      return n
    },
    off(event: string, ref?: number) {
      for (let i = bindings.length - 1; i >= 0; i--) {
        if (bindings[i].event === event && (ref === undefined || bindings[i].ref === ref)) bindings.splice(i, 1)
      }
    },
    joinRef() {
      return ch.ref
    },
    trigger(event: string, payload: unknown) {
      for (const b of bindings.filter((x) => x.event === event)) b.cb(JSON.parse(JSON.stringify(payload)))
    },
    bindings,
  }
  return ch satisfies PresenceChannel
}

test("Presence holds diffs until the join's state, then applies them", () => {
  const ch = fakeChannel()
  const p = new Presence(ch)
  const seen: string[] = []
  p.onJoin((key) => seen.push("join " + key))
  p.onLeave((key) => seen.push("leave " + key))
  let syncs = 0
  p.onSync(() => syncs++)

  ch.ref = "1"
  // The diff of our own join may arrive before the state.
  ch.trigger("presence_diff", { joins: { bob: entry("b1") }, leaves: {} })
  assert.equal(syncs, 0)
  assert.deepEqual(p.list(), [])
  ch.trigger("presence_state", { alice: entry("a1"), bob: entry("b1") })
  assert.equal(syncs, 1)
  assert.deepEqual(refsOf(p.state), { alice: ["a1"], bob: ["b1"] })
  ch.trigger("presence_diff", { joins: {}, leaves: { alice: entry("a1") } })
  assert.equal(syncs, 2)
  assert.deepEqual(p.list((k) => k), ["bob"])
  assert.deepEqual(seen, ["join alice", "join bob", "join bob", "leave alice"])

  // A rejoin: diffs wait for the new join's state, which reconciles.
  ch.ref = "5"
  ch.trigger("presence_diff", { joins: { carol: entry("c1") }, leaves: {} })
  assert.equal(syncs, 2)
  assert.equal(p.inPendingSyncState(), true)
  ch.trigger("presence_state", { bob: entry("b1"), dave: entry("d1") })
  assert.equal(syncs, 3)
  assert.deepEqual(refsOf(p.state), { bob: ["b1"], carol: ["c1"], dave: ["d1"] })

  p.destroy()
  assert.equal(ch.bindings.length, 0)
  ch.trigger("presence_diff", { joins: { eve: entry("e1") }, leaves: {} })
  assert.deepEqual(refsOf(p.state), { bob: ["b1"], carol: ["c1"], dave: ["d1"] })
})

test("Presence with custom event names", () => {
  const ch = fakeChannel()
  const p = new Presence(ch, { events: { state: "st", diff: "df" } })
  ch.ref = "1"
  ch.trigger("st", { alice: entry("a1") })
  ch.trigger("df", { joins: { bob: entry("b1") }, leaves: {} })
  assert.deepEqual(refsOf(p.state), { alice: ["a1"], bob: ["b1"] })
})
