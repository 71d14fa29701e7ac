//go:build unix

package main

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
	"github.com/hearth-rt/hearth/pubsub/postgres"
)

// TestServeThroughPgBouncer: `hearth serve --database-url` through
// PgBouncer in transaction mode is refused without --listen-url, with a
// message saying so, and works with it.
func TestServeThroughPgBouncer(t *testing.T) {
	t.Parallel()
	db := pgtest.Database(t)
	pooled := pgtest.Bouncer(t, db) + "&default_query_exec_mode=exec"
	log := slog.New(slog.DiscardHandler)

	_, err := openBroker(serveConfig{dbURL: pooled}, log)
	if !errors.Is(err, postgres.ErrNotListening) || !strings.Contains(err.Error(), "ListenURL") {
		t.Fatalf("listener through the pooler: %v, want ErrNotListening", err)
	}

	b, err := openBroker(serveConfig{dbURL: pooled, listenURL: db}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := b.Publish(ctx, pubsub.Message{Topic: "room:1", Event: "e", Payload: []byte(`{}`)}); err != nil {
		t.Fatalf("publishing through the pooler: %v", err)
	}
	if st := b.State(); st != postgres.StateHealthy {
		t.Fatalf("listener state %v", st)
	}
}

func TestListenURLNeedsDatabaseURL(t *testing.T) {
	err := runServe([]string{"--database-url=", "--listen-url", "postgres://db/app"})
	if err == nil || !strings.Contains(err.Error(), "needs --database-url") {
		t.Fatalf("got %v", err)
	}
}
