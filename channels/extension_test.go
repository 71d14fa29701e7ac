package channels_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/hearth-rt/hearth/channels"
)

func TestExtensionPoints(t *testing.T) {
	ctx := context.Background()
	n := channels.New(channels.Options{})
	var mu sync.Mutex
	var got []string
	var ended []error
	n.HandleControl("test.echo", func(data []byte) {
		mu.Lock()
		got = append(got, string(data))
		mu.Unlock()
	})
	n.Handle("room:*", channels.Handler{
		Join: func(_ context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
			c.OnTerminate(func(reason error) {
				mu.Lock()
				ended = append(ended, reason)
				mu.Unlock()
			})
			if ev.Topic == "room:refused" {
				return channels.JoinReply{}, channels.Refuse("no")
			}
			return channels.JoinReply{}, nil
		},
	})
	if err := n.PublishControl(ctx, "test.echo", []byte("hello\x00binary")); err != nil {
		t.Fatal(err)
	}
	c := connect(t, n, nil)
	jr, _ := c.join("room:1", nil, "ok")
	c.join("room:refused", nil, "error")

	if err := n.LocalBroadcast("room:1", "presence_diff", map[string]any{"joins": map[string]any{}}); err != nil {
		t.Fatal(err)
	}
	if m := c.next(); m.Event != "presence_diff" || m.Ref != "" {
		t.Fatalf("local broadcast = %+v: it must carry no position", m.Message)
	}
	c.send(jr, "room:1", "phx_leave", nil)
	c.expectReply(itoa(c.ref), "ok")

	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0] != "hello\x00binary" {
		t.Fatalf("control messages = %q", got)
	}
	if len(ended) != 2 || errors.Is(ended[0], channels.ErrLeft) || !errors.Is(ended[1], channels.ErrLeft) {
		t.Fatalf("OnTerminate reasons = %v (want the refusal, then ErrLeft)", ended)
	}
}
