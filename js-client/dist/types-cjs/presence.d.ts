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
    phx_ref: string;
    /** Set on the meta that replaced another one (an update). */
    phx_ref_prev?: string;
    [field: string]: unknown;
}
/** A key's presence: its metas, oldest first. */
export interface PresenceEntry {
    metas: PresenceMeta[];
}
/** Every key present in a topic. Objects built here have no prototype, so any key is safe. */
export type PresenceState = Record<string, PresenceEntry>;
/** A change: metas that joined and metas that left, by key. */
export interface PresenceDiff {
    joins: PresenceState;
    leaves: PresenceState;
}
/**
 * Called for each key with joining metas: `current` is the key's entry
 * before the change (undefined when the key was absent), `joined` holds the
 * metas that joined.
 */
export type JoinCallback = (key: string, current: PresenceEntry | undefined, joined: PresenceEntry) => void;
/**
 * Called for each key with leaving metas: `current` is the key's entry after
 * the change (no metas left means the key is gone), `left` holds the metas
 * that left.
 */
export type LeaveCallback = (key: string, current: PresenceEntry, left: PresenceEntry) => void;
/**
 * Applies a `presence_diff` to a state and returns the new state; `state`
 * and `diff` are not modified. Joins are applied before leaves, so a diff
 * may carry a meta that joined and left within one interval, and an update
 * (the old meta leaving, the new one joining). A joining meta whose
 * `phx_ref` is already present replaces it; a leaving meta that is absent
 * is ignored. Callbacks run once per key with joins, then once per key
 * with leaves (for keys present in the state).
 */
export declare function syncDiff(state: PresenceState, diff: PresenceDiff, onJoin?: JoinCallback, onLeave?: LeaveCallback): PresenceState;
/**
 * Replaces a state with a `presence_state` from the server and returns the
 * new state; the arguments are not modified. Callbacks run for what
 * changed: metas the server has that the state had not (joins), and metas
 * the state had that the server no longer has (leaves). Receiving the same
 * state twice changes nothing and calls nothing.
 */
export declare function syncState(state: PresenceState, newState: PresenceState, onJoin?: JoinCallback, onLeave?: LeaveCallback): PresenceState;
/**
 * Lists a state's keys, each turned into a value by `by` (default: the
 * entry itself).
 */
export declare function listPresences<T = PresenceEntry>(state: PresenceState, by?: (key: string, presence: PresenceEntry) => T): T[];
/** What Presence needs of a channel: Hearth's Channel and phoenix.js's both fit. */
export interface PresenceChannel {
    on(event: string, callback: (payload: any) => void): number;
    off(event: string, ref?: number): void;
    joinRef(): string | null;
}
/** phoenix.js's names of the presence types. */
export type PresenceOpts = PresenceOptions;
export type PresenceOnJoinCallback = JoinCallback;
export type PresenceOnLeaveCallback = LeaveCallback;
/** Presence options. */
export interface PresenceOptions {
    /** Event names; the defaults are Phoenix's. */
    events?: {
        state: string;
        diff: string;
    };
}
/**
 * The presence of a channel's topic, kept in step with the server. Create
 * it before joining the channel. Diffs that arrive before the state of the
 * current join (they can, around a join or a rejoin) are held and applied
 * after it.
 */
export declare class Presence {
    private readonly channel;
    /** The current state. Treat it as read-only. */
    state: PresenceState;
    private pending;
    private syncedRef;
    private joinCb;
    private leaveCb;
    private syncCb;
    private readonly events;
    private readonly refs;
    constructor(channel: PresenceChannel, opts?: PresenceOptions);
    /** Runs callback for each key with joining metas (see JoinCallback). */
    onJoin(callback: JoinCallback): void;
    /** Runs callback for each key with leaving metas (see LeaveCallback). */
    onLeave(callback: LeaveCallback): void;
    /** Runs callback after every state or diff was applied. */
    onSync(callback: () => unknown): void;
    /** Lists the keys present, each turned into a value by `by` (default: the entry). */
    list<T = PresenceEntry>(by?: (key: string, presence: PresenceEntry) => T): T[];
    /** Merges a full state into state (as phoenix.js's `Presence.syncState`); see the function syncState. */
    static syncState(state: object, newState: object, onJoin?: JoinCallback, onLeave?: LeaveCallback): PresenceState;
    /** Applies a diff to state (as phoenix.js's `Presence.syncDiff`); see the function syncDiff. */
    static syncDiff(state: object, diff: {
        joins: object;
        leaves: object;
    }, onJoin?: JoinCallback, onLeave?: LeaveCallback): PresenceState;
    /** Lists a state's keys (as phoenix.js's `Presence.list`); see listPresences. */
    static list<T = PresenceEntry>(presences: object, chooser?: (key: string, presence: PresenceEntry) => T): T[];
    /** Stops following the channel. */
    destroy(): void;
    /** Reports whether diffs are held until the current join's state arrives. */
    inPendingSyncState(): boolean;
    private receiveState;
    private receiveDiff;
}
