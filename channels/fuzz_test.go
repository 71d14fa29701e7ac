package channels_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/wire"
	"github.com/hearth-rt/hearth/pubsub"
)

// fuzzRecords splits a fuzz input into the messages of a socket: each is
// a flags byte (bit 0: binary), a big-endian 16-bit length, then the data
// (cut short at the end of the input).
func fuzzRecords(in []byte) (msgs [][]byte, bin []bool) {
	for len(in) >= 3 {
		flags, n := in[0], int(binary.BigEndian.Uint16(in[1:3]))
		in = in[3:]
		n = min(n, len(in))
		msgs, bin = append(msgs, in[:n]), append(bin, flags&1 != 0)
		in = in[n:]
	}
	return msgs, bin
}

// fuzzInput is the inverse of fuzzRecords, for seeds.
func fuzzInput(msgs ...string) []byte {
	var b []byte
	for _, m := range msgs {
		flags := byte(0)
		if strings.HasPrefix(m, "bin:") {
			flags, m = 1, m[4:]
		}
		b = append(b, flags)
		b = binary.BigEndian.AppendUint16(b, uint16(len(m)))
		b = append(b, m...)
	}
	return b
}

// fuzzSeeds are sequences a client could send, good and bad.
var fuzzSeeds = [][]string{
	{`["1","1","room:a","phx_join",{}]`, `["1","2","room:a","ping",{"x":1}]`, `["1","3","room:a","shout",{"y":2}]`, `["1","4","room:a","phx_leave",{}]`},
	{`["1","1","","phx_join",{}]`, `["2","2","room:a","",{}]`, `[null,"3","phoenix","heartbeat",{}]`},
	{`["1","1","room:a","phx_join",{"$hearth":{"since":{"epoch":"x","offset":3}}}]`, `["1","2","room:a","phx_join",{"\u0024hearth":{}}]`, `["1","3","room:a","push",[1,2]]`},
	{`["1","1","room:a\u0000","phx_join",{}]`, `["1","1","room:` + strings.Repeat("z", 260) + `","phx_join",{}]`, `["1","2","room:a","ping",{x}]`},
	{`["1","1","room:b","phx_join",{"nick":"$hearth"}]`, "bin:\x00\x01\x01\x06\x04" + "11room:bping\x01\x02", `["1","5","room:b","stop",{}]`, `["1","6","room:b","ping",{}]`},
	{`["1","1","room:c","phx_join",{}]`, `["1","2","room:c","crash",{}]`, `["9","3","room:c","ping",{}]`, `["","4","room:c","phx_join",{"refuse":"no"}]`},
	{`["1","1","room:d","phx_join",` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `]`, `not json`},
	{"bin:\x00\x00\x00\x00\x04ping", `["1","1","nope:1","phx_join",{}]`, `["1","1","room:e","phx_leave",{}]`},
}

// FuzzSocket drives one socket of a real node (in-process broker, a
// channel handler that replies, broadcasts, pushes, stops and crashes)
// with a sequence of messages. Properties:
//   - no panic escapes;
//   - the socket is only closed for a message that cannot be read as
//     Phoenix framing (HandleMessage fails only then, and the socket never
//     closes itself): whatever is wrong with one topic or push is answered
//     on it;
//   - memory stays bounded: what the socket sends is proportional to what
//     it received, it holds at most MaxChannels channels, and once it is
//     closed it holds no subscription (the broker forgets every topic that
//     retains nothing);
//   - a socket that was not closed still answers a heartbeat, and a joined
//     room:lobby still receives broadcasts.
func FuzzSocket(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(fuzzInput(s...))
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		msgs, bin := fuzzRecords(in)
		broker := pubsub.NewMemory(pubsub.MemoryOptions{HistorySize: 8, MaxHistoryBytes: 1 << 20})
		defer broker.Close()
		n := channels.New(channels.Options{Broker: broker, Logger: log, JoinRate: -1, JoinRatePerIP: -1, MaxChannels: 8})
		n.Handle("room:*", channels.Handler{
			Join: func(ctx context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
				var p struct {
					Refuse string `json:"refuse"`
				}
				if json.Unmarshal(ev.Params, &p) == nil && p.Refuse != "" {
					return channels.JoinReply{}, channels.Refuse(p.Refuse)
				}
				return channels.JoinReply{}, nil
			},
			In: func(ctx context.Context, c *channels.Channel, ev channels.InEvent) (channels.Reply, error) {
				var payload any = json.RawMessage(ev.Payload)
				if ev.Binary {
					payload = ev.Payload
				}
				switch ev.Event {
				case "ping":
					return channels.OK(payload), nil
				case "shout":
					return channels.OK(nil), c.Broadcast(ctx, "shout", payload)
				case "push":
					return channels.NoReply, c.Push("pushed", payload)
				case "stop":
					return channels.NoReply, channels.ErrStop
				case "crash":
					panic("crash on purpose")
				}
				return channels.ErrorReply(map[string]string{"reason": "unknown event"}), nil
			},
		})
		s, err := n.NewSocket(context.Background(), channels.ConnectEvent{})
		if err != nil {
			t.Fatal(err)
		}
		r := newRecorder()
		s.Start(r)
		closed := false
		defer func() {
			if !closed {
				s.Closed()
			}
		}()
		lobby := wire.AppendText(nil, "L", "L", "room:lobby", "phx_join", []byte("{}"))
		if err := s.HandleMessage(lobby, false); err != nil {
			t.Fatal(err)
		}

		framingError := false
		in0 := 0
	feed:
		for i, data := range msgs {
			in0 += len(data)
			err := s.HandleMessage(data, bin[i])
			var de *wire.DecodeError
			switch {
			case err == nil:
				continue
			case !errors.As(err, &de) || de.Framed:
				t.Fatalf("message %d %.80q closes the socket for what concerns one topic: %v", i, data, err)
			}
			framingError = true // the transport closes the connection here
			break feed
		}
		r.mu.Lock()
		code, reason := r.code, r.reason
		sent, frames := 0, len(r.frames)
		for _, fr := range r.frames {
			sent += len(fr)
		}
		r.mu.Unlock()
		if code != 0 {
			t.Fatalf("the socket closed itself with %d %q", code, reason)
		}
		// Each message is answered with at most a reply, a push or a
		// broadcast echoing it (and phx_close/phx_error frames).
		if limit := 4*in0 + 512*(len(msgs)+2); sent > limit {
			t.Fatalf("sent %d bytes in %d frames for %d bytes in %d messages", sent, frames, in0, len(msgs))
		}
		if st := n.Stats(); st.Channels > 8 {
			t.Fatalf("%d channels joined, over MaxChannels 8", st.Channels)
		}
		if !framingError {
			seen := frames
			hb := wire.AppendText(nil, "", "hb", "phoenix", "heartbeat", []byte("{}"))
			if err := s.HandleMessage(hb, false); err != nil {
				t.Fatal(err)
			}
			if m := r.next(t, &seen); m.Topic != "phoenix" || m.Ref != "hb" {
				t.Fatalf("heartbeat answered with %+v", m.Message)
			}
			if !strings.Contains(string(in), "lobby") {
				if err := n.Broadcast(context.Background(), "room:lobby", "news", map[string]int{"n": 1}); err != nil {
					t.Fatal(err)
				}
				if m := r.next(t, &seen); m.Topic != "room:lobby" || m.Event != "news" {
					t.Fatalf("room:lobby got %+v instead of the broadcast", m.Message)
				}
			}
		}
		s.Closed()
		closed = true
		n.Wait()
		if u := broker.Usage(); u.Topics > u.Messages || u.Bytes > 1<<20 {
			t.Fatalf("after the socket closed the broker holds %+v: a subscription leaked", u)
		}
		if st := n.Stats(); st.Channels != 0 || n.Sockets() != 0 {
			t.Fatalf("after the socket closed: %d channels, %d sockets", st.Channels, n.Sockets())
		}
	})
}
