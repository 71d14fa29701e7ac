package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
)

// databases creates k empty databases on the test server.
func databases(t testing.TB, k int) []string {
	urls := make([]string, k)
	for i := range urls {
		urls[i] = pgtest.Database(t)
	}
	return urls
}

// multiNode starts a node on several databases (schema public in each).
func multiNode(t testing.TB, urls []string, edit ...func(*Options)) (*Broker, *recorder) {
	t.Helper()
	return node(t, "", "", append([]func(*Options){func(o *Options) { o.URL, o.URLs, o.Schema = "", urls, "" }}, edit...)...)
}

// queryOne reads one value from the database at u.
func queryOne(t testing.TB, u, sql string, dst any, args ...any) {
	t.Helper()
	conn, err := pgx.Connect(ctxT(t), u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctxT(t), sql, args...).Scan(dst); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// topicsPerDatabase returns n topics owned by each of the node's databases.
func topicsPerDatabase(b *Broker, prefix string, n int) [][]string {
	out := make([][]string, len(b.ids))
	for i, full := 0, 0; full < len(out); i++ {
		topic := prefix + strconv.Itoa(i)
		_, d := b.Database(topic)
		if len(out[d]) < n {
			out[d] = append(out[d], topic)
			if len(out[d]) == n {
				full++
			}
		}
	}
	return out
}

func TestOptionsSeveralURLs(t *testing.T) {
	for _, c := range []struct {
		opts Options
		want string
	}{
		{Options{URL: "postgres://a/x", URLs: []string{"postgres://b/x"}}, "not both"},
		{Options{URLs: []string{"postgres://a/x", ""}}, "URLs[1] is empty"},
		{Options{URLs: []string{"postgres://a/x", "postgres://b/x"}, ListenURL: "postgres://a/x"}, "ListenURLs can"},
		{Options{URLs: []string{"postgres://a/x", "postgres://b/x"}, ListenURLs: []string{"postgres://a/x"}}, "ListenURLs has 1 elements"},
	} {
		if err := c.opts.setDefaults(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one containing %q", c.opts, err, c.want)
		}
	}
	o := Options{URLs: []string{"postgres://a/x"}, ListenURLs: []string{"postgres://l/x"}}
	if err := o.setDefaults(); err != nil || o.URL != "postgres://a/x" || o.ListenURL != "postgres://l/x" || o.URLs != nil {
		t.Errorf("one URL in URLs: %v, %+v", err, o)
	}
}

// TestOwnerSQLMatchesGo: hearth_owner() in every database places topics as
// ownerOf does, and a topic's owner is the database its node publishes to.
func TestOwnerSQLMatchesGo(t *testing.T) {
	urls := databases(t, 3)
	b, _ := multiNode(t, urls)
	topics := []string{"a", "room:1", "ünïcödé:☃", strings.Repeat("x", 255), "with:colon:and,comma", "NUL-free\ttab"}
	for i := 0; i < 1500; i++ {
		topics = append(topics, "t:"+strconv.Itoa(i))
	}
	var sqlOwners []string
	queryOne(t, urls[1], "SELECT array_agg(hearth_owner(t, (SELECT value FROM hearth_meta WHERE key = 'members')) ORDER BY i) FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i)", &sqlOwners, topics)
	counts := make([]int, 3)
	for i, topic := range topics {
		id, d := b.Database(topic)
		if sqlOwners[i] != id {
			t.Fatalf("topic %q: hearth_owner says %s, ownerOf %s", topic, sqlOwners[i], id)
		}
		counts[d]++
	}
	// A third each: 1506 topics, sd about 18 per database.
	for d, n := range counts {
		if n < 400 || n > 600 {
			t.Errorf("database %d owns %d of %d topics", d, n, len(topics))
		}
	}
	t.Logf("topics per database: %v", counts)

	// The order of the identities does not matter.
	if got := ownerOf("x", []string{"b", "a"}); ownerOf("x", []string{"a", "b"}) != 1-got {
		t.Error("ownerOf depends on the order of the identities")
	}
}

// TestSeveralDatabases: with three databases, each topic's messages,
// history and notifications live on its owner, which carries about a
// third of the traffic; a node given the databases in another order
// agrees; every node gets every control once.
func TestSeveralDatabases(t *testing.T) {
	urls := databases(t, 3)
	pub, pubRec := multiNode(t, urls)
	sub, rec := multiNode(t, []string{urls[2], urls[0], urls[1]})
	if pub.Stats().State != StateHealthy || len(pub.Stats().Databases) != 3 {
		t.Fatalf("stats %+v", pub.Stats())
	}
	const n = 300
	topic := func(i int) string { return "room:" + strconv.Itoa(i) }
	for i := 0; i < n; i++ {
		subscribe(t, sub, topic(i))
	}
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 1; j <= 3; j++ {
				if _, err := pub.Publish(ctx, pubsub.Message{Topic: topic(i), Event: "e", Payload: []byte(strconv.Itoa(j))}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "every message on the subscriber", func() bool { return rec.total() == 3*n })
	for i := 0; i < n; i++ {
		for j, m := range rec.topic(topic(i)) {
			if m.Offset != uint64(j+1) || string(m.Payload) != strconv.Itoa(j+1) {
				t.Fatalf("%s: message %d is %+v", topic(i), j, m)
			}
		}
	}

	// Each topic's rows are on its owner only; a third each.
	st := pub.Stats()
	var sum uint64
	for d, u := range urls {
		var topics []string
		queryOne(t, u, "SELECT coalesce(array_agg(topic), '{}') FROM hearth_topics", &topics)
		for _, tp := range topics {
			if _, owner := pub.Database(tp); owner != d {
				t.Errorf("topic %s is in database %d, owned by %d", tp, d, owner)
			}
		}
		ds := st.Databases[d]
		t.Logf("database %d (%s): %d topics, %d messages published, %d notifications received by the subscriber",
			d, ds.Database, len(topics), ds.Published, sub.Stats().Databases[(d+1)%3].Received)
		if len(topics) < 60 || len(topics) > 140 || ds.Published != 3*uint64(len(topics)) {
			t.Errorf("database %d: %d topics, %d published", d, len(topics), ds.Published)
		}
		sum += ds.Published
	}
	if sum != st.Published || st.Published != 3*n {
		t.Errorf("published %d in all, %d summed", st.Published, sum)
	}
	// Metrics carry each database's figures, labelled with its identity.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(pub.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	perDB := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "hearth_pubsub_published_total" {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "database" {
						perDB[l.GetValue()] = m.GetCounter().GetValue()
					}
				}
			}
		}
	}
	for _, ds := range st.Databases {
		if perDB[ds.Database] != float64(ds.Published) {
			t.Errorf("hearth_pubsub_published_total{database=%q} = %v, want %d", ds.Database, perDB[ds.Database], ds.Published)
		}
	}

	// History reads the owner.
	h, err := sub.History(ctx, topic(7), pubsub.Position{Epoch: rec.topic(topic(7))[0].Epoch, Offset: 1}, 0)
	if err != nil || !h.Complete || len(h.Messages) != 2 || h.Top.Offset != 3 {
		t.Fatalf("History: %+v, %v", h, err)
	}

	// Controls reach every node once.
	if err := sub.PublishControl(ctx, []byte("ctl")); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "the control on both nodes", func() bool { return rec.controlCount() == 1 && pubRec.controlCount() == 1 })
	time.Sleep(200 * time.Millisecond)
	if rec.controlCount() != 1 || pubRec.controlCount() != 1 {
		t.Errorf("controls delivered %d and %d times", rec.controlCount(), pubRec.controlCount())
	}

	// A node on one of the databases alone is refused.
	if _, err := New(ctx, Options{URL: urls[0]}); err == nil || !strings.Contains(err.Error(), "Rebalance") {
		t.Errorf("a node on one database of three: %v", err)
	}
	// So is a node given two of the three.
	if _, err := New(ctx, Options{URLs: urls[:2]}); err == nil || !strings.Contains(err.Error(), "Rebalance") {
		t.Errorf("a node on two databases of three: %v", err)
	}
	// And a node given one database twice.
	if _, err := New(ctx, Options{URLs: []string{urls[0], urls[1], withURLParams(urls[0], "application_name=x")}}); err == nil || !strings.Contains(err.Error(), "same database") {
		t.Errorf("a node given one database twice: %v", err)
	}
}

// TestForeignPublishRefused: hearth_publish (and hearth_broadcast) in SQL
// refuse a topic that another database owns, with a clear error; on the
// owner they work and the nodes deliver.
func TestForeignPublishRefused(t *testing.T) {
	urls := databases(t, 3)
	b, rec := multiNode(t, urls)
	topic := "orders:42"
	_, owner := b.Database(topic)
	other := urls[(owner+1)%3]
	subscribe(t, b, topic)

	conn, err := pgx.Connect(ctxT(t), other)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var off int64
	err = conn.QueryRow(ctxT(t), `SELECT hearth_broadcast($1, 'e', '{"v":1}')`, topic).Scan(&off)
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "HT001" || !strings.Contains(pe.Message, `topic orders:42 belongs to database `+b.ids[owner]) || pe.Hint == "" {
		t.Fatalf("hearth_broadcast on a database that does not own the topic: %v", err)
	}
	t.Logf("refused: %s (hint: %s)", pe.Message, pe.Hint)
	var n int
	queryOne(t, other, "SELECT count(*) FROM hearth_topics", &n)
	if n != 0 {
		t.Errorf("the refused topic left %d rows", n)
	}

	pgtest.Exec(t, urls[owner], `SELECT hearth_broadcast($1, 'e', '{"v":2}')`, topic)
	eventually(t, 10*time.Second, "the SQL broadcast on the owner", func() bool { return len(rec.topic(topic)) == 1 })
}

// TestAddDatabase: adding a fourth database to three moves about a quarter
// of the topics; they start a new epoch on the new one (a client's
// recovery is incomplete, not silently short), the others keep theirs.
// Nodes started with the old set refuse to publish and report down. Taking
// the database out again moves the topics back, to new epochs again.
func TestAddDatabase(t *testing.T) {
	urls := databases(t, 4)
	// old never checks the set by itself (its trimmer sleeps): its
	// publishing statements must; watcher checks it every 100 ms.
	old, _ := multiNode(t, urls[:3], func(o *Options) { o.TrimInterval = time.Hour })
	watcher, _ := multiNode(t, urls[:3], func(o *Options) { o.TrimInterval = 100 * time.Millisecond })
	const n = 400
	topic := func(i int) string { return "doc:" + strconv.Itoa(i) }
	pos := make([]pubsub.Position, n)
	ctx := ctxT(t)
	for i := 0; i < n; i++ {
		pos[i] = publish(t, old, topic(i), "e", `{}`)
	}

	if _, err := New(ctx, Options{URLs: urls}); err == nil || !strings.Contains(err.Error(), "Rebalance") {
		t.Fatalf("a fourth database without Rebalance: %v", err)
	}
	newer, rec := multiNode(t, urls, func(o *Options) { o.Rebalance = true })

	moved := 0
	for i := 0; i < n; i++ {
		h, err := newer.History(ctx, topic(i), pos[i], 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, d := newer.Database(topic(i)); d == 3 {
			moved++
			if h.Complete || h.Top.Epoch == pos[i].Epoch || h.Top.Offset != 0 {
				t.Fatalf("moved topic %s: recovery from %v gives %+v", topic(i), pos[i], h)
			}
		} else if !h.Complete || h.Top != pos[i] {
			t.Fatalf("topic %s that stayed: recovery from %v gives %+v", topic(i), pos[i], h)
		}
	}
	t.Logf("%d of %d topics moved to the new database", moved, n)
	if moved < n/4-50 || moved > n/4+50 {
		t.Errorf("%d of %d topics moved, want about a quarter", moved, n)
	}
	// Their old rows are gone from the three databases.
	for d, u := range urls[:3] {
		var stale int
		queryOne(t, u, "SELECT count(*) FROM hearth_topics WHERE hearth_owner(topic) <> (SELECT value FROM hearth_meta WHERE key = 'database')", &stale)
		if stale != 0 {
			t.Errorf("database %d still holds %d topics it no longer owns", d, stale)
		}
	}

	// The nodes started with three databases refuse to publish (their
	// statements check the set) and soon report down.
	var pe *pgconn.PgError
	if _, err := old.Publish(ctx, pubsub.Message{Topic: topic(0), Event: "e", Payload: []byte(`{}`)}); !errors.As(err, &pe) || pe.Code != "HT002" {
		t.Errorf("publishing from a node with the old set: %v", err)
	} else {
		t.Logf("refused: %v (hint: %s)", err, pe.Hint)
	}
	eventually(t, 10*time.Second, "the watching node down", func() bool { return watcher.State() == StateDown })
	if _, err := watcher.Publish(ctx, pubsub.Message{Topic: topic(0), Event: "e", Payload: []byte(`{}`)}); !errors.Is(err, errOutdated) {
		t.Errorf("publishing from a node that noticed the change: %v", err)
	}

	// A moved topic works on the new node, from offset 1 of its new epoch.
	var movedTopic string
	for i := 0; i < n && movedTopic == ""; i++ {
		if _, d := newer.Database(topic(i)); d == 3 {
			movedTopic = topic(i)
		}
	}
	subscribe(t, newer, movedTopic)
	p := publish(t, newer, movedTopic, "e", `{}`)
	eventually(t, 10*time.Second, "the moved topic's message", func() bool { return len(rec.topic(movedTopic)) == 1 })
	if p.Offset != 1 || rec.topic(movedTopic)[0].Epoch != p.Epoch {
		t.Errorf("moved topic: published at %v, delivered %+v", p, rec.topic(movedTopic))
	}

	// Taking the fourth database out moves its topics back, to new epochs:
	// their old offsets on the first three cannot be handed out again.
	newer.Close()
	back, _ := multiNode(t, urls[:3], func(o *Options) { o.Rebalance = true })
	h, err := back.History(ctx, movedTopic, pos[0], 0)
	if err != nil {
		t.Fatal(err)
	}
	var orig pubsub.Position
	for i := 0; i < n; i++ {
		if topic(i) == movedTopic {
			orig = pos[i]
		}
	}
	if h.Complete || h.Top.Epoch == orig.Epoch || h.Top.Epoch == p.Epoch {
		t.Errorf("topic moved back: %+v (first epoch %s, on the fourth database %s)", h, orig.Epoch, p.Epoch)
	}
}

// TestSeveralDatabasesOneRestarted: three databases, one of them on a
// private server that is stopped and started again in the middle of a
// stream. Publishing to the topics of the two others goes on without an
// error; the third's publishers retry until it is back; the subscriber's
// listener on it reconnects and catches up: every acknowledged message
// arrives once, in order.
func TestSeveralDatabasesOneRestarted(t *testing.T) {
	cluster := pgtest.StartCluster(t)
	urls := append(databases(t, 2), cluster.URL)
	fast := func(o *Options) { o.ReconnectMax = 300 * time.Millisecond }
	pub, _ := multiNode(t, urls, fast)
	sub, rec := multiNode(t, urls, fast)
	const each, per = 150, 6
	groups := topicsPerDatabase(pub, "s:", per)
	var topics []string
	for _, g := range groups {
		topics = append(topics, g...)
	}
	subscribe(t, sub, topics...)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var sent atomic.Int64
	var outage sync.WaitGroup
	restart := func() {
		defer outage.Done()
		if err := cluster.Stop(); err != nil {
			t.Error(err)
			return
		}
		time.Sleep(time.Second)
		if err := cluster.Start(); err != nil {
			t.Error(err)
		}
	}
	outage.Add(1)
	var once sync.Once
	var wg sync.WaitGroup
	for _, topic := range topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			part := pub.part(topic)
			for seq := 1; seq <= each; {
				_, err := pub.Publish(ctx, pubsub.Message{Topic: topic, Event: "n", Payload: []byte(strconv.Itoa(seq))})
				if err != nil {
					if ctx.Err() != nil {
						t.Errorf("%s: %v", topic, err)
						return
					}
					// Ambiguous: look at what the topic's database holds.
					if lastPayload(ctx, part, topic) != strconv.Itoa(seq) {
						time.Sleep(20 * time.Millisecond)
						continue
					}
				}
				seq++
				if sent.Add(1) == int64(len(topics)*each*2/5) {
					once.Do(func() { go restart() })
				}
			}
		}()
	}
	wg.Wait()
	outage.Wait()
	for _, topic := range topics {
		publish(t, pub, topic, "end", "0")
	}
	eventually(t, time.Minute, "every topic's end marker", func() bool {
		for _, topic := range topics {
			ms := rec.topic(topic)
			if len(ms) == 0 || ms[len(ms)-1].Event != "end" {
				return false
			}
		}
		return true
	})
	lost, dup := 0, 0
	for _, topic := range topics {
		seen := map[string]int{}
		prev := uint64(0)
		for _, m := range rec.topic(topic) {
			if m.Offset <= prev {
				dup++
			}
			prev = m.Offset
			seen[string(m.Payload)]++
		}
		for seq := 1; seq <= each; seq++ {
			switch seen[strconv.Itoa(seq)] {
			case 0:
				lost++
			case 1:
			default:
				dup++
			}
		}
	}
	ps, ss := pub.Stats(), sub.Stats()
	for d := range urls {
		t.Logf("database %d: published %d, publish errors %d; subscriber: received %d, reconnects %d, catch-ups %d, fetched %d",
			d, ps.Databases[d].Published, ps.Databases[d].PublishErrors, ss.Databases[d].Received,
			ss.Databases[d].Reconnects, ss.Databases[d].CatchUps, ss.Databases[d].Fetched)
	}
	if lost != 0 || dup != 0 {
		t.Errorf("lost %d, duplicated %d; want 0", lost, dup)
	}
	for d := 0; d < 2; d++ {
		if ps.Databases[d].PublishErrors != 0 || ss.Databases[d].Reconnects != 0 {
			t.Errorf("database %d (not restarted): %d publish errors, %d reconnects", d, ps.Databases[d].PublishErrors, ss.Databases[d].Reconnects)
		}
	}
	if ss.Databases[2].Reconnects == 0 || ss.Databases[2].CatchUps == 0 || ss.Missed != 0 {
		t.Errorf("restarted database: %d reconnects, %d catch-ups, %d missed", ss.Databases[2].Reconnects, ss.Databases[2].CatchUps, ss.Missed)
	}
	eventually(t, 30*time.Second, "the subscriber healthy", func() bool { return sub.State() == StateHealthy })
}

// TestEmitterSeveralDatabases: an Emitter given the databases publishes
// each topic on its owner, where the nodes hear it.
func TestEmitterSeveralDatabases(t *testing.T) {
	urls := databases(t, 3)
	b, rec := multiNode(t, urls)
	e, err := NewEmitter(ctxT(t), Options{URLs: []string{urls[1], urls[2], urls[0]}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	groups := topicsPerDatabase(b, "emit:", 4)
	for _, g := range groups {
		for _, topic := range g {
			subscribe(t, b, topic)
			if _, err := e.Emit(ctxT(t), topic, "e", map[string]int{"v": 1}); err != nil {
				t.Fatalf("Emit(%s): %v", topic, err)
			}
		}
	}
	eventually(t, 10*time.Second, "every emitted message", func() bool { return rec.total() == 12 })
	for d, u := range urls {
		var n int
		queryOne(t, u, "SELECT count(*) FROM hearth_topics", &n)
		if n != 4 {
			t.Errorf("database %d holds %d topics, want 4", d, n)
		}
	}
	// An Emitter given another set of databases is refused.
	if e2, err := NewEmitter(ctxT(t), Options{URLs: urls[:2]}); err == nil {
		e2.Close()
		t.Error("an Emitter on two of the three databases started")
	}
}

func BenchmarkOwnerOf(b *testing.B) {
	ids := []string{"0123456789abcdef", "fedcba9876543210", "00112233aabbccdd"}
	topics := make([]string, 1024)
	for i := range topics {
		topics[i] = fmt.Sprintf("room:%d", i)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		ownerOf(topics[i%len(topics)], ids)
	}
}

// TestSeveralDatabasesSubscribeChurn: as TestSubscribeChurnUnderLoad, on
// three databases: a node subscribes and unsubscribes topics of every
// database while another publishes to them without pause. In every
// subscription period each message committed after Subscribe returned, up
// to the last one checked, is delivered once, in order.
func TestSeveralDatabasesSubscribeChurn(t *testing.T) {
	urls := databases(t, 3)
	pub, _ := multiNode(t, urls)
	sub, _ := multiNode(t, urls)
	rec := &churnRecorder{offs: map[string][]uint64{}}
	sub.Register(rec)
	var topics []string
	for _, g := range topicsPerDatabase(pub, "churn:", 2) {
		topics = append(topics, g...)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, topic := range topics {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if err := pub.PublishAsync(ctx, pubsub.Message{Topic: topic, Event: "e", Payload: []byte(`{}`)}, nil); err != nil {
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	defer func() { cancel(); wg.Wait() }()

	head := func(topic string) uint64 {
		_, top, err := pub.part(topic).head(ctxT(t), topic, false)
		if err != nil {
			t.Fatal(err)
		}
		return top
	}
	var checked atomic.Int64
	errs := make(chan error, len(topics))
	var cwg sync.WaitGroup
	for _, topic := range topics {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			for p := 0; p < 6; p++ {
				if err := sub.Subscribe(ctxT(t), topic); err != nil {
					errs <- err
					return
				}
				h1 := head(topic)
				time.Sleep(20 * time.Millisecond)
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
				checked.Add(int64(h2 - h1))
				time.Sleep(30 * time.Millisecond) // time to UNLISTEN
			}
		}()
	}
	cwg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := sub.Stats()
	t.Logf("%d messages checked; listens %d, unlistens %d, gaps %d", checked.Load(), st.Listens, st.Unlistens, st.Gaps)
	for d, ds := range st.Databases {
		if ds.Listens < 3 || ds.Unlistens < 3 {
			t.Errorf("database %d: %d listens, %d unlistens: its shards did not change", d, ds.Listens, ds.Unlistens)
		}
	}
	if st.Missed != 0 || st.Gaps != 0 || checked.Load() == 0 {
		t.Errorf("missed %d, gaps %d, checked %d", st.Missed, st.Gaps, checked.Load())
	}
}

// TestBackToOneDatabase: a node on one of two databases, with Rebalance,
// takes the other out: the topics of the other start new epochs on it,
// its own keep theirs, and it accepts every topic from SQL again.
func TestBackToOneDatabase(t *testing.T) {
	urls := databases(t, 2)
	two, _ := multiNode(t, urls)
	ctx := ctxT(t)
	pos := map[string]pubsub.Position{}
	for i := 0; i < 40; i++ {
		topic := "k:" + strconv.Itoa(i)
		pos[topic] = publish(t, two, topic, "e", `{}`)
	}
	two.Close()

	one, _ := node(t, urls[0], "", func(o *Options) { o.Rebalance = true })
	for topic, p := range pos {
		h, err := one.History(ctx, topic, p, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, d := two.Database(topic); d == 0 {
			if !h.Complete || h.Top != p {
				t.Errorf("%s stayed: recovery from %v gives %+v", topic, p, h)
			}
		} else if h.Complete || h.Top.Epoch == p.Epoch {
			t.Errorf("%s came back: recovery from %v gives %+v", topic, p, h)
		}
	}
	for topic := range pos {
		pgtest.Exec(t, urls[0], `SELECT hearth_broadcast($1, 'e', '{}')`, topic)
	}
	if _, err := New(ctx, Options{URLs: urls}); err == nil || !strings.Contains(err.Error(), "Rebalance") {
		t.Errorf("the two databases again without Rebalance: %v", err)
	}
}
