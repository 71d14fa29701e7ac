package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/pubsub"
)

// hearthInfo is the $hearth key of a join reply.
type hearthInfo struct {
	Epoch     string `json:"epoch"`
	Offset    uint64 `json:"offset"`
	Recovered *bool  `json:"recovered"`
	Replayed  int    `json:"replayed"`
}

func parseHearth(t testing.TB, resp json.RawMessage) hearthInfo {
	t.Helper()
	var r struct {
		H hearthInfo `json:"$hearth"`
	}
	if err := json.Unmarshal(resp, &r); err != nil || r.H.Epoch == "" {
		t.Fatalf("join reply without $hearth: %s (%v)", resp, err)
	}
	return r.H
}

// dialExt connects announcing Hearth's extension, offering
// permessage-deflate when compress is set.
func dialExt(t *testing.T, url string, compress bool) *client {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: wait, EnableCompression: compress}
	ws, resp, err := d.Dial(url+"?vsn=2.0.0&"+channels.ExtParam+"=1", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	if got := resp.Header.Get("Sec-WebSocket-Extensions") != ""; got != compress {
		t.Fatalf("compression negotiated: %v, want %v", got, compress)
	}
	return &client{t: t, ws: ws, resp: resp}
}

// position broadcasts one message on topic, joins it with Hearth's
// extension to learn its position (offset 1), and leaves it. The topic's
// retained message keeps the topic, and so the position, valid (the
// in-process broker forgets a topic with no subscribers and no messages).
func position(t testing.TB, srv *testServer, topic string) hearthInfo {
	t.Helper()
	if err := srv.node.Broadcast(context.Background(), topic, "start", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	c, err := dialWith(t, srv.url, dialOpts{query: channels.ExtParam + "=1"})
	if err != nil {
		t.Fatal(err)
	}
	ref, status, resp := c.join(topic, map[string]any{"$hearth": map[string]any{}})
	if status != "ok" {
		t.Fatalf("join: %s %s", status, resp)
	}
	c.send(ref, c.nextRef(), topic, "phx_leave", map[string]any{})
	c.expect(topic, "phx_reply")
	return parseHearth(t, resp)
}

// TestRecoveryReplayPastQueueBound: six clients rejoin at once with a
// position after which more was broadcast than the connection's queue
// bound (1 MiB) holds. (With permessage-deflate, 300 messages: deflate
// under the race detector is slow, and 1.5 MB is past the bound already.) Each receives every message asked for, then the
// live ones broadcast meanwhile, in offset order, without duplicates, and
// none is closed.
func TestRecoveryReplayPastQueueBound(t *testing.T) {
	for _, tc := range []struct {
		n, size  int
		compress bool
	}{{1000, 5 << 10, false}, {40, 60 << 10, false}, {300, 5 << 10, true}} {
		name := fmt.Sprintf("%d of %d KB", tc.n, tc.size>>10)
		if tc.compress {
			name += ", permessage-deflate"
		}
		t.Run(name, func(t *testing.T) {
			// History for the live broadcasts too: some reach the broker
			// before the joins read it, and are then part of the replay.
			nopts := channels.Options{Broker: pubsub.NewMemory(pubsub.MemoryOptions{HistorySize: 1100}), HistoryLimit: 1100}
			srv := newTestServer(t, Options{Compression: Compression{Enabled: tc.compress}}, nopts, nil)
			const topic, clients, live = "room:replay", 6, 30
			pos := position(t, srv, topic)
			ctx := context.Background()
			pad := strings.Repeat("x", tc.size)
			for i := 1; i <= tc.n; i++ {
				if err := srv.node.Broadcast(ctx, topic, "msg", map[string]any{"i": i, "pad": pad}); err != nil {
					t.Fatal(err)
				}
			}
			cs := make([]*client, clients)
			refs := make([]string, clients)
			for i := range cs {
				cs[i] = dialExt(t, srv.url, tc.compress)
			}
			since := map[string]any{"$hearth": map[string]any{"since": map[string]any{"epoch": pos.Epoch, "offset": pos.Offset}}}
			for i, c := range cs {
				refs[i] = c.nextRef()
				c.send(refs[i], refs[i], topic, "phx_join", since)
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // live broadcasts while the replays go out
				defer wg.Done()
				for i := tc.n + 1; i <= tc.n+live; i++ {
					if err := srv.node.Broadcast(ctx, topic, "msg", map[string]any{"i": i, "pad": "live"}); err != nil {
						t.Error(err)
					}
				}
			}()
			for k, c := range cs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					replayed, next := -1, pos.Offset+1
					for next <= pos.Offset+uint64(tc.n+live) {
						m, err := c.tryRead()
						if err != nil {
							t.Errorf("client %d: %v after offset %d", k, err, next-1)
							return
						}
						switch {
						case m.Event == "phx_reply" && m.Ref == refs[k]:
							status, resp := m.reply()
							var r struct {
								H hearthInfo `json:"$hearth"`
							}
							_ = json.Unmarshal(resp, &r)
							if status != "ok" || r.H.Recovered == nil || !*r.H.Recovered {
								t.Errorf("client %d: join reply %s %s", k, status, resp)
								return
							}
							replayed = r.H.Replayed
						case m.Event == "msg":
							if replayed < tc.n {
								t.Errorf("client %d: message before a join reply replaying %d (got %d)", k, tc.n, replayed)
								return
							}
							if m.Ref != "@"+strconv.FormatUint(next, 10) {
								t.Errorf("client %d: got %s, want offset %d", k, m.Ref, next)
								return
							}
							next++
						default:
							t.Errorf("client %d: unexpected %v", k, m)
							return
						}
					}
					c.heartbeat() // and still open
				}()
			}
			wg.Wait()
		})
	}
}

// TestRecoveryReplayBounds: a replay over MaxReplayBytes is refused with
// recovered: false (the socket stays open); one within it but over
// MaxQueueBytes reaches a client that reads; and a client that receives a
// replay but reads nothing is still closed as a slow consumer once live
// traffic fills its queue.
func TestRecoveryReplayBounds(t *testing.T) {
	srv := newTestServer(t, Options{MaxQueueBytes: 64 << 10, MaxReplayBytes: 512 << 10}, channels.Options{},
		func(l net.Listener) net.Listener { return smallBuffers{l} })
	ctx := context.Background()
	pad := strings.Repeat("y", 4<<10)
	fill := func(topic string, from, to int) {
		for i := from; i <= to; i++ {
			if err := srv.node.Broadcast(ctx, topic, "msg", map[string]any{"i": i, "pad": pad}); err != nil {
				t.Fatal(err)
			}
		}
	}
	since := func(p hearthInfo) map[string]any {
		return map[string]any{"$hearth": map[string]any{"since": map[string]any{"epoch": p.Epoch, "offset": p.Offset}}}
	}
	small, big := position(t, srv, "room:small"), position(t, srv, "room:big")
	fill("room:small", 1, 100) // about 400 KiB: within MaxReplayBytes, over MaxQueueBytes
	fill("room:big", 1, 200)   // about 800 KiB: over MaxReplayBytes

	c, err := dialWith(t, srv.url, dialOpts{query: channels.ExtParam + "=1"})
	if err != nil {
		t.Fatal(err)
	}
	_, status, resp := c.join("room:big", since(big))
	if h := parseHearth(t, resp); status != "ok" || h.Recovered == nil || *h.Recovered || h.Replayed != 0 || h.Offset != 201 {
		t.Fatalf("replay over MaxReplayBytes: %s %s", status, resp)
	}
	smallRef, status, resp := c.join("room:small", since(small))
	if h := parseHearth(t, resp); status != "ok" || h.Recovered == nil || !*h.Recovered || h.Replayed != 100 {
		t.Fatalf("replay within MaxReplayBytes: %s %s", status, resp)
	}
	for i := 2; i <= 101; i++ {
		if m := c.expect("room:small", "msg"); m.Ref != "@"+strconv.Itoa(i) {
			t.Fatalf("replayed %v, want offset %d", m, i)
		}
	}
	c.send(smallRef, c.nextRef(), "room:small", "phx_leave", map[string]any{})
	c.expect("room:small", "phx_reply")

	// A client that reads nothing: the replay is queued, then live traffic
	// over MaxQueueBytes closes it.
	idle, err := dialWith(t, srv.url, dialOpts{query: channels.ExtParam + "=1", netDial: smallReadBuffer})
	if err != nil {
		t.Fatal(err)
	}
	ref := idle.nextRef()
	before := srv.node.Stats().Replayed
	idle.send(ref, ref, "room:small", "phx_join", since(small))
	eventually(t, "the replay queued", func() bool { return srv.node.Stats().Replayed >= before+100 })
	fill("room:small", 101, 400)
	idle.expectClose(channels.CloseSlowConsumer, "slow consumer")
	c.heartbeat()
}
