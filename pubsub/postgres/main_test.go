package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Shutdown()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// recorder is a pubsub.Handler that keeps what it is given.
type recorder struct {
	mu       sync.Mutex
	msgs     map[string][]pubsub.Message
	controls [][]byte
	count    int
}

func newRecorder() *recorder { return &recorder{msgs: make(map[string][]pubsub.Message)} }

func (r *recorder) HandleMessage(m *pubsub.Message) {
	r.mu.Lock()
	r.msgs[m.Topic] = append(r.msgs[m.Topic], *m)
	r.count++
	r.mu.Unlock()
}

func (r *recorder) HandleControl(data []byte) {
	r.mu.Lock()
	r.controls = append(r.controls, append([]byte(nil), data...))
	r.mu.Unlock()
}

func (r *recorder) topic(topic string) []pubsub.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pubsub.Message(nil), r.msgs[topic]...)
}

func (r *recorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.count
}

func (r *recorder) controlCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.controls)
}

// testLogger logs to the test, for the broker's warnings.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// node starts a broker on the test's schema with a recorder registered,
// closed when the test ends.
func node(t testing.TB, url, schema string, edit ...func(*Options)) (*Broker, *recorder) {
	t.Helper()
	opts := Options{URL: url, Schema: schema, Logger: testLogger(t), PingInterval: time.Second}
	for _, e := range edit {
		e(&opts)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := New(ctx, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	rec := newRecorder()
	b.Register(rec)
	t.Cleanup(func() { b.Close() })
	return b, rec
}

// withURLParams adds pool settings to a URL.
func withURLParams(u, params string) string {
	if strings.Contains(u, "?") {
		return u + "&" + params
	}
	return u + "?" + params
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func subscribe(t testing.TB, b *Broker, topics ...string) {
	t.Helper()
	for _, topic := range topics {
		if err := b.Subscribe(ctxT(t), topic); err != nil {
			t.Fatalf("Subscribe(%q): %v", topic, err)
		}
	}
}

func publish(t testing.TB, b *Broker, topic, event, payload string) pubsub.Position {
	t.Helper()
	pos, err := b.Publish(ctxT(t), pubsub.Message{Topic: topic, Event: event, Payload: []byte(payload)})
	if err != nil {
		t.Fatalf("Publish: %v", err)
	}
	return pos
}

// checkWriters checks what a node delivered of a topic whose payloads are
// [writer, i]: offsets 1, 2, ... with no gap, and each writer's messages
// in the order it sent them. It returns the delivered messages by [writer, i].
func checkWriters(t testing.TB, what string, msgs []pubsub.Message) map[[2]int]pubsub.Message {
	t.Helper()
	next := map[int]int{}
	byKey := make(map[[2]int]pubsub.Message, len(msgs))
	for i, m := range msgs {
		if m.Offset != uint64(i+1) {
			t.Fatalf("%s: message %d has offset %d", what, i, m.Offset)
		}
		var wi [2]int
		if err := json.Unmarshal(m.Payload, &wi); err != nil {
			t.Fatalf("%s: payload %s: %v", what, m.Payload, err)
		}
		if wi[1] != next[wi[0]] {
			t.Fatalf("%s: writer %d's message %d arrived when %d was expected", what, wi[0], wi[1], next[wi[0]])
		}
		next[wi[0]]++
		byKey[wi] = m
	}
	return byKey
}

// lockTopic holds topic's row lock in a transaction of its own until the
// returned transaction ends (rolled back at the end of the test), so that
// the broker's publishing stalls on it.
func lockTopic(t testing.TB, b *Broker, u, topic string) pgx.Tx {
	t.Helper()
	ctx := ctxT(t)
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(ctx, "SELECT 1 FROM "+b.names.topics+" WHERE topic = $1 FOR UPDATE", topic); err != nil {
		t.Fatal(err)
	}
	return tx
}
