package token_test

import (
	"context"
	"fmt"
	"time"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/token"
)

// Sockets authenticate with a short-lived token; the channel pushes fresh
// ones while the session lives and revokes the socket once it ended.
func Example() {
	keys := token.NewHS256("2026-11", []byte("a secret of at least 32 bytes...."))
	sessions := map[string]bool{"sess-1": true} // the application's session store

	node := channels.New(channels.Options{
		Connect: token.Connect(keys, token.ConnectOptions{}),
		Refresh: &channels.RefreshOptions{
			Mint: token.Mint(keys, 10*time.Minute, func(_ context.Context, c *token.Claims) error {
				if !sessions[c.Session] {
					return channels.ErrRevoked // close 4503: the client stops and tells the app
				}
				return nil
			}),
		},
	})
	node.Handle("room:*", channels.Handler{
		Join: func(_ context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
			if !token.FromSocket(c.Socket()).Allows(ev.Topic) {
				return channels.JoinReply{}, channels.Refuse("unauthorized")
			}
			return channels.JoinReply{}, nil
		},
	})

	// The token service (an HTTP endpoint behind the app's login).
	tok, exp, err := keys.Issue("user:42", "sess-1", 10*time.Minute)
	if err != nil {
		panic(err)
	}
	claims, err := keys.Verify(context.Background(), tok)
	fmt.Println(claims.Subject, claims.Session, claims.Expiry().Equal(exp), err)
	// Output: user:42 sess-1 true <nil>
}
