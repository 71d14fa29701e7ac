package channels_test

import (
	"context"
	"errors"
	"net/url"
	"reflect"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels"
)

// TestInspectAndUnsubscribe: Topics, SocketsOf and Subscribers list what is
// joined; Unsubscribe closes one user's channel with phx_close and
// ErrUnsubscribed, and nothing else.
func TestInspectAndUnsubscribe(t *testing.T) {
	n := channels.New(channels.Options{Connect: func(_ context.Context, ev channels.ConnectEvent) (channels.ConnectReply, error) {
		return channels.ConnectReply{ID: ev.Params.Get("user")}, nil
	}})
	ended := make(chan error, 4)
	n.Handle("room:*", channels.Handler{
		Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
			return channels.JoinReply{}, nil
		},
		Terminate: func(c *channels.Channel, reason error) {
			if c.Socket().ID() == "ann" {
				ended <- reason
			}
		},
	})
	ann := connect(t, n, url.Values{"user": {"ann"}})
	bob := connect(t, n, url.Values{"user": {"bob"}})
	annRef, _ := ann.join("room:1", nil, "ok")
	ann.join("room:2", nil, "ok")
	bob.join("room:1", nil, "ok")

	if got, want := n.Topics(), map[string]int{"room:1": 2, "room:2": 1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Topics = %v, want %v", got, want)
	}
	socks := n.SocketsOf("ann", 0)
	if len(socks) != 1 || socks[0].ID != "ann" || !reflect.DeepEqual(socks[0].Topics, []string{"room:1", "room:2"}) {
		t.Fatalf("SocketsOf(ann) = %+v", socks)
	}
	if subs := n.Subscribers("room:1", 0); len(subs) != 2 {
		t.Fatalf("Subscribers(room:1) = %+v", subs)
	}
	if subs := n.Subscribers("room:1", 1); len(subs) != 1 {
		t.Fatalf("Subscribers with limit 1 = %+v", subs)
	}

	if err := n.Unsubscribe(context.Background(), "ann", "room:1"); err != nil {
		t.Fatal(err)
	}
	m := ann.next()
	if m.Event != "phx_close" || m.Topic != "room:1" || m.JoinRef != annRef {
		t.Fatalf("ann got %+v, want phx_close on room:1", m.Message)
	}
	select {
	case reason := <-ended:
		if !errors.Is(reason, channels.ErrUnsubscribed) {
			t.Fatalf("Terminate reason %v", reason)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Terminate did not run")
	}
	if got, want := n.Topics(), map[string]int{"room:1": 1, "room:2": 1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("after unsubscribe, Topics = %v, want %v", got, want)
	}
	bob.noFrame()
}
