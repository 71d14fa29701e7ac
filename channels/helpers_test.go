package channels_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/wire"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is an in-memory channels.Transport: it keeps every frame the
// socket sends, so tests can read them as a client would.
type recorder struct {
	mu     sync.Mutex
	frames [][]byte
	code   int
	reason string
	wake   chan struct{}
}

func newRecorder() *recorder { return &recorder{wake: make(chan struct{}, 1)} }

func (r *recorder) Send(f []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.code != 0 {
		return false
	}
	r.frames = append(r.frames, f)
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return true
}

func (r *recorder) Close(code int, reason string) {
	r.mu.Lock()
	if r.code == 0 {
		r.code, r.reason = code, reason
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// msg is a decoded server frame.
type msg struct {
	wire.Message
	op byte
}

// unframe strips the WebSocket header of a server frame.
func unframe(t *testing.T, f []byte) (byte, []byte) {
	t.Helper()
	op := f[0] & 0x0f
	switch l := f[1] & 0x7f; l {
	case 126:
		return op, f[4:]
	case 127:
		return op, f[10:]
	default:
		return op, f[2:]
	}
}

// next waits for the next frame and decodes it.
func (r *recorder) next(t *testing.T, seen *int) msg {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		r.mu.Lock()
		if *seen < len(r.frames) {
			f := r.frames[*seen]
			*seen++
			r.mu.Unlock()
			op, p := unframe(t, f)
			if op == wire.OpBinary {
				return msg{Message: decodeServerBinary(t, p), op: op}
			}
			m, err := wire.DecodeText(p)
			if err != nil {
				t.Fatalf("server sent an undecodable frame %q: %v", p, err)
			}
			return msg{Message: m, op: op}
		}
		r.mu.Unlock()
		select {
		case <-r.wake:
		case <-deadline:
			t.Fatalf("no frame from the server within 5s")
		}
	}
}

// decodeServerBinary decodes the server's binary kinds (push, reply, broadcast, broadcast with position).
func decodeServerBinary(t *testing.T, b []byte) wire.Message {
	t.Helper()
	var m wire.Message
	m.Binary = true
	take := func(p *int, n byte) string { s := string(b[*p : *p+int(n)]); *p += int(n); return s }
	switch b[0] {
	case wire.KindPush:
		p := 4
		m.JoinRef, m.Topic, m.Event = take(&p, b[1]), take(&p, b[2]), take(&p, b[3])
		m.Payload = b[p:]
	case wire.KindReply:
		p := 5
		m.JoinRef, m.Ref, m.Topic = take(&p, b[1]), take(&p, b[2]), take(&p, b[3])
		m.Event = "phx_reply:" + take(&p, b[4])
		m.Payload = b[p:]
	case wire.KindBroadcast:
		p := 3
		m.Topic, m.Event = take(&p, b[1]), take(&p, b[2])
		m.Payload = b[p:]
	case wire.KindBroadcastPos:
		p := 4
		m.Topic, m.Event, m.Ref = take(&p, b[1]), take(&p, b[2]), take(&p, b[3])
		m.Payload = b[p:]
	default:
		t.Fatalf("unknown binary kind %d", b[0])
	}
	return m
}

// client drives one socket of a node through the Transport seam.
type client struct {
	t    *testing.T
	s    *channels.Socket
	r    *recorder
	seen int
	ref  int
}

func connect(t *testing.T, n *channels.Node, params url.Values) *client {
	t.Helper()
	if params == nil {
		params = url.Values{}
	}
	s, err := n.NewSocket(context.Background(), channels.ConnectEvent{Params: params})
	if err != nil {
		t.Fatalf("NewSocket: %v", err)
	}
	c := &client{t: t, s: s, r: newRecorder()}
	s.Start(c.r)
	t.Cleanup(c.close)
	return c
}

func (c *client) close() {
	if c.s != nil {
		c.s.Closed()
		c.s = nil
	}
}

// send sends a text message and returns its ref.
func (c *client) send(joinRef, topic, event string, payload any) string {
	c.t.Helper()
	c.ref++
	ref := itoa(c.ref)
	p, err := json.Marshal(payload)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.s.HandleMessage(wire.AppendText(nil, joinRef, ref, topic, event, p), false); err != nil {
		c.t.Fatalf("HandleMessage: %v", err)
	}
	return ref
}

func (c *client) next() msg { c.t.Helper(); return c.r.next(c.t, &c.seen) }

// expectReply reads the next frame and checks it is the reply to ref with status.
func (c *client) expectReply(ref, status string) json.RawMessage {
	c.t.Helper()
	m := c.next()
	if m.Event != "phx_reply" || m.Ref != ref {
		c.t.Fatalf("want phx_reply to ref %s, got %+v payload %s", ref, m.Message, m.Payload)
	}
	var r struct {
		Status   string          `json:"status"`
		Response json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		c.t.Fatal(err)
	}
	if r.Status != status {
		c.t.Fatalf("reply to ref %s: status %q (response %s), want %q", ref, r.Status, r.Response, status)
	}
	return r.Response
}

// join joins topic with params and expects status; the join ref is the push ref.
func (c *client) join(topic string, params any, status string) (joinRef string, resp json.RawMessage) {
	c.t.Helper()
	joinRef = itoa(c.ref + 1)
	ref := c.send(joinRef, topic, "phx_join", params)
	return joinRef, c.expectReply(ref, status)
}

// noFrame checks that nothing more arrives for a short while.
func (c *client) noFrame() {
	c.t.Helper()
	time.Sleep(20 * time.Millisecond) // a negative check: nothing may arrive
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	if c.seen < len(c.r.frames) {
		c.t.Fatalf("unexpected frame %q", c.r.frames[c.seen])
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
