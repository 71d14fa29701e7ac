package presence

import (
	"encoding/json"
	"time"
)

// wake tells the diff loop that a topic has changes, and the publisher
// that there may be changes to announce.
func (p *Presence) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
	select {
	case p.pkick <- struct{}{}:
	default:
	}
}

// diffLoop sends the topics' diffs to this node's subscribers, at most one
// per topic per DiffInterval, and removes the members that went silent.
func (p *Presence) diffLoop() {
	defer p.wg.Done()
	sweep := time.NewTicker(p.sweepEvery())
	defer sweep.Stop()
	flush := time.NewTimer(0)
	<-flush.C
	armed := false
	var last time.Time
	for {
		select {
		case <-p.stop:
			p.flush()
			return
		case <-p.kick:
			if armed {
				continue
			}
			// Leading edge: a change after a quiet period goes out at
			// once; later ones wait for the rest of the interval.
			if wait := p.opts.DiffInterval - time.Since(last); wait > 0 {
				flush.Reset(wait)
				armed = true
				continue
			}
			last = time.Now()
			p.flush()
		case <-flush.C:
			armed = false
			last = time.Now()
			p.flush()
		case now := <-sweep.C:
			p.sweep(now)
			p.flush()
		}
	}
}

// sweepEvery is how often silent members are looked for.
func (p *Presence) sweepEvery() time.Duration {
	d := p.opts.HeartbeatInterval / 5
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d
}

// flush sends the pending diff of every changed topic to this node's
// subscribers.
func (p *Presence) flush() {
	type diff struct {
		topic   string
		payload []byte
	}
	p.mu.Lock()
	if len(p.dirty) == 0 {
		p.mu.Unlock()
		return
	}
	diffs := make([]diff, 0, len(p.dirty))
	for _, t := range p.dirty {
		diffs = append(diffs, diff{t.name, p.takeDiff(t)})
	}
	clear(p.dirty)
	p.dirty = p.dirty[:0]
	p.mu.Unlock()
	for _, d := range diffs {
		if err := p.node.LocalBroadcast(d.topic, EventDiff, json.RawMessage(d.payload)); err != nil {
			p.log.Error("presence: diff not sent", "topic", d.topic, "err", err)
		}
	}
}

// sweep removes the members not heard from within Timeout.
func (p *Presence) sweep(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, m := range p.members {
		if now.Sub(m.lastSeen) > p.opts.Timeout {
			p.log.Warn("presence: node timed out, its presences leave",
				"peer", m.node, "incarnation", m.inc, "presences", len(m.entries),
				"silent", now.Sub(m.lastSeen).Round(time.Millisecond))
			p.dropMember(m)
		}
	}
}
