package postgres

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
)

// topicsOnShards returns n topics named prefix+i, each on a shard none of
// avoid holds, and the set of shards they use.
func topicsOnShards(prefix string, n int, avoid map[int]bool) ([]string, map[int]bool) {
	var out []string
	used := map[int]bool{}
	for i := 0; len(out) < n; i++ {
		t := prefix + strconv.Itoa(i)
		if s := shardOf(t); !avoid[s] {
			out = append(out, t)
			used[s] = true
		}
	}
	return out, used
}

func TestShardPrefix(t *testing.T) {
	if got := shardPrefix("hearth"); got != "hearth." {
		t.Fatalf("shardPrefix(hearth) = %q", got)
	}
	long := strings.Repeat("c", 63)
	p := shardPrefix(long)
	if len(p)+len(strconv.Itoa(Shards-1)) > 63 || p == shardPrefix(strings.Repeat("d", 63)) {
		t.Fatalf("shardPrefix of a 63-byte channel: %q", p)
	}
	if fit := strings.Repeat("e", 63-1-len(strconv.Itoa(Shards-1))); shardPrefix(fit) != fit+"." {
		t.Fatalf("shardPrefix(%q) = %q", fit, shardPrefix(fit))
	}
}

// TestShardSQLMatchesGo: hearth_shard() in SQL computes shardOf's shard,
// and both publishers (hearth_broadcast in SQL, Broker.Publish in Go)
// notify that shard's channel.
func TestShardSQLMatchesGo(t *testing.T) {
	u, schema := pgtest.Schema(t)
	b, _ := node(t, u, schema)
	topics := []string{"a", "room:1", "room:lobby", "ü-ñ:日本", strings.Repeat("x", 255), "user:42:notifications"}
	for i := 0; i < 3000; i++ {
		topics = append(topics, fmt.Sprintf("t:%d:%x", i, rand.Uint64()))
	}
	var shards []int32
	err := b.pool.QueryRow(ctxT(t), "SELECT array_agg("+b.names.schema+".hearth_shard(t) ORDER BY i) FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i)",
		topics).Scan(&shards)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for i, topic := range topics {
		if int(shards[i]) != shardOf(topic) {
			t.Fatalf("topic %q: SQL shard %d, Go shard %d", topic, shards[i], shardOf(topic))
		}
		seen[shardOf(topic)] = true
	}
	if len(seen) < Shards*9/10 {
		t.Fatalf("3006 topics fell on %d of %d shards", len(seen), Shards)
	}

	// A raw session listening to one topic's shard hears both publishers.
	conn, err := pgx.Connect(ctxT(t), u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	topic := "room:lobby"
	ch := b.names.shardChans[shardOf(topic)]
	if _, err := conn.Exec(ctxT(t), "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	wait := func(what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("%s: no notification on %s: %v", what, ch, err)
		}
		if n.Channel != ch || !strings.Contains(n.Payload, topic) {
			t.Fatalf("%s: notification on %q: %q", what, n.Channel, n.Payload)
		}
	}
	if _, err := b.pool.Exec(ctxT(t), "SELECT "+b.names.schema+`.hearth_broadcast($1, 'e', '{"from":"sql"}')`, topic); err != nil {
		t.Fatal(err)
	}
	wait("hearth_broadcast")
	publish(t, b, topic, "e", `{"from":"go"}`)
	wait("Broker.Publish")
}

// TestInterestBasedListening: a node hears the shards of its topics only;
// a node with no subscriber on a shard receives no notification of it; a
// ListenAll node hears everything; controls reach every node.
func TestInterestBasedListening(t *testing.T) {
	u, schema := pgtest.Schema(t)
	pub, _ := node(t, u, schema)
	sub, subRec := node(t, u, schema)
	idle, idleRec := node(t, u, schema)
	all, allRec := node(t, u, schema, func(o *Options) { o.ListenAll = true })

	mine, used := topicsOnShards("mine:", 5, nil)
	others, _ := topicsOnShards("other:", 20, used)
	subscribe(t, sub, mine...)
	subscribe(t, all, mine...)
	// Subscribe returns before the LISTEN (the topic is caught up after it).
	eventually(t, 20*time.Second, "sub listening to its topics' shards", func() bool { return sub.Stats().ShardsListened == len(used) })
	if st := idle.Stats(); st.ShardsListened != 0 {
		t.Fatalf("a node without subscriptions listens to %d shards", st.ShardsListened)
	}
	if st := all.Stats(); st.ShardsListened != Shards {
		t.Fatalf("a ListenAll node listens to %d shards", st.ShardsListened)
	}

	// Other nodes' probes (at their start) reached every node: count from here.
	sub0, idle0, all0 := sub.Stats().Received, idle.Stats().Received, all.Stats().Received
	const rounds = 20
	for i := 0; i < rounds; i++ {
		for _, topic := range others {
			publish(t, pub, topic, "e", `{}`)
		}
		for _, topic := range mine {
			publish(t, pub, topic, "e", `{}`)
		}
	}
	if err := pub.PublishControl(ctxT(t), []byte(`{"control":1}`)); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*recorder{subRec, allRec} {
		eventually(t, 20*time.Second, "the subscribed topics' messages", func() bool { return r.total() == rounds*len(mine) })
	}
	for _, r := range []*recorder{subRec, idleRec, allRec} {
		eventually(t, 20*time.Second, "the control", func() bool { return r.controlCount() == 1 })
	}
	// The control came last on the schema's channel, after every topic
	// notification: everything sent to these nodes has arrived.
	sst, ist, ast := sub.Stats(), idle.Stats(), all.Stats()
	sst.Received -= sub0
	ist.Received -= idle0
	ast.Received -= all0
	t.Logf("received: sub %d, idle %d, all %d; published %d in %d notifications",
		sst.Received, ist.Received, ast.Received, pub.Stats().Published, pub.Stats().Notifications)
	if ist.Received != 1 {
		t.Fatalf("the idle node received %d notifications, want only the control's", ist.Received)
	}
	if sst.Received != rounds*uint64(len(mine))+1 {
		t.Fatalf("sub received %d notifications, want %d (its topics' and the control)", sst.Received, rounds*len(mine)+1)
	}
	if ast.Received != pub.Stats().Notifications {
		t.Fatalf("the ListenAll node received %d notifications, the publisher sent %d", ast.Received, pub.Stats().Notifications)
	}
	for _, topic := range mine {
		if got := subRec.topic(topic); len(got) != rounds || got[rounds-1].Offset != rounds {
			t.Fatalf("topic %s: %d messages", topic, len(got))
		}
	}

	metric := func(b *Broker, name string) float64 {
		t.Helper()
		reg := prometheus.NewRegistry()
		reg.MustRegister(b.Collector())
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				m := mf.GetMetric()[0]
				if g := m.GetGauge(); g != nil {
					return g.GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
		t.Fatalf("no metric %s", name)
		return 0
	}
	if v := metric(sub, "hearth_pubsub_listened_shards"); v != float64(len(used)) {
		t.Fatalf("hearth_pubsub_listened_shards %v, want %d", v, len(used))
	}
	if v := metric(all, "hearth_pubsub_listened_shards"); v != Shards {
		t.Fatalf("hearth_pubsub_listened_shards of the ListenAll node %v", v)
	}

	// Unsubscribing the last topic of a shard UNLISTENs it.
	for _, topic := range mine {
		if err := sub.Unsubscribe(ctxT(t), topic); err != nil {
			t.Fatal(err)
		}
	}
	// A shard is marked unlistened before its UNLISTEN runs (so that a
	// topic subscribed meanwhile takes the catch-up path), and the counter
	// moves once the UNLISTEN has committed: wait for both.
	eventually(t, 20*time.Second, "the shards unlistened", func() bool {
		st := sub.Stats()
		return st.ShardsListened == 0 && st.Unlistens >= uint64(len(used))
	})
	if st := sub.Stats(); st.Unlistens != uint64(len(used)) || st.Listens != uint64(len(used)) {
		t.Fatalf("listens %d, unlistens %d, want %d each", st.Listens, st.Unlistens, len(used))
	}
	if v := metric(sub, "hearth_pubsub_shard_unlistens_total"); v != float64(len(used)) {
		t.Fatalf("hearth_pubsub_shard_unlistens_total %v, want %d", v, len(used))
	}
}

// churnRecorder records, per topic, the offsets delivered since the
// test's last reset.
type churnRecorder struct {
	mu   sync.Mutex
	offs map[string][]uint64
}

func (r *churnRecorder) HandleMessage(m *pubsub.Message) {
	r.mu.Lock()
	r.offs[m.Topic] = append(r.offs[m.Topic], m.Offset)
	r.mu.Unlock()
}
func (r *churnRecorder) HandleControl([]byte) {}

func (r *churnRecorder) take(topic string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.offs[topic]
	delete(r.offs, topic)
	return out
}

func (r *churnRecorder) max(topic string) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var m uint64
	for _, o := range r.offs[topic] {
		m = max(m, o)
	}
	return m
}

// TestSubscribeChurnUnderLoad: a node subscribes and unsubscribes topics
// while another node publishes to them without pause, so that its shards
// are LISTENed and UNLISTENed under load. In every subscription period,
// each message committed after Subscribe returned, up to the last one
// checked, is delivered once, in order: 0 lost, 0 duplicated.
func TestSubscribeChurnUnderLoad(t *testing.T) {
	u, schema := pgtest.Schema(t)
	pub, _ := node(t, u, schema)
	sub, _ := node(t, u, schema)
	rec := &churnRecorder{offs: map[string][]uint64{}}
	sub.Register(rec)

	// Two topics share a shard (one of them keeps it listened while the
	// other comes and goes), the others have one each.
	topics, _ := topicsOnShards("churn:", 4, nil)
	for i := 0; ; i++ {
		if t2 := "pair:" + strconv.Itoa(i); shardOf(t2) == shardOf(topics[0]) && t2 != topics[0] {
			topics = append(topics, t2)
			break
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var published atomic.Int64
	for _, topic := range topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := pub.PublishAsync(ctx, pubsub.Message{Topic: topic, Event: "e", Payload: []byte(`{}`)}, nil); err != nil {
					return
				}
				published.Add(1)
				time.Sleep(time.Duration(rand.IntN(500)) * time.Microsecond)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()

	head := func(topic string) uint64 {
		_, top, err := pub.head(ctxT(t), topic, false)
		if err != nil {
			t.Fatal(err)
		}
		return top
	}
	var periods, checked atomic.Int64
	errs := make(chan error, len(topics))
	var cwg sync.WaitGroup
	for _, topic := range topics {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for p := 0; p < 12; p++ {
				if err := sub.Subscribe(ctxT(t), topic); err != nil {
					errs <- err
					return
				}
				h1 := head(topic)
				time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
				h2 := head(topic)
				deadline := time.Now().Add(30 * time.Second)
				for rec.max(topic) < h2 {
					if time.Now().After(deadline) {
						errs <- fmt.Errorf("%s period %d: offset %d not delivered (up to %d)", topic, p, h2, rec.max(topic))
						return
					}
					time.Sleep(2 * time.Millisecond)
				}
				if err := sub.Unsubscribe(ctxT(t), topic); err != nil {
					errs <- err
					return
				}
				var got []uint64
				for _, o := range rec.take(topic) {
					if o > h1 {
						got = append(got, o)
					}
				}
				// Every offset in (h1, h2] once, in order; nothing above
				// h1 delivered twice or out of order.
				for i, o := range got {
					if o != h1+1+uint64(i) {
						errs <- fmt.Errorf("%s period %d: after %d, delivered %v", topic, p, h1, got)
						return
					}
				}
				if len(got) < int(h2-h1) {
					errs <- fmt.Errorf("%s period %d: %d of the %d messages in (%d, %d] delivered", topic, p, len(got), h2-h1, h1, h2)
					return
				}
				periods.Add(1)
				checked.Add(int64(h2 - h1))
				time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
			}
		}()
	}
	cwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := sub.Stats()
	t.Logf("%d periods, %d messages checked, %d published; listens %d, unlistens %d, fetched %d, duplicates dropped %d, gaps %d",
		periods.Load(), checked.Load(), published.Load(), st.Listens, st.Unlistens, st.Fetched, st.Duplicates, st.Gaps)
	if st.Missed != 0 {
		t.Errorf("%d messages missed", st.Missed)
	}
	// A later notification's offset would repair a message lost in a
	// change of shards (a gap read from the table): the change itself
	// must lose nothing, so no gap may have been seen.
	if st.Gaps != 0 {
		t.Errorf("%d gaps: messages were lost while shards changed and recovered only by later ones", st.Gaps)
	}
	if st.Listens < 10 || st.Unlistens < 10 {
		t.Errorf("only %d listens and %d unlistens: the shards did not change under load", st.Listens, st.Unlistens)
	}
	if checked.Load() == 0 {
		t.Error("no message checked")
	}
}

// TestMigrateFromV1: a schema made by the previous version (one channel
// for everything) migrates to interest-based listening, keeping its
// topics and history.
func TestMigrateFromV1(t *testing.T) {
	u, schema := pgtest.Schema(t)
	n := newNames(schema)
	n.setChannel(defaultChannel(schema))
	pgtest.Exec(t, u, "CREATE SCHEMA IF NOT EXISTS "+n.schema)
	pgtest.Exec(t, u, "CREATE TABLE "+n.meta+" (key text PRIMARY KEY, value text NOT NULL)")
	pgtest.Exec(t, u, "INSERT INTO "+n.meta+" VALUES ('version', '1'), ('channel', $1)", n.channel)
	pgtest.Exec(t, u, n.expand(migrations[0]))
	pgtest.Exec(t, u, "SELECT "+n.schema+`.hearth_broadcast('old:topic', 'e', '{"v":1}')`)

	b, rec := node(t, u, schema)
	var version, shards string
	if err := b.pool.QueryRow(ctxT(t), "SELECT (SELECT value FROM "+n.meta+" WHERE key = 'version'), (SELECT value FROM "+n.meta+" WHERE key = 'shards')").Scan(&version, &shards); err != nil {
		t.Fatal(err)
	}
	if version != "2" || shards != strconv.Itoa(Shards) {
		t.Fatalf("after migration: version %q, shards %q", version, shards)
	}
	if _, top, err := b.head(ctxT(t), "old:topic", false); err != nil || top != 1 {
		t.Fatalf("old topic's head %d, %v", top, err)
	}
	subscribe(t, b, "old:topic")
	pgtest.Exec(t, u, "SELECT "+n.schema+`.hearth_broadcast('old:topic', 'e', '{"v":2}')`)
	eventually(t, 20*time.Second, "the broadcast after migrating", func() bool { return len(rec.topic("old:topic")) == 1 })
	if m := rec.topic("old:topic")[0]; m.Offset != 2 || string(m.Payload) != `{"v": 2}` {
		t.Fatalf("delivered %+v (payload %s)", m, m.Payload)
	}
	// A second node finds the schema current.
	node(t, u, schema)
}
