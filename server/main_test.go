package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/internal/pgtest"
)

func TestMain(m *testing.M) {
	// pgtest's private cluster (longpoll_cluster_test.go) is stopped after
	// the leak check.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(int) { pgtest.Shutdown() }))
}

// wait is how long a test waits for something that should happen at once.
const wait = 10 * time.Second

// recorder keeps what the test node's hooks saw.
type recorder struct {
	mu         sync.Mutex
	connects   []channels.ConnectEvent
	terminated []string // "topic reason"
}

func (r *recorder) lastConnect() channels.ConnectEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.connects) == 0 {
		return channels.ConnectEvent{}
	}
	return r.connects[len(r.connects)-1]
}

func (r *recorder) terminations() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.terminated...)
}

// newTestNode returns a node with the channels the tests use:
//
//   - room:*: join refused when the params hold "refuse"; events "ping"
//     (echo), "shout" (broadcast), "shout_from" (broadcast from), "push_me"
//     (push back), "crash" (panics), "slow" (replies later, by ref).
//   - filtered:*: intercepts "news"; a socket that joined with {"mute":
//     true} does not get it, others get it with "filtered": true added.
//
// The connect hook refuses sockets whose params say deny=1 (HTTP 403) or
// close=1 (close 4501: after the upgrade for clients that send _hearth=1,
// else HTTP 403).
func newTestNode(t testing.TB, opts channels.Options) (*channels.Node, *recorder) {
	rec := &recorder{}
	opts.Connect = func(ctx context.Context, ev channels.ConnectEvent) (channels.ConnectReply, error) {
		rec.mu.Lock()
		rec.connects = append(rec.connects, ev)
		rec.mu.Unlock()
		switch {
		case ev.Params.Get("deny") == "1":
			return channels.ConnectReply{}, errors.New("denied by the test hook")
		case ev.Params.Get("close") == "1":
			return channels.ConnectReply{}, &channels.CloseError{Code: channels.CloseUnauthorized, Reason: "unauthorized"}
		}
		return channels.ConnectReply{ID: ev.Params.Get("user")}, nil
	}
	node := channels.New(opts)
	terminate := func(c *channels.Channel, reason error) {
		rec.mu.Lock()
		rec.terminated = append(rec.terminated, c.Topic()+" "+reason.Error())
		rec.mu.Unlock()
	}
	node.Handle("room:*", channels.Handler{
		Join: func(ctx context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
			var p struct {
				Refuse string `json:"refuse"`
			}
			_ = json.Unmarshal(ev.Params, &p)
			if p.Refuse != "" {
				return channels.JoinReply{}, channels.Refuse(p.Refuse)
			}
			return channels.JoinReply{Response: map[string]string{"topic": ev.Topic}}, nil
		},
		In: func(ctx context.Context, c *channels.Channel, ev channels.InEvent) (channels.Reply, error) {
			payload := func() any {
				if ev.Binary {
					return ev.Payload
				}
				return json.RawMessage(ev.Payload)
			}
			switch ev.Event {
			case "ping":
				return channels.OK(payload()), nil
			case "shout":
				return channels.OK(nil), c.Broadcast(ctx, "shout", payload())
			case "shout_from":
				return channels.OK(nil), c.BroadcastFrom(ctx, "shout", payload())
			case "push_me":
				return channels.OK(nil), c.Push("pushed", payload())
			case "crash":
				panic("test handler panics on purpose")
			}
			return channels.ErrorReply(map[string]string{"reason": "unknown event"}), nil
		},
		Terminate: terminate,
	})
	node.Handle("filtered:*", channels.Handler{
		Join: func(ctx context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
			var p struct {
				Mute bool `json:"mute"`
			}
			_ = json.Unmarshal(ev.Params, &p)
			c.Set("mute", p.Mute)
			return channels.JoinReply{}, nil
		},
		Intercept: []string{"news"},
		Out: func(ctx context.Context, c *channels.Channel, ev channels.OutEvent) error {
			if c.Get("mute") == true {
				return nil
			}
			var m map[string]any
			if err := json.Unmarshal(ev.Payload, &m); err != nil {
				return err
			}
			m["filtered"] = true
			return c.Push(ev.Event, m)
		},
		Terminate: terminate,
	})
	return node, rec
}

// testServer is a Server mounted on an httptest.Server.
type testServer struct {
	*Server
	node *channels.Node
	rec  *recorder
	http *httptest.Server
	url  string // ws://127.0.0.1:port/socket/websocket
}

// newTestServer serves a new test node with opts; the listener may be
// wrapped (nil: plain). Everything is shut down at cleanup.
func newTestServer(t testing.TB, opts Options, nopts channels.Options, wrap func(net.Listener) net.Listener) *testServer {
	t.Helper()
	node, rec := newTestNode(t, nopts)
	srv := New(node, opts)
	mux := http.NewServeMux()
	mux.Handle("/socket/websocket", srv)
	hs := httptest.NewUnstartedServer(mux)
	if wrap != nil {
		hs.Listener = wrap(hs.Listener)
	}
	hs.Start()
	ts := &testServer{Server: srv, node: node, rec: rec, http: hs,
		url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/socket/websocket"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
		_ = node.Broker().Close()
	})
	return ts
}

// client is a Phoenix V2 client built on gorilla/websocket.
type client struct {
	t    testing.TB
	ws   *websocket.Conn
	resp *http.Response
	ref  int
}

// dialOpts adjusts a dial.
type dialOpts struct {
	query     string // extra query, e.g. "user=alice"
	header    http.Header
	protocols []string
	netDial   func(network, addr string) (net.Conn, error)
}

// dial connects with vsn=2.0.0 and fails the test on error.
func dial(t testing.TB, url string) *client {
	t.Helper()
	c, err := dialWith(t, url, dialOpts{})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

// dialWith connects; on a refused handshake the error and the response
// (with its body read) are returned.
func dialWith(t testing.TB, url string, o dialOpts) (*client, error) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: wait, Subprotocols: o.protocols, NetDial: o.netDial}
	u := url + "?vsn=2.0.0"
	if o.query != "" {
		u += "&" + o.query
	}
	ws, resp, err := d.Dial(u, o.header)
	c := &client{t: t, ws: ws, resp: resp}
	if err != nil {
		return c, err
	}
	t.Cleanup(func() { _ = ws.Close() })
	return c, nil
}

// msg is one server message.
type msg struct {
	JoinRef, Ref, Topic, Event string // "" for null
	Payload                    json.RawMessage
	Binary                     bool
	Kind                       int    // binary kind
	Status                     string // binary reply status
	Data                       []byte // binary payload
}

// reply decodes a JSON phx_reply payload.
func (m msg) reply() (status string, response json.RawMessage) {
	var r struct {
		Status   string          `json:"status"`
		Response json.RawMessage `json:"response"`
	}
	if err := json.Unmarshal(m.Payload, &r); err != nil {
		return "", nil
	}
	return r.Status, r.Response
}

func (m msg) String() string {
	if m.Binary {
		return "binary kind " + strconv.Itoa(m.Kind) + " " + m.Topic + " " + m.Event + " " + m.Status
	}
	return "[" + m.JoinRef + "," + m.Ref + "," + m.Topic + "," + m.Event + "," + string(m.Payload) + "]"
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// nextRef returns a fresh message ref.
func (c *client) nextRef() string {
	c.ref++
	return strconv.Itoa(c.ref)
}

// send writes a JSON message.
func (c *client) send(joinRef, ref, topic, event string, payload any) {
	c.t.Helper()
	b, err := json.Marshal([]any{nullable(joinRef), nullable(ref), topic, event, payload})
	if err != nil {
		c.t.Fatal(err)
	}
	c.sendRaw(websocket.TextMessage, b)
}

// sendRaw writes one message as is.
func (c *client) sendRaw(typ int, b []byte) {
	c.t.Helper()
	_ = c.ws.SetWriteDeadline(time.Now().Add(wait))
	if err := c.ws.WriteMessage(typ, b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// sendBinary writes a binary push (kind 0).
func (c *client) sendBinary(joinRef, ref, topic, event string, payload []byte) {
	c.t.Helper()
	b := []byte{0, byte(len(joinRef)), byte(len(ref)), byte(len(topic)), byte(len(event))}
	b = append(b, joinRef...)
	b = append(b, ref...)
	b = append(b, topic...)
	b = append(b, event...)
	c.sendRaw(websocket.BinaryMessage, append(b, payload...))
}

// read returns the next message; a close or a timeout fails the test.
func (c *client) read() msg {
	c.t.Helper()
	m, err := c.tryRead()
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return m
}

// tryRead returns the next message or the read error.
func (c *client) tryRead() (msg, error) {
	_ = c.ws.SetReadDeadline(time.Now().Add(wait))
	typ, b, err := c.ws.ReadMessage()
	if err != nil {
		return msg{}, err
	}
	if typ == websocket.BinaryMessage {
		return decodeBinary(b)
	}
	var arr []json.RawMessage
	if err := json.Unmarshal(b, &arr); err != nil || len(arr) != 5 {
		return msg{}, errors.New("malformed server message: " + string(b))
	}
	var m msg
	for i, p := range []*string{&m.JoinRef, &m.Ref, &m.Topic, &m.Event} {
		if string(arr[i]) != "null" {
			if err := json.Unmarshal(arr[i], p); err != nil {
				return msg{}, errors.New("malformed server message: " + string(b))
			}
		}
	}
	m.Payload = arr[4]
	return m, nil
}

func decodeBinary(b []byte) (msg, error) {
	bad := errors.New("malformed binary server message")
	if len(b) < 1 {
		return msg{}, bad
	}
	m := msg{Binary: true, Kind: int(b[0])}
	var fields []*string
	switch m.Kind {
	case 0:
		fields = []*string{&m.JoinRef, &m.Topic, &m.Event}
	case 1:
		fields = []*string{&m.JoinRef, &m.Ref, &m.Topic, &m.Status}
	case 2:
		fields = []*string{&m.Topic, &m.Event}
	default:
		return msg{}, bad
	}
	if len(b) < 1+len(fields) {
		return msg{}, bad
	}
	rest := b[1+len(fields):]
	for i, f := range fields {
		n := int(b[1+i])
		if len(rest) < n {
			return msg{}, bad
		}
		*f, rest = string(rest[:n]), rest[n:]
	}
	m.Data = rest
	return m, nil
}

// expect reads the next message and checks its topic and event.
func (c *client) expect(topic, event string) msg {
	c.t.Helper()
	m := c.read()
	if m.Topic != topic || m.Event != event {
		c.t.Fatalf("got %v, want topic %q event %q", m, topic, event)
	}
	return m
}

// expectReply reads the next message and checks it is the reply to ref
// with the given status.
func (c *client) expectReply(topic, ref, status string) json.RawMessage {
	c.t.Helper()
	m := c.expect(topic, "phx_reply")
	st, resp := m.reply()
	if m.Ref != ref || st != status {
		c.t.Fatalf("got %v, want reply to %q with status %q", m, ref, status)
	}
	return resp
}

// join joins topic with params and returns the join ref and the reply.
func (c *client) join(topic string, params any) (joinRef, status string, resp json.RawMessage) {
	c.t.Helper()
	joinRef = c.nextRef()
	c.send(joinRef, joinRef, topic, "phx_join", params)
	m := c.expect(topic, "phx_reply")
	if m.Ref != joinRef || m.JoinRef != joinRef {
		c.t.Fatalf("join reply %v does not answer ref %s", m, joinRef)
	}
	status, resp = m.reply()
	return joinRef, status, resp
}

// mustJoin joins topic and fails unless the reply is ok.
func (c *client) mustJoin(topic string, params any) string {
	c.t.Helper()
	ref, status, resp := c.join(topic, params)
	if status != "ok" {
		c.t.Fatalf("join %s: %s %s", topic, status, resp)
	}
	return ref
}

// heartbeat sends a heartbeat and waits for its reply: every message the
// server sent before it has been read once this returns.
func (c *client) heartbeat() {
	c.t.Helper()
	ref := c.nextRef()
	c.send("", ref, "phoenix", "heartbeat", map[string]any{})
	c.expectReply("phoenix", ref, "ok")
}

// expectClose reads until the connection closes and checks the close
// code and, unless empty, the reason. Messages before it are skipped.
func (c *client) expectClose(code int, reason string) {
	c.t.Helper()
	got, why := c.readClose()
	if got != code || (reason != "" && why != reason) {
		c.t.Fatalf("closed with %d %q, want %d %q", got, why, code, reason)
	}
}

// readClose reads until the connection closes and returns the close code
// and reason (1006 when there was no close frame).
func (c *client) readClose() (int, string) {
	c.t.Helper()
	for {
		_ = c.ws.SetReadDeadline(time.Now().Add(wait))
		_, _, err := c.ws.ReadMessage()
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, ce.Text
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("no close within %v", wait)
		}
		return websocket.CloseAbnormalClosure, err.Error()
	}
}

// joinedSocket dials srv and joins topic.
func joinedSocket(t testing.TB, srv *testServer, topic string) *client {
	t.Helper()
	c := dial(t, srv.url)
	c.mustJoin(topic, map[string]any{})
	return c
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// bearer returns the subprotocol carrying token as Phoenix 1.8 sends it.
func bearer(token string) string {
	return tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(token))
}

// httpGet performs a plain request and returns status and body.
func httpGet(t testing.TB, url string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// deadline is the read deadline of a test client.
func deadline() time.Time { return time.Now().Add(wait) }
