package pubsub_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/pubsub"
)

// fakeClock is a clock tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClockedMemory(t testing.TB, opts pubsub.MemoryOptions) (*pubsub.Memory, *fakeClock) {
	m := pubsub.NewMemory(opts)
	clk := &fakeClock{t: time.Unix(1e9, 0)}
	pubsub.SetClock(m, clk.now)
	m.Register(&collector{})
	t.Cleanup(func() { _ = m.Close() })
	return m, clk
}

func publish(t testing.TB, m *pubsub.Memory, topic string, payload []byte) pubsub.Position {
	t.Helper()
	pos, err := m.Publish(context.Background(), pubsub.Message{Topic: topic, Event: "e", Payload: payload})
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

func TestMemoryForgetsIdleTopics(t *testing.T) {
	ctx := context.Background()
	m, clk := newClockedMemory(t, pubsub.MemoryOptions{HistoryTTL: time.Minute})

	// Only joined: forgotten at the last Unsubscribe.
	for i := 0; i < 100; i++ {
		topic := fmt.Sprintf("joined:%d", i)
		_ = m.Subscribe(ctx, topic)
		_ = m.Subscribe(ctx, topic)
		_ = m.Unsubscribe(ctx, topic)
		if u := m.Usage(); u.Topics != 1 {
			t.Fatalf("one of two subscriptions left: %+v", u)
		}
		_ = m.Unsubscribe(ctx, topic)
	}
	if u := m.Usage(); u != (pubsub.MemoryUsage{}) {
		t.Fatalf("after join and leave of 100 topics: %+v, want nothing", u)
	}

	// Published to: kept while it has messages, forgotten when they expire.
	var pos pubsub.Position
	for i := 0; i < 100; i++ {
		topic := fmt.Sprintf("room:%d", i)
		_ = m.Subscribe(ctx, topic)
		p := publish(t, m, topic, []byte(`{"body":"hi"}`))
		if i == 0 {
			pos = p
		}
		_ = m.Unsubscribe(ctx, topic)
	}
	if u := m.Usage(); u.Topics != 100 || u.Messages != 100 || u.Bytes == 0 {
		t.Fatalf("100 topics with one message each: %+v", u)
	}
	clk.add(time.Minute + time.Second)
	pubsub.Sweep(m)
	if u := m.Usage(); u != (pubsub.MemoryUsage{}) {
		t.Fatalf("after the TTL: %+v, want nothing", u)
	}

	// The topic used again is a new incarnation: a position in the old one
	// cannot be recovered, even once the offsets are reached again.
	publish(t, m, "room:0", nil)
	p2 := publish(t, m, "room:0", nil)
	if p2.Epoch == pos.Epoch || p2.Offset != 2 {
		t.Fatalf("new incarnation: %v after %v", p2, pos)
	}
	h, err := m.History(ctx, "room:0", pos, 0)
	if err != nil || h.Complete || len(h.Messages) != 0 {
		t.Fatalf("old position after the topic was forgotten: %+v %v", h, err)
	}
}

func TestMemoryTTLFreesMessages(t *testing.T) {
	ctx := context.Background()
	m, clk := newClockedMemory(t, pubsub.MemoryOptions{HistoryTTL: time.Minute})
	_ = m.Subscribe(ctx, "t") // a subscribed topic stays, its messages go
	first := publish(t, m, "t", []byte(strings.Repeat("x", 1000)))
	clk.add(30 * time.Second)
	publish(t, m, "t", []byte(strings.Repeat("y", 1000)))
	clk.add(31 * time.Second)
	pubsub.Sweep(m)
	if u := m.Usage(); u.Topics != 1 || u.Messages != 1 || u.Bytes > 1500 {
		t.Fatalf("one of two messages expired: %+v", u)
	}
	h, err := m.History(ctx, "t", pubsub.Position{Epoch: first.Epoch}, 0)
	if err != nil || h.Complete || len(h.Messages) != 1 || h.Messages[0].Offset != 2 {
		t.Fatalf("history after expiry: %+v %v", h, err)
	}
	// Without any call, the broker's own timer frees the rest.
	m2 := pubsub.NewMemory(pubsub.MemoryOptions{HistoryTTL: 50 * time.Millisecond})
	defer m2.Close()
	publish(t, m2, "t", []byte("{}"))
	deadline := time.Now().Add(10 * time.Second)
	for m2.Usage().Topics != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("expired message never freed: %+v", m2.Usage())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMemoryByteBounds(t *testing.T) {
	ctx := context.Background()
	payload := []byte(strings.Repeat("p", 10_000))
	t.Run("per topic", func(t *testing.T) {
		m, _ := newClockedMemory(t, pubsub.MemoryOptions{HistoryBytes: 100_000})
		var first pubsub.Position
		for i := 0; i < 50; i++ {
			p := publish(t, m, "t", payload)
			if i == 0 {
				first = p
			}
		}
		u := m.Usage()
		if u.Bytes > 100_000 || u.Messages < 8 || u.Messages > 10 {
			t.Fatalf("per-topic bound 100 kB with 10 kB messages: %+v", u)
		}
		h, _ := m.History(ctx, "t", pubsub.Position{Epoch: first.Epoch}, 0)
		if h.Complete || len(h.Messages) != u.Messages || h.Messages[len(h.Messages)-1].Offset != 50 {
			t.Fatalf("history: %d messages complete %v", len(h.Messages), h.Complete)
		}
	})
	t.Run("per node, oldest first", func(t *testing.T) {
		m, clk := newClockedMemory(t, pubsub.MemoryOptions{MaxHistoryBytes: 200_000})
		for i := 0; i < 100; i++ {
			publish(t, m, fmt.Sprintf("t%d", i%10), payload)
			clk.add(time.Millisecond)
		}
		u := m.Usage()
		if u.Bytes > 200_000 || u.Messages < 18 || u.Topics != 10 {
			t.Fatalf("node bound 200 kB: %+v", u)
		}
		// The newest messages are the ones kept: offsets 9 and 10 of every topic.
		for i := 0; i < 10; i++ {
			top, _ := m.History(ctx, fmt.Sprintf("t%d", i), pubsub.Position{}, 0)
			h, _ := m.History(ctx, fmt.Sprintf("t%d", i), pubsub.Position{Epoch: top.Top.Epoch}, 0)
			if n := len(h.Messages); n < 1 || h.Messages[n-1].Offset != 10 {
				t.Fatalf("t%d: %+v", i, h)
			}
		}
		// A message over the bound is not kept, and neither is the history
		// before it (it would have a hole).
		_ = m.Subscribe(ctx, "t0") // kept while subscribed, without messages
		big := []byte(strings.Repeat("b", 300_000))
		publish(t, m, "t0", big)
		top, _ := m.History(ctx, "t0", pubsub.Position{}, 0)
		h, _ := m.History(ctx, "t0", pubsub.Position{Epoch: top.Top.Epoch}, 0)
		if len(h.Messages) != 0 || h.Complete || h.Top.Offset != 11 {
			t.Fatalf("after an unretainable message: %+v", h)
		}
	})
	t.Run("count", func(t *testing.T) {
		m, _ := newClockedMemory(t, pubsub.MemoryOptions{HistorySize: 5})
		for i := 0; i < 1000; i++ {
			publish(t, m, "t", []byte("{}"))
		}
		if u := m.Usage(); u.Messages != 5 {
			t.Fatalf("count bound 5: %+v", u)
		}
	})
}

// BenchmarkMemoryTopicChurn joins, publishes one message to and leaves
// 100,000 topics per round, with the clock moving so that a message
// expires after a tenth of the round (10,000 topics' worth are retained
// at any time), and samples HeapInuse after a forced GC every 10,000
// topics. heap-growth is the last sample over the second (the first one
// with a full retention window): it must stay within 10%.
func BenchmarkMemoryTopicChurn(b *testing.B) {
	const topics, every = 100_000, 10_000
	ttl := time.Minute
	ctx := context.Background()
	payload := []byte(`{"body":"a message of about a hundred bytes, as a chat line would be, give or take a few"}`)
	var samples []uint64
	var kept pubsub.MemoryUsage
	b.ReportAllocs()
	for n := 0; n < b.N; n++ {
		b.StopTimer()
		m := pubsub.NewMemory(pubsub.MemoryOptions{HistoryTTL: ttl})
		clk := &fakeClock{t: time.Unix(1e9, 0)}
		pubsub.SetClock(m, clk.now)
		m.Register(discard{})
		runtime.GC()
		samples = samples[:0]
		b.StartTimer()
		for i := 0; i < topics; i++ {
			topic := "room:" + strconv.Itoa(i)
			_ = m.Subscribe(ctx, topic)
			publish(b, m, topic, payload)
			_ = m.Unsubscribe(ctx, topic)
			clk.add(ttl / every)
			if (i+1)%every == 0 {
				b.StopTimer()
				pubsub.Sweep(m)
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				samples = append(samples, ms.HeapInuse)
				b.StartTimer()
			}
		}
		b.StopTimer()
		kept = m.Usage()
		_ = m.Close()
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(samples[len(samples)-1])/float64(samples[1])-1, "heap-growth")
	b.ReportMetric(float64(samples[len(samples)-1])/(1<<20), "heap-MiB")
	b.ReportMetric(float64(kept.Topics), "topics-kept")
	b.Logf("HeapInuse every %d topics (MiB): %v", every, mib(samples))
}

// discard is a Handler that keeps nothing.
type discard struct{}

func (discard) HandleMessage(*pubsub.Message) {}
func (discard) HandleControl([]byte)          {}

func mib(s []uint64) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%.1f", float64(v)/(1<<20))
	}
	return out
}

func TestCheckTopic(t *testing.T) {
	for _, tc := range []struct{ topic, reason string }{
		{"room:1", ""},
		{strings.Repeat("x", 255), ""},
		{"", "topic must not be empty"},
		{strings.Repeat("x", 256), "topic is longer than 255 bytes"},
		{"a\x00b", "topic contains a NUL byte"},
		{"a\xffb", "topic is not valid UTF-8"},
	} {
		err := pubsub.CheckTopic(tc.topic)
		var te *pubsub.TopicError
		switch {
		case tc.reason == "" && err != nil:
			t.Errorf("CheckTopic(%.20q) = %v", tc.topic, err)
		case tc.reason != "" && (!errors.As(err, &te) || te.Reason != tc.reason || !errors.Is(err, pubsub.ErrInvalidTopic)):
			t.Errorf("CheckTopic(%.20q) = %v, want %q", tc.topic, err, tc.reason)
		}
		// Every broker applies the same rule.
		m := pubsub.NewMemory(pubsub.MemoryOptions{})
		if _, err := m.Publish(context.Background(), pubsub.Message{Topic: tc.topic, Event: "e"}); (err != nil) != (tc.reason != "") {
			t.Errorf("Memory.Publish(%.20q) = %v", tc.topic, err)
		}
	}
}

// TestMemoryPublishAfterExpiry: a publish to an unsubscribed topic whose
// messages all expired starts the topic's new incarnation, and is found
// there.
func TestMemoryPublishAfterExpiry(t *testing.T) {
	ctx := context.Background()
	m, clk := newClockedMemory(t, pubsub.MemoryOptions{HistoryTTL: time.Minute})
	old := publish(t, m, "t", []byte("{}"))
	clk.add(2 * time.Minute) // expired, not swept yet
	pos := publish(t, m, "t", []byte("{}"))
	if pos.Epoch == old.Epoch || pos.Offset != 1 {
		t.Fatalf("publish after expiry: %v (before: %v)", pos, old)
	}
	h, err := m.History(ctx, "t", pubsub.Position{Epoch: pos.Epoch}, 0)
	if err != nil || !h.Complete || len(h.Messages) != 1 || h.Top != pos {
		t.Fatalf("history of the new incarnation: %+v %v", h, err)
	}
	if u := m.Usage(); u.Topics != 1 || u.Messages != 1 {
		t.Fatalf("usage: %+v", u)
	}
}
