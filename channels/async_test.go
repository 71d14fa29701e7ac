package channels_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/channeltest"
	"github.com/hearth-rt/hearth/pubsub"
)

// syncOnly hides the in-process broker's PublishAsync, as a third-party
// broker without it would.
type syncOnly struct{ pubsub.Broker }

// TestBroadcastAsync: broadcasts from BroadcastAsync reach subscribers in
// call order, done is called once per broadcast, and bad input is refused
// without a call of done; with a broker that only publishes synchronously
// too.
func TestBroadcastAsync(t *testing.T) {
	for name, broker := range map[string]pubsub.Broker{
		"async broker": pubsub.NewMemory(pubsub.MemoryOptions{}),
		"sync broker":  syncOnly{pubsub.NewMemory(pubsub.MemoryOptions{})},
	} {
		t.Run(name, func(t *testing.T) {
			srv := channeltest.NewServer(t, channels.Options{Broker: broker}, func(n *channels.Node) {
				n.Handle("feed:*", channels.Handler{Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
					return channels.JoinReply{}, nil
				}})
			})
			c := channeltest.Dial(t, srv.URL, url.Values{})
			if r := c.Join("feed:1", nil); r.Status != "ok" {
				t.Fatalf("join: %s %s", r.Status, r.Response)
			}
			var mu sync.Mutex
			calls := 0
			done := func(err error) {
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					t.Errorf("done: %v", err)
				}
				calls++
			}
			const n = 200
			for i := range n {
				if err := srv.Node.BroadcastAsync(context.Background(), "feed:1", "tick", map[string]int{"i": i}, done); err != nil {
					t.Fatal(err)
				}
			}
			for i := range n {
				if m := c.Expect("feed:1", "tick"); string(m.Payload) != fmt.Sprintf(`{"i":%d}`, i) {
					t.Fatalf("tick %d: %s", i, m.Payload)
				}
			}
			if err := srv.Node.BroadcastAsync(context.Background(), "feed:1", "", nil, done); err == nil || !strings.Contains(err.Error(), "event") {
				t.Errorf("empty event: %v", err)
			}
			if err := srv.Node.BroadcastAsync(context.Background(), "", "tick", nil, done); err == nil {
				t.Error("empty topic: no error")
			}
			if err := srv.Node.BroadcastAsync(context.Background(), "feed:1", "bad", make(chan int), done); err == nil {
				t.Error("unencodable payload: no error")
			}
			if err := srv.Node.BroadcastAsync(context.Background(), "feed:1", "tick", nil, nil); err != nil { // done is optional
				t.Fatal(err)
			}
			c.Expect("feed:1", "tick")
			mu.Lock()
			defer mu.Unlock()
			if calls != n {
				t.Errorf("done called %d times for %d broadcasts", calls, n)
			}
		})
	}
}
