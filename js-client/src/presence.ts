/**
 * Presence: who is in a topic, as the server's `presence_state` and
 * `presence_diff` events describe it (Phoenix Presence's wire format, which
 * Hearth's server speaks).
 *
 * The state maps each key (a user, usually) to its metas, one per tab or
 * device, each identified by its `phx_ref`:
 *
 *     { "alice": { "metas": [{ "phx_ref": "F1", "status": "online" }] } }
 *
 * `syncState` and `syncDiff` are pure functions over that shape (they
 * return a new state and leave their arguments alone); the `Presence` class
 * binds them to a channel.
 *
 *     const presence = new Presence(channel)
 *     presence.onSync(() => render(presence.list((key, { metas }) => ({ key, count: metas.length }))))
 *     channel.join()
 *
 * @module
 */

/** One meta of a key: what one tracked channel said, plus its `phx_ref`. */
export interface PresenceMeta {
  phx_ref: string
  /** Set on the meta that replaced another one (an update). */
  phx_ref_prev?: string
  [field: string]: unknown
}

/** A key's presence: its metas, oldest first. */
export interface PresenceEntry {
  metas: PresenceMeta[]
}

/** Every key present in a topic. Objects built here have no prototype, so any key is safe. */
export type PresenceState = Record<string, PresenceEntry>

/** A change: metas that joined and metas that left, by key. */
export interface PresenceDiff {
  joins: PresenceState
  leaves: PresenceState
}

/**
 * Called for each key with joining metas: `current` is the key's entry
 * before the change (undefined when the key was absent), `joined` holds the
 * metas that joined.
 */
export type JoinCallback = (key: string, current: PresenceEntry | undefined, joined: PresenceEntry) => void

/**
 * Called for each key with leaving metas: `current` is the key's entry after
 * the change (no metas left means the key is gone), `left` holds the metas
 * that left.
 */
export type LeaveCallback = (key: string, current: PresenceEntry, left: PresenceEntry) => void

const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k)

function emptyState(): PresenceState {
  return Object.create(null) as PresenceState
}

/** A copy of a JSON value (metas are JSON). */
function copy<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T
}

/** The keys of a state object, own properties only. */
function keysOf(s: PresenceState | undefined | null): string[] {
  return s ? Object.keys(s) : []
}

function get(s: PresenceState, key: string): PresenceEntry | undefined {
  return hasOwn(s, key) ? s[key] : undefined
}

/** A shallow copy of a state, into an object without prototype. */
function shallow(s: PresenceState | undefined | null): PresenceState {
  const out = emptyState()
  for (const k of keysOf(s)) out[k] = (s as PresenceState)[k]
  return out
}

/**
 * Applies a `presence_diff` to a state and returns the new state; `state`
 * and `diff` are not modified. Joins are applied before leaves, so a diff
 * may carry a meta that joined and left within one interval, and an update
 * (the old meta leaving, the new one joining). A joining meta whose
 * `phx_ref` is already present replaces it; a leaving meta that is absent
 * is ignored. Callbacks run once per key with joins, then once per key
 * with leaves (for keys present in the state).
 */
export function syncDiff(state: PresenceState, diff: PresenceDiff, onJoin?: JoinCallback, onLeave?: LeaveCallback): PresenceState {
  const next = shallow(state)
  const joins = diff.joins ?? {}
  const leaves = diff.leaves ?? {}
  for (const key of keysOf(joins)) {
    const joined = copy(joins[key])
    const current = get(next, key)
    const newRefs = new Set(joined.metas.map((m) => m.phx_ref))
    const kept = current ? current.metas.filter((m) => !newRefs.has(m.phx_ref)) : []
    next[key] = { metas: [...kept, ...copy(joined.metas)] }
    onJoin?.(key, current, joined)
  }
  for (const key of keysOf(leaves)) {
    const current = get(next, key)
    if (!current) continue
    const left = copy(leaves[key])
    const gone = new Set(left.metas.map((m) => m.phx_ref))
    const remaining: PresenceEntry = { metas: current.metas.filter((m) => !gone.has(m.phx_ref)) }
    if (remaining.metas.length === 0) delete next[key]
    else next[key] = remaining
    onLeave?.(key, remaining, left)
  }
  return next
}

/**
 * Replaces a state with a `presence_state` from the server and returns the
 * new state; the arguments are not modified. Callbacks run for what
 * changed: metas the server has that the state had not (joins), and metas
 * the state had that the server no longer has (leaves). Receiving the same
 * state twice changes nothing and calls nothing.
 */
export function syncState(state: PresenceState, newState: PresenceState, onJoin?: JoinCallback, onLeave?: LeaveCallback): PresenceState {
  const joins = emptyState()
  const leaves = emptyState()
  for (const key of keysOf(state)) {
    if (!hasOwn(newState, key)) leaves[key] = state[key]
  }
  for (const key of keysOf(newState)) {
    const incoming = newState[key]
    const current = get(state, key)
    if (!current) {
      joins[key] = incoming
      continue
    }
    const curRefs = new Set(current.metas.map((m) => m.phx_ref))
    const newRefs = new Set(incoming.metas.map((m) => m.phx_ref))
    const joined = incoming.metas.filter((m) => !curRefs.has(m.phx_ref))
    const left = current.metas.filter((m) => !newRefs.has(m.phx_ref))
    if (joined.length > 0) joins[key] = { metas: joined }
    if (left.length > 0) leaves[key] = { metas: left }
  }
  return syncDiff(state, { joins, leaves }, onJoin, onLeave)
}

/**
 * Lists a state's keys, each turned into a value by `by` (default: the
 * entry itself).
 */
export function listPresences<T = PresenceEntry>(state: PresenceState, by?: (key: string, presence: PresenceEntry) => T): T[] {
  const pick = by ?? ((_key: string, p: PresenceEntry) => p as unknown as T)
  return keysOf(state).map((key) => pick(key, state[key]))
}

/** What Presence needs of a channel: Hearth's Channel and phoenix.js's both fit. */
export interface PresenceChannel {
  on(event: string, callback: (payload: any) => void): number
  off(event: string, ref?: number): void
  joinRef(): string | null
}

/** phoenix.js's names of the presence types. */
export type PresenceOpts = PresenceOptions
export type PresenceOnJoinCallback = JoinCallback
export type PresenceOnLeaveCallback = LeaveCallback

/** Presence options. */
export interface PresenceOptions {
  /** Event names; the defaults are Phoenix's. */
  events?: { state: string; diff: string }
}

/**
 * The presence of a channel's topic, kept in step with the server. Create
 * it before joining the channel. Diffs that arrive before the state of the
 * current join (they can, around a join or a rejoin) are held and applied
 * after it.
 */
export class Presence {
  /** The current state. Treat it as read-only. */
  state: PresenceState = emptyState()
  private pending: PresenceDiff[] = []
  private syncedRef: string | null = null
  private joinCb: JoinCallback = () => {}
  private leaveCb: LeaveCallback = () => {}
  private syncCb: () => void = () => {}
  private readonly events: { state: string; diff: string }
  private readonly refs: [string, number][]

  constructor(private readonly channel: PresenceChannel, opts: PresenceOptions = {}) {
    this.events = opts.events ?? { state: "presence_state", diff: "presence_diff" }
    this.refs = [
      [this.events.state, channel.on(this.events.state, (s: PresenceState) => this.receiveState(s))],
      [this.events.diff, channel.on(this.events.diff, (d: PresenceDiff) => this.receiveDiff(d))],
    ]
  }

  /** Runs callback for each key with joining metas (see JoinCallback). */
  onJoin(callback: JoinCallback): void {
    this.joinCb = callback
  }

  /** Runs callback for each key with leaving metas (see LeaveCallback). */
  onLeave(callback: LeaveCallback): void {
    this.leaveCb = callback
  }

  /** Runs callback after every state or diff was applied. */
  onSync(callback: () => unknown): void {
    this.syncCb = callback
  }

  /** Lists the keys present, each turned into a value by `by` (default: the entry). */
  list<T = PresenceEntry>(by?: (key: string, presence: PresenceEntry) => T): T[] {
    return listPresences(this.state, by)
  }

  /** Merges a full state into state (as phoenix.js's `Presence.syncState`); see the function syncState. */
  static syncState(state: object, newState: object, onJoin?: JoinCallback, onLeave?: LeaveCallback): PresenceState {
    return syncState(state as PresenceState, newState as PresenceState, onJoin, onLeave)
  }

  /** Applies a diff to state (as phoenix.js's `Presence.syncDiff`); see the function syncDiff. */
  static syncDiff(state: object, diff: { joins: object; leaves: object }, onJoin?: JoinCallback, onLeave?: LeaveCallback): PresenceState {
    return syncDiff(state as PresenceState, diff as PresenceDiff, onJoin, onLeave)
  }

  /** Lists a state's keys (as phoenix.js's `Presence.list`); see listPresences. */
  static list<T = PresenceEntry>(presences: object, chooser?: (key: string, presence: PresenceEntry) => T): T[] {
    return listPresences(presences as PresenceState, chooser)
  }

  /** Stops following the channel. */
  destroy(): void {
    for (const [event, ref] of this.refs) this.channel.off(event, ref)
    this.pending = []
  }

  /** Reports whether diffs are held until the current join's state arrives. */
  inPendingSyncState(): boolean {
    return this.syncedRef === null || this.syncedRef !== this.channel.joinRef()
  }

  private receiveState(s: PresenceState): void {
    this.syncedRef = this.channel.joinRef()
    this.state = syncState(this.state, s, this.joinCb, this.leaveCb)
    const held = this.pending
    this.pending = []
    for (const d of held) this.state = syncDiff(this.state, d, this.joinCb, this.leaveCb)
    this.syncCb()
  }

  private receiveDiff(d: PresenceDiff): void {
    if (this.inPendingSyncState()) {
      this.pending.push(d)
      return
    }
    this.state = syncDiff(this.state, d, this.joinCb, this.leaveCb)
    this.syncCb()
  }
}
