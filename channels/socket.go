package channels

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-rt/hearth/channels/wire"
	"github.com/hearth-rt/hearth/pubsub"
)

// Socket is one client connection: it multiplexes the channels the client
// joined. Sockets are created by the transport through [Node.NewSocket].
type Socket struct {
	node      *Node
	id        string
	assigns   any
	connID    string
	hearthExt bool
	transport Transport
	ip        string     // client IP, for join admission
	refresh   *refresher // nil unless the node refreshes tokens and the socket's expire

	deflater *wire.Deflater // the transport's when it compresses (CompressingTransport); set by Start

	dead atomic.Bool   // closed: the socket's context is done
	done chan struct{} // the context's Done channel, made on first use (omu)

	prev, next *Socket // the node's list of sockets (Node.mu)

	hmu    sync.Mutex // the handler lock: serializes handler calls; guards chans, closed
	chans  []*Channel // joined channels: few per socket, searched linearly
	closed bool

	omu        sync.Mutex // guards outq, outRunning, outClosed, done
	outq       []outItem
	outRunning bool
	outClosed  bool
	outBusy    atomic.Bool // outRunning, readable without omu on the fanout path
}

// outItem is an intercepted broadcast waiting for Out, or (frame set) a
// fastlane frame queued behind one so that the socket sees broadcasts in
// publish order.
type outItem struct {
	c     *Channel
	m     *pubsub.Message
	frame []byte
}

// ID returns the id the connect hook gave the socket ("" if anonymous).
func (s *Socket) ID() string { return s.id }

// ConnID returns the connection's unique id within the cluster.
func (s *Socket) ConnID() string { return s.connID }

// Assigns returns what the connect hook put in ConnectReply.Assigns.
func (s *Socket) Assigns() any { return s.assigns }

// Context returns a context cancelled when the socket closes.
func (s *Socket) Context() context.Context { return socketContext{s} }

// socketContext is a socket as a context.Context. It costs nothing until
// Done is called: idle sockets carry no context allocation.
type socketContext struct{ s *Socket }

func (c socketContext) Deadline() (time.Time, bool) { return time.Time{}, false }
func (c socketContext) Value(any) any               { return nil }

func (c socketContext) Done() <-chan struct{} {
	s := c.s
	s.omu.Lock()
	defer s.omu.Unlock()
	if s.done == nil {
		s.done = make(chan struct{})
		if s.dead.Load() {
			close(s.done)
		}
	}
	return s.done
}

func (c socketContext) Err() error {
	if c.s.dead.Load() {
		return context.Canceled
	}
	return nil
}

// channel returns the joined channel of topic, or nil. The handler lock
// must be held.
func (s *Socket) channel(topic string) *Channel {
	for _, c := range s.chans {
		if c.topic == topic {
			return c
		}
	}
	return nil
}

// dropChannel removes c from the joined channels. The handler lock must be
// held.
func (s *Socket) dropChannel(c *Channel) {
	for i, x := range s.chans {
		if x == c {
			last := len(s.chans) - 1
			s.chans[i], s.chans[last] = s.chans[last], nil
			s.chans = s.chans[:last]
			return
		}
	}
}

// Close closes the socket's connection with a WebSocket close code and a
// reason the client can read.
func (s *Socket) Close(code int, reason string) {
	if s.transport != nil {
		s.transport.Close(code, wire.CloseReason(reason))
	}
}

// Start attaches the open connection. It is part of the [Transport]
// contract.
func (s *Socket) Start(t Transport) {
	s.transport = t
	if ct, ok := t.(CompressingTransport); ok {
		s.deflater = ct.Deflater()
	}
	s.node.register(s)
	s.startRefresh()
	s.node.log.Debug("socket connected", "conn", s.connID, "socket_id", s.id)
}

func (s *Socket) send(frame []byte) bool { return s.transport.Send(frame) }

// sendInOrder writes a broadcast frame of channel c, queueing it behind
// the socket's pending Out work (intercepted events) when there is some,
// so that the socket sees a topic's broadcasts in publish order.
func (s *Socket) sendInOrder(c *Channel, m *pubsub.Message, frame []byte) {
	if s.outBusy.Load() && s.enqueueOut(c, m, frame) {
		return
	}
	s.send(frame)
}

// Closed ends every channel of the socket (their Terminate handlers run
// with [ErrSocketClosed]). It is part of the [Transport] contract.
func (s *Socket) Closed() {
	if s.transport == nil {
		return // never started: nothing to release
	}
	s.stopRefresh()
	s.dead.Store(true)
	s.omu.Lock()
	if s.done != nil {
		close(s.done)
	}
	s.outClosed = true
	s.outq = nil
	s.omu.Unlock()

	s.hmu.Lock()
	s.closed = true
	for len(s.chans) > 0 {
		s.endChannel(s.chans[len(s.chans)-1], ErrSocketClosed, "")
	}
	s.hmu.Unlock()
	s.node.unregister(s)
	s.node.log.Debug("socket closed", "conn", s.connID, "socket_id", s.id)
}

// HandleMessage handles one inbound WebSocket message. It is part of the
// [Transport] contract: an error means the message broke the protocol and
// the connection must be closed (see [CloseCode]).
//
// Only a message that cannot be read as Phoenix framing is such an error.
// One that is framed but wrong for its topic (an empty or invalid topic,
// an empty event, a payload that is not JSON) is answered on that topic
// with an error reply whose reason says what is wrong, as Phoenix answers
// a join of an unknown topic: the socket's other channels are unaffected.
func (s *Socket) HandleMessage(data []byte, binary bool) error {
	var (
		m   wire.Message
		err error
	)
	if binary {
		m, err = wire.DecodeBinary(data)
	} else {
		m, err = wire.DecodeText(data)
	}
	var de *wire.DecodeError
	if err != nil && (!errors.As(err, &de) || !de.Framed) {
		return err
	}
	s.hmu.Lock()
	defer s.hmu.Unlock()
	if s.closed {
		return nil
	}
	reason := ""
	var te *pubsub.TopicError
	switch {
	case err != nil:
		reason = de.Reason
	case m.Topic != "phoenix" && errors.As(pubsub.CheckTopic(m.Topic), &te):
		reason = te.Reason
	}
	if reason != "" {
		s.node.log.Debug("message refused", "conn", s.connID, "event", m.Event, "reason", reason)
		s.replyTo(&m, "error", reasonOf(reason))
		return nil
	}
	switch {
	case m.Topic == "phoenix":
		if m.Event == "heartbeat" {
			s.reply("", m.Ref, m.Topic, "ok", nil)
		} else {
			s.replyTo(&m, "error", reasonUnmatched)
		}
	case m.Event == "phx_join":
		s.join(&m)
	case m.Event == "phx_leave":
		s.leave(&m)
	default:
		s.in(&m)
	}
	return nil
}

// Replies Phoenix clients recognize.
var (
	reasonUnmatched   = json.RawMessage(`{"reason":"unmatched topic"}`)
	reasonTooMany     = json.RawMessage(`{"reason":"too many channels joined"}`)
	reasonJoinCrashed = json.RawMessage(`{"reason":"join crashed"}`)
	reasonJoinFailed  = json.RawMessage(`{"reason":"join failed"}`)
	reasonUnhandled   = json.RawMessage(`{"reason":"unhandled event"}`)
	reasonBadParams   = json.RawMessage(`{"reason":"invalid join payload"}`)
)

// reasonOf makes the response {"reason": reason}.
func reasonOf(reason string) json.RawMessage {
	b := wire.AppendString(append(make([]byte, 0, len(reason)+16), `{"reason":`...), reason)
	return append(b, '}')
}

// replyTo answers the client message m (echoing its refs as sent) with a
// phx_reply. A []byte response makes a binary reply.
func (s *Socket) replyTo(m *wire.Message, status string, response any) {
	data, binary, err := encodePayload(response)
	if err != nil {
		s.node.log.Error("cannot encode reply", "conn", s.connID, "topic", m.Topic, "err", err)
		data, binary, status = []byte(`{"reason":"reply not encodable"}`), false, "error"
	}
	s.sendReplyTo(m, status, data, binary)
}

func (s *Socket) sendReplyTo(m *wire.Message, status string, data []byte, binary bool) {
	if binary || !m.JoinRefEmpty {
		s.sendReply(m.JoinRef, m.Ref, m.Topic, status, data, binary)
		return
	}
	buf := wire.BeginFrame(make([]byte, 0, 64+len(m.Topic)+len(data)))
	buf = wire.AppendTextReplyTo(buf, m, status, data)
	s.send(wire.FinishFrame(buf, wire.OpText))
}

// reply sends a phx_reply. A []byte response makes a binary reply.
func (s *Socket) reply(joinRef, ref, topic, status string, response any) {
	data, binary, err := encodePayload(response)
	if err != nil {
		s.node.log.Error("cannot encode reply", "conn", s.connID, "topic", topic, "err", err)
		data, binary, status = []byte(`{"reason":"reply not encodable"}`), false, "error"
	}
	s.sendReply(joinRef, ref, topic, status, data, binary)
}

func (s *Socket) sendReply(joinRef, ref, topic, status string, data []byte, binary bool) {
	buf := wire.BeginFrame(make([]byte, 0, 64+len(topic)+len(data)))
	if binary {
		buf = wire.AppendBinaryReply(buf, joinRef, ref, topic, status, data)
		s.send(wire.FinishFrame(buf, wire.OpBinary))
		return
	}
	buf = wire.AppendTextReply(buf, joinRef, ref, topic, status, data)
	s.send(wire.FinishFrame(buf, wire.OpText))
}

// control sends phx_close or phx_error for a channel (ref = join_ref, as
// Phoenix does).
func (s *Socket) control(c *Channel, event string) {
	buf := wire.BeginFrame(make([]byte, 0, 64+len(c.topic)))
	buf = wire.AppendText(buf, c.joinRef, c.joinRef, c.topic, event, nil)
	s.send(wire.FinishFrame(buf, wire.OpText))
}

// protect runs a handler, turning a panic into a *PanicError.
func protect(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &PanicError{Value: r, Stack: debug.Stack()}
		}
	}()
	return fn()
}

// hearthJoin is Hearth's reserved key in join params.
type hearthJoin struct {
	// Since asks for the messages after this position.
	Since *pubsub.Position `json:"since"`
}

// hearthReply is Hearth's reserved key in a join reply.
type hearthReply struct {
	Epoch     string `json:"epoch"`
	Offset    uint64 `json:"offset"`
	Recovered *bool  `json:"recovered,omitempty"`
	Replayed  int    `json:"replayed,omitempty"`
	// Reason says why recovery is incomplete (Recovered false): one of
	// the Recovery* constants.
	Reason string `json:"reason,omitempty"`
}

// Why a recovery is incomplete: the reason in the "$hearth" join reply
// when "recovered" is false (see docs/protocol.md).
const (
	// RecoveryNewEpoch: the client's position belongs to another epoch of
	// the topic's history (the history was reset, or another broker).
	RecoveryNewEpoch = "new_epoch"
	// RecoveryAhead: the client's position is past the topic's latest
	// offset in the same epoch (history lost, e.g. after a failover).
	RecoveryAhead = "ahead"
	// RecoveryTrimmed: messages after the client's position are no longer
	// retained (size or age limit of the history).
	RecoveryTrimmed = "trimmed"
	// RecoveryLimit: the client missed more messages than one recovery
	// replays (Options.HistoryLimit or the broker's maximum).
	RecoveryLimit = "limit"
	// RecoveryUnavailable: the history could not be read.
	RecoveryUnavailable = "unavailable"
)

// HearthKey is the reserved key Hearth adds to join params and join replies
// (see docs/protocol.md). Applications should not use it.
const HearthKey = "$hearth"

// splitParams removes Hearth's reserved key from join params. The key is
// recognized only as a member of the top-level object, after JSON decoding
// (so an escaped spelling counts); "$hearth" anywhere else is the app's.
// The rest of the params is left byte for byte as the client sent it.
func splitParams(p []byte) (json.RawMessage, *hearthJoin, error) {
	if len(p) == 0 {
		return json.RawMessage("{}"), nil, nil
	}
	if t := bytes.TrimSpace(p); len(t) == 0 || t[0] != '{' {
		return p, nil, nil // not an object: nothing reserved in it
	}
	if !bytes.Contains(p, []byte("$hearth")) && !bytes.Contains(p, []byte(`\u`)) {
		return p, nil, nil // the key cannot be there, in any spelling
	}
	dec := json.NewDecoder(bytes.NewReader(p))
	if _, err := dec.Token(); err != nil { // {
		return nil, nil, err
	}
	var (
		hj    *hearthJoin
		cut   [][2]int // byte ranges of the reserved members
		first = true
	)
	for dec.More() {
		start := int(dec.InputOffset()) // before the comma, if any
		if n := len(cut); n > 0 {
			start = max(start, cut[n-1][1]) // that comma went with a first member
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, err
		}
		if key, _ := tok.(string); key == HearthKey {
			hj = new(hearthJoin)
			if err := json.Unmarshal(v, hj); err != nil {
				return nil, nil, err
			}
			end := int(dec.InputOffset())
			if first {
				// Take the comma after the member instead of the one before.
				i := end
				for i < len(p) && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r') {
					i++
				}
				if i < len(p) && p[i] == ',' {
					end = i + 1
				}
			}
			cut = append(cut, [2]int{start, end})
			continue // the next member is first again if this one was
		}
		first = false
	}
	if _, err := dec.Token(); err != nil { // }
		return nil, nil, err
	}
	if hj == nil {
		return p, nil, nil
	}
	rest := make([]byte, 0, len(p))
	prev := 0
	for _, c := range cut {
		rest = append(rest, p[prev:c[0]]...)
		prev = c[1]
	}
	return append(rest, p[prev:]...), hj, nil
}

func (s *Socket) join(m *wire.Message) {
	n := s.node
	log := n.log.With("conn", s.connID, "topic", m.Topic)
	if m.Binary {
		s.replyTo(m, "error", reasonBadParams)
		return
	}
	params, hx, err := splitParams(m.Payload)
	if err != nil {
		s.replyTo(m, "error", reasonBadParams)
		return
	}
	if old := s.channel(m.Topic); old != nil {
		// A second join of a joined topic replaces the channel.
		s.endChannel(old, ErrRejoined, "phx_close")
	}
	if len(s.chans) >= n.opts.MaxChannels {
		s.replyTo(m, "error", reasonTooMany)
		return
	}
	rt := n.router.match(m.Topic)
	if rt == nil {
		s.replyTo(m, "error", reasonUnmatched)
		return
	}
	if ok, wait := n.joins.allow(s.ip, time.Now()); !ok {
		n.stats.joinsShed.Add(1)
		log.Debug("join shed by admission control")
		s.replyTo(m, "error", retryReply(wait))
		return
	}
	c := &Channel{socket: s, topic: m.Topic, joinRef: m.JoinRef, route: rt}
	// Subscribe before Join runs, holding broadcasts until the reply is
	// out: whatever Join snapshots (presence state, say) is followed by
	// every change after it, with no gap.
	c.recovering.Store(true)
	n.hub.add(c)
	if err := n.broker.Subscribe(s.Context(), m.Topic); err != nil {
		log.Error("broker subscribe failed", "err", err)
		n.hub.remove(c)
		c.state.Store(stateClosed)
		s.replyTo(m, "error", reasonJoinFailed)
		return
	}
	c.subscribed = true
	var jr JoinReply
	err = protect(func() error {
		var err error
		jr, err = rt.handler.Join(s.Context(), c, JoinEvent{Topic: m.Topic, Params: params})
		return err
	})
	if err != nil {
		s.abortJoin(c)
		c.runEndHooks(err) // what Join set up (presence, say) is undone
		var re *ReplyError
		if errors.As(err, &re) {
			n.stats.joinsRefused.Add(1)
			log.Debug("join refused")
			s.replyTo(m, "error", re.Response)
			return
		}
		n.stats.joinsCrashed.Add(1)
		logCrash(log, "join crashed", err)
		s.replyTo(m, "error", reasonJoinCrashed)
		return
	}
	resp, binary, err := encodePayload(jr.Response)
	if err != nil || binary {
		log.Error("join reply is not encodable as JSON", "err", err)
		resp = []byte("{}")
	}
	s.chans = append(s.chans, c)
	n.stats.joinsOK.Add(1)
	n.stats.channels.Add(1)

	var replay []replayItem
	if hx != nil {
		var info hearthReply
		replay, info = s.recover(c, hx, log)
		resp = mergeHearth(resp, &info)
	}
	s.sendReplyTo(m, "ok", resp, false)
	log.Debug("joined")
	c.markJoined()
	for _, it := range replay {
		if it.frame == nil {
			s.callOut(c, it.m)
		} else {
			s.sendInOrder(c, it.m, it.frame)
		}
	}
	c.finishRecovery()
}

// abortJoin undoes the subscription of a channel whose join failed and
// drops the broadcasts held for it.
func (s *Socket) abortJoin(c *Channel) {
	c.state.Store(stateClosed)
	s.unsubscribe(c)
	c.mu.Lock()
	if c.extra != nil {
		c.extra.live = nil
	}
	c.recovering.Store(false)
	c.mu.Unlock()
}

// replayItem is one message of a recovery replay: its frame, or (frame
// nil) an intercepted event for Out.
type replayItem struct {
	m     *pubsub.Message
	frame []byte
}

// recover reads the topic's history for a joining channel that speaks
// Hearth's extension. It returns the messages to replay and the position
// information for the join reply, and sets the channel's replay watermark.
//
// The replay's frames are made here, and their bytes reserved with the
// transport (see [ReplayTransport]) so that the replay does not count
// against the live queue bound: a client that reads receives all of it. A
// replay the transport cannot take is not sent, and the reply says
// recovered: false, so that the client refetches instead of being closed
// as a slow consumer and asking again.
func (s *Socket) recover(c *Channel, hx *hearthJoin, log interface {
	Warn(string, ...any)
}) ([]replayItem, hearthReply) {
	var since pubsub.Position
	if hx.Since != nil {
		since = *hx.Since
	}
	st := &s.node.stats
	if hx.Since != nil {
		st.recoveries.Add(1)
	}
	h, err := s.node.broker.History(s.Context(), c.topic, since, s.node.opts.HistoryLimit)
	if err != nil {
		log.Warn("history unavailable", "err", err)
		if hx.Since != nil {
			st.recoveriesIncomplete.Add(1)
		}
		f := false
		return nil, hearthReply{Recovered: &f, Reason: RecoveryUnavailable}
	}
	info := hearthReply{Epoch: h.Top.Epoch, Offset: h.Top.Offset}
	if h.Top.Offset > 0 {
		c.mu.Lock()
		c.x().watermark, c.x().wmEpoch = h.Top.Offset, h.Top.Epoch
		c.mu.Unlock()
	}
	if hx.Since == nil {
		return nil, info
	}
	ok := h.Complete
	info.Recovered = &ok
	if !ok {
		st.recoveriesIncomplete.Add(1)
		info.Reason = incompleteReason(since, h)
		return nil, info
	}
	replay := make([]replayItem, 0, len(h.Messages))
	size := 0
	for i := range h.Messages {
		m := &h.Messages[i]
		if m.Exclude != "" && m.Exclude == s.connID {
			continue
		}
		it := replayItem{m: m}
		if _, ok := c.route.intercept[m.Event]; ok {
			size += len(m.Payload) + len(m.Event) + len(c.topic) + 64 // about what Out pushes
		} else {
			it.frame = encodeBroadcast(m, s.hearthExt)
			size += len(it.frame)
			if s.deflater != nil {
				// The transport compresses the frame when it is sent, after
				// the reply: reserve the plain size, and the few bytes deflate
				// adds to what does not shrink.
				size += 16
			}
		}
		replay = append(replay, it)
	}
	if rt, ok := s.transport.(ReplayTransport); ok && size > 0 && !rt.ReserveReplay(size) {
		log.Warn("replay too large for the connection: recovery refused", "messages", len(replay), "bytes", size)
		st.recoveriesIncomplete.Add(1)
		ok := false
		info.Recovered = &ok
		return nil, info
	}
	info.Replayed = len(replay)
	st.replayed.Add(uint64(len(replay)))
	return replay, info
}

// incompleteReason tells why h, read after since, is not complete.
func incompleteReason(since pubsub.Position, h pubsub.History) string {
	switch {
	case since.Epoch != h.Top.Epoch:
		return RecoveryNewEpoch
	case since.Offset > h.Top.Offset:
		return RecoveryAhead
	case len(h.Messages) > 0 && h.Messages[0].Offset == since.Offset+1:
		// Nothing missing at the start: the replay stopped at the limit.
		return RecoveryLimit
	default:
		return RecoveryTrimmed
	}
}

// mergeHearth adds Hearth's reserved key to a JSON object response. A
// response that is not an object is left alone.
func mergeHearth(resp []byte, info *hearthReply) []byte {
	resp = bytes.TrimSpace(resp)
	if len(resp) < 2 || resp[0] != '{' {
		return resp
	}
	b, _ := json.Marshal(info)
	out := make([]byte, 0, len(resp)+len(b)+16)
	out = append(out, `{"$hearth":`...)
	out = append(out, b...)
	rest := bytes.TrimSpace(resp[1:])
	if len(rest) > 0 && rest[0] != '}' {
		out = append(out, ',')
	}
	return append(out, rest...)
}

func (s *Socket) leave(m *wire.Message) {
	c := s.channel(m.Topic)
	if c != nil && c.joinRef != m.JoinRef {
		s.node.log.Debug("stale leave dropped", "conn", s.connID, "topic", m.Topic)
		return
	}
	// Unsubscribed before the reply: once the client has it, no broadcast
	// that started after it reaches the client for this channel.
	ended := c != nil && s.closeChannel(c)
	s.replyTo(m, "ok", nil)
	if ended {
		s.terminate(c, ErrLeft)
	}
}

func (s *Socket) in(m *wire.Message) {
	c := s.channel(m.Topic)
	if c == nil {
		s.replyTo(m, "error", reasonUnmatched)
		return
	}
	if c.joinRef != m.JoinRef {
		s.node.log.Debug("message with stale join_ref dropped", "conn", s.connID, "topic", m.Topic, "event", m.Event)
		return
	}
	h := c.route.handler.In
	if h == nil {
		s.replyTo(m, "error", reasonUnhandled)
		return
	}
	s.node.stats.messagesIn.Add(1)
	ev := InEvent{Event: m.Event, Ref: m.Ref, Payload: bytes.Clone(m.Payload), Binary: m.Binary}
	var r Reply
	err := protect(func() error {
		var err error
		r, err = h(s.Context(), c, ev)
		return err
	})
	var re *ReplyError
	switch {
	case err == nil:
		if r.Status != "" {
			s.replyTo(m, r.Status, r.Response)
		}
	case errors.As(err, &re):
		s.replyTo(m, "error", re.Response)
	default:
		s.stopOrCrash(c, err)
	}
}

// stopOrCrash ends a channel after a handler returned err: ErrStop closes
// it normally, anything else crashes it.
func (s *Socket) stopOrCrash(c *Channel, err error) {
	if errors.Is(err, ErrStop) {
		s.endChannel(c, ErrStop, "phx_close")
		return
	}
	s.node.stats.crashes.Add(1)
	logCrash(s.node.log.With("conn", s.connID, "topic", c.topic), "channel crashed", err)
	s.endChannel(c, err, "phx_error")
}

func logCrash(log interface{ Error(string, ...any) }, msg string, err error) {
	var pe *PanicError
	if errors.As(err, &pe) {
		log.Error(msg, "panic", pe.Value, "stack", string(pe.Stack))
		return
	}
	log.Error(msg, "err", err)
}

// unsubscribe takes a channel out of the local hub and undoes its broker
// subscription. Unsubscribe is the broker's own bookkeeping, so it gets no
// request context: it must happen even when the socket's is done.
func (s *Socket) unsubscribe(c *Channel) {
	s.node.hub.remove(c)
	if !c.subscribed {
		return
	}
	if err := s.node.broker.Unsubscribe(context.Background(), c.topic); err != nil {
		s.node.log.Warn("broker unsubscribe failed", "topic", c.topic, "err", err)
	}
}

// endChannel removes a channel, tells the client with event ("" for
// nothing) and runs Terminate. The handler lock must be held.
func (s *Socket) endChannel(c *Channel, reason error, event string) {
	if !s.closeChannel(c) {
		return
	}
	if event != "" {
		s.control(c, event)
	}
	s.terminate(c, reason)
}

// closeChannel removes a channel from the socket and unsubscribes it. It
// returns false if the channel was closed already. The handler lock must
// be held.
func (s *Socket) closeChannel(c *Channel) bool {
	s.dropChannel(c)
	if c.state.Swap(stateClosed) == stateClosed {
		return false
	}
	s.node.stats.channels.Add(-1)
	s.unsubscribe(c)
	return true
}

func (s *Socket) terminate(c *Channel, reason error) {
	if t := c.route.handler.Terminate; t != nil {
		if err := protect(func() error { t(c, reason); return nil }); err != nil {
			logCrash(s.node.log.With("conn", s.connID, "topic", c.topic), "terminate crashed", err)
		}
	}
	c.runEndHooks(reason)
}

// runEndHooks runs the OnTerminate hooks once.
func (c *Channel) runEndHooks(reason error) {
	c.mu.Lock()
	var hooks []func(error)
	if c.extra != nil {
		hooks, c.extra.onEnd = c.extra.onEnd, nil
	}
	c.mu.Unlock()
	for _, fn := range hooks {
		if err := protect(func() error { fn(reason); return nil }); err != nil {
			logCrash(c.socket.node.log.With("conn", c.socket.connID, "topic", c.topic), "terminate hook crashed", err)
		}
	}
}

// enqueueOut queues an intercepted broadcast (frame nil) or a frame that
// must follow one for the socket's Out worker. It runs on the fanout path
// and never blocks. It reports false when no Out work is pending and frame
// was given: the caller then sends the frame directly.
func (s *Socket) enqueueOut(c *Channel, m *pubsub.Message, frame []byte) bool {
	s.omu.Lock()
	if frame != nil && !s.outRunning {
		s.omu.Unlock()
		return false
	}
	if s.outClosed {
		s.omu.Unlock()
		return true
	}
	if len(s.outq) >= s.node.opts.MaxOutQueue {
		s.outClosed = true
		s.outq = nil
		s.omu.Unlock()
		s.node.log.Warn("socket closed: Out queue full", "conn", s.connID)
		s.Close(CloseSlowConsumer, "slow consumer")
		return true
	}
	s.outq = append(s.outq, outItem{c, m, frame})
	start := !s.outRunning
	s.outRunning = true
	s.outBusy.Store(true)
	s.omu.Unlock()
	if start {
		s.node.wg.Add(1)
		go s.runOut()
	}
	return true
}

// runOut drains the Out queue; it exists only while there is work.
func (s *Socket) runOut() {
	defer s.node.wg.Done()
	for {
		s.omu.Lock()
		q := s.outq
		s.outq = nil
		if len(q) == 0 || s.outClosed {
			s.outRunning = false
			s.outBusy.Store(false)
			s.omu.Unlock()
			return
		}
		s.omu.Unlock()
		s.hmu.Lock()
		for _, it := range q {
			if it.c.state.Load() != stateJoined || s.closed {
				continue
			}
			if it.frame != nil {
				s.send(it.frame)
			} else {
				s.callOut(it.c, it.m)
			}
		}
		s.hmu.Unlock()
	}
}

// callOut runs the Out handler for one message. The handler lock must be held.
func (s *Socket) callOut(c *Channel, m *pubsub.Message) {
	ev := OutEvent{Event: m.Event, Payload: m.Payload, Binary: m.Binary}
	err := protect(func() error { return c.route.handler.Out(s.Context(), c, ev) })
	if err != nil {
		s.stopOrCrash(c, err)
	}
}
