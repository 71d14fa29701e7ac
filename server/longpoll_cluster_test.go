package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub/postgres"
)

// lpNode is one node of a long-poll cluster on PostgreSQL.
type lpNode struct {
	srv    *Server
	node   *channels.Node
	broker *postgres.Broker
	http   *httptest.Server
	gone   bool
}

func (n *lpNode) kill(t testing.TB) {
	n.gone = true
	n.http.CloseClientConnections()
	n.http.Close()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	_ = n.srv.Shutdown(ctx)
	_ = n.broker.Close()
}

func newLPNode(t testing.TB, u, schema, id string, secret []byte) *lpNode {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := postgres.New(ctx, postgres.Options{URL: u, Schema: schema, PingInterval: time.Second})
	if err != nil {
		t.Fatalf("postgres.New: %v", err)
	}
	node, _ := newTestNode(t, channels.Options{Broker: b, NodeID: id})
	srv := New(node, Options{DrainWindow: -1, MessageRate: -1})
	lp := NewLongPoll(srv, LongPollOptions{Secret: secret, PollTimeout: time.Second, ForwardTimeout: 5 * time.Second})
	mux := http.NewServeMux()
	mux.Handle("/socket/websocket", srv)
	mux.Handle("/socket/longpoll", lp)
	n := &lpNode{srv: srv, node: node, broker: b, http: httptest.NewServer(mux)}
	t.Cleanup(func() {
		if !n.gone {
			n.kill(t)
		}
	})
	return n
}

// roundRobin is a reverse proxy that sends each request to the next live
// backend in turn: no stickiness at all.
func roundRobin(t *testing.T, nodes ...*lpNode) *httptest.Server {
	var next atomic.Uint64
	targets := make([]*url.URL, len(nodes))
	for i, n := range nodes {
		targets[i], _ = url.Parse(n.http.URL)
	}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		for range nodes {
			i := int(next.Add(1)) % len(nodes)
			if !nodes[i].gone {
				r.SetURL(targets[i])
				return
			}
		}
	}}
	hs := httptest.NewServer(rp)
	t.Cleanup(hs.Close)
	return hs
}

// TestLongPollCluster: through a round-robin proxy over two nodes on
// PostgreSQL, a long-poll session (held by one node, half its requests
// reaching the other) joins, is refused, pushes, and receives a stream
// published on the other node whole and in order; when its node dies it
// gets 410 and recovers what it missed on the other.
func TestLongPollCluster(t *testing.T) {
	u, schema := pgtest.Schema(t)
	secret := []byte("a secret both nodes share")
	a := newLPNode(t, u, schema, "a", secret)
	b := newLPNode(t, u, schema, "b", secret)
	proxy := roundRobin(t, a, b)
	base := proxy.URL + "/socket"

	c := mustOpenLP(t, base, "")
	owner, sid, _ := (&LongPoll{opts: LongPollOptions{Secret: secret}}).verify(c.token)
	if sid == "" || (owner != "a" && owner != "b") {
		t.Fatalf("token names node %q", owner)
	}
	own, other := a, b
	if owner == "b" {
		own, other = b, a
	}
	if _, st, _ := c.join("room:x", map[string]string{"refuse": "no"}); st != "error" {
		t.Fatalf("refused join answered %s", st)
	}
	jr, st, resp := c.join("room:x", map[string]any{"$hearth": map[string]any{}})
	if st != "ok" {
		t.Fatalf("join: %s %s", st, resp)
	}
	var pos struct {
		H struct {
			Epoch  string `json:"epoch"`
			Offset uint64 `json:"offset"`
		} `json:"$hearth"`
	}
	_ = json.Unmarshal(resp, &pos)
	for i := range 4 { // pushes answered, whichever node gets the POST
		ref := c.nextRef()
		c.post(c.frame(jr, ref, "room:x", "ping", map[string]int{"i": i}))
		if m := c.expect("room:x", "phx_reply"); m.Ref != ref {
			t.Fatalf("push %d answered with ref %q", i, m.Ref)
		}
	}

	// A stream published on the other node, large payloads included
	// (they do not fit one notification), arrives whole and in order.
	const n = 200
	ctx := context.Background()
	go func() {
		for i := range n {
			pad := ""
			if i%50 == 0 {
				pad = strings.Repeat("p", 20000)
			}
			if err := other.node.Broadcast(ctx, "room:x", "seq", map[string]any{"i": i, "pad": pad}); err != nil {
				t.Errorf("broadcast %d: %v", i, err)
				return
			}
		}
	}()
	var last uint64
	for i := range n {
		m := c.expect("room:x", "seq")
		var p struct {
			I int `json:"i"`
		}
		_ = json.Unmarshal(m.Payload, &p)
		if p.I != i {
			t.Fatalf("message %d: got %d", i, p.I)
		}
		last, _ = strconv.ParseUint(strings.TrimPrefix(m.Ref, "@"), 10, 64)
	}

	// The session's node dies; messages go on on the other.
	own.kill(t)
	for i := range 10 {
		if err := other.node.Broadcast(ctx, "room:x", "seq", map[string]any{"i": n + i}); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.poll(); got.Status != 410 {
		t.Fatalf("poll after the owner died: %+v, want 410", got)
	}
	// The client opens a new session (on the live node) and recovers.
	c2 := mustOpenLP(t, base, "")
	_, st, resp = c2.join("room:x", map[string]any{"$hearth": map[string]any{"since": map[string]any{"epoch": pos.H.Epoch, "offset": last}}})
	if st != "ok" || !strings.Contains(string(resp), `"recovered":true`) {
		t.Fatalf("rejoin: %s %s", st, resp)
	}
	for i := range 10 {
		m := c2.expect("room:x", "seq")
		var p struct {
			I int `json:"i"`
		}
		_ = json.Unmarshal(m.Payload, &p)
		if p.I != n+i {
			t.Fatalf("recovered message %d: got %d", i, p.I)
		}
	}
}
