//go:build unix

package postgres

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
)

// TestPgBouncer runs nodes through a private PgBouncer in transaction mode,
// as docs/clustering.md describes: publishing, history and trimming go
// through the pooler, the listener connects directly (ListenURL), and a
// listener pointed at the pooler is refused at start instead of hearing
// nothing.
func TestPgBouncer(t *testing.T) {
	u, schema := pgtest.Schema(t)
	bouncer := pgtest.Bouncer(t, u)
	pooled := withURLParams(bouncer, "default_query_exec_mode=exec")

	t.Run("listener through the pooler", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b, err := New(ctx, Options{URL: pooled, Schema: schema, PingTimeout: time.Second})
		if err == nil {
			b.Close()
		}
		if !errors.Is(err, ErrNotListening) {
			t.Fatalf("New with the listener behind a transaction pooler: %v, want ErrNotListening", err)
		}
	})

	t.Run("statement cache through the pooler", func(t *testing.T) {
		// pgx's default mode prepares named statements in whatever server
		// session it is given; through a transaction pooler they collide.
		// When they do, the error says what to change.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for range 5 {
			b, err := New(ctx, Options{URL: bouncer, ListenURL: u, Schema: schema})
			if err != nil {
				if !strings.Contains(err.Error(), "default_query_exec_mode=exec") {
					t.Fatalf("error without the hint: %v", err)
				}
				return
			}
			// Publish concurrently so that sessions are shared.
			var wg sync.WaitGroup
			var mu sync.Mutex
			var perr error
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range 10 {
						if _, err := b.Publish(ctx, pubsub.Message{Topic: "cache", Event: "e", Payload: []byte(`{}`)}); err != nil {
							mu.Lock()
							perr = err
							mu.Unlock()
							return
						}
					}
				}()
			}
			wg.Wait()
			b.Close()
			if perr != nil {
				if !strings.Contains(perr.Error(), "default_query_exec_mode=exec") {
					t.Fatalf("error without the hint: %v", perr)
				}
				return
			}
		}
		t.Log("the statement cache happened to work through the pooler five times")
	})

	t.Run("publishing through the pooler", func(t *testing.T) {
		a, recA := node(t, pooled, schema, func(o *Options) { o.ListenURL = u; o.HistorySize = 100 })
		b, recB := node(t, u, schema)
		topics := []string{"pooled:1", "pooled:2"}
		subscribe(t, a, topics...)
		subscribe(t, b, topics...)

		const writers, each = 24, 25
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					m := pubsub.Message{Topic: topics[w%2], Event: "e", Payload: []byte(fmt.Sprintf(`[%d,%d]`, w, i))}
					if _, err := a.Publish(context.Background(), m); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			if w%4 == 0 { // readers share the pooled sessions with the writers
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range each {
						if _, err := a.History(context.Background(), topics[0], pubsub.Position{}, 10); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
		}
		if err := a.PublishControl(context.Background(), []byte("hello")); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if t.Failed() {
			return
		}

		per := writers * each / 2
		for name, rec := range map[string]*recorder{"pooled node": recA, "direct node": recB} {
			for _, topic := range topics {
				eventually(t, 20*time.Second, name+" to receive "+topic, func() bool { return len(rec.topic(topic)) == per })
				checkWriters(t, name+": "+topic, rec.topic(topic))
			}
			eventually(t, 10*time.Second, name+" to receive the control message", func() bool { return rec.controlCount() == 1 })
		}

		// Trimming runs through the pooler too (a transaction-scoped lock).
		if _, n, err := a.trim(ctxT(t), time.Time{}); err != nil || n != int64(2*(per-100)) {
			t.Fatalf("trim through the pooler: %d rows, %v; want %d", n, err, 2*(per-100))
		}
		since := pubsub.Position{Epoch: recB.topic(topics[1])[0].Epoch}
		h, err := a.History(ctxT(t), topics[1], since, 0)
		if err != nil || len(h.Messages) != 100 || h.Messages[0].Offset != uint64(per-99) || h.Top.Offset != uint64(per) {
			t.Fatalf("history after trimming: %d messages, top %v, %v", len(h.Messages), h.Top, err)
		}
		if st := a.Stats(); st.PublishErrors != 0 || st.Published != uint64(writers*each) {
			t.Fatalf("pooled node stats: %+v", st)
		}
	})
}
