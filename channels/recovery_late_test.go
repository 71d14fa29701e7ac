package channels_test

import (
	"context"
	"sync"
	"testing"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/pubsub"
)

// lateBroker is an in-process broker whose live deliveries can be held
// back, as a Postgres listener's notifications can arrive after another
// connection already reads the same messages from the history table.
type lateBroker struct {
	pubsub.Broker
	mu   sync.Mutex
	h    pubsub.Handler
	hold bool
	held []pubsub.Message
}

func (b *lateBroker) Register(h pubsub.Handler) {
	b.h = h
	b.Broker.Register(lateHandler{b})
}

type lateHandler struct{ b *lateBroker }

func (l lateHandler) HandleMessage(m *pubsub.Message) {
	l.b.mu.Lock()
	if l.b.hold {
		l.b.held = append(l.b.held, *m)
		l.b.mu.Unlock()
		return
	}
	l.b.mu.Unlock()
	l.b.h.HandleMessage(m)
}

func (l lateHandler) HandleControl(data []byte) { l.b.h.HandleControl(data) }

func (b *lateBroker) setHold(v bool) {
	b.mu.Lock()
	b.hold = v
	held := b.held
	b.held = nil
	b.mu.Unlock()
	for i := range held {
		b.h.HandleMessage(&held[i])
	}
}

// TestRecoveryLateLiveDelivery: a client recovers a message from history
// before the node's own live delivery of it arrives (found by `hearth bench
// chaos --scenario deploy`: a client drained from one node rejoined on
// another whose listener was behind). The late live copy must not reach
// the client a second time; later messages still flow.
func TestRecoveryLateLiveDelivery(t *testing.T) {
	ctx := context.Background()
	b := &lateBroker{Broker: pubsub.NewMemory(pubsub.MemoryOptions{})}
	n := chatNode(t, channels.Options{Broker: b})
	c := connect(t, n, nil)
	_, resp := c.join("room:1", map[string]any{"$hearth": map[string]any{}}, "ok")
	pos, _, _ := hearthPos(t, resp)
	if err := n.Broadcast(ctx, "room:1", "m", map[string]int{"i": 1}); err != nil {
		t.Fatal(err)
	}
	if m := c.next(); m.Ref != "@1" {
		t.Fatalf("live message 1 has ref %q", m.Ref)
	}
	pos.Offset = 1

	b.setHold(true) // message 2 is in the history, its live delivery late
	if err := n.Broadcast(ctx, "room:1", "m", map[string]int{"i": 2}); err != nil {
		t.Fatal(err)
	}
	c2 := connect(t, n, nil)
	_, resp = c2.join("room:1", map[string]any{"$hearth": map[string]any{"since": pos}}, "ok")
	if _, rec, replayed := hearthPos(t, resp); rec == nil || !*rec || replayed != 1 {
		t.Fatalf("recovery: recovered %v replayed %d", rec, replayed)
	}
	if m := c2.next(); m.Ref != "@2" {
		t.Fatalf("replayed message has ref %q", m.Ref)
	}
	b.setHold(false) // the late live copy of 2 arrives
	if m := c.next(); m.Ref != "@2" {
		t.Fatalf("the first client's live message 2 has ref %q", m.Ref)
	}
	if err := n.Broadcast(ctx, "room:1", "m", map[string]int{"i": 3}); err != nil {
		t.Fatal(err)
	}
	if m := c2.next(); m.Ref != "@3" {
		t.Fatalf("after recovery the client got %q, want @3 (2 was replayed already)", m.Ref)
	}
	if m := c.next(); m.Ref != "@3" {
		t.Fatalf("the first client got %q, want @3", m.Ref)
	}
	c2.noFrame()
}
