package channels_test

import (
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/wire"
	"github.com/hearth-rt/hearth/pubsub"
)

// discard is a Transport that counts frames and drops them, so the
// benchmark measures the channel layer alone (the server's benchmarks add
// the sockets).
type discard struct{ n atomic.Int64 }

func (d *discard) Send([]byte) bool  { d.n.Add(1); return true }
func (d *discard) Close(int, string) {}

// zdiscard is a discard whose connection negotiated compression.
type zdiscard struct {
	*discard
	d *wire.Deflater
}

func (z zdiscard) Deflater() *wire.Deflater { return z.d }

// BenchmarkBroadcast measures one broadcast from Node.Broadcast through the
// memory broker to N local subscribers. allocs/op stays the same for every
// N: nothing is allocated per recipient. With -deflate every subscriber
// negotiated compression: the broadcast is compressed once, and still
// nothing is allocated per recipient.
func BenchmarkBroadcast(b *testing.B) {
	for _, subs := range []int{1, 1000, 10000} {
		for _, deflate := range []bool{false, true} {
			name := strconv.Itoa(subs) + "-subscribers"
			if deflate {
				name += "-deflate"
			}
			b.Run(name, func(b *testing.B) { benchBroadcast(b, subs, deflate) })
		}
	}
}

func benchBroadcast(b *testing.B, subs int, deflate bool) {
	n := channels.New(channels.Options{Broker: pubsub.NewMemory(pubsub.MemoryOptions{HistorySize: -1})})
	n.Handle("room:*", channels.Handler{Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
		return channels.JoinReply{}, nil
	}})
	d := &discard{}
	var t channels.Transport = d
	if deflate {
		t = zdiscard{d, wire.NewDeflater(1, 0)}
	}
	join := wire.AppendText(nil, "1", "1", "room:bench", "phx_join", []byte("{}"))
	var socks []*channels.Socket
	for i := 0; i < subs; i++ {
		s, err := n.NewSocket(context.Background(), channels.ConnectEvent{})
		if err != nil {
			b.Fatal(err)
		}
		s.Start(t)
		if err := s.HandleMessage(join, false); err != nil {
			b.Fatal(err)
		}
		socks = append(socks, s)
	}
	payload := []byte(`{"user":"ada","body":"hello, this is a chat message of typical size"}`)
	msg := any(jsonRaw(payload))
	ctx := context.Background()
	d.n.Store(0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := n.Broadcast(ctx, "room:bench", "new_msg", msg); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got := d.n.Load(); got != int64(b.N*subs) {
		b.Fatalf("delivered %d frames, want %d", got, b.N*subs)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs), "ns/recipient")
	for _, s := range socks {
		s.Closed()
	}
}

type jsonRaw = json.RawMessage
