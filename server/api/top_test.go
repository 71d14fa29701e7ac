package api

import (
	"context"
	"reflect"
	"strconv"
	"testing"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/channeltest"
)

// TestTopOfNode: the bounded top-n of the heartbeat is the head of the
// full sorted list, ties broken by name.
func TestTopOfNode(t *testing.T) {
	srv := channeltest.NewServer(t, channels.Options{}, func(n *channels.Node) {
		n.Handle("room:*", channels.Handler{Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
			return channels.JoinReply{}, nil
		}})
	})
	// room:i gets i%4+1 subscribers: many ties.
	for c := range 4 {
		cl := channeltest.Dial(t, srv.URL, nil)
		for i := range 9 {
			if i%4+1 > c {
				cl.Join("room:"+strconv.Itoa(i), nil)
			}
		}
	}
	all := top(srv.Node.Topics(), 0)
	if len(all) != 9 {
		t.Fatalf("%d topics, want 9", len(all))
	}
	for _, n := range []int{1, 3, 5, 9, 20} {
		got, total := topOfNode(srv.Node, n)
		want := all[:min(n, len(all))]
		if total != 9 || !reflect.DeepEqual(got, want) {
			t.Fatalf("top %d = %v (of %d), want %v", n, got, total, want)
		}
	}
}
