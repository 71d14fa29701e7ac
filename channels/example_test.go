package channels_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"

	"github.com/hearth-rt/hearth/channels"
)

func ExampleNode_Match() {
	n := channels.New(channels.Options{})
	join := func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
		return channels.JoinReply{}, nil
	}
	n.Handle("room:lobby", channels.Handler{Join: join})
	n.Handle("room:*", channels.Handler{Join: join})
	n.Handle("room:vip:*", channels.Handler{Join: join})

	for _, topic := range []string{"room:lobby", "room:42", "room:vip:7", "user:1"} {
		pattern, ok := n.Match(topic)
		fmt.Println(topic, "->", pattern, ok)
	}
	// Output:
	// room:lobby -> room:lobby true
	// room:42 -> room:* true
	// room:vip:7 -> room:vip:* true
	// user:1 ->  false
}

func ExampleNode_Handle() {
	n := channels.New(channels.Options{
		// Connect authorizes the socket; its Assigns reach every handler.
		Connect: func(ctx context.Context, ev channels.ConnectEvent) (channels.ConnectReply, error) {
			user := ev.Params.Get("user")
			if user == "" {
				return channels.ConnectReply{}, fmt.Errorf("no user")
			}
			return channels.ConnectReply{ID: "user:" + user, Assigns: user}, nil
		},
	})
	n.Handle("room:*", channels.Handler{
		Join: func(ctx context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
			if ev.Topic == "room:secret" {
				return channels.JoinReply{}, channels.Refuse("unauthorized")
			}
			return channels.JoinReply{Response: map[string]string{"hello": c.Socket().Assigns().(string)}}, nil
		},
		In: func(ctx context.Context, c *channels.Channel, ev channels.InEvent) (channels.Reply, error) {
			var msg struct{ Body string }
			if err := ev.Decode(&msg); err != nil {
				return channels.ErrorReply(map[string]string{"reason": "invalid payload"}), nil
			}
			out := map[string]string{"user": c.Socket().Assigns().(string), "body": msg.Body}
			return channels.OK(nil), c.Broadcast(ctx, "new_msg", out)
		},
	})
	// Broadcast from anywhere, e.g. an HTTP handler or a job.
	_ = n.Broadcast(context.Background(), "room:lobby", "announcement", json.RawMessage(`{"text":"deploy at 5pm"}`))
}

func ExampleNode_BroadcastAsync() {
	n := channels.New(channels.Options{})
	defer n.Broker().Close()
	// A feed: each tick is queued without waiting for the broker to store
	// the previous one, and subscribers receive them in this order.
	var failed atomic.Int64
	for i := range 3 {
		err := n.BroadcastAsync(context.Background(), "ticker:ACME", "tick", map[string]int{"seq": i}, func(err error) {
			if err != nil {
				failed.Add(1) // not stored: log it, or resend from the source
			}
		})
		if err != nil {
			fmt.Println("not queued:", err) // bad input, a closed broker, or ctx ended while the queue was full
			return
		}
	}
	fmt.Println("queued, failed:", failed.Load())
	// Output: queued, failed: 0
}
