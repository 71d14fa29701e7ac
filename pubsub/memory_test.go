package pubsub_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/hearth-rt/hearth/pubsub"
)

type collector struct {
	mu   sync.Mutex
	msgs []pubsub.Message
	ctl  [][]byte
}

func (c *collector) HandleMessage(m *pubsub.Message) {
	c.mu.Lock()
	c.msgs = append(c.msgs, *m)
	c.mu.Unlock()
}
func (c *collector) HandleControl(b []byte) { c.mu.Lock(); c.ctl = append(c.ctl, b); c.mu.Unlock() }

func TestMemoryDeliversSubscribedTopicsInOrder(t *testing.T) {
	ctx := context.Background()
	m := pubsub.NewMemory(pubsub.MemoryOptions{})
	col := &collector{}
	m.Register(col)
	if err := m.Subscribe(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				for _, topic := range []string{"a", "b"} {
					if _, err := m.Publish(ctx, pubsub.Message{Topic: topic, Event: "e"}); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	if len(col.msgs) != 400 {
		t.Fatalf("delivered %d messages of topic a, want 400", len(col.msgs))
	}
	for i, msg := range col.msgs {
		if msg.Topic != "a" || msg.Offset != uint64(i+1) {
			t.Fatalf("message %d: topic %s offset %d", i, msg.Topic, msg.Offset)
		}
	}
	// Counted subscriptions: one Unsubscribe of two keeps delivering.
	_ = m.Subscribe(ctx, "a")
	_ = m.Unsubscribe(ctx, "a")
	_, _ = m.Publish(ctx, pubsub.Message{Topic: "a", Event: "e"})
	_ = m.Unsubscribe(ctx, "a")
	_, _ = m.Publish(ctx, pubsub.Message{Topic: "a", Event: "e"})
	if len(col.msgs) != 401 {
		t.Fatalf("after unsubscribe: %d messages, want 401", len(col.msgs))
	}
	if err := m.PublishControl(ctx, []byte("x")); err != nil || len(col.ctl) != 1 {
		t.Fatalf("control: %v, %d", err, len(col.ctl))
	}
}

func TestMemoryHistory(t *testing.T) {
	ctx := context.Background()
	m := pubsub.NewMemory(pubsub.MemoryOptions{HistorySize: 3})
	h, err := m.History(ctx, "t", pubsub.Position{}, 0)
	if err != nil || !h.Complete || h.Top.Offset != 0 || h.Top.Epoch == "" {
		t.Fatalf("empty topic: %+v %v", h, err)
	}
	var epoch string
	for i := 0; i < 5; i++ {
		pos, err := m.Publish(ctx, pubsub.Message{Topic: "t", Event: "e"})
		if err != nil {
			t.Fatal(err)
		}
		epoch = pos.Epoch
	}
	if h, err := m.History(ctx, "t", h.Top, 0); err != nil || h.Complete || len(h.Messages) != 3 {
		t.Fatalf("from before the topic existed, 2 trimmed: %+v %v", h, err)
	}
	tests := []struct {
		name     string
		since    pubsub.Position
		limit    int
		offsets  []uint64
		complete bool
	}{
		{"retained range", pubsub.Position{Epoch: epoch, Offset: 2}, 0, []uint64{3, 4, 5}, true},
		{"at top", pubsub.Position{Epoch: epoch, Offset: 5}, 0, nil, true},
		{"trimmed: what is left", pubsub.Position{Epoch: epoch, Offset: 1}, 0, []uint64{3, 4, 5}, false},
		{"limit", pubsub.Position{Epoch: epoch, Offset: 2}, 2, []uint64{3, 4}, false},
		{"other epoch", pubsub.Position{Epoch: "x", Offset: 2}, 0, nil, false},
		{"ahead", pubsub.Position{Epoch: epoch, Offset: 9}, 0, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := m.History(ctx, "t", tt.since, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, msg := range h.Messages {
				got = append(got, msg.Offset)
			}
			if h.Complete != tt.complete || len(got) != len(tt.offsets) || h.Top.Offset != 5 {
				t.Fatalf("History(%+v) = offsets %v complete %v top %+v", tt.since, got, h.Complete, h.Top)
			}
			{
				for i := range got {
					if got[i] != tt.offsets[i] {
						t.Fatalf("offsets %v, want %v", got, tt.offsets)
					}
				}
			}
		})
	}
}

func TestMemoryRejects(t *testing.T) {
	ctx := context.Background()
	m := pubsub.NewMemory(pubsub.MemoryOptions{MaxPayload: 4})
	if _, err := m.Publish(ctx, pubsub.Message{Topic: "", Event: "e"}); !errors.Is(err, pubsub.ErrInvalidTopic) {
		t.Fatalf("empty topic: %v", err)
	}
	if _, err := m.Publish(ctx, pubsub.Message{Topic: "t", Event: "e", Payload: []byte("12345")}); err != pubsub.ErrTooLarge {
		t.Fatalf("large payload: %v", err)
	}
	_ = m.Close()
	if _, err := m.Publish(ctx, pubsub.Message{Topic: "t", Event: "e"}); err != pubsub.ErrClosed {
		t.Fatalf("closed: %v", err)
	}
}
