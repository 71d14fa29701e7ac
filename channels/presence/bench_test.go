package presence_test

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/presence"
	"github.com/hearth-rt/hearth/channels/wire"
	"github.com/hearth-rt/hearth/pubsub"
)

// Benchmarks: a topic with 1,000 and 10,000 members. Run with
//
//	go test -run '^$' -bench . -benchmem ./channels/presence/
//
// Custom metrics: state-B (bytes of the presence_state a joiner
// receives), diff-B/join (bytes of presence_diff each subscriber receives
// per join), diffs/join (presence_diff frames per subscriber per join).

// counter is a Transport that only counts what it is sent.
type counter struct {
	frames, bytes atomic.Int64
}

func (c *counter) Send(f []byte) bool {
	c.frames.Add(1)
	c.bytes.Add(int64(len(f)))
	return true
}
func (c *counter) Close(int, string) {}

type benchNode struct {
	node  *channels.Node
	p     *presence.Presence
	ref   int
	probe *channels.Channel // the channel that joined with "probe"
}

func newBenchNode(b *testing.B) *benchNode {
	b.Helper()
	n := channels.New(channels.Options{Broker: pubsub.NewMemory(pubsub.MemoryOptions{})})
	bn := &benchNode{node: n, p: presence.New(n, presence.Options{})}
	n.Handle("room:*", channels.Handler{
		Join: func(_ context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
			switch string(ev.Params) {
			case `"watch"`:
				return channels.JoinReply{}, nil
			case `"state"`:
				return channels.JoinReply{}, bn.p.PushState(c)
			}
			key := string(ev.Params[1 : len(ev.Params)-1])
			if key == "probe" {
				bn.probe = c
			}
			return channels.JoinReply{}, bn.p.Track(c, key, map[string]any{"online_at": 1767225600, "status": "online"})
		},
	})
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = bn.p.Shutdown(ctx)
		n.CloseAll(channels.CloseGoingAway, "")
		n.Wait()
	})
	return bn
}

// join opens a socket and joins topic with params (a JSON string): a key
// to track, "watch" (subscribe only) or "state" (subscribe, get the state).
func (bn *benchNode) join(b *testing.B, t channels.Transport, topic, params string) *channels.Socket {
	s, err := bn.node.NewSocket(context.Background(), channels.ConnectEvent{Params: url.Values{}})
	if err != nil {
		b.Fatal(err)
	}
	s.Start(t)
	bn.ref++
	ref := strconv.Itoa(bn.ref)
	if err := s.HandleMessage(wire.AppendText(nil, ref, ref, topic, "phx_join", []byte(strconv.Quote(params))), false); err != nil {
		b.Fatal(err)
	}
	return s
}

// fill makes members keys present in topic, each through its own socket.
func (bn *benchNode) fill(b *testing.B, topic string, members int) {
	for i := range members {
		bn.join(b, &counter{}, topic, fmt.Sprint("member-", i))
	}
	waitCount(b, bn.p, topic, members)
}

func waitCount(b *testing.B, p *presence.Presence, topic string, keys int) {
	deadline := time.Now().Add(time.Minute)
	for {
		if k, _ := p.Count(topic); k == keys {
			return
		}
		if time.Now().After(deadline) {
			k, _ := p.Count(topic)
			b.Fatalf("%d keys in %s, want %d", k, topic, keys)
		}
		time.Sleep(time.Millisecond)
	}
}

var sizes = []int{1000, 10000}

// BenchmarkTrackUntrack: the cost of one member arriving and leaving in a
// topic of n members (a key tracked and untracked on a joined channel),
// diffs to a watching subscriber included. It must not grow with n.
func BenchmarkTrackUntrack(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			bn := newBenchNode(b)
			bn.fill(b, "room:big", n)
			w := &counter{}
			bn.join(b, w, "room:big", "watch")
			bn.join(b, &counter{}, "room:big", "probe")
			ch := bn.probe
			w.frames.Store(0)
			w.bytes.Store(0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				key := "k" + strconv.Itoa(i)
				if err := bn.p.Track(ch, key, map[string]any{"status": "online"}); err != nil {
					b.Fatal(err)
				}
				if err := bn.p.Untrack(ch, key); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			time.Sleep(100 * time.Millisecond) // let the last diff out, for the counts
			b.ReportMetric(float64(w.bytes.Load())/float64(b.N), "diff-B/join")
			b.ReportMetric(float64(w.frames.Load())/float64(b.N), "diffs/join")
		})
	}
}

// BenchmarkJoin: a client joining a topic of n members: socket, join,
// Track, and the presence_state with all n members pushed to it (the
// part that grows with n, inherently: the client must learn every member),
// then the socket closes and the member leaves.
func BenchmarkJoin(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			bn := newBenchNode(b)
			bn.fill(b, "room:big", n)
			b.ReportAllocs()
			b.ResetTimer()
			var state int64
			for i := range b.N {
				c := &counter{}
				s := bn.join(b, c, "room:big", "joiner-"+strconv.Itoa(i))
				state += c.bytes.Load()
				s.Closed()
			}
			b.StopTimer()
			b.ReportMetric(float64(state)/float64(b.N), "state-B")
		})
	}
}

// BenchmarkRemoteJoin: what every other node does for one member joining
// and leaving elsewhere: decode the control message, apply it, diff it.
func BenchmarkRemoteJoin(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			bn := newBenchNode(b)
			bn.fill(b, "room:big", n)
			ctx := context.Background()
			hello := []byte(`{"n":"peer","i":"0123456789ab","s":0}`)
			if err := bn.node.PublishControl(ctx, "presence.hb", hello); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			var seq uint64
			for i := range b.N {
				ref := "0123456789ab" + strconv.Itoa(i)
				seq++
				join := fmt.Appendf(nil, `{"n":"peer","i":"0123456789ab","s":%d,"d":[["room:big","remote-%d","%s",{"phx_ref":"%s","status":"online"}]]}`, seq, i, ref, ref)
				if err := bn.node.PublishControl(ctx, "presence.delta", join); err != nil {
					b.Fatal(err)
				}
				seq++
				leave := fmt.Appendf(nil, `{"n":"peer","i":"0123456789ab","s":%d,"d":[["room:big","remote-%d","%s"]]}`, seq, i, ref)
				if err := bn.node.PublishControl(ctx, "presence.delta", leave); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if k, _ := bn.p.Count("room:big"); k != n {
				b.Fatalf("%d keys after the run, want %d", k, n)
			}
		})
	}
}

// BenchmarkStorm: n clients join one topic as fast as they can (a
// reconnect storm into a big room); each is tracked, subscribed, and
// receives the state. Reported per join; diffs/join shows the batching:
// every subscriber receives one diff per DiffInterval, not one per join.
func BenchmarkStorm(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			var diffs, frames int64
			b.ReportAllocs()
			for range b.N {
				b.StopTimer()
				bn := newBenchNode(b)
				cs := make([]*counter, n)
				b.StartTimer()
				for i := range n {
					cs[i] = &counter{}
					bn.join(b, cs[i], "room:storm", "m"+strconv.Itoa(i))
				}
				waitCount(b, bn.p, "room:storm", n)
				b.StopTimer()
				time.Sleep(100 * time.Millisecond)
				for _, c := range cs {
					frames += c.frames.Load()
				}
				diffs += int64(bn.node.Stats().Broadcasts)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/join")
			b.ReportMetric(float64(diffs)/float64(b.N*n), "diffs/join")
			b.ReportMetric(float64(frames)/float64(b.N*n), "frames/client")
		})
	}
}
