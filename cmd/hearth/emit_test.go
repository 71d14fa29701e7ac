package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
	"github.com/hearth-rt/hearth/pubsub/postgres"
)

type emitRecorder struct {
	mu   sync.Mutex
	msgs []pubsub.Message
}

func (r *emitRecorder) HandleMessage(m *pubsub.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, *m)
	r.mu.Unlock()
}

func (r *emitRecorder) HandleControl([]byte) {}

func (r *emitRecorder) get() []pubsub.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pubsub.Message(nil), r.msgs...)
}

func TestEmitCommand(t *testing.T) {
	u, schema := pgtest.Schema(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := postgres.New(ctx, postgres.Options{URL: u, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	rec := &emitRecorder{}
	b.Register(rec)
	if err := b.Subscribe(ctx, "room:lobby"); err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := runEmit([]string{"--database-url", u, "--schema", schema, "room:lobby", "new_msg", `{"body":"hi"}`}, nil, &out); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DATABASE_URL", u)
	if err := runEmit([]string{"--schema", schema, "room:lobby", "from_stdin", "-"}, strings.NewReader(`[1,2,3]`), &out); err != nil {
		t.Fatal(err)
	}
	if err := runEmit([]string{"--schema", schema, "room:lobby", "bad", "{oops"}, nil, &out); err == nil {
		t.Fatal("invalid JSON accepted")
	}
	if err := runEmit([]string{"--schema", schema, "room:lobby"}, nil, &out); err == nil {
		t.Fatal("missing arguments accepted")
	}
	t.Setenv("DATABASE_URL", "")
	if err := runEmit([]string{"room:lobby", "e", "1"}, nil, &out); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("no database: %v", err)
	}

	deadline := time.Now().Add(10 * time.Second)
	for len(rec.get()) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := rec.get()
	if len(got) != 2 || got[0].Event != "new_msg" || string(got[0].Payload) != `{"body":"hi"}` ||
		got[1].Event != "from_stdin" || string(got[1].Payload) != `[1,2,3]` {
		t.Fatalf("received %+v", got)
	}
	lines := strings.Fields(out.String())
	if len(lines) != 2 || lines[0] != got[0].Position().String() || lines[1] != got[1].Position().String() {
		t.Fatalf("printed %q, want the positions %v %v", out.String(), got[0].Position(), got[1].Position())
	}
}
