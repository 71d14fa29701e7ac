package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels"
)

// TestCrossNodeBroadcastAndRecovery: clients on three nodes; pushes on one
// node reach the others in order; a client that drops and comes back on
// another node recovers exactly what it missed.
func TestCrossNodeBroadcastAndRecovery(t *testing.T) {
	nodes := cluster(t, 3)
	a, b, c := dial(t, nodes[0], "a"), dial(t, nodes[1], "b"), dial(t, nodes[2], "c")
	_, ia := a.join("room:1", nil)
	b.join("room:1", nil)
	jc, _ := c.join("room:1", nil)
	if ia.Epoch == "" {
		t.Fatalf("no position in the join reply: %+v", ia)
	}
	for i := 1; i <= 20; i++ {
		c.send(jc, "room:1", "m", map[string]int{"i": i})
	}
	a.expectSeq(1, 20, ia.Offset+1)
	b.expectSeq(1, 20, ia.Offset+1)

	// a goes away; 5 more messages; a comes back on node 2.
	_ = a.conn.Close()
	for i := 21; i <= 25; i++ {
		c.send(jc, "room:1", "m", map[string]int{"i": i})
	}
	b.expectSeq(21, 25, ia.Offset+21)
	a2 := dial(t, nodes[1], "a")
	_, info := a2.join("room:1", map[string]any{"epoch": ia.Epoch, "offset": ia.Offset + 20})
	if info.Recovered == nil || !*info.Recovered || info.Replayed != 5 {
		t.Fatalf("recovery on another node: %+v", info)
	}
	a2.expectSeq(21, 25, ia.Offset+21)
	c.send(jc, "room:1", "m", map[string]int{"i": 26})
	a2.expectSeq(26, 26, ia.Offset+26)
}

// TestLargePayloadAcrossNodes broadcasts 100 KB from one node to another
// (it travels through the history table, not the NOTIFY payload).
func TestLargePayloadAcrossNodes(t *testing.T) {
	nodes := cluster(t, 2)
	a := dial(t, nodes[0], "a")
	a.join("room:big", nil)
	body := strings.Repeat("x", 100_000)
	if err := nodes[1].node.Broadcast(context.Background(), "room:big", "big", map[string]string{"body": body}); err != nil {
		t.Fatal(err)
	}
	_, event, payload := a.next()
	var p struct{ Body string }
	if err := json.Unmarshal(payload, &p); err != nil || event != "big" || p.Body != body {
		t.Fatalf("got %s of %d bytes", event, len(payload))
	}
}

// TestForceDisconnectAcrossNodes: Disconnect on one node closes the user's
// sockets on every node, and no one else's.
func TestForceDisconnectAcrossNodes(t *testing.T) {
	nodes := cluster(t, 3)
	u1, u2, other := dial(t, nodes[0], "u"), dial(t, nodes[1], "u"), dial(t, nodes[1], "v")
	for _, c := range []*client{u1, u2, other} {
		c.join("room:1", nil) // proves the sockets are up before the disconnect
	}
	if err := nodes[2].node.Disconnect(context.Background(), "u", 0, "bye"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{u1, u2} {
		select {
		case <-c.done:
			if c.code != channels.CloseDisconnected {
				t.Fatalf("close code %d, want %d", c.code, channels.CloseDisconnected)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("user's socket not disconnected")
		}
	}
	// The other user's socket still works.
	jr := other.send("", "phoenix", "heartbeat", map[string]any{})
	if ref, event, _ := other.next(); event != "phx_reply" || ref != jr {
		t.Fatalf("other socket: %s %s", event, ref)
	}
}

// TestBroadcastAsyncFeed forwards a feed with BroadcastAsync on one node,
// without waiting for each commit, while WebSocket subscribers on the other
// nodes receive every message once and in order.
func TestBroadcastAsyncFeed(t *testing.T) {
	nodes := cluster(t, 3)
	b, c := dial(t, nodes[1], "b"), dial(t, nodes[2], "c")
	_, ib := b.join("room:feed", nil)
	c.join("room:feed", nil)

	const n = 3000
	var mu sync.Mutex
	var failed []error
	var calls int
	all := make(chan struct{})
	for i := 1; i <= n; i++ {
		err := nodes[0].node.BroadcastAsync(context.Background(), "room:feed", "m", map[string]int{"i": i}, func(err error) {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, err)
			}
			if calls++; calls == n {
				close(all)
			}
		})
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		t.Fatalf("%d of %d callbacks", calls, n)
	}
	if len(failed) > 0 {
		t.Fatalf("%d failed: %v", len(failed), failed[0])
	}
	b.expectSeq(1, n, ib.Offset+1)
	c.expectSeq(1, n, ib.Offset+1)
	st := nodes[0].broker.Stats()
	t.Logf("node 1: %d messages in %d transactions (largest %d)", st.Published, st.Batches, st.MaxBatch)
}
