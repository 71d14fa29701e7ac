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
// per join), diffs/join (presence_diff frames per subscriber per join),
// frames/client (frames each client of a storm received in all).

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
	node    *channels.Node
	p       *presence.Presence
	ref     int
	probe   *channels.Channel // the channel that joined with "probe"
	peerSeq uint64
}

func newBenchNode(b *testing.B, opts presence.Options) *benchNode {
	b.Helper()
	n := channels.New(channels.Options{Broker: pubsub.NewMemory(pubsub.MemoryOptions{})})
	bn := &benchNode{node: n, p: presence.New(n, opts)}
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

// fill makes members keys present in topic, tracked by another node (a
// peer whose changes arrive as control messages), and joins watchers
// local subscribers that receive the diffs.
func (bn *benchNode) fill(b *testing.B, topic string, members, watchers int) []*counter {
	ctx := context.Background()
	if err := bn.node.PublishControl(ctx, "presence.hb", []byte(`{"n":"peer","i":"0123456789ab","s":0}`)); err != nil {
		b.Fatal(err)
	}
	const perMessage = 40
	for i := 0; i < members; i += perMessage {
		bn.peerSeq++
		msg := fmt.Appendf(nil, `{"n":"peer","i":"0123456789ab","s":%d,"d":[`, bn.peerSeq)
		for j := i; j < min(i+perMessage, members); j++ {
			if j > i {
				msg = append(msg, ',')
			}
			msg = fmt.Appendf(msg, `[%q,"member-%d","0123456789abm%d",{"phx_ref":"0123456789abm%d","online_at":1767225600,"status":"online"}]`, topic, j, j, j)
		}
		msg = append(msg, "]}"...)
		if err := bn.node.PublishControl(ctx, "presence.delta", msg); err != nil {
			b.Fatal(err)
		}
	}
	waitCount(b, bn.p, topic, members)
	ws := make([]*counter, watchers)
	for i := range ws {
		ws[i] = &counter{}
		bn.join(b, ws[i], topic, "watch")
	}
	return ws
}

// sum adds up what the counters received.
func sum(cs []*counter) (frames, bytes int64) {
	for _, c := range cs {
		frames += c.frames.Load()
		bytes += c.bytes.Load()
	}
	return frames, bytes
}

func reset(cs []*counter) {
	for _, c := range cs {
		c.frames.Store(0)
		c.bytes.Store(0)
	}
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

// watchers is how many local subscribers receive the diffs in the
// benchmarks (the rest of the members are on other nodes).
const watchers = 1000

// BenchmarkTrackUntrack: one member arriving and leaving in a topic of n
// members (a key tracked and untracked on a joined channel), with the
// diffs to 1,000 local subscribers and the cluster messages included. It
// must not grow with n.
func BenchmarkTrackUntrack(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			bn := newBenchNode(b, presence.Options{})
			ws := bn.fill(b, "room:big", n, watchers)
			bn.join(b, &counter{}, "room:big", "probe")
			ch := bn.probe
			time.Sleep(100 * time.Millisecond) // the probe's own diff
			reset(ws)
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
			frames, bytes := sum(ws)
			b.ReportMetric(float64(bytes)/float64(b.N*watchers), "diff-B/join")
			b.ReportMetric(float64(frames)/float64(b.N*watchers), "diffs/join")
		})
	}
}

// BenchmarkRemoteJoin: what every other node does when a member joins and
// leaves elsewhere: decode the control messages, apply them, diff them to
// 1,000 local subscribers.
func BenchmarkRemoteJoin(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			bn := newBenchNode(b, presence.Options{})
			bn.fill(b, "room:big", n, watchers)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				ref := "0123456789abr" + strconv.Itoa(i)
				bn.peerSeq++
				join := fmt.Appendf(nil, `{"n":"peer","i":"0123456789ab","s":%d,"d":[["room:big","remote-%d","%s",{"phx_ref":"%s","status":"online"}]]}`, bn.peerSeq, i, ref, ref)
				if err := bn.node.PublishControl(ctx, "presence.delta", join); err != nil {
					b.Fatal(err)
				}
				bn.peerSeq++
				leave := fmt.Appendf(nil, `{"n":"peer","i":"0123456789ab","s":%d,"d":[["room:big","remote-%d","%s"]]}`, bn.peerSeq, i, ref)
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

// BenchmarkJoin: a client joining a topic of n members, alone: socket,
// join, Track, and the presence_state with all n members pushed to it (the
// part that grows with n, necessarily: the client must learn every
// member), then the socket closes and the member leaves. One join per diff
// interval or less, so every join encodes the state afresh.
func BenchmarkJoin(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			// Diffs go out at once: every join finds no cached state.
			bn := newBenchNode(b, presence.Options{DiffInterval: time.Nanosecond})
			bn.fill(b, "room:big", n, 0)
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

// BenchmarkStorm: n clients join one topic, one after the other as fast
// as they come (a reconnect storm into a room of n); each is tracked,
// subscribed, and receives the state. Reported per join: the time, the
// presence_state bytes each joiner received, and frames/client, what each
// client received in all (its state, then the batched diffs).
func BenchmarkStorm(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint("members=", n), func(b *testing.B) {
			var frames, stateBytes int64
			b.ReportAllocs()
			for range b.N {
				b.StopTimer()
				bn := newBenchNode(b, presence.Options{})
				cs := make([]*counter, n)
				b.StartTimer()
				for i := range n {
					cs[i] = &counter{}
					bn.join(b, cs[i], "room:storm", "m"+strconv.Itoa(i))
					stateBytes += cs[i].bytes.Load()
				}
				waitCount(b, bn.p, "room:storm", n)
				b.StopTimer()
				time.Sleep(100 * time.Millisecond)
				f, _ := sum(cs)
				frames += f
			}
			joins := float64(b.N * n)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/joins, "ns/join")
			b.ReportMetric(float64(stateBytes)/joins, "state-B/join")
			// Without batching a client would receive one diff per later
			// join: n/2 frames on average.
			b.ReportMetric(float64(frames)/joins, "frames/client")
		})
	}
}
