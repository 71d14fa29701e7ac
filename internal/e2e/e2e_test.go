// Package e2e runs Hearth clusters end to end: several real servers (each
// its own node, HTTP listener and Postgres broker) on one PostgreSQL, and
// real WebSocket clients over loopback.
package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub/postgres"
	"github.com/hearth-rt/hearth/server"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Shutdown()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck")); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

// node is one Hearth server of a test cluster.
type node struct {
	name   string
	node   *channels.Node
	srv    *server.Server
	http   *httptest.Server
	broker *postgres.Broker
}

// startNode starts a node on the shared schema: room:* is open, new_msg is
// broadcast to the room, and sockets are identified by ?user=.
func startNode(t *testing.T, url, schema, name string) *node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := postgres.New(ctx, postgres.Options{URL: url, Schema: schema, Name: name})
	if err != nil {
		t.Fatalf("node %s: %v", name, err)
	}
	n := channels.New(channels.Options{
		Broker: b,
		NodeID: name,
		Connect: func(_ context.Context, ev channels.ConnectEvent) (channels.ConnectReply, error) {
			return channels.ConnectReply{ID: ev.Params.Get("user")}, nil
		},
		JoinRatePerIP: -1,
	})
	n.Handle("room:*", channels.Handler{
		Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
			return channels.JoinReply{}, nil
		},
		In: func(ctx context.Context, c *channels.Channel, ev channels.InEvent) (channels.Reply, error) {
			return channels.OK(nil), c.Broadcast(ctx, ev.Event, json.RawMessage(ev.Payload))
		},
	})
	srv := server.New(n, server.Options{})
	mux := http.NewServeMux()
	mux.Handle("/socket/websocket", srv)
	nd := &node{name: name, node: n, srv: srv, http: httptest.NewServer(mux), broker: b}
	t.Cleanup(nd.stop)
	return nd
}

func (n *node) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = n.srv.Shutdown(ctx)
	n.http.Close()
	_ = n.broker.Close()
}

// client is a Phoenix V2 client on a gorilla connection.
type client struct {
	t    *testing.T
	conn *websocket.Conn
	ref  int
	in   chan []json.RawMessage
	done chan struct{}
	code int // close code once done
}

func dial(t *testing.T, n *node, user string) *client {
	t.Helper()
	u := "ws" + strings.TrimPrefix(n.http.URL, "http") + "/socket/websocket?vsn=2.0.0&_hearth=1&user=" + user
	conn, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", n.name, err)
	}
	c := &client{t: t, conn: conn, in: make(chan []json.RawMessage, 1024), done: make(chan struct{})}
	go c.read()
	t.Cleanup(func() { _ = c.conn.Close(); <-c.done })
	return c
}

func (c *client) read() {
	defer close(c.done)
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			if ce, ok := err.(*websocket.CloseError); ok {
				c.code = ce.Code
			}
			close(c.in)
			return
		}
		var msg []json.RawMessage
		if json.Unmarshal(data, &msg) != nil || len(msg) != 5 {
			c.t.Errorf("malformed frame %s", data)
			continue
		}
		c.in <- msg
	}
}

func (c *client) send(joinRef, topic, event string, payload any) string {
	c.t.Helper()
	c.ref++
	ref := strconv.Itoa(c.ref)
	var jr any
	if joinRef != "" {
		jr = joinRef
	}
	if err := c.conn.WriteJSON([]any{jr, ref, topic, event, payload}); err != nil {
		c.t.Fatalf("send: %v", err)
	}
	return ref
}

// next returns the next message: [join_ref, ref, topic, event, payload].
func (c *client) next() (ref, event string, payload json.RawMessage) {
	c.t.Helper()
	select {
	case m, ok := <-c.in:
		if !ok {
			c.t.Fatalf("connection closed (code %d)", c.code)
		}
		_ = json.Unmarshal(m[1], &ref)
		_ = json.Unmarshal(m[3], &event)
		return ref, event, m[4]
	case <-time.After(10 * time.Second):
		c.t.Fatalf("no message within 10s")
	}
	return
}

// join joins with Hearth's extension and returns the "$hearth" reply info.
func (c *client) join(topic string, since any) (joinRef string, info hearthInfo) {
	c.t.Helper()
	h := map[string]any{}
	if since != nil {
		h["since"] = since
	}
	joinRef = strconv.Itoa(c.ref + 1)
	ref := c.send(joinRef, topic, "phx_join", map[string]any{"$hearth": h})
	for {
		r, event, payload := c.next()
		if event != "phx_reply" || r != ref {
			continue
		}
		var reply struct {
			Status   string `json:"status"`
			Response struct {
				H hearthInfo `json:"$hearth"`
			} `json:"response"`
		}
		if err := json.Unmarshal(payload, &reply); err != nil || reply.Status != "ok" {
			c.t.Fatalf("join %s: %s", topic, payload)
		}
		return joinRef, reply.Response.H
	}
}

type hearthInfo struct {
	Epoch     string `json:"epoch"`
	Offset    uint64 `json:"offset"`
	Recovered *bool  `json:"recovered"`
	Replayed  int    `json:"replayed"`
}

// expectSeq reads broadcasts of event "m" and checks their payloads are
// {"i": from..to} with refs "@<offset>" increasing by one.
func (c *client) expectSeq(from, to int, firstOffset uint64) {
	c.t.Helper()
	off := firstOffset
	for i := from; i <= to; i++ {
		ref, event, payload := c.next()
		if event == "phx_reply" {
			i--
			continue
		}
		var p struct{ I int }
		_ = json.Unmarshal(payload, &p)
		if event != "m" || p.I != i || ref != "@"+strconv.FormatUint(off, 10) {
			c.t.Fatalf("want message %d at @%d, got %s %s ref %s", i, off, event, payload, ref)
		}
		off++
	}
}

func cluster(t *testing.T, n int) []*node {
	t.Helper()
	u, schema := pgtest.Schema(t)
	nodes := make([]*node, n)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func(i int) { // start them together: the schema is created by whoever is first
			defer wg.Done()
			nodes[i] = startNode(t, u, schema, "n"+strconv.Itoa(i+1))
		}(i)
	}
	wg.Wait()
	return nodes
}
