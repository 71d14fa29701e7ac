package presence_test

import (
	"context"
	"encoding/json"
	"time"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/presence"
)

// A chat room whose clients see who is online, and who is typing.
func ExampleNew() {
	node := channels.New(channels.Options{})
	p := presence.New(node, presence.Options{})

	node.Handle("room:*", channels.Handler{
		Join: func(_ context.Context, c *channels.Channel, _ channels.JoinEvent) (channels.JoinReply, error) {
			user, _ := c.Socket().Assigns().(string)
			c.Set("user", user)
			// Pushes presence_state to this client and a presence_diff
			// with the join to everyone else in the room, on every node.
			return channels.JoinReply{}, p.Track(c, user, map[string]any{"online_at": time.Now().Unix(), "typing": false})
		},
		In: func(_ context.Context, c *channels.Channel, ev channels.InEvent) (channels.Reply, error) {
			if ev.Event != "typing" {
				return channels.ErrorReply(map[string]string{"reason": "unknown event"}), nil
			}
			var typing bool
			if err := json.Unmarshal(ev.Payload, &typing); err != nil {
				return channels.ErrorReply(map[string]string{"reason": "typing takes true or false"}), nil
			}
			user, _ := c.Get("user").(string)
			return channels.OK(nil), p.Update(c, user, map[string]any{"online_at": time.Now().Unix(), "typing": typing})
		},
	})

	// ... serve the node (package server). On shutdown: close the sockets
	// first, then say goodbye to the cluster.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = p.Shutdown(ctx)
}
