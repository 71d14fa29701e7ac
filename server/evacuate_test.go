package server

import (
	"context"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels"
)

// TestEvacuateKeepsServing: Evacuate closes the open sockets with 1012 and
// reconnect hints, as a drain does, but the server stays ready and takes
// new connections afterwards.
func TestEvacuateKeepsServing(t *testing.T) {
	srv := newTestServer(t, Options{DrainWindow: time.Second}, channels.Options{}, nil)
	wait := watchCloses(joinedClients(t, srv, 4))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv.Evacuate(ctx)
	for _, r := range wait() {
		restartHint(t, r)
	}
	if !srv.Ready() {
		t.Error("not ready after Evacuate")
	}
	joinedSocket(t, srv, "room:after") // a new connection is served
}
