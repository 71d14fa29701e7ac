package presence_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/server"
)

// serve serves a node over WebSocket on a loopback port and returns the
// socket URL a Phoenix client is given ("ws://127.0.0.1:port/socket").
func serve(t *testing.T, a *app) string {
	t.Helper()
	ws := server.New(a.node, server.Options{})
	mux := http.NewServeMux()
	mux.Handle("/socket/websocket", ws)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = ws.Shutdown(ctx)
		_ = hs.Shutdown(ctx)
		<-done
	})
	return "ws://" + ln.Addr().String() + "/socket"
}

// TestPhoenixJSPresence runs the official phoenix.js client and its
// Presence (npm package phoenix) against two Hearth nodes on PostgreSQL:
// clients on either node see joins, updates, a closed tab, a leave and a
// late watcher's state exactly as a Phoenix server would show them. See
// testdata/phoenix_presence.mjs for the steps.
func TestPhoenixJSPresence(t *testing.T) {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node (Node.js 20+) is needed to run the phoenix.js client: install it, and run npm ci at the repository root")
	}
	u, schema := pgtest.Schema(t)
	n1 := newApp(t, pgBroker(t, u, schema), "", fast)
	n2 := newApp(t, pgBroker(t, u, schema), "", fast)
	urlA, urlB := serve(t, n1), serve(t, n2)

	script, err := filepath.Abs(filepath.Join("testdata", "phoenix_presence.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, script, urlA, urlB)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("phoenix.js client: %v\n%s\n(if the phoenix or ws package is missing, run npm ci at the repository root)", err, out)
	}
	if string(out) != "ok\n" {
		t.Fatalf("phoenix.js client said %q", out)
	}
}
