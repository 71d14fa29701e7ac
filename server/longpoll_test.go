package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hearth-rt/hearth/channels"
)

// lpServer is a test node served over WebSocket and long-poll.
type lpServer struct {
	*Server
	lp   *LongPoll
	node *channels.Node
	rec  *recorder
	base string // http://127.0.0.1:port/socket
}

func newLPServer(t testing.TB, opts Options, lpOpts LongPollOptions) *lpServer {
	t.Helper()
	node, rec := newTestNode(t, channels.Options{})
	srv := New(node, opts)
	lp := NewLongPoll(srv, lpOpts)
	mux := http.NewServeMux()
	mux.Handle("/socket/websocket", srv)
	mux.Handle("/socket/longpoll", lp)
	hs := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
		_ = node.Broker().Close()
	})
	return &lpServer{Server: srv, lp: lp, node: node, rec: rec, base: hs.URL + "/socket"}
}

// lpAnswer is a long-poll answer.
type lpAnswer struct {
	Status   int      `json:"status"`
	Token    string   `json:"token"`
	Messages []string `json:"messages"`
	Close    *struct {
		Code   int    `json:"code"`
		Reason string `json:"reason"`
	} `json:"close"`
}

// lpClient speaks the long-poll wire as phoenix.js does.
type lpClient struct {
	t     testing.TB
	url   string // .../longpoll?vsn=...
	token string
	ref   int
	v1    bool
	inbox []string // messages received and not yet expected
}

// lpHTTP keeps a connection per session in flight (http.DefaultClient
// keeps two per host and would open a new one for almost every poll).
var lpHTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4096}}

func lpDo(t testing.TB, method, u string, header http.Header, body string) lpAnswer {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := lpHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a lpAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("%s %s: HTTP %d, body %q is not a long-poll answer", method, u, resp.StatusCode, b)
	}
	return a
}

// openLP opens a session with query params (vsn added unless given).
func openLP(t testing.TB, base, query string) (*lpClient, lpAnswer) {
	t.Helper()
	if !strings.Contains(query, "vsn=") {
		query = "vsn=2.0.0&" + query
	}
	c := &lpClient{t: t, url: base + "/longpoll?" + query, v1: strings.Contains(query, "vsn=1.0.0")}
	a := lpDo(t, http.MethodGet, c.url, http.Header{"Accept": {"application/json"}}, "")
	c.token = a.Token
	return c, a
}

func mustOpenLP(t testing.TB, base, query string) *lpClient {
	t.Helper()
	c, a := openLP(t, base, query)
	if a.Status != 410 || a.Token == "" {
		t.Fatalf("open: got %+v, want status 410 with a token", a)
	}
	return c
}

func (c *lpClient) withToken() string { return c.url + "&token=" + url.QueryEscape(c.token) }

func (c *lpClient) poll() lpAnswer {
	c.t.Helper()
	return lpDo(c.t, http.MethodGet, c.withToken(), nil, "")
}

func (c *lpClient) post(lines ...string) lpAnswer {
	c.t.Helper()
	return lpDo(c.t, http.MethodPost, c.withToken(), http.Header{"Content-Type": {"application/x-ndjson"}}, strings.Join(lines, "\n"))
}

// frame encodes a client message in the session's serializer.
func (c *lpClient) frame(joinRef, ref, topic, event string, payload any) string {
	var v any = []any{nullable(joinRef), nullable(ref), topic, event, payload}
	if c.v1 {
		v = map[string]any{"join_ref": nullable(joinRef), "ref": nullable(ref), "topic": topic, "event": event, "payload": payload}
	}
	b, err := json.Marshal(v)
	if err != nil {
		c.t.Fatal(err)
	}
	return string(b)
}

func (c *lpClient) nextRef() string {
	c.ref++
	return string(rune('0'+c.ref/100%10)) + string(rune('0'+c.ref/10%10)) + string(rune('0'+c.ref%10))
}

// next returns the next message, polling as needed.
func (c *lpClient) next() string {
	c.t.Helper()
	end := time.Now().Add(wait)
	for len(c.inbox) == 0 {
		if time.Now().After(end) {
			c.t.Fatal("no message within the deadline")
		}
		a := c.poll()
		switch a.Status {
		case 200:
			c.inbox = append(c.inbox, a.Messages...)
		case 204:
		default:
			c.t.Fatalf("poll: got %+v", a)
		}
	}
	m := c.inbox[0]
	c.inbox = c.inbox[1:]
	return m
}

// nextMsg decodes the next text message.
func (c *lpClient) nextMsg() msg {
	c.t.Helper()
	s := c.next()
	var m msg
	if c.v1 {
		var o struct {
			JoinRef *string         `json:"join_ref"`
			Ref     *string         `json:"ref"`
			Topic   string          `json:"topic"`
			Event   string          `json:"event"`
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal([]byte(s), &o); err != nil {
			c.t.Fatalf("message %q is not a V1 object: %v", s, err)
		}
		if o.JoinRef != nil {
			m.JoinRef = *o.JoinRef
		}
		if o.Ref != nil {
			m.Ref = *o.Ref
		}
		m.Topic, m.Event, m.Payload = o.Topic, o.Event, o.Payload
		return m
	}
	var a []json.RawMessage
	if err := json.Unmarshal([]byte(s), &a); err != nil || len(a) != 5 {
		c.t.Fatalf("message %q is not a V2 array", s)
	}
	str := func(r json.RawMessage) string {
		var v *string
		_ = json.Unmarshal(r, &v)
		if v == nil {
			return ""
		}
		return *v
	}
	return msg{JoinRef: str(a[0]), Ref: str(a[1]), Topic: str(a[2]), Event: str(a[3]), Payload: a[4]}
}

func (c *lpClient) expect(topic, event string) msg {
	c.t.Helper()
	for {
		m := c.nextMsg()
		if m.Topic == topic && m.Event == event {
			return m
		}
	}
}

// join joins topic and returns the reply's status and response.
func (c *lpClient) join(topic string, params any) (string, string, json.RawMessage) {
	c.t.Helper()
	ref := c.nextRef()
	if a := c.post(c.frame(ref, ref, topic, "phx_join", params)); a.Status != 200 {
		c.t.Fatalf("post join: %+v", a)
	}
	m := c.expect(topic, "phx_reply")
	if m.Ref != ref {
		c.t.Fatalf("join reply ref %q, want %q", m.Ref, ref)
	}
	st, resp := m.reply()
	return ref, st, resp
}

func TestLongPollWire(t *testing.T) {
	srv := newLPServer(t, Options{}, LongPollOptions{})
	c := mustOpenLP(t, srv.base, "user=alice")
	if got := srv.rec.lastConnect(); got.Params.Get("user") != "alice" {
		t.Fatalf("connect hook saw params %v", got.Params)
	}

	// A join refused, then one accepted.
	if _, st, resp := c.join("room:1", map[string]string{"refuse": "nope"}); st != "error" || !strings.Contains(string(resp), "nope") {
		t.Fatalf("refused join: %s %s", st, resp)
	}
	jr, st, resp := c.join("room:1", map[string]string{})
	if st != "ok" || !strings.Contains(string(resp), "room:1") {
		t.Fatalf("join: %s %s", st, resp)
	}

	// Pushes answered, in order, from one batch.
	r1, r2 := c.nextRef(), c.nextRef()
	if a := c.post(c.frame(jr, r1, "room:1", "ping", map[string]int{"n": 1}), c.frame(jr, r2, "room:1", "ping", map[string]int{"n": 2})); a.Status != 200 {
		t.Fatalf("post: %+v", a)
	}
	for i, ref := range []string{r1, r2} {
		m := c.expect("room:1", "phx_reply")
		if _, resp := m.reply(); m.Ref != ref || !strings.Contains(string(resp), `"n":`+string(rune('1'+i))) {
			t.Fatalf("reply %d: %v", i, m)
		}
	}

	// A binary push (base64 line) answered with a binary reply (base64).
	ref := c.nextRef()
	bin := []byte{0, byte(len(jr)), byte(len(ref)), 6, 4}
	bin = append(append(append(append(bin, jr...), ref...), "room:1"...), "ping"...)
	bin = append(bin, 0xff, 0x00, 0x7f)
	if a := c.post(base64.StdEncoding.EncodeToString(bin)); a.Status != 200 {
		t.Fatalf("post binary: %+v", a)
	}
	raw, err := base64.StdEncoding.DecodeString(c.next())
	if err != nil {
		t.Fatalf("binary reply is not base64: %v", err)
	}
	bm, err := decodeBinary(raw)
	if err != nil || bm.Kind != 1 || bm.Ref != ref || !bytes.Equal(bm.Data, []byte{0xff, 0x00, 0x7f}) {
		t.Fatalf("binary reply: %v %v", bm, err)
	}

	// A broadcast from a WebSocket client reaches the long-poll session.
	ws := dial(t, srv.testServer().url)
	wjr := ws.mustJoin("room:1", map[string]any{})
	ws.send(wjr, ws.nextRef(), "room:1", "shout", map[string]string{"from": "ws"})
	if m := c.expect("room:1", "shout"); !strings.Contains(string(m.Payload), `"from":"ws"`) {
		t.Fatalf("broadcast: %v", m)
	}

	// Heartbeats are answered.
	hb := c.nextRef()
	c.post(c.frame("", hb, "phoenix", "heartbeat", map[string]any{}))
	if m := c.expect("phoenix", "phx_reply"); m.Ref != hb {
		t.Fatalf("heartbeat reply %v", m)
	}

	// An invalid message ends the session with 1007; the next poll says so.
	if a := c.post(`["1","x","room:1"]`); a.Status != 400 || a.Close == nil || a.Close.Code != channels.CloseInvalidPayload {
		t.Fatalf("invalid message: %+v", a)
	}
	if a := c.poll(); a.Status != 410 {
		t.Fatalf("poll after close: %+v", a)
	}
	eventually(t, "the session's channel to terminate", func() bool {
		for _, s := range srv.rec.terminations() {
			if strings.HasPrefix(s, "room:1 ") {
				return true
			}
		}
		return false
	})
}

// testServer views an lpServer as the WebSocket tests' server.
func (s *lpServer) testServer() *testServer {
	u := "ws" + strings.TrimPrefix(s.base, "http") + "/websocket"
	return &testServer{Server: s.Server, node: s.node, rec: s.rec, url: u}
}

func TestLongPollRefusals(t *testing.T) {
	srv := newLPServer(t, Options{}, LongPollOptions{})
	if _, a := openLP(t, srv.base, "deny=1"); a.Status != 403 || a.Token != "" {
		t.Fatalf("connect hook error: %+v, want 403", a)
	}
	if _, a := openLP(t, srv.base, "close=1"); a.Status != 403 || a.Close == nil || a.Close.Code != channels.CloseUnauthorized {
		t.Fatalf("connect hook close error: %+v, want 403 with 4501", a)
	}
	if _, a := openLP(t, srv.base, "vsn=3.0.0"); a.Status != 403 {
		t.Fatalf("vsn 3.0.0: %+v", a)
	}
	// Tokens not signed by the node, or forged, are 410.
	c := mustOpenLP(t, srv.base, "")
	good := c.token
	for _, tok := range []string{"junk", good[:len(good)-2] + "AA", "x." + good[strings.IndexByte(good, '.')+1:]} {
		c.token = tok
		if a := c.poll(); a.Status != 410 {
			t.Fatalf("token %q: %+v, want 410", tok, a)
		}
		if a := c.post(`[null,"1","phoenix","heartbeat",{}]`); a.Status != 410 {
			t.Fatalf("post with token %q: %+v, want 410", tok, a)
		}
	}
	// Origin check as for WebSockets.
	a := lpDo(t, http.MethodGet, srv.base+"/longpoll?vsn=2.0.0", http.Header{"Origin": {"https://evil.example"}}, "")
	if a.Status != 403 {
		t.Fatalf("foreign origin: %+v", a)
	}
	// The auth token header reaches the connect hook and is kept out of
	// the headers it sees.
	lpDo(t, http.MethodGet, srv.base+"/longpoll?vsn=2.0.0", http.Header{"X-Phoenix-Authtoken": {"s3cret"}}, "")
	if ev := srv.rec.lastConnect(); ev.Token != "s3cret" || ev.Header.Get("X-Phoenix-AuthToken") != "" {
		t.Fatalf("connect saw token %q, header %q", ev.Token, ev.Header.Get("X-Phoenix-AuthToken"))
	}
}

func TestLongPollSessionExpires(t *testing.T) {
	srv := newLPServer(t, Options{}, LongPollOptions{SessionTimeout: 2 * time.Second, PollTimeout: 50 * time.Millisecond})
	c := mustOpenLP(t, srv.base, "")
	if _, st, _ := c.join("room:exp", map[string]string{}); st != "ok" {
		t.Fatal("join failed")
	}
	// Polls that keep coming keep it alive across many poll timeouts.
	for range 5 {
		if a := c.poll(); a.Status != 204 && a.Status != 200 {
			t.Fatalf("poll: %+v", a)
		}
	}
	if srv.lp.Sessions() != 1 {
		t.Fatal("session ended while polled")
	}
	// Without polls, it ends and its channels leave.
	eventually(t, "the session to end", func() bool { return srv.lp.Sessions() == 0 })
	eventually(t, "the channel to terminate", func() bool { return len(srv.rec.terminations()) == 1 })
	if a := c.poll(); a.Status != 410 {
		t.Fatalf("poll after expiry: %+v", a)
	}
}

func TestLongPollShutdown(t *testing.T) {
	node, _ := newTestNode(t, channels.Options{})
	srv := New(node, Options{DrainWindow: time.Second})
	lp := NewLongPoll(srv, LongPollOptions{})
	hs := httptest.NewServer(lp)
	defer hs.Close()
	c := mustOpenLP(t, hs.URL, "")
	c.url = hs.URL + "?vsn=2.0.0"
	done := make(chan lpAnswer)
	go func() { done <- c.poll() }()
	eventually(t, "the poll to wait", func() bool {
		ss := lp.sessions
		lp.mu.Lock()
		defer lp.mu.Unlock()
		for _, s := range ss {
			s.mu.Lock()
			p := s.polling
			s.mu.Unlock()
			return p
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	a := <-done
	if a.Status != 410 || a.Close == nil || a.Close.Code != channels.CloseServiceRestart || !strings.Contains(a.Close.Reason, "retry_after_ms=") {
		t.Fatalf("poll during shutdown: %+v", a)
	}
	if _, a := openLP(t, hs.URL, ""); a.Status != 500 {
		t.Fatalf("open after shutdown: %+v", a)
	}
	_ = node.Broker().Close()
}

func TestLongPollSlowConsumer(t *testing.T) {
	srv := newLPServer(t, Options{MaxQueueBytes: 4096}, LongPollOptions{})
	c := mustOpenLP(t, srv.base, "")
	jr, _, _ := c.join("room:slow", map[string]string{})
	big := strings.Repeat("x", 1000)
	for range 6 {
		c.post(c.frame(jr, c.nextRef(), "room:slow", "push_me", map[string]string{"b": big}))
	}
	var last lpAnswer
	for range 10 {
		if last = c.poll(); last.Status == 410 {
			break
		}
	}
	if last.Status != 410 || last.Close == nil || last.Close.Code != channels.CloseSlowConsumer {
		t.Fatalf("after overflowing the queue: %+v", last)
	}
}

func TestLongPollV1(t *testing.T) {
	srv := newLPServer(t, Options{}, LongPollOptions{})
	for _, q := range []string{"vsn=1.0.0", "vsn="} {
		c := mustOpenLP(t, srv.base, q)
		c.v1 = true
		jr, st, _ := c.join("room:v1", map[string]string{})
		if st != "ok" {
			t.Fatalf("%s: join %s", q, st)
		}
		c.post(c.frame(jr, c.nextRef(), "room:v1", "shout", map[string]string{"v": "1"}))
		if m := c.expect("room:v1", "shout"); !strings.Contains(string(m.Payload), `"v":"1"`) || m.Ref == "" || m.Ref[0] != '@' {
			t.Fatalf("%s: broadcast %v", q, m)
		}
		// A V2 array is not a V1 message.
		if a := c.post(`["1","9","room:v1","ping",{}]`); a.Status != 400 {
			t.Fatalf("%s: V2 frame on V1: %+v", q, a)
		}
	}
}

func TestWebSocketV1(t *testing.T) {
	for _, compress := range []bool{false, true} {
		t.Run(fmt.Sprintf("compression %v", compress), func(t *testing.T) { testWebSocketV1(t, compress) })
	}
}

func testWebSocketV1(t *testing.T, compress bool) {
	srv := newTestServer(t, Options{Compression: Compression{Enabled: compress}}, channels.Options{}, nil)
	d := websocket.Dialer{EnableCompression: compress, HandshakeTimeout: wait}
	for _, q := range []string{"?vsn=1.0.0", ""} {
		ws, _, err := d.Dial(srv.url+q, nil)
		if err != nil {
			t.Fatalf("dial %q: %v", q, err)
		}
		send := func(v map[string]any) {
			b, _ := json.Marshal(v)
			if err := ws.WriteMessage(websocket.TextMessage, b); err != nil {
				t.Fatal(err)
			}
		}
		read := func() map[string]any {
			_ = ws.SetReadDeadline(deadline())
			_, b, err := ws.ReadMessage()
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatalf("%q is not a V1 object", b)
			}
			return m
		}
		send(map[string]any{"topic": "room:1", "event": "phx_join", "ref": "1", "join_ref": "1", "payload": map[string]any{}})
		if m := read(); m["event"] != "phx_reply" || m["ref"] != "1" || m["payload"].(map[string]any)["status"] != "ok" {
			t.Fatalf("join reply %v", m)
		}
		// Large enough to be compressed when the connection compresses.
		send(map[string]any{"topic": "room:1", "event": "shout", "ref": "2", "join_ref": "1", "payload": map[string]any{"a": strings.Repeat("abc", 1000)}})
		got := map[string]bool{}
		for range 2 {
			m := read()
			got[m["event"].(string)] = true
		}
		if !got["shout"] || !got["phx_reply"] {
			t.Fatalf("got %v, want the broadcast and the reply", got)
		}
		// Binary is not V1.
		_ = ws.WriteMessage(websocket.BinaryMessage, []byte{0, 0, 0, 1, 1, 'a', 'b'})
		_ = ws.SetReadDeadline(deadline())
		_, _, err = ws.ReadMessage()
		var ce *websocket.CloseError
		if !errorsAs(err, &ce) || ce.Code != channels.CloseInvalidPayload {
			t.Fatalf("binary on V1: %v", err)
		}
		_ = ws.Close()
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }
