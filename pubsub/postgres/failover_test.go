package postgres

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
)

// queryInt runs a one-value query on a server.
func queryInt(t *testing.T, u, sql string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return -1
	}
	defer conn.Close(context.Background())
	var v int64
	if err := conn.QueryRow(ctx, sql).Scan(&v); err != nil {
		return -1
	}
	return v
}

// publishRetry publishes until the broker's pool reaches the new primary.
func publishRetry(t *testing.T, b *Broker, topic, payload string) pubsub.Position {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		pos, err := b.Publish(ctx, pubsub.Message{Topic: topic, Event: "m", Payload: []byte(payload)})
		cancel()
		if err == nil {
			return pos
		}
		if time.Now().After(deadline) {
			t.Fatalf("publishing after the failover: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// failoverPair starts a primary and a streaming standby, and a node on the
// multi-host URL that follows the writable one.
func failoverPair(t *testing.T, synchronous bool, edit ...func(*Options)) (primary, standby *pgtest.Cluster, b *Broker, rec *recorder) {
	t.Helper()
	primary = pgtest.StartCluster(t)
	standby = pgtest.StartStandby(t, primary, synchronous)
	u := fmt.Sprintf("postgres://postgres@127.0.0.1:%d,127.0.0.1:%d/postgres?sslmode=disable&target_session_attrs=read-write&connect_timeout=3",
		primary.Port, standby.Port)
	edit = append(edit, func(o *Options) { o.ReconnectMax = 500 * time.Millisecond })
	b, rec = node(t, u, "hearth", edit...)
	subscribe(t, b, "room:f")
	return primary, standby, b, rec
}

// TestFailoverAsyncMovesToNewEpoch: with asynchronous replication, the
// standby misses the last acknowledged commits (4 and 5). After the
// primary crashes and the standby is promoted, the new primary must not
// hand out offsets 4 and 5 again in the same epoch (a client that saw the
// old 4 and 5 would skip the new ones as duplicates): the node finds the
// new timeline and moves the topic to a new epoch, so that recovery from
// the old position is reported incomplete.
func TestFailoverAsyncMovesToNewEpoch(t *testing.T) {
	primary, standby, b, rec := failoverPair(t, false)
	var pos pubsub.Position
	for i := 1; i <= 3; i++ {
		pos = publish(t, b, "room:f", "m", fmt.Sprintf(`{"i":%d}`, i))
	}
	eventually(t, 30*time.Second, "the standby to replay 3 messages", func() bool {
		return queryInt(t, standby.URL, "SELECT count(*) FROM hearth.hearth_messages") == 3
	})
	// Cut replication: what commits next stays on the primary alone.
	pgtest.Exec(t, standby.URL, "ALTER SYSTEM SET primary_conninfo = ''")
	pgtest.Exec(t, standby.URL, "SELECT pg_reload_conf()")
	eventually(t, 30*time.Second, "the standby to stop streaming", func() bool {
		return queryInt(t, primary.URL, "SELECT count(*) FROM pg_stat_replication") == 0
	})
	for i := 4; i <= 5; i++ {
		pos = publish(t, b, "room:f", "m", fmt.Sprintf(`{"i":%d}`, i))
	}
	if pos.Offset != 5 {
		t.Fatalf("before the failover: position %+v", pos)
	}
	eventually(t, 10*time.Second, "5 deliveries", func() bool { return len(rec.topic("room:f")) == 5 })
	if err := primary.Crash(); err != nil {
		t.Fatal(err)
	}
	if err := standby.Promote(); err != nil {
		t.Fatal(err)
	}
	after := publishRetry(t, b, "room:f", `{"i":6}`)
	if after.Epoch == pos.Epoch {
		t.Fatalf("after an asynchronous failover the topic kept its epoch: %+v after %+v: offsets clients saw are handed out again", after, pos)
	}
	h, err := b.History(ctxT(t), "room:f", pos, 0)
	if err != nil {
		t.Fatal(err)
	}
	if h.Complete {
		t.Errorf("recovery from %+v after the failover says complete: %+v", pos, h)
	}
	eventually(t, 30*time.Second, "the new message delivered", func() bool {
		msgs := rec.topic("room:f")
		return len(msgs) >= 6 && msgs[len(msgs)-1].Epoch == after.Epoch && msgs[len(msgs)-1].Offset == after.Offset
	})
	if st := b.Stats(); st.EpochRotations < 1 {
		t.Errorf("stats: %d epoch rotations", st.EpochRotations)
	}
}

// TestFailoverSynchronousKeepsEpoch: with synchronous replication every
// acknowledged commit is on the standby; with SynchronousFailover set the
// topic keeps its epoch across the failover, so recovery stays complete,
// and nothing acknowledged is lost.
func TestFailoverSynchronousKeepsEpoch(t *testing.T) {
	primary, standby, b, _ := failoverPair(t, true, func(o *Options) { o.SynchronousFailover = true })
	eventually(t, 30*time.Second, "a synchronous standby", func() bool {
		return queryInt(t, primary.URL, "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == 1
	})
	var pos pubsub.Position
	for i := 1; i <= 5; i++ {
		pos = publish(t, b, "room:f", "m", fmt.Sprintf(`{"i":%d}`, i))
	}
	if err := primary.Crash(); err != nil {
		t.Fatal(err)
	}
	if err := standby.Promote(); err != nil {
		t.Fatal(err)
	}
	after := publishRetry(t, b, "room:f", `{"i":6}`)
	if after.Epoch != pos.Epoch || after.Offset != 6 {
		t.Fatalf("after a synchronous failover: %+v, before %+v", after, pos)
	}
	h, err := b.History(ctxT(t), "room:f", pubsub.Position{Epoch: pos.Epoch}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !h.Complete || len(h.Messages) != 6 {
		t.Errorf("history after the failover: complete %v, %d messages (want all 6)", h.Complete, len(h.Messages))
	}
}
