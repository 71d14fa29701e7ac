package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/hearth-rt/hearth/channels/wire"
)

// How long a join or a push may wait for its reply.
const replyTimeout = 10 * time.Second

// pending kinds.
const (
	pendJoin = iota + 1
	pendPush
)

type pending struct {
	kind  uint8
	pos   uint16 // topic position in the client's list
	seq   uint32
	atSec uint32 // seconds since the group's epoch
}

// topicState is one of a client's topics.
type topicState struct {
	idx     int    // index in the group's topic list
	joinRef uint64 // ref of the join in flight or accepted; 0 none
	joined  bool
	tries   int // failed joins in a row
	epoch   string
	offset  uint64
	hasPos  bool
	st      stream
	seq     uint32 // publishers: last sequence written
}

// client is one load client: a goroutine that connects, joins, reads and
// reconnects according to its group's policy.
type client struct {
	g   *group
	idx int

	mu       sync.Mutex // guards everything below
	conn     clientConn
	gen      uint64
	ref      uint64
	topics   []topicState
	nJoined  int
	pend     map[uint64]pending
	hbRef    uint64
	lastHB   time.Time
	sioReady bool
	counted  bool // counted in the group's joined gauge
	pbuf     []byte

	// Signed-in clients (AuthSpec): the session cookie (the client's
	// goroutine only) and the last token the server pushed.
	session   string
	pushedTok string
	pushedExp time.Time
	gotPush   bool

	// storm bookkeeping, relative to the group's mark
	markGen  int64 // mark seen
	downAt   int64 // first disconnect after the mark, ns
	rejoinAt int64 // first full join after downAt, ns
}

func newClient(g *group, idx int) *client {
	c := &client{g: g, idx: idx}
	n := len(g.spec.Topics)
	if g.spec.Publish != nil {
		for t := 0; t < n; t++ {
			if t%g.spec.Publish.Total == idx%g.spec.Publish.Total {
				c.topics = append(c.topics, topicState{idx: t})
			}
		}
		return c
	}
	for j := 0; j < g.spec.TopicsPerClient && j < n; j++ {
		c.topics = append(c.topics, topicState{idx: (idx*g.spec.TopicsPerClient + j) % n})
	}
	return c
}

func (c *client) sinceEpoch() uint32 {
	return uint32((time.Now().UnixNano() - c.g.spec.EpochNS) / int64(time.Second))
}

// run is the client's goroutine.
func (c *client) run(ctx context.Context, ready <-chan struct{}) {
	g := c.g
	select {
	case <-ready:
	case <-ctx.Done():
		return
	}
	attempt := 0
	var hint time.Duration
	spread := len(g.spec.Addrs)
	if g.spec.Spread > 0 && g.spec.Spread < spread {
		spread = g.spec.Spread
	}
	addrIdx := c.idx % spread
	src := ""
	if n := len(g.spec.SourceIPs); n > 0 {
		src = g.spec.SourceIPs[c.idx%n]
	}
	polling := g.spec.Transport == TransportPolling
	path := "/socket/websocket?vsn=2.0.0"
	switch {
	case g.spec.Proto == ProtoSocketIO && polling:
		path = "/socket.io/?EIO=4&transport=polling"
	case g.spec.Proto == ProtoSocketIO:
		path = "/socket.io/?EIO=4&transport=websocket"
	case polling:
		path = "/socket/longpoll?vsn=2.0.0"
	}
	if g.spec.Query != "" {
		path += "&" + g.spec.Query
	}
	first := true
	for ctx.Err() == nil {
		if !first {
			d := g.policy.Delay(attempt, hint)
			attempt++
			hint = 0
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		first = false
		query, pushed := "", false
		if g.auth != nil {
			var err error
			if query, pushed, err = c.connectQuery(ctx, src); err != nil {
				if ctx.Err() != nil {
					return
				}
				g.event(seriesError, "token_"+describeErr(err))
				continue
			}
		}
		g.add(cConnAttempts, 1)
		var conn clientConn
		var err error
		if polling {
			conn, err = g.w.dial.dialPoll(ctx, src, g.spec.Addrs[addrIdx], path+query, g.spec.Proto == ProtoPhoenix)
		} else {
			conn, err = g.w.dial.dialWS(ctx, src, g.spec.Addrs[addrIdx], path+query, g.spec.Deflate)
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			label := "connect_" + describeErr(err)
			var he *HandshakeError
			if errors.As(err, &he) {
				if he.Status == 503 || he.Status == 429 {
					g.add(cShed, 1)
				}
				hint = he.RetryAfter
				if he.Status == 403 && pushed {
					// A pushed token refused (the key changed): drop it
					// for the app's token function, as the JS client does.
					c.mu.Lock()
					c.pushedTok = ""
					c.mu.Unlock()
				}
			}
			g.event(seriesError, label)
			if g.spec.Failover {
				addrIdx = (addrIdx + 1) % len(g.spec.Addrs)
			}
			continue
		}
		g.add(cConnOK, 1)
		g.event(seriesConnect, "")
		g.connected.Add(1)
		if g.policy.StableAfter() == 0 {
			attempt = 0
		}
		opened := time.Now()
		err = c.serve(ctx, conn)
		g.connected.Add(-1)
		if ctx.Err() != nil {
			return
		}
		if g.policy.StableAfter() > 0 && time.Since(opened) >= g.policy.StableAfter() {
			attempt = 0
		}
		g.add(cDisconnects, 1)
		label := describeErr(err)
		var ce *CloseError
		if errors.As(err, &ce) {
			if ce.Code == 1012 || ce.Code == 1013 {
				hint = closeHint(ce.Reason)
			}
			if ce.Code == 1013 {
				g.add(cShed, 1)
			}
		}
		c.noteDown()
		// A close the server announced (a close frame with a normal, going
		// away, restart or retry code, or none) is part of the protocol;
		// anything else is an error a user would see.
		switch label {
		case "close_1000", "close_1001", "close_1005", "close_1012", "close_1013":
			g.event(seriesDisconnect, "")
			g.mu.Lock()
			g.errs["closed_"+label[6:]]++
			g.mu.Unlock()
		default:
			g.event(seriesDisconnect, "")
			g.event(seriesError, "dropped_"+label)
		}
		if g.spec.Failover {
			addrIdx = (addrIdx + 1) % len(g.spec.Addrs)
		}
	}
}

// noteDown records a disconnect for the storm measurements.
func (c *client) noteDown() {
	mark := c.g.markNS.Load()
	now := time.Now().UnixNano()
	c.mu.Lock()
	if mark != 0 && now >= mark && c.markGen != mark {
		c.markGen, c.downAt, c.rejoinAt = mark, now, 0
	}
	c.mu.Unlock()
}

// serve runs one connection until it ends.
func (c *client) serve(ctx context.Context, conn clientConn) error {
	g := c.g
	c.mu.Lock()
	c.conn = conn
	c.gen++
	c.pend = make(map[uint64]pending, len(c.topics))
	c.hbRef, c.lastHB, c.sioReady = 0, time.Now(), false
	for i := range c.topics {
		c.topics[i].joined, c.topics[i].joinRef, c.topics[i].tries = false, 0, 0
	}
	c.nJoined = 0
	if g.spec.Proto == ProtoPhoenix {
		for i := range c.topics {
			c.sendJoin(i)
		}
		if len(c.topics) == 0 {
			c.allJoined()
		}
	}
	c.mu.Unlock()

	stop := context.AfterFunc(ctx, func() { conn.close() })
	defer stop()
	var err error
	for {
		var op byte
		var data []byte
		op, data, err = conn.readMessage()
		if err != nil {
			break
		}
		if op != opText {
			continue
		}
		if g.spec.Proto == ProtoPhoenix {
			err = c.handlePhoenix(data)
		} else {
			err = c.handleSocketIO(data)
		}
		if err != nil {
			break
		}
	}
	conn.close()
	c.mu.Lock()
	c.unjoin()
	c.conn = nil
	c.nJoined = 0
	for i := range c.topics {
		c.topics[i].joined = false
	}
	for _, p := range c.pend {
		if p.kind == pendPush {
			g.add(cPubFailed, 1)
		}
	}
	c.pend = nil
	c.mu.Unlock()
	return err
}

// unjoin takes the client out of the joined gauge. c.mu held.
func (c *client) unjoin() {
	if c.counted {
		c.counted = false
		c.g.joined.Add(-1)
	}
}

// allJoined marks the client fully joined. c.mu held.
func (c *client) allJoined() {
	g := c.g
	if c.counted {
		return
	}
	c.counted = true
	g.joined.Add(1)
	g.event(seriesJoined, "")
	if c.markGen != 0 && c.downAt != 0 && c.rejoinAt == 0 {
		c.rejoinAt = time.Now().UnixNano()
	}
}

// nextRef returns a new message reference. c.mu held.
func (c *client) nextRef() uint64 {
	c.ref++
	return c.ref
}

// sendJoin joins topic position i on the current connection. c.mu held.
func (c *client) sendJoin(i int) {
	if c.conn == nil {
		return
	}
	t := &c.topics[i]
	ref := c.nextRef()
	t.joinRef = ref
	c.pend[ref] = pending{kind: pendJoin, pos: uint16(i), atSec: c.sinceEpoch()}
	topic := c.g.spec.Topics[t.idx]
	b := c.pbuf[:0]
	if c.g.spec.Proto == ProtoPhoenix {
		r := strconv.FormatUint(ref, 10)
		payload := []byte("{}")
		if c.g.spec.Recover {
			if t.hasPos {
				payload = []byte(`{"$hearth":{"since":{"epoch":` + string(wire.AppendString(nil, t.epoch)) +
					`,"offset":` + strconv.FormatUint(t.offset, 10) + `}}}`)
			} else {
				payload = []byte(`{"$hearth":{}}`)
			}
		}
		b = wire.AppendText(b, r, r, topic, "phx_join", payload)
	} else {
		b = append(b, "42"...)
		b = strconv.AppendUint(b, ref, 10)
		b = append(b, `["join",`...)
		b = wire.AppendString(b, topic)
		b = append(b, ']')
	}
	c.pbuf = b
	_ = c.conn.writeText(b)
}

// scheduleRejoin retries topic position i after the policy's rejoin delay. c.mu held.
func (c *client) scheduleRejoin(i int, hint time.Duration) {
	t := &c.topics[i]
	d := c.g.policy.RejoinDelay(t.tries, hint)
	t.tries++
	gen := c.gen
	time.AfterFunc(d, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.gen == gen && c.conn != nil && !c.topics[i].joined && c.g.ctx.Err() == nil {
			c.sendJoin(i)
		}
	})
}

// joinedTopic handles an accepted join. c.mu held.
func (c *client) joinedTopic(i int, resp []byte) {
	g := c.g
	t := &c.topics[i]
	if t.joined {
		return
	}
	t.joined, t.tries = true, 0
	c.nJoined++
	g.add(cJoinsOK, 1)
	if g.spec.Recover && bytes.Contains(resp, []byte(`"$hearth"`)) {
		var r struct {
			Response struct {
				H *struct {
					Epoch     string `json:"epoch"`
					Offset    uint64 `json:"offset"`
					Recovered *bool  `json:"recovered"`
					Replayed  int64  `json:"replayed"`
				} `json:"$hearth"`
			} `json:"response"`
		}
		if json.Unmarshal(resp, &r) == nil && r.Response.H != nil {
			h := r.Response.H
			if h.Recovered != nil {
				if *h.Recovered {
					g.add(cRecovered, 1)
					g.add(cReplayed, h.Replayed)
				} else {
					g.add(cNotRecovered, 1)
				}
			}
			if !t.hasPos || h.Recovered == nil || !*h.Recovered || h.Epoch != t.epoch {
				t.epoch, t.offset, t.hasPos = h.Epoch, h.Offset, true
			}
		}
	}
	if c.nJoined == len(c.topics) {
		c.allJoined()
	}
}

// joinFailed handles a refused or timed-out join. c.mu held.
func (c *client) joinFailed(i int, label string, hint time.Duration) {
	c.g.event(seriesError, label)
	c.scheduleRejoin(i, hint)
}

// lostTopic handles a channel the server errored or closed. c.mu held.
func (c *client) lostTopic(i int, label string) {
	t := &c.topics[i]
	if t.joined {
		t.joined = false
		c.nJoined--
		c.unjoin()
	}
	t.joinRef = 0
	c.g.event(seriesError, label)
	c.scheduleRejoin(i, 0)
}

func (c *client) topicPos(topic string) int {
	ix, ok := c.g.topicIx[topic]
	if !ok {
		return -1
	}
	for i := range c.topics {
		if c.topics[i].idx == ix {
			return i
		}
	}
	return -1
}

// deliver records a bench message.
func (c *client) deliver(data []byte, topicIdx int, seq uint32, sent int64) {
	g := c.g
	now := time.Now().UnixNano()
	if topicIdx < 0 || topicIdx >= len(g.spec.Topics) {
		return
	}
	g.deliv[topicIdx].Set(seq)
	if g.spec.Publish != nil {
		return
	}
	lat := time.Duration(now - sent)
	g.add(cReceived, 1)
	g.lat.Record(lat)
	if g.spec.PerMessage {
		g.perMessage(c.idx, topicIdx, seq, lat)
	}
	var off uint64
	if bytes.HasPrefix(data, []byte(`[null,"@`)) {
		for _, ch := range data[8:] {
			if ch < '0' || ch > '9' {
				break
			}
			off = off*10 + uint64(ch-'0')
		}
	}
	c.mu.Lock()
	for i := range c.topics {
		t := &c.topics[i]
		if t.idx != topicIdx {
			continue
		}
		dup, late := t.st.add(seq)
		if dup {
			g.add(cDuplicates, 1)
		}
		if late {
			g.add(cLate, 1)
		}
		if off > t.offset {
			t.offset = off
		}
		break
	}
	c.mu.Unlock()
}

// handlePhoenix handles one Phoenix V2 text frame.
func (c *client) handlePhoenix(data []byte) error {
	if topic, seq, sent, ok := parseMarker(data); ok && !bytes.Contains(data, []byte(`"phx_reply"`)) {
		c.deliver(data, topic, seq, sent)
		return nil
	}
	m, err := wire.DecodeText(data)
	if err != nil {
		c.g.event(seriesError, "bad_frame")
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch m.Event {
	case "phx_reply":
		ref, _ := strconv.ParseUint(m.Ref, 10, 64)
		if ref != 0 && ref == c.hbRef {
			c.hbRef = 0
			return nil
		}
		p, ok := c.pend[ref]
		if !ok {
			return nil
		}
		delete(c.pend, ref)
		okStatus := bytes.Contains(m.Payload, []byte(`"status":"ok"`))
		switch p.kind {
		case pendJoin:
			if int(p.pos) >= len(c.topics) || c.topics[p.pos].joinRef != ref {
				return nil
			}
			if okStatus {
				c.joinedTopic(int(p.pos), m.Payload)
			} else {
				c.g.add(cJoinErrors, 1)
				reason, hint := replyReason(m.Payload)
				if hint > 0 {
					c.g.add(cShed, 1)
				}
				c.joinFailed(int(p.pos), "join_error"+reason, hint)
			}
		case pendPush:
			if okStatus {
				c.g.add(cPubAcked, 1)
				c.g.deliv[c.topics[p.pos].idx].Set(p.seq)
			} else {
				c.g.add(cPubFailed, 1)
			}
		}
	case "token":
		if m.Topic == "phoenix" {
			c.pushedToken(m.Payload)
		}
	case "phx_error", "phx_close":
		i := c.topicPos(m.Topic)
		if i >= 0 && m.JoinRef == strconv.FormatUint(c.topics[i].joinRef, 10) {
			c.lostTopic(i, m.Event)
		}
	}
	return nil
}

// handleSocketIO handles one Engine.IO / Socket.IO text frame.
func (c *client) handleSocketIO(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case '0': // Engine.IO open: connect to the default namespace
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.conn != nil {
			return c.conn.writeText([]byte("40"))
		}
		return nil
	case '1':
		return errors.New("bench: engine.io close")
	case '2':
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.conn != nil {
			return c.conn.writeText([]byte("3"))
		}
		return nil
	case '4':
	default:
		return nil
	}
	if len(data) < 2 {
		return nil
	}
	switch data[1] {
	case '0': // namespace connected
		c.mu.Lock()
		defer c.mu.Unlock()
		if !c.sioReady {
			c.sioReady = true
			for i := range c.topics {
				c.sendJoin(i)
			}
			if len(c.topics) == 0 {
				c.allJoined()
			}
		}
	case '1':
		return errors.New("bench: socket.io namespace disconnected")
	case '4':
		c.g.event(seriesError, "sio_connect_error")
		return errors.New("bench: socket.io connect error")
	case '2':
		if topic, seq, sent, ok := parseMarker(data); ok {
			c.deliver(data, topic, seq, sent)
		}
	case '3': // ack
		i := 2
		var ref uint64
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			ref = ref*10 + uint64(data[i]-'0')
			i++
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		p, ok := c.pend[ref]
		if !ok {
			return nil
		}
		delete(c.pend, ref)
		okStatus := bytes.Contains(data[i:], []byte(`"ok"`))
		switch p.kind {
		case pendJoin:
			if okStatus {
				c.joinedTopic(int(p.pos), nil)
			} else {
				c.g.add(cJoinErrors, 1)
				c.joinFailed(int(p.pos), "join_error", 0)
			}
		case pendPush:
			if okStatus {
				c.g.add(cPubAcked, 1)
				c.g.deliv[c.topics[p.pos].idx].Set(p.seq)
			} else {
				c.g.add(cPubFailed, 1)
			}
		}
	}
	return nil
}

// replyReason extracts a short label from an error reply's "reason", and
// its retry_after_ms hint (Hearth's join admission control).
func replyReason(payload []byte) (string, time.Duration) {
	var r struct {
		Response struct {
			Reason       string `json:"reason"`
			RetryAfterMS int64  `json:"retry_after_ms"`
		} `json:"response"`
	}
	if json.Unmarshal(payload, &r) != nil || r.Response.Reason == "" {
		return "", 0
	}
	hint := time.Duration(max(r.Response.RetryAfterMS, 0)) * time.Millisecond
	b := []byte(r.Response.Reason)
	if len(b) > 40 {
		b = b[:40]
	}
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9') {
			b[i] = '_'
		}
	}
	return "(" + string(b) + ")", hint
}

// tick runs once a second from the worker: heartbeats and reply timeouts.
func (c *client) tick(now time.Time, hb time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return
	}
	sec := c.sinceEpoch()
	for ref, p := range c.pend {
		if time.Duration(sec-p.atSec)*time.Second < replyTimeout {
			continue
		}
		delete(c.pend, ref)
		switch p.kind {
		case pendJoin:
			c.g.add(cJoinTimeouts, 1)
			c.topics[p.pos].joinRef = 0
			c.joinFailed(int(p.pos), "join_timeout", 0)
		case pendPush:
			c.g.add(cPubFailed, 1)
		}
	}
	if c.g.spec.Proto != ProtoPhoenix || now.Sub(c.lastHB) < hb {
		return
	}
	if c.hbRef != 0 {
		// phoenix.js closes the connection when a heartbeat goes unanswered.
		c.g.event(seriesError, "heartbeat_timeout")
		c.conn.closeWith(1000)
		return
	}
	c.lastHB = now
	ref := c.nextRef()
	c.hbRef = ref
	b := wire.AppendText(c.pbuf[:0], "", strconv.FormatUint(ref, 10), "phoenix", "heartbeat", nil)
	c.pbuf = b
	_ = c.conn.writeText(b)
}

// publish sends one message on topic position i if the client can. It
// reports whether it did.
func (c *client) publish(i int, size int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil || i >= len(c.topics) || !c.topics[i].joined || c.g.pubCtx.Err() != nil {
		return false
	}
	t := &c.topics[i]
	seq := t.seq + 1
	ref := c.nextRef()
	topic := c.g.spec.Topics[t.idx]
	var payload [64]byte
	p := appendPayload(payload[:0], t.idx, seq, time.Now().UnixNano(), size)
	b := c.pbuf[:0]
	if c.g.spec.Proto == ProtoPhoenix {
		r := strconv.FormatUint(ref, 10)
		b = wire.AppendText(b, strconv.FormatUint(t.joinRef, 10), r, topic, "new_msg", p)
	} else {
		b = append(b, "42"...)
		b = strconv.AppendUint(b, ref, 10)
		b = append(b, `["new_msg",`...)
		b = wire.AppendString(b, topic)
		b = append(b, ',')
		b = append(b, p...)
		b = append(b, ']')
	}
	c.pbuf = b
	if err := c.conn.writeText(b); err != nil {
		return false
	}
	t.seq = seq
	c.pend[ref] = pending{kind: pendPush, pos: uint16(i), seq: seq, atSec: c.sinceEpoch()}
	return true
}

// publishLoop drives a publisher client at its rate until ctx ends.
func (c *client) publishLoop(ctx context.Context) {
	spec := c.g.spec.Publish
	if spec.Rate <= 0 || len(c.topics) == 0 {
		return
	}
	step := time.Duration(float64(time.Second) / spec.Rate)
	step = max(min(step, 100*time.Millisecond), 5*time.Millisecond)
	tk := time.NewTicker(step)
	defer tk.Stop()
	start := time.Now()
	var slots int64
	next := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		due := int64(time.Since(start).Seconds()*spec.Rate) - slots
		if due > int64(spec.Rate)+1 {
			// Fell behind (a stall): skip rather than burst.
			c.g.add(cPubSkipped, due-int64(spec.Rate))
			slots += due - int64(spec.Rate)
			due = int64(spec.Rate) + 1
		}
		for ; due > 0; due-- {
			slots++
			if c.publish(next, spec.Size) {
				c.g.add(cPublished, 1)
			} else {
				c.g.add(cPubSkipped, 1)
			}
			next = (next + 1) % len(c.topics)
		}
	}
}
