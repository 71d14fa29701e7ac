package presence

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"
)

// Cluster protocol. Each node incarnation (a member: node ID plus a random
// incarnation chosen at start) owns the entries its sockets track, and
// numbers the control messages it publishes 1, 2, 3... Brokers deliver a
// node's control messages in the order it published them (it publishes
// them one at a time), at most once. Every node applies the others'
// changes to its own copy of the view:
//
//   - presence.delta: changes (joins and leaves) of the sender's entries.
//   - presence.state: all of the sender's entries, in parts; once every
//     part arrived, they replace what the receiver had for the sender.
//   - presence.hb: the sender is alive; carries its last message number,
//     so a receiver notices a lost last delta.
//   - presence.sync: asks one member (or, at start, every member) for a
//     state transfer.
//   - presence.bye: the sender shuts down; its entries leave at once.
//
// A receiver that sees a gap in a member's numbering (a lost message, a
// member it does not know yet, a state transfer cut short) asks that
// member for its state, at most once per heartbeat interval until it is
// in step again. A member not heard from within Timeout is removed.
const (
	typeDelta     = "presence.delta"
	typeState     = "presence.state"
	typeHeartbeat = "presence.hb"
	typeSync      = "presence.sync"
	typeBye       = "presence.bye"
)

const (
	// maxMessage is the largest control message presence publishes, in
	// bytes of JSON. With the type prefix and the base64 the PostgreSQL
	// broker applies to control data, it stays under NOTIFY's limit.
	maxMessage = 5000
	// maxOutbox is how many unannounced changes may wait for the
	// publisher; beyond, they are replaced by a state transfer.
	maxOutbox = 10000
)

// wireMsg is a decoded presence control message.
type wireMsg struct {
	Node  string   `json:"n"`
	Inc   string   `json:"i"`
	Seq   uint64   `json:"s"`
	Part  int      `json:"p"`
	Total int      `json:"t"`
	ToN   string   `json:"tn"`
	ToI   string   `json:"ti"`
	Ops   []wireOp `json:"d"`
}

// wireOp is one change: [topic, key, ref, meta] for a join, [topic, key,
// ref] for a leave.
type wireOp struct {
	Topic, Key, Ref string
	Meta            json.RawMessage // nil for a leave
}

var errBadOp = errors.New("presence: malformed operation")

// UnmarshalJSON implements json.Unmarshaler.
func (o *wireOp) UnmarshalJSON(b []byte) error {
	var a []json.RawMessage
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	if len(a) != 3 && len(a) != 4 {
		return errBadOp
	}
	for i, s := range []*string{&o.Topic, &o.Key, &o.Ref} {
		if err := json.Unmarshal(a[i], s); err != nil {
			return err
		}
	}
	if o.Topic == "" || len(o.Topic) > 255 || o.Key == "" || len(o.Key) > MaxKeyLen || o.Ref == "" || len(o.Ref) > 64 {
		return errBadOp
	}
	if len(a) == 4 {
		if len(a[3]) == 0 || a[3][0] != '{' {
			return errBadOp
		}
		o.Meta = a[3]
	}
	return nil
}

// outbox holds what the publisher has to send. It lives under
// Presence.mu.
type outbox struct {
	ops      []op
	snapshot bool // a state transfer is wanted
	lastSnap time.Time
	asks     map[string]*member // state requests to send, by memberKey
	askAll   bool
	failing  bool // the last publish failed (for logging)
}

// op is a change of a local entry to announce.
type op struct {
	e    *entry
	join bool
}

// queueOp records a change of a local entry for the publisher. mu must be
// held.
func (p *Presence) queueOp(e *entry, join bool) {
	if len(p.out.ops) >= maxOutbox {
		p.out.ops = nil
		p.out.snapshot = true
		return
	}
	p.out.ops = append(p.out.ops, op{e, join})
}

func (p *Presence) registerControl() {
	p.node.HandleControl(typeDelta, func(b []byte) { p.receive(typeDelta, b) })
	p.node.HandleControl(typeState, func(b []byte) { p.receive(typeState, b) })
	p.node.HandleControl(typeHeartbeat, func(b []byte) { p.receive(typeHeartbeat, b) })
	p.node.HandleControl(typeSync, func(b []byte) { p.receive(typeSync, b) })
	p.node.HandleControl(typeBye, func(b []byte) { p.receive(typeBye, b) })
}

// receive handles a control message from any member, this one included.
func (p *Presence) receive(typ string, data []byte) {
	var msg wireMsg
	if err := json.Unmarshal(data, &msg); err != nil || msg.Node == "" || msg.Inc == "" {
		p.log.Warn("presence: malformed control message ignored", "type", typ, "bytes", len(data))
		return
	}
	if msg.Node == p.self.node && msg.Inc == p.self.inc {
		return
	}
	now := time.Now()
	p.mu.Lock()
	defer p.wake()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	key := memberKey(msg.Node, msg.Inc)
	m := p.members[key]
	if typ == typeBye {
		if m != nil {
			p.log.Info("presence: node left", "peer", m.node, "presences", len(m.entries))
			p.dropMember(m)
		}
		return
	}
	if m == nil {
		m = p.addMember(msg.Node, msg.Inc)
	}
	m.lastSeen = now
	switch typ {
	case typeHeartbeat:
		// A member publishes the parts of a state transfer back to back,
		// so a heartbeat in the middle of one means parts were lost; a
		// number ahead of ours means the last changes were.
		if m.asm != nil || msg.Seq > m.seq {
			m.asm = nil
			p.askState(m, now)
		}
	case typeSync:
		if msg.ToN == "" || (msg.ToN == p.self.node && msg.ToI == p.self.inc) {
			p.out.snapshot = true
		}
	case typeDelta:
		if msg.Seq <= m.seq {
			return
		}
		gap := msg.Seq != m.seq+1 || m.asm != nil
		m.seq, m.asm = msg.Seq, nil
		p.applyOps(m, msg.Ops)
		if gap {
			p.askState(m, now)
		}
	case typeState:
		p.receiveState(m, &msg, now)
	}
}

// addMember starts following a member. An older incarnation of the same
// node is dead: its entries leave now rather than at its timeout.
func (p *Presence) addMember(node, inc string) *member {
	for _, old := range p.members {
		if old.node == node {
			p.log.Info("presence: node restarted, presences of its previous run leave",
				"peer", node, "presences", len(old.entries))
			p.dropMember(old)
		}
	}
	m := &member{node: node, inc: inc, entries: make(map[string]*entry)}
	p.members[memberKey(node, inc)] = m
	return m
}

// receiveState collects one part of a member's state transfer, and applies
// the transfer once complete.
func (p *Presence) receiveState(m *member, msg *wireMsg, now time.Time) {
	if msg.Seq <= m.seq || msg.Total < 1 || msg.Part < 0 || msg.Part >= msg.Total {
		return
	}
	if msg.Part == 0 {
		m.asm = &assembly{total: msg.Total}
	} else if a := m.asm; a == nil || msg.Part != a.next || msg.Total != a.total || msg.Seq != a.seq+1 {
		m.asm = nil // a part was lost
		p.askState(m, now)
		return
	}
	a := m.asm
	a.ops = append(a.ops, msg.Ops...)
	a.next++
	a.seq = msg.Seq
	if a.next == a.total {
		p.replaceEntries(m, a.ops)
		m.seq, m.asm = a.seq, nil
	}
}

// askState queues a state request to m, unless one was sent within the
// last heartbeat interval. mu must be held.
func (p *Presence) askState(m *member, now time.Time) {
	if now.Sub(m.asked) < p.opts.HeartbeatInterval {
		return
	}
	m.asked = now
	if p.out.asks == nil {
		p.out.asks = make(map[string]*member)
	}
	p.out.asks[memberKey(m.node, m.inc)] = m
}

// publishLoop is the only sender of this member's control messages, so
// they are published, and numbered, in order.
func (p *Presence) publishLoop() {
	defer p.wg.Done()
	var seq uint64
	hb := time.NewTicker(p.opts.HeartbeatInterval)
	defer hb.Stop()
	later := time.NewTimer(time.Hour)
	defer later.Stop()

	p.mu.Lock()
	p.out.askAll = true // learn the cluster's presences now, not at the next heartbeats
	p.mu.Unlock()
	p.publish(typeHeartbeat, p.appendHeader(nil, seq)) // hello: others learn of us
	p.publishPending(&seq)
	for {
		beat := false
		select {
		case <-p.stop:
			p.publishPending(&seq)
			p.publish(typeBye, p.appendHeader(nil, seq))
			return
		case <-p.pkick:
		case <-later.C:
		case <-hb.C:
			beat = true
		}
		if wait := p.publishPending(&seq); wait > 0 {
			later.Reset(wait)
		}
		if beat {
			p.publish(typeHeartbeat, p.appendHeader(nil, seq))
		}
	}
}

// snapshotGap is the least time between two state transfers of this
// member: requests that arrive meanwhile are answered by one transfer.
func (p *Presence) snapshotGap() time.Duration { return p.opts.HeartbeatInterval / 4 }

// publishPending publishes the queued state requests, then either a state
// transfer or the queued changes. It returns how long to wait before a
// state transfer that was held back by snapshotGap.
func (p *Presence) publishPending(seq *uint64) time.Duration {
	now := time.Now()
	p.mu.Lock()
	asks, askAll := p.out.asks, p.out.askAll
	p.out.asks, p.out.askAll = nil, false
	var ops []op
	var snapshot bool
	var wait time.Duration
	if p.out.snapshot {
		if wait = p.snapshotGap() - now.Sub(p.out.lastSnap); wait <= 0 || p.closed {
			// The transfer holds every entry: queued changes are moot.
			snapshot, wait = true, 0
			p.out.snapshot, p.out.lastSnap = false, now
			ops = make([]op, 0, len(p.self.entries))
			for _, e := range p.self.entries {
				ops = append(ops, op{e, true})
			}
			p.out.ops = nil
		}
	}
	if !snapshot {
		ops, p.out.ops = p.out.ops, nil
	}
	p.mu.Unlock()

	if askAll {
		p.publish(typeSync, p.appendHeader(nil, *seq))
	}
	for _, m := range asks {
		b := p.appendHeader(nil, *seq)
		b = append(b[:len(b)-1], `,"tn":`...)
		b = append(b, quote(m.node)...)
		b = append(b, `,"ti":`...)
		b = append(b, quote(m.inc)...)
		p.publish(typeSync, append(b, '}'))
	}
	if snapshot {
		p.publishParts(typeState, ops, seq, true)
	} else if len(ops) > 0 {
		p.publishParts(typeDelta, ops, seq, false)
	}
	return wait
}

// publishParts packs ops into messages of at most maxMessage bytes, numbers
// them and publishes them in order. A state transfer is always published,
// in at least one part.
func (p *Presence) publishParts(typ string, ops []op, seq *uint64, state bool) {
	budget := maxMessage - len(p.appendHeader(nil, 1<<63)) - 40 // room for "p", "t" and "d"
	var parts [][]byte
	cur := []byte{'['}
	for _, o := range ops {
		rec := appendOp(nil, o)
		if len(cur) > 1 && len(cur)+1+len(rec)+1 > budget {
			parts = append(parts, append(cur, ']'))
			cur = []byte{'['}
		}
		if len(cur) > 1 {
			cur = append(cur, ',')
		}
		cur = append(cur, rec...)
	}
	if len(cur) > 1 || (state && len(parts) == 0) {
		parts = append(parts, append(cur, ']'))
	}
	for i, ops := range parts {
		*seq++
		b := p.appendHeader(nil, *seq)
		b = b[:len(b)-1]
		if state {
			b = append(b, `,"p":`...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, `,"t":`...)
			b = strconv.AppendInt(b, int64(len(parts)), 10)
		}
		b = append(b, `,"d":`...)
		b = append(b, ops...)
		p.publish(typ, append(b, '}'))
	}
}

// appendHeader appends {"n":node,"i":incarnation,"s":seq}.
func (p *Presence) appendHeader(b []byte, seq uint64) []byte {
	b = append(b, `{"n":`...)
	b = append(b, quote(p.self.node)...)
	b = append(b, `,"i":"`...)
	b = append(b, p.self.inc...)
	b = append(b, `","s":`...)
	b = strconv.AppendUint(b, seq, 10)
	return append(b, '}')
}

// appendOp appends one change: [topic,key,ref,meta] or [topic,key,ref].
func appendOp(b []byte, o op) []byte {
	e := o.e
	b = append(b, '[')
	b = append(b, e.topic.quoted...)
	b = append(b, ',')
	b = append(b, e.key.quoted...)
	b = append(b, `,"`...)
	b = append(b, e.ref...)
	b = append(b, '"')
	if o.join {
		b = append(b, ',')
		b = append(b, e.meta...)
	}
	return append(b, ']')
}

// publish sends one control message. A failure is logged: the message is
// lost, and the other members notice the gap in the numbering and ask for
// this member's state.
func (p *Presence) publish(typ string, data []byte) {
	ctx, cancel := context.WithTimeout(p.ctx, p.opts.Timeout)
	err := p.node.PublishControl(ctx, typ, data)
	cancel()
	p.mu.Lock()
	was := p.out.failing
	p.out.failing = err != nil
	p.mu.Unlock()
	switch {
	case err != nil && !was:
		p.log.Warn("presence: cannot publish to the cluster", "type", typ, "err", err)
	case err == nil && was:
		p.log.Info("presence: publishing to the cluster again")
	}
}
