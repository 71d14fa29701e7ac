package channels

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/hearth-rt/hearth/channels/wire"
	"github.com/hearth-rt/hearth/pubsub"
)

const (
	stateJoining int32 = iota
	stateJoined
	stateClosed
)

// Channel is one socket's membership of one topic, from a successful join
// until leave, close or crash. Its methods are safe for concurrent use.
type Channel struct {
	socket  *Socket
	topic   string
	joinRef string
	route   *route

	state      atomic.Int32
	recovering atomic.Bool // live broadcasts are buffered until replay is done
	subscribed bool        // broker.Subscribe succeeded (handler lock)

	mu    sync.Mutex    // guards extra and what it holds
	extra *channelExtra // allocated on first use: most channels never need it
}

// channelExtra holds a channel's rarely used state, so that an idle joined
// channel stays small.
type channelExtra struct {
	pending   [][]byte          // pushes made during Join, sent after the reply
	live      []*pubsub.Message // broadcasts held until the join reply and replay are out
	watermark uint64            // during recovery: the offset already covered
	wmEpoch   string            // the epoch of watermark
	// replayDone: the replay is out, but the node's live stream had not
	// yet reached the watermark (its deliveries can lag behind the history
	// a recovery read): live messages up to the watermark are dropped
	// until one beyond it arrives. See bufferLive.
	replayDone bool
	assigns    map[string]any
	onEnd      []func(error)
}

// x returns the extra state, allocating it. c.mu must be held.
func (c *Channel) x() *channelExtra {
	if c.extra == nil {
		c.extra = &channelExtra{}
	}
	return c.extra
}

// Topic returns the channel's topic.
func (c *Channel) Topic() string { return c.topic }

// JoinRef returns the ref of the join that opened the channel.
func (c *Channel) JoinRef() string { return c.joinRef }

// Socket returns the channel's socket.
func (c *Channel) Socket() *Socket { return c.socket }

// Set stores a value in the channel's assigns.
func (c *Channel) Set(key string, v any) {
	c.mu.Lock()
	x := c.x()
	if x.assigns == nil {
		x.assigns = make(map[string]any)
	}
	x.assigns[key] = v
	c.mu.Unlock()
}

// Get returns a value from the channel's assigns, or nil.
func (c *Channel) Get(key string) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.extra == nil {
		return nil
	}
	return c.extra.assigns[key]
}

// OnTerminate registers fn to run when the channel ends, after
// Handler.Terminate, with the same reason. Extensions such as presence use
// it to clean up. If the channel already ended, fn runs at once.
func (c *Channel) OnTerminate(fn func(reason error)) {
	c.mu.Lock()
	if c.state.Load() != stateClosed {
		c.x().onEnd = append(c.x().onEnd, fn)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	fn(ErrNotJoined)
}

// Push sends an event to this channel's client only.
//
// Payloads are encoded the same way everywhere (pushes, replies,
// broadcasts): nil is {}; []byte is sent as a binary frame (an ArrayBuffer
// in the browser); json.RawMessage is sent as is and must be valid JSON;
// anything else goes through encoding/json. Pushes made inside Join reach
// the client right after the join reply.
func (c *Channel) Push(event string, payload any) error {
	data, binary, err := encodePayload(payload)
	if err != nil {
		return err
	}
	if event == "" || len(event) > 255 {
		return errors.New("channels: event must be 1 to 255 bytes")
	}
	buf := wire.BeginFrame(make([]byte, 0, 32+len(c.joinRef)+len(c.topic)+len(event)+len(data)))
	var frame []byte
	if binary {
		buf = wire.AppendBinaryPush(buf, c.joinRef, c.topic, event, data)
		frame = wire.FinishFrame(buf, wire.OpBinary)
	} else {
		buf = wire.AppendText(buf, c.joinRef, "", c.topic, event, data)
		frame = wire.FinishFrame(buf, wire.OpText)
	}
	return c.sendFrame(frame)
}

// Reply answers the client push with the given ref, typically one for
// which In returned [NoReply].
func (c *Channel) Reply(ref string, r Reply) error {
	if r.Status == "" {
		return nil
	}
	data, binary, err := encodePayload(r.Response)
	if err != nil {
		return err
	}
	buf := wire.BeginFrame(make([]byte, 0, 64+len(c.topic)+len(data)))
	var frame []byte
	if binary {
		buf = wire.AppendBinaryReply(buf, c.joinRef, ref, c.topic, r.Status, data)
		frame = wire.FinishFrame(buf, wire.OpBinary)
	} else {
		buf = wire.AppendTextReply(buf, c.joinRef, ref, c.topic, r.Status, data)
		frame = wire.FinishFrame(buf, wire.OpText)
	}
	return c.sendFrame(frame)
}

func (c *Channel) sendFrame(frame []byte) error {
	c.mu.Lock()
	switch c.state.Load() {
	case stateJoining:
		c.x().pending = append(c.x().pending, frame)
		c.mu.Unlock()
		return nil
	case stateClosed:
		c.mu.Unlock()
		return ErrNotJoined
	}
	c.mu.Unlock()
	if !c.socket.send(frame) {
		return ErrSocketClosed
	}
	return nil
}

// markJoined sends the pushes made during Join and lets later ones through.
func (c *Channel) markJoined() {
	c.mu.Lock()
	c.state.CompareAndSwap(stateJoining, stateJoined)
	var pending [][]byte
	if c.extra != nil {
		pending, c.extra.pending = c.extra.pending, nil
	}
	for _, f := range pending {
		c.socket.send(f)
	}
	c.mu.Unlock()
}

// Broadcast sends an event to every subscriber of the channel's topic on
// every node, this client included.
func (c *Channel) Broadcast(ctx context.Context, event string, payload any) error {
	return c.socket.node.publish(ctx, c.topic, event, payload, "")
}

// BroadcastFrom sends an event to every subscriber of the channel's topic
// on every node except this client.
func (c *Channel) BroadcastFrom(ctx context.Context, event string, payload any) error {
	return c.socket.node.publish(ctx, c.topic, event, payload, c.socket.connID)
}

// bufferLive keeps a live broadcast while the channel replays history. It
// reports false when the caller must deliver m now (recovery is over).
//
// A node's live deliveries can lag behind what another connection reads
// from the history (a Postgres listener receives a notification after the
// commit is visible to everyone): a live message the replay already sent
// can arrive after the replay. So once the replay is out, the channel
// stays on this path, dropping live messages up to the watermark, until
// the first one beyond it (or of another epoch) shows that the live
// stream caught up; then it switches to the fastlane.
func (c *Channel) bufferLive(m *pubsub.Message) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.recovering.Load() {
		return false
	}
	x := c.x()
	if !x.replayDone {
		x.live = append(x.live, m)
		return true
	}
	if m.Offset == 0 {
		return false // not a stored message: nothing to compare
	}
	if m.Epoch == x.wmEpoch && m.Offset <= x.watermark {
		if m.Offset == x.watermark {
			c.recovering.Store(false) // caught up: what follows is new
		}
		return true // already replayed, or before the client's position
	}
	c.recovering.Store(false)
	return false
}

// finishRecovery delivers the live broadcasts buffered during replay that
// lie after the watermark, then switches the channel to the fastlane, or,
// when no live message at or beyond the watermark arrived yet, to
// dropping late copies (see bufferLive). The handler lock must be held.
func (c *Channel) finishRecovery() {
	for {
		c.mu.Lock()
		var live []*pubsub.Message
		var mark uint64
		var caughtUp bool
		if c.extra != nil {
			live, c.extra.live, mark = c.extra.live, nil, c.extra.watermark
		}
		if len(live) == 0 {
			if mark == 0 || c.extra.replayDone {
				c.recovering.Store(false)
			} else {
				c.extra.replayDone = true
			}
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		for _, m := range live {
			if m.Offset != 0 && m.Offset >= mark {
				caughtUp = true
			}
			if m.Offset != 0 && m.Offset <= mark {
				continue // already replayed, or before the client's position
			}
			if m.Offset > mark {
				mark = m.Offset
				c.mu.Lock()
				c.x().watermark = m.Offset
				c.mu.Unlock()
			}
			c.deliverNow(m)
		}
		if caughtUp {
			c.mu.Lock()
			c.x().replayDone = true // the next empty round switches over
			c.mu.Unlock()
		}
	}
}

// deliverNow writes one broadcast to this channel alone, through Out when
// the event is intercepted. The handler lock must be held.
func (c *Channel) deliverNow(m *pubsub.Message) {
	s := c.socket
	if m.Exclude != "" && m.Exclude == s.connID {
		return
	}
	if _, ok := c.route.intercept[m.Event]; ok {
		s.callOut(c, m)
		return
	}
	s.sendInOrder(c, m, encodeBroadcast(m, s.hearthExt))
}

// encodePayload turns a payload value into wire bytes; see Channel.Push.
func encodePayload(v any) (data []byte, binary bool, err error) {
	switch p := v.(type) {
	case nil:
		return []byte("{}"), false, nil
	case []byte:
		return p, true, nil
	case json.RawMessage:
		if !json.Valid(p) {
			return nil, false, errors.New("channels: payload is not valid JSON")
		}
		return p, false, nil
	default:
		b, err := json.Marshal(v)
		if err != nil {
			return nil, false, errors.Join(errors.New("channels: encode payload"), err)
		}
		return b, false, nil
	}
}
