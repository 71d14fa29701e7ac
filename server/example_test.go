package server_test

import (
	"context"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/server"
)

// Mount the socket on any router (chi, net/http) at the path Phoenix
// clients use, and drain it on SIGTERM.
func Example() {
	node := channels.New(channels.Options{})
	node.Handle("room:*", channels.Handler{
		Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
			return channels.JoinReply{}, nil
		},
	})
	ws := server.New(node, server.Options{
		AllowedOrigins: []string{"https://app.example.com"},
		DrainWindow:    30 * time.Second,
	})

	mux := http.NewServeMux()
	mux.Handle("/socket/websocket", ws)
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ws.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	hs := &http.Server{Addr: "127.0.0.1:4000", Handler: mux}
	go func() { _ = hs.ListenAndServe() }()

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	// Readiness goes false, new upgrades get 503, sockets are closed over
	// the drain window with 1012 and a reconnect hint.
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	_ = ws.Shutdown(ctx)
	_ = hs.Shutdown(ctx)
}

// Serve the long-poll fallback next to the WebSocket. Every node of a
// cluster gets the same secret: a request reaching any node is answered,
// no sticky sessions needed.
func ExampleNewLongPoll() {
	node := channels.New(channels.Options{})
	ws := server.New(node, server.Options{})
	lp := server.NewLongPoll(ws, server.LongPollOptions{Secret: []byte(os.Getenv("HEARTH_LONGPOLL_SECRET"))})

	mux := http.NewServeMux()
	mux.Handle("/socket/websocket", ws)
	mux.Handle("/socket/longpoll", lp)
	// Poll requests wait up to 10 s: no WriteTimeout below that.
	hs := &http.Server{Addr: "127.0.0.1:4000", Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	_ = hs
}

// Accept permessage-deflate from the browsers that offer it: broadcasts are
// compressed once per node, replies and pushes per connection, payloads
// under 512 bytes not at all.
func ExampleCompression() {
	node := channels.New(channels.Options{})
	ws := server.New(node, server.Options{
		Compression: server.Compression{Enabled: true, MinSize: 512},
	})
	http.Handle("/socket/websocket", ws)
}
