// Package channeltest tests channels the way clients use them: a Hearth
// server on a loopback port, and a small client speaking the Phoenix V2
// protocol over a real WebSocket connection, as the JavaScript clients do.
// It is Hearth's counterpart of Phoenix.ChannelTest, with no mocks between
// the test and the channel.
//
//	srv := channeltest.NewServer(t, channels.Options{Connect: connect}, register)
//	ada := channeltest.Dial(t, srv.URL, url.Values{"token": {"ada"}})
//	if r := ada.Join("room:lobby", nil); r.Status != "ok" {
//		t.Fatalf("join: %s %s", r.Status, r.Response)
//	}
//	ada.Push("room:lobby", "new_msg", map[string]string{"body": "hi"})
//	var msg struct{ Body string }
//	ada.Expect("room:lobby", "new_msg").Decode(t, &msg)
//	ada.Refute("room:lobby", "new_msg", 100*time.Millisecond)
//
// Every call that waits gives up after [Timeout] and fails the test. An
// app that serves its own router (with the socket mounted on
// "/socket/websocket") can start it with net/http/httptest and [Dial]
// [SocketURL] of its address instead of using [NewServer].
//
// A [Client] reads the connection on a goroutine of its own, so messages
// that arrive while the test does something else wait in order for the
// next [Client.Expect] or [Client.Next]. Its methods must be called from
// the test's goroutine.
package channeltest

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/server"
)

// Timeout bounds every wait of a Client: for a reply, a message, a close.
var Timeout = 10 * time.Second

// Server is a Hearth node served over WebSocket on loopback.
type Server struct {
	// URL is the socket's endpoint, "ws://127.0.0.1:port/socket/websocket".
	URL  string
	Node *channels.Node
	WS   *server.Server
}

// NewServer serves a node made with opts, whose channels register
// installs, on "/socket/websocket" of a loopback port until the test ends.
// The node's broker is the in-process default unless opts.Broker sets one;
// either way it is closed at the end.
func NewServer(t testing.TB, opts channels.Options, register func(*channels.Node)) *Server {
	t.Helper()
	node := channels.New(opts)
	if register != nil {
		register(node)
	}
	wsrv := server.New(node, server.Options{})
	mux := http.NewServeMux()
	mux.Handle("/socket/websocket", wsrv)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), Timeout)
		defer cancel()
		if err := wsrv.Shutdown(ctx); err != nil {
			t.Errorf("channeltest: shutdown: %v", err)
		}
		hs.Close()
		_ = node.Broker().Close()
	})
	return &Server{URL: SocketURL(hs.URL), Node: node, WS: wsrv}
}

// SocketURL turns the URL of an HTTP server serving an app
// ("http://127.0.0.1:port") into its socket's endpoint
// ("ws://127.0.0.1:port/socket/websocket").
func SocketURL(httpURL string) string {
	return "ws" + strings.TrimPrefix(httpURL, "http") + "/socket/websocket"
}

// Message is a message from the server.
type Message struct {
	JoinRef, Ref, Topic, Event string
	// Payload is the JSON payload, or the raw bytes when Binary is true.
	Payload []byte
	Binary  bool
	// Status is the status of a binary reply (a JSON reply carries it in
	// its payload).
	Status string
}

// Decode unmarshals the JSON payload into v, failing the test if it cannot.
func (m Message) Decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(m.Payload, v); err != nil {
		t.Fatalf("channeltest: %s on %s: payload %s: %v", m.Event, m.Topic, m.Payload, err)
	}
}

// Reply is the server's answer to a join, a leave or a push.
type Reply struct {
	// Status is "ok" or "error".
	Status string
	// Response is the reply's JSON response, or raw bytes for a binary one.
	Response []byte
}

// Reason returns the "reason" of an error response, or "".
func (r Reply) Reason() string {
	var v struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(r.Response, &v)
	return v.Reason
}

// Client is one WebSocket connection speaking Phoenix V2.
type Client struct {
	t        testing.TB
	conn     net.Conn
	ref      int
	joinRefs map[string]string

	wmu sync.Mutex // the test's frames and the reader's pongs and close echo

	mu      sync.Mutex
	inbox   []Message     // received, not yet taken
	wake    chan struct{} // a message arrived or the reader ended (cap 1)
	done    chan struct{} // closed when the reader ends
	readErr error         // why the reader ended
	closed  *closeInfo    // the server's close frame, if it sent one
}

// closeInfo is the close frame the server sent.
type closeInfo struct {
	code   int
	reason string
}

// Dial connects to a socket endpoint (a [Server]'s URL, or [SocketURL] of an
// app's test server) with the given connect params. It fails the test if
// the connection is refused. The connection is closed when the test ends.
func Dial(t testing.TB, endpoint string, params url.Values) *Client {
	t.Helper()
	return DialWith(t, endpoint, DialOptions{Params: params})
}

// DialOptions is what a client sends when it connects.
type DialOptions struct {
	// Params are the connect params, in the URL ("vsn" is added).
	Params url.Values
	// Token, when set, is sent as the Phoenix 1.8 client sends its
	// authToken: in Sec-WebSocket-Protocol, never in the URL. The server
	// hands it to Options.Connect as ConnectEvent.Token (package
	// channels/token reads it there).
	Token string
	// Header holds more request headers: cookies, Origin.
	Header http.Header
}

// DialWith is [Dial] with a token or headers.
func DialWith(t testing.TB, endpoint string, opts DialOptions) *Client {
	t.Helper()
	q := url.Values{"vsn": {"2.0.0"}}
	for k, v := range opts.Params {
		q[k] = v
	}
	d := ws.Dialer{}
	if opts.Token != "" {
		d.Protocols = []string{server.Subprotocol, "base64url.bearer.phx." + base64.RawURLEncoding.EncodeToString([]byte(opts.Token))}
	}
	if len(opts.Header) > 0 {
		d.Header = ws.HandshakeHeaderHTTP(opts.Header)
	}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	conn, br, _, err := d.Dial(ctx, endpoint+"?"+q.Encode())
	if err != nil {
		t.Fatalf("channeltest: dial %s: %v", endpoint, err)
	}
	var src io.Reader = conn
	if br != nil { // the server wrote right after the handshake
		src = br
	}
	c := &Client{
		t:        t,
		conn:     conn,
		joinRefs: make(map[string]string),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	go c.read(src)
	t.Cleanup(c.Close)
	return c
}

// Join joins topic with params (nil means {}) and returns the reply.
func (c *Client) Join(topic string, params any) Reply {
	c.t.Helper()
	ref := c.send("", topic, "phx_join", params)
	c.joinRefs[topic] = ref
	return c.reply(topic, ref)
}

// Leave leaves topic and returns the reply.
func (c *Client) Leave(topic string) Reply {
	c.t.Helper()
	ref := c.send(c.joinRefs[topic], topic, "phx_leave", nil)
	return c.reply(topic, ref)
}

// Push sends event with payload (nil means {}) on a joined topic and
// returns the reply.
func (c *Client) Push(topic, event string, payload any) Reply {
	c.t.Helper()
	ref := c.send(c.joinRefs[topic], topic, event, payload)
	return c.reply(topic, ref)
}

// PushBinary sends event with raw bytes on a joined topic as a Phoenix V2
// binary push and returns the reply. Topic, event and references must be
// at most 255 bytes each.
func (c *Client) PushBinary(topic, event string, data []byte) Reply {
	c.t.Helper()
	joinRef := c.joinRefs[topic]
	c.ref++
	ref := strconv.Itoa(c.ref)
	for _, f := range []string{joinRef, topic, event} {
		if len(f) > 255 {
			c.t.Fatalf("channeltest: binary push: %q is longer than 255 bytes", f)
		}
	}
	b := make([]byte, 0, 5+len(joinRef)+len(ref)+len(topic)+len(event)+len(data))
	b = append(b, 0, byte(len(joinRef)), byte(len(ref)), byte(len(topic)), byte(len(event)))
	b = append(append(append(append(append(b, joinRef...), ref...), topic...), event...), data...)
	if err := c.write(ws.NewBinaryFrame(b)); err != nil {
		c.t.Fatalf("channeltest: send %s on %s: %v", event, topic, c.sendErr(err))
	}
	return c.reply(topic, ref)
}

// Expect returns the first message with topic and event, already received
// or the next to arrive; the other messages stay for later calls.
func (c *Client) Expect(topic, event string) Message {
	c.t.Helper()
	m, err := c.await(Timeout, func(m Message) bool { return m.Topic == topic && m.Event == event })
	if err != nil {
		c.t.Fatalf("channeltest: waiting for %s on %s: %v", event, topic, err)
	}
	return m
}

// Refute fails the test if a message with topic and event was received
// and not taken, or arrives within d. The other messages stay for later
// calls.
func (c *Client) Refute(topic, event string, d time.Duration) {
	c.t.Helper()
	m, err := c.await(d, func(m Message) bool { return m.Topic == topic && m.Event == event })
	switch {
	case err == nil:
		c.t.Fatalf("channeltest: got %s on %s, want none within %v: %s", event, topic, d, m.Payload)
	case !errors.Is(err, errTimeout):
		c.t.Fatalf("channeltest: refuting %s on %s: %v", event, topic, err)
	}
}

// Next returns the next message that no call has taken yet: the oldest
// one received, else the next to arrive.
func (c *Client) Next() Message {
	c.t.Helper()
	m, err := c.await(Timeout, func(Message) bool { return true })
	if err != nil {
		c.t.Fatalf("channeltest: waiting for a message: %v", err)
	}
	return m
}

// ExpectClose waits until the server closes the connection and returns
// the close code and reason. Messages sent before the close stay for later
// calls.
func (c *Client) ExpectClose() (code int, reason string) {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(Timeout):
		c.t.Fatalf("channeltest: the server did not close the connection within %v", Timeout)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed == nil {
		c.t.Fatalf("channeltest: the connection ended without a close frame: %v", c.readErr)
	}
	return c.closed.code, c.closed.reason
}

// Close closes the connection with 1000 (unless the server closed it) and
// waits for the reader to end. Dial arranges for it at the end of the test.
func (c *Client) Close() {
	c.mu.Lock()
	serverClosed := c.closed != nil
	c.mu.Unlock()
	if !serverClosed {
		body := ws.NewCloseFrameBody(ws.StatusNormalClosure, "")
		_ = c.write(ws.NewCloseFrame(body))
	}
	_ = c.conn.Close()
	<-c.done
}

// errTimeout is what await returns when nothing matched in time.
var errTimeout = errors.New("timed out")

func (c *Client) send(joinRef, topic, event string, payload any) string {
	c.t.Helper()
	if payload == nil {
		payload = struct{}{}
	}
	c.ref++
	ref := strconv.Itoa(c.ref)
	if joinRef == "" && event == "phx_join" {
		joinRef = ref
	}
	var jr any
	if joinRef != "" {
		jr = joinRef
	}
	frame, err := json.Marshal([]any{jr, ref, topic, event, payload})
	if err != nil {
		c.t.Fatalf("channeltest: encode %s: %v", event, err)
	}
	if err := c.write(ws.NewTextFrame(frame)); err != nil {
		c.t.Fatalf("channeltest: send %s on %s: %v", event, topic, c.sendErr(err))
	}
	return ref
}

// sendErr explains a failed write: once the server has closed the
// connection (its close frame read, or the socket reset before the write),
// that close is the reason, not the broken pipe that followed it.
func (c *Client) sendErr(err error) error {
	if c.awaitClosed(time.Second) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed != nil {
			return fmt.Errorf("closed by the server: %d %q (%w)", c.closed.code, c.closed.reason, err)
		}
	}
	return err
}

// awaitClosed waits up to d for the reader to end.
func (c *Client) awaitClosed(d time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(d):
		return false
	}
}

// write masks and writes one frame, whoever calls it.
func (c *Client) write(f ws.Frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(Timeout))
	return ws.WriteFrame(c.conn, ws.MaskFrameInPlace(f))
}

func (c *Client) reply(topic, ref string) Reply {
	c.t.Helper()
	m, err := c.await(Timeout, func(m Message) bool { return m.Event == "phx_reply" && m.Topic == topic && m.Ref == ref })
	if err != nil {
		c.t.Fatalf("channeltest: waiting for the reply to ref %s on %s: %v", ref, topic, err)
	}
	if m.Binary {
		return Reply{Status: m.Status, Response: m.Payload}
	}
	var r struct {
		Status   string          `json:"status"`
		Response json.RawMessage `json:"response"`
	}
	m.Decode(c.t, &r)
	return Reply{Status: r.Status, Response: r.Response}
}

// await takes the first received message for which match is true, waiting
// up to d for it to arrive.
func (c *Client) await(d time.Duration, match func(Message) bool) (Message, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	seen := 0 // messages of the inbox already looked at
	for {
		c.mu.Lock()
		for i := seen; i < len(c.inbox); i++ {
			if m := c.inbox[i]; match(m) {
				c.inbox = append(c.inbox[:i], c.inbox[i+1:]...)
				c.mu.Unlock()
				return m, nil
			}
		}
		seen = len(c.inbox)
		err := c.readErr
		c.mu.Unlock()
		if err != nil {
			return Message{}, err
		}
		select {
		case <-c.wake:
		case <-timer.C:
			return Message{}, errTimeout
		}
	}
}

// read runs on its own goroutine until the connection ends: it queues the
// server's messages, answers pings and echoes the server's close frame.
func (c *Client) read(src io.Reader) {
	defer close(c.done)
	rd := &wsutil.Reader{Source: src, State: ws.StateClientSide, CheckUTF8: true, OnIntermediate: c.control}
	err := func() error {
		for {
			hdr, err := rd.NextFrame()
			if err != nil {
				return err
			}
			if hdr.OpCode.IsControl() {
				if err := c.control(hdr, rd); err != nil {
					return err
				}
				continue
			}
			data, err := io.ReadAll(rd)
			if err != nil {
				return err
			}
			m, err := decode(data, hdr.OpCode == ws.OpBinary)
			if err != nil {
				return err
			}
			c.mu.Lock()
			c.inbox = append(c.inbox, m)
			c.mu.Unlock()
			c.signal()
		}
	}()
	c.mu.Lock()
	if c.closed != nil {
		err = fmt.Errorf("closed by the server: %d %q", c.closed.code, c.closed.reason)
	} else if errors.Is(err, net.ErrClosed) {
		err = errors.New("connection closed")
	}
	c.readErr = err
	c.mu.Unlock()
	c.signal()
}

func (c *Client) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// control handles a control frame. Close codes are taken as they come
// (gobwas's own handler refuses 1012 and 1013, which Hearth sends when it
// drains or sheds load).
func (c *Client) control(h ws.Header, r io.Reader) error {
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(r, p); err != nil {
		return err
	}
	switch h.OpCode {
	case ws.OpPing:
		return c.write(ws.NewPongFrame(p))
	case ws.OpClose:
		info := &closeInfo{code: 1005} // no status received
		var echo []byte
		if len(p) >= 2 {
			code, reason := ws.ParseCloseFrameData(p)
			info.code, info.reason = int(code), reason
			echo = p[:2]
		}
		c.mu.Lock()
		c.closed = info
		c.mu.Unlock()
		_ = c.write(ws.NewCloseFrame(echo))
		return io.EOF
	}
	return nil
}

func decode(data []byte, binary bool) (Message, error) {
	if binary {
		return decodeBinary(data)
	}
	var f [5]json.RawMessage
	if err := json.Unmarshal(data, &f); err != nil {
		return Message{}, fmt.Errorf("not a Phoenix V2 message: %q: %w", data, err)
	}
	var m Message
	var joinRef, ref *string
	if json.Unmarshal(f[0], &joinRef) != nil || json.Unmarshal(f[1], &ref) != nil ||
		json.Unmarshal(f[2], &m.Topic) != nil || json.Unmarshal(f[3], &m.Event) != nil {
		return Message{}, fmt.Errorf("not a Phoenix V2 message: %q", data)
	}
	if joinRef != nil {
		m.JoinRef = *joinRef
	}
	if ref != nil {
		m.Ref = *ref
	}
	m.Payload = f[4]
	return m, nil
}

// decodeBinary reads a Phoenix V2 binary message: a push (kind 0), a reply
// (kind 1) or a broadcast (kind 2).
func decodeBinary(b []byte) (Message, error) {
	bad := fmt.Errorf("malformed binary message of %d bytes", len(b))
	if len(b) < 1 {
		return Message{}, bad
	}
	var n int
	switch b[0] {
	case 0:
		n = 3
	case 1:
		n = 4
	case 2:
		n = 2
	default:
		return Message{}, fmt.Errorf("unknown binary message kind %d", b[0])
	}
	if len(b) < 1+n {
		return Message{}, bad
	}
	fields := make([]string, n)
	rest := b[1+n:]
	for i := range fields {
		l := int(b[1+i])
		if len(rest) < l {
			return Message{}, bad
		}
		fields[i], rest = string(rest[:l]), rest[l:]
	}
	m := Message{Payload: rest, Binary: true}
	switch b[0] {
	case 0:
		m.JoinRef, m.Topic, m.Event = fields[0], fields[1], fields[2]
	case 1:
		m.JoinRef, m.Ref, m.Topic, m.Event, m.Status = fields[0], fields[1], fields[2], "phx_reply", fields[3]
	case 2:
		m.Topic, m.Event = fields[0], fields[1]
	}
	return m, nil
}
