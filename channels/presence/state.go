package presence

import (
	"encoding/json"
	"time"

	"github.com/hearth-rt/hearth/channels"
)

// The replicated view: every node keeps the presences of the whole cluster,
// per topic and key. Everything in this file runs under Presence.mu.
//
// Cost model: tracking, untracking and applying a remote change are O(1)
// map operations plus O(metas of the key), which is small (one meta per
// tab or device). A node that times out costs O(its entries). Nothing
// walks a topic's members except encoding a presence_state for a joining
// client, which must contain them all anyway; that encoding is shared by
// the clients joining within one diff interval (see snapshot).

// entry is one meta: a key present in a topic through one channel of one
// node. Its identity is its ref (phx_ref), unique in the cluster. The
// fields are immutable once the entry is inserted, except pending.
type entry struct {
	topic *topicState
	key   *keyState
	ref   string
	meta  []byte // the JSON object sent to clients: {"phx_ref":...,...}
	owner *member
	ch    *channels.Channel // the tracking channel, for local entries
}

// keyState is a key's metas in one topic, in the order they joined.
type keyState struct {
	name   string
	quoted []byte // name as a JSON string
	metas  []*entry
}

// topicState is one topic's presences and its pending diff.
type topicState struct {
	name   string
	quoted []byte
	keys   map[string]*keyState
	metas  int
	// state caches the encoded presence_state payload until the next
	// diff goes out (see snapshot); nil when not built. stateJoins and
	// stateLeaves are the lengths of joins and leaves when it was built.
	state                   []byte
	stateJoins, stateLeaves int
	// The diff not yet sent to this node's subscribers. An entry may be
	// in both lists when it joined and left within one interval.
	joins, leaves []*entry
	dirty         bool // in Presence.dirty
}

// member is one node incarnation of the cluster (this one included): the
// owner of the entries its sockets tracked.
type member struct {
	node, inc string
	self      bool
	entries   map[string]*entry // by ref

	// Remote members only.
	seq      uint64    // the last message applied (messages are numbered 1, 2, ...)
	lastSeen time.Time // when anything was last received from it
	asked    time.Time // when its state was last requested
	asm      *assembly // a state transfer being received
}

// assembly collects the chunks of a member's state transfer.
type assembly struct {
	next  int    // the part expected next
	total int    // the number of parts
	seq   uint64 // the seq of the last part received
	ops   []wireOp
}

func memberKey(node, inc string) string { return node + "\x00" + inc }

func quote(s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return b
}

// topic returns the state of a topic, creating it when create is true.
func (p *Presence) topic(name string, create bool) *topicState {
	t := p.topics[name]
	if t == nil && create {
		t = &topicState{name: name, quoted: quote(name), keys: make(map[string]*keyState)}
		p.topics[name] = t
	}
	return t
}

// markDirty records that a topic has a diff to send.
func (p *Presence) markDirty(t *topicState) {
	if !t.dirty {
		t.dirty = true
		p.dirty = append(p.dirty, t)
	}
}

// insert adds a new entry (its topic, key and owner set) to the view.
func (p *Presence) insert(e *entry) {
	t := e.topic
	k := t.keys[e.key.name]
	if k == nil {
		k = e.key
		t.keys[k.name] = k
	}
	e.key = k
	k.metas = append(k.metas, e)
	t.metas++
	e.owner.entries[e.ref] = e
	t.joins = append(t.joins, e)
	p.markDirty(t)
	if e.owner.self {
		p.queueOp(e, true)
	}
}

// remove takes an entry out of the view.
func (p *Presence) remove(e *entry) {
	t, k := e.topic, e.key
	for i, x := range k.metas {
		if x == e {
			k.metas = append(k.metas[:i], k.metas[i+1:]...)
			break
		}
	}
	if len(k.metas) == 0 && t.keys[k.name] == k {
		delete(t.keys, k.name)
	}
	t.metas--
	delete(e.owner.entries, e.ref)
	t.leaves = append(t.leaves, e)
	p.markDirty(t)
	if e.owner.self {
		p.queueOp(e, false)
	}
}

// newEntry prepares an entry of owner for topic and key, not yet inserted.
func (p *Presence) newEntry(owner *member, topic, key, ref string, meta []byte) *entry {
	t := p.topic(topic, true)
	k := t.keys[key]
	if k == nil {
		k = &keyState{name: key, quoted: quote(key)}
	}
	return &entry{topic: t, key: k, ref: ref, meta: meta, owner: owner}
}

// dropMember removes a member and all of its entries.
func (p *Presence) dropMember(m *member) {
	for _, e := range m.entries {
		p.remove(e)
	}
	delete(p.members, memberKey(m.node, m.inc))
}

// replaceEntries makes a remote member's entries exactly ops (a complete
// state transfer): entries it no longer has leave, new ones join, and
// those it still has stay untouched.
func (p *Presence) replaceEntries(m *member, ops []wireOp) {
	keep := make(map[string]struct{}, len(ops))
	for i := range ops {
		o := &ops[i]
		keep[o.Ref] = struct{}{}
		if _, ok := m.entries[o.Ref]; !ok && o.Meta != nil {
			p.insert(p.newEntry(m, o.Topic, o.Key, o.Ref, o.Meta))
		}
	}
	for ref, e := range m.entries {
		if _, ok := keep[ref]; !ok {
			p.remove(e)
		}
	}
}

// applyOps applies a member's changes: joins of refs it already has and
// leaves of refs it does not have are ignored.
func (p *Presence) applyOps(m *member, ops []wireOp) {
	for i := range ops {
		o := &ops[i]
		e, ok := m.entries[o.Ref]
		switch {
		case o.Meta != nil && !ok:
			p.insert(p.newEntry(m, o.Topic, o.Key, o.Ref, o.Meta))
		case o.Meta == nil && ok:
			p.remove(e)
		}
	}
}

// snapshot returns what a client joining a topic is sent: the
// presence_state payload ({key: {"metas": [meta, ...]}, ...}) and, when
// not nil, a presence_diff payload to apply after it. Together they show
// the topic as it is now. The results must not be modified.
//
// The state's encoding is cached until the topic's next diff goes out, so
// that the clients joining within one diff interval (a reconnect storm)
// share it: each of them gets the cached state plus the changes made since
// it was built, unless those grew past a fraction of the topic, in which
// case the state is encoded afresh.
func (p *Presence) snapshot(name string) (state, tail []byte) {
	t := p.topics[name]
	if t == nil {
		return []byte("{}"), nil
	}
	if t.state != nil {
		joins, leaves := t.joins[t.stateJoins:], t.leaves[t.stateLeaves:]
		n := len(joins) + len(leaves)
		if n == 0 {
			return t.state, nil
		}
		if n <= max(64, t.metas/8) {
			return t.state, encodeDiff(joins, leaves)
		}
	}
	size := 2
	for _, k := range t.keys {
		size += len(k.quoted) + 14
		for _, e := range k.metas {
			size += len(e.meta) + 1
		}
	}
	b := make([]byte, 0, size)
	b = append(b, '{')
	first := true
	for _, k := range t.keys {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendKey(b, k.quoted, k.metas)
	}
	b = append(b, '}')
	t.state, t.stateJoins, t.stateLeaves = b, len(t.joins), len(t.leaves)
	return b, nil
}

// appendKey appends "key":{"metas":[...]}.
func appendKey(b, quoted []byte, metas []*entry) []byte {
	b = append(b, quoted...)
	b = append(b, `:{"metas":[`...)
	for i, e := range metas {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e.meta...)
	}
	return append(b, "]}"...)
}

// takeDiff returns a dirty topic's presence_diff payload and clears it;
// it drops the topic when it is empty. The cached state goes too: it may
// lack changes of this diff, which later joiners would then miss.
func (p *Presence) takeDiff(t *topicState) []byte {
	b := encodeDiff(t.joins, t.leaves)
	t.joins, t.leaves, t.dirty, t.state = nil, nil, false, nil
	if len(t.keys) == 0 && p.topics[t.name] == t {
		delete(p.topics, t.name)
	}
	return b
}

// encodeDiff encodes {"joins": {key: {"metas": [...]}}, "leaves": {...}},
// each key's metas in the order the changes happened.
func encodeDiff(joins, leaves []*entry) []byte {
	b := make([]byte, 0, 64+diffSize(joins)+diffSize(leaves))
	b = append(b, `{"joins":`...)
	b = appendGroups(b, joins)
	b = append(b, `,"leaves":`...)
	b = appendGroups(b, leaves)
	return append(b, '}')
}

func diffSize(list []*entry) int {
	n := 0
	for _, e := range list {
		n += len(e.key.quoted) + len(e.meta) + 16
	}
	return n
}

// appendGroups appends entries grouped by key as a JSON object.
func appendGroups(b []byte, list []*entry) []byte {
	if len(list) == 0 {
		return append(b, "{}"...)
	}
	if len(list) == 1 {
		e := list[0]
		b = append(b, '{')
		b = appendKey(b, e.key.quoted, list)
		return append(b, '}')
	}
	// Keys in order of first appearance. A key removed and added again
	// within the interval has two keyStates: group by name.
	index := make(map[string]int, len(list))
	var groups [][]*entry
	for _, e := range list {
		i, ok := index[e.key.name]
		if !ok {
			i = len(groups)
			index[e.key.name] = i
			groups = append(groups, nil)
		}
		groups[i] = append(groups[i], e)
	}
	b = append(b, '{')
	for i, g := range groups {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendKey(b, g[0].key.quoted, g)
	}
	return append(b, '}')
}
