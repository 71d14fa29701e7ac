package channels_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/hearth-rt/hearth/channels"
)

// leaveRace is a Transport for a client that reacts at once to the reply
// to its leave (ref "2" on room:1): while the socket hands it that reply,
// it broadcasts on the topic and waits until the broadcast was fanned out.
type leaveRace struct {
	node *channels.Node

	mu      sync.Mutex
	replied bool
	after   []string // frames received after the leave reply
}

func (l *leaveRace) Send(f []byte) bool {
	text := string(f[2:]) // small text frames: a 2-byte header
	l.mu.Lock()
	replied := l.replied
	if replied {
		l.after = append(l.after, text)
	} else if strings.HasPrefix(text, `["1","2","room:1","phx_reply"`) {
		l.replied = true
	}
	l.mu.Unlock()
	if !replied && l.replied {
		done := make(chan error)
		go func() { done <- l.node.Broadcast(context.Background(), "room:1", "late", nil) }()
		if err := <-done; err != nil {
			panic(err)
		}
	}
	return true
}

func (l *leaveRace) Close(int, string) {}

// TestNoBroadcastAfterLeaveReply: a channel is unsubscribed before its
// leave is answered, so a broadcast that starts once the client has the
// reply does not reach it.
func TestNoBroadcastAfterLeaveReply(t *testing.T) {
	n := channels.New(channels.Options{})
	defer n.Broker().Close()
	n.Handle("room:*", channels.Handler{Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
		return channels.JoinReply{}, nil
	}})
	s, err := n.NewSocket(context.Background(), channels.ConnectEvent{})
	if err != nil {
		t.Fatal(err)
	}
	tr := &leaveRace{node: n}
	s.Start(tr)
	defer s.Closed()
	for _, m := range []string{`["1","1","room:1","phx_join",{}]`, `["1","2","room:1","phx_leave",{}]`} {
		if err := s.HandleMessage([]byte(m), false); err != nil {
			t.Fatal(err)
		}
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if !tr.replied {
		t.Fatal("no reply to the leave")
	}
	if len(tr.after) != 0 {
		t.Fatalf("after the leave reply the client received %q", tr.after)
	}
}
