package postgres

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
)

func TestCrossNode(t *testing.T) {
	u, schema := pgtest.Schema(t)
	a, recA := node(t, u, schema)
	b, recB := node(t, u, schema)
	c, recC := node(t, u, schema)
	subscribe(t, b, "room:1")
	subscribe(t, c, "room:1", "room:2")

	var want []pubsub.Position
	for i := 1; i <= 3; i++ {
		// '%' matters: notifications are format() templates.
		want = append(want, publish(t, a, "room:1", "msg", fmt.Sprintf(`{"n":%d,"p":"%%1$s %%%%"}`, i)))
	}
	bin, err := a.Publish(ctxT(t), pubsub.Message{Topic: "room:1", Event: "bin", Payload: []byte{0, 1, 0xff}, Binary: true, Exclude: "sock-7"})
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, bin)
	publish(t, b, "room:2", "other", `{}`)

	for i, p := range want {
		if p.Epoch == "" || p.Offset != uint64(i+1) {
			t.Fatalf("position %d = %v, want offset %d with an epoch", i, p, i+1)
		}
		if p.Epoch != want[0].Epoch {
			t.Fatalf("epoch changed within a topic: %v", want)
		}
	}
	for name, rec := range map[string]*recorder{"b": recB, "c": recC} {
		eventually(t, 10*time.Second, "node "+name+" to receive room:1", func() bool { return len(rec.topic("room:1")) == 4 })
		got := rec.topic("room:1")
		for i, m := range got[:3] {
			if m.Event != "msg" || string(m.Payload) != fmt.Sprintf(`{"n":%d,"p":"%%1$s %%%%"}`, i+1) || m.Binary || m.Position() != want[i] {
				t.Fatalf("node %s message %d = %+v, want position %v", name, i, m, want[i])
			}
		}
		if m := got[3]; m.Event != "bin" || !bytes.Equal(m.Payload, []byte{0, 1, 0xff}) || !m.Binary || m.Exclude != "sock-7" || m.Position() != bin {
			t.Fatalf("node %s binary message = %+v", name, m)
		}
	}
	eventually(t, 10*time.Second, "node c to receive room:2", func() bool { return len(recC.topic("room:2")) == 1 })
	// Only subscribed topics are delivered.
	if n := len(recB.topic("room:2")); n != 0 {
		t.Fatalf("node b got %d messages of room:2, not subscribed", n)
	}
	if n := recA.total(); n != 0 {
		t.Fatalf("node a got %d messages, subscribed to nothing", n)
	}
	st := a.Stats()
	if st.Published != 4 || st.Batches == 0 || st.Notifications == 0 || st.State != StateHealthy {
		t.Fatalf("node a stats = %+v", st)
	}
}

func TestLargePayloads(t *testing.T) {
	u, schema := pgtest.Schema(t)
	a, _ := node(t, u, schema)
	b, recB := node(t, u, schema)
	subscribe(t, b, "big")

	// 100 KB of JSON, the same in binary, and sizes around the
	// notification limit.
	payload := func(n int) []byte {
		return []byte(`"` + strings.Repeat("x", n-2) + `"`)
	}
	rnd := make([]byte, 100_000)
	rand.Read(rnd)
	msgs := []pubsub.Message{
		{Topic: "big", Event: "json", Payload: payload(100_000)},
		{Topic: "big", Event: "small", Payload: payload(10)},
		{Topic: "big", Event: "binary", Payload: rnd, Binary: true},
		{Topic: "big", Event: "edge", Payload: payload(7_700)},
		{Topic: "big", Event: "edge", Payload: payload(7_900)},
		{Topic: "big", Event: "edge", Payload: payload(8_100)},
		{Topic: "big", Event: "max", Payload: payload(1 << 20)},
	}
	// Concurrently, so some share a batch.
	var wg sync.WaitGroup
	errs := make([]error, len(msgs))
	for i := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = a.Publish(ctxT(t), msgs[i])
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Publish(ctxT(t), pubsub.Message{Topic: "big", Payload: payload(1<<20 + 1)}); !errors.Is(err, pubsub.ErrTooLarge) {
		t.Fatalf("Publish of 1 MiB + 1 = %v, want ErrTooLarge", err)
	}
	for _, m := range []pubsub.Message{{Topic: "big", Event: "\xff"}, {Topic: "big", Exclude: "a\x00"}} {
		if _, err := a.Publish(ctxT(t), m); !errors.Is(err, ErrNotText) {
			t.Fatalf("Publish(%q, %q, %q) = %v, want ErrNotText", m.Topic, m.Event, m.Exclude, err)
		}
	}
	// Topics follow the rules of every broker (pubsub.CheckTopic).
	for _, topic := range []string{"big\x00", "big\xff"} {
		if _, err := a.Publish(ctxT(t), pubsub.Message{Topic: topic}); !errors.Is(err, pubsub.ErrInvalidTopic) {
			t.Fatalf("Publish to topic %q = %v, want ErrInvalidTopic", topic, err)
		}
	}

	eventually(t, 10*time.Second, "all payloads", func() bool { return len(recB.topic("big")) == len(msgs) })
	got := map[string]int{}
	for i, m := range recB.topic("big") {
		if m.Offset != uint64(i+1) {
			t.Fatalf("message %d has offset %d", i, m.Offset)
		}
		found := false
		for _, w := range msgs {
			if w.Event == m.Event && w.Binary == m.Binary && bytes.Equal(w.Payload, m.Payload) {
				found = true
			}
		}
		if !found {
			t.Fatalf("message %d (%s, %d bytes) does not match anything published", i, m.Event, len(m.Payload))
		}
		got[m.Event]++
	}
	if got["json"] != 1 || got["binary"] != 1 || got["edge"] != 3 || got["max"] != 1 {
		t.Fatalf("received %v", got)
	}
	if st := b.Stats(); st.Fetched < 3 {
		t.Fatalf("node b fetched %d messages from the table, want the large ones (>= 3)", st.Fetched)
	}
}

func TestControl(t *testing.T) {
	u, schema := pgtest.Schema(t)
	a, recA := node(t, u, schema)
	_, recB := node(t, u, schema)
	for _, data := range [][]byte{[]byte(`{"disconnect":"u1"}`), {0, 0xff, 1}} {
		if err := a.PublishControl(ctxT(t), data); err != nil {
			t.Fatal(err)
		}
	}
	for name, rec := range map[string]*recorder{"a (the sender)": recA, "b": recB} {
		eventually(t, 10*time.Second, "control messages on node "+name, func() bool { return rec.controlCount() == 2 })
		rec.mu.Lock()
		if string(rec.controls[0]) != `{"disconnect":"u1"}` || !bytes.Equal(rec.controls[1], []byte{0, 0xff, 1}) {
			t.Fatalf("node %s controls = %q", name, rec.controls)
		}
		rec.mu.Unlock()
	}
	if err := a.PublishControl(ctxT(t), make([]byte, 8000)); !errors.Is(err, pubsub.ErrTooLarge) {
		t.Fatalf("8000-byte control: %v, want ErrTooLarge", err)
	}
	// Not stored.
	var n int
	if err := a.pool.QueryRow(ctxT(t), "SELECT count(*) FROM "+a.names.messages).Scan(&n); err != nil || n != 0 {
		t.Fatalf("history rows after control messages: %d, %v", n, err)
	}
	// Controls and messages sharing batches.
	b, recB2 := node(t, u, schema)
	subscribe(t, b, "mixed")
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				if err := a.PublishControl(ctxT(t), []byte(fmt.Sprintf(`{"c":%d,"pct":"%%s"}`, i))); err != nil {
					t.Error(err)
				}
				return
			}
			if _, err := a.Publish(ctxT(t), pubsub.Message{Topic: "mixed", Event: "m", Payload: []byte(`1`)}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	eventually(t, 10*time.Second, "mixed controls and messages", func() bool {
		return recB2.controlCount() == 20 && len(recB2.topic("mixed")) == 20
	})
	for i, m := range recB2.topic("mixed") {
		if m.Offset != uint64(i+1) {
			t.Fatalf("mixed message %d has offset %d", i, m.Offset)
		}
	}
}

func TestSubscribeCountsAndBaseline(t *testing.T) {
	u, schema := pgtest.Schema(t)
	a, _ := node(t, u, schema)
	b, recB := node(t, u, schema)

	publish(t, a, "t", "before", `1`) // before Subscribe: not delivered
	subscribe(t, b, "t", "t")         // counted twice
	publish(t, a, "t", "after", `2`)
	eventually(t, 10*time.Second, "the message after Subscribe", func() bool { return len(recB.topic("t")) == 1 })
	if m := recB.topic("t")[0]; m.Event != "after" || m.Offset != 2 {
		t.Fatalf("delivered %+v, want only offset 2", m)
	}
	if err := b.Unsubscribe(ctxT(t), "t"); err != nil {
		t.Fatal(err)
	}
	publish(t, a, "t", "still", `3`) // one subscription left
	eventually(t, 10*time.Second, "delivery with one subscription left", func() bool { return len(recB.topic("t")) == 2 })
	if err := b.Unsubscribe(ctxT(t), "t"); err != nil {
		t.Fatal(err)
	}
	publish(t, a, "t", "gone", `4`)
	// A marker on another topic proves the notification for "gone" was
	// processed before we look.
	subscribe(t, b, "marker")
	publish(t, a, "marker", "m", `0`)
	eventually(t, 10*time.Second, "the marker", func() bool { return len(recB.topic("marker")) == 1 })
	if n := len(recB.topic("t")); n != 2 {
		t.Fatalf("%d messages of t after the last Unsubscribe, want 2", n)
	}
	if err := b.Subscribe(ctxT(t), ""); !errors.Is(err, pubsub.ErrInvalidTopic) {
		t.Fatalf("Subscribe(\"\") = %v", err)
	}
}

// TestGapIsFilledFromTable loses a notification on purpose (a message row
// written without NOTIFY) and checks that the next one brings it along.
func TestGapIsFilledFromTable(t *testing.T) {
	u, schema := pgtest.Schema(t)
	a, _ := node(t, u, schema)
	b, recB := node(t, u, schema)
	subscribe(t, b, "gap")
	publish(t, a, "gap", "one", `1`)
	pgtest.Exec(t, u, `WITH t AS (UPDATE `+a.names.topics+` SET seq = seq + 1 WHERE topic = 'gap' RETURNING seq)
		INSERT INTO `+a.names.messages+` (topic, seq, event, payload) SELECT 'gap', seq, 'silent', '2' FROM t`)
	publish(t, a, "gap", "three", `3`)
	eventually(t, 10*time.Second, "three messages", func() bool { return len(recB.topic("gap")) == 3 })
	for i, m := range recB.topic("gap") {
		if m.Offset != uint64(i+1) || string(m.Payload) != fmt.Sprint(i+1) {
			t.Fatalf("message %d = %+v", i, m)
		}
	}
	if st := b.Stats(); st.Gaps != 1 || st.Fetched != 1 {
		t.Fatalf("gaps %d fetched %d, want 1 and 1", st.Gaps, st.Fetched)
	}
}

func TestHistory(t *testing.T) {
	u, schema := pgtest.Schema(t)
	a, _ := node(t, u, schema, func(o *Options) { o.HistorySize = 10; o.TrimInterval = time.Hour })
	ctx := ctxT(t)

	// A topic nobody published on has an epoch already.
	h, err := a.History(ctx, "h", pubsub.Position{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if h.Top.Epoch == "" || h.Top.Offset != 0 || !h.Complete || len(h.Messages) != 0 {
		t.Fatalf("empty topic history = %+v", h)
	}
	epoch := h.Top.Epoch
	for i := 1; i <= 20; i++ {
		if p := publish(t, a, "h", "e", fmt.Sprint(i)); p.Epoch != epoch {
			t.Fatalf("published with epoch %s, history said %s", p.Epoch, epoch)
		}
	}
	check := func(name string, since pubsub.Position, limit int, wantFirst, wantN int, complete bool) {
		t.Helper()
		h, err := a.History(ctx, "h", since, limit)
		if err != nil {
			t.Fatal(err)
		}
		if h.Top != (pubsub.Position{Epoch: epoch, Offset: 20}) || h.Complete != complete || len(h.Messages) != wantN {
			t.Fatalf("%s: top %v complete %v, %d messages; want complete %v, %d messages", name, h.Top, h.Complete, len(h.Messages), complete, wantN)
		}
		for i, m := range h.Messages {
			if m.Offset != uint64(wantFirst+i) || string(m.Payload) != fmt.Sprint(wantFirst+i) || m.Epoch != epoch || m.Topic != "h" {
				t.Fatalf("%s: message %d = %+v", name, i, m)
			}
		}
	}
	check("after 15", pubsub.Position{Epoch: epoch, Offset: 15}, 0, 16, 5, true)
	check("at the top", pubsub.Position{Epoch: epoch, Offset: 20}, 0, 0, 0, true)
	check("limited", pubsub.Position{Epoch: epoch, Offset: 5}, 3, 6, 3, false)
	check("other epoch", pubsub.Position{Epoch: "nope", Offset: 5}, 0, 0, 0, false)
	check("ahead", pubsub.Position{Epoch: epoch, Offset: 25}, 0, 0, 0, false)
	check("before trimming", pubsub.Position{Epoch: epoch, Offset: 0}, 0, 1, 10, false) // limit = HistorySize

	// Trim: 10 kept per topic.
	if _, n, err := a.trim(ctx, time.Time{}); err != nil || n != 10 {
		t.Fatalf("trim deleted %d, %v; want 10", n, err)
	}
	check("trimmed", pubsub.Position{Epoch: epoch, Offset: 5}, 0, 11, 10, false)
	check("just kept", pubsub.Position{Epoch: epoch, Offset: 10}, 0, 11, 10, true)
}

func TestTrimmerRunsInBackground(t *testing.T) {
	u, schema := pgtest.Schema(t)
	a, _ := node(t, u, schema, func(o *Options) { o.HistorySize = 5; o.TrimInterval = 20 * time.Millisecond })
	for i := 0; i < 8; i++ {
		var wg sync.WaitGroup
		for j := 0; j < 10; j++ {
			wg.Add(1)
			go func() { defer wg.Done(); publish(t, a, fmt.Sprint("topic-", j), "e", `1`) }()
		}
		wg.Wait()
	}
	eventually(t, 20*time.Second, "the trimmer to keep 5 per topic", func() bool {
		var n int
		err := a.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+a.names.messages).Scan(&n)
		return err == nil && n == 50
	})
	if st := a.Stats(); st.Trimmed != 30 {
		t.Fatalf("stats.Trimmed = %d, want 30", st.Trimmed)
	}
}

func TestAgeTrimming(t *testing.T) {
	u, schema := pgtest.Schema(t)
	a, _ := node(t, u, schema, func(o *Options) { o.HistoryTTL = time.Hour; o.TrimInterval = time.Hour })
	publish(t, a, "old", "e", `1`)
	publish(t, a, "old", "e", `2`)
	// Age the first message.
	pgtest.Exec(t, u, "UPDATE "+a.names.messages+" SET created_at = now() - interval '2 hours' WHERE seq = 1")
	h, err := a.History(ctxT(t), "old", pubsub.Position{Epoch: mustEpoch(t, a, "old"), Offset: 0}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if h.Complete || len(h.Messages) != 1 || h.Messages[0].Offset != 2 {
		t.Fatalf("history past the TTL = %+v, want only offset 2, incomplete", h)
	}
	if _, n, err := a.trim(ctxT(t), time.Time{}); err != nil || n != 1 {
		t.Fatalf("trim deleted %d, %v; want 1", n, err)
	}
}

func mustEpoch(t *testing.T, b *Broker, topic string) string {
	t.Helper()
	epoch, _, err := b.head(ctxT(t), topic, false)
	if err != nil {
		t.Fatal(err)
	}
	return epoch
}

// TestConcurrentPublishers: many goroutines on two nodes publish to one
// topic; a third node sees offsets 1..N in order, and every publisher's
// messages in the order it published them.
func TestConcurrentPublishers(t *testing.T) {
	u, schema := pgtest.Schema(t)
	a, _ := node(t, u, schema)
	b, _ := node(t, u, schema)
	c, recC := node(t, u, schema)
	subscribe(t, c, "hot")
	const writers, each = 16, 100
	var wg sync.WaitGroup
	positions := make([][]pubsub.Position, writers)
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := a
			if w%2 == 1 {
				n = b
			}
			for i := 0; i < each; i++ {
				p, err := n.Publish(context.Background(), pubsub.Message{Topic: "hot", Event: "e", Payload: []byte(fmt.Sprintf(`[%d,%d]`, w, i))})
				if err != nil {
					t.Error(err)
					return
				}
				positions[w] = append(positions[w], p)
			}
		}()
	}
	wg.Wait()
	eventually(t, 20*time.Second, "all messages on node c", func() bool { return len(recC.topic("hot")) == writers*each })
	next := make([]int, writers)
	for i, m := range recC.topic("hot") {
		if m.Offset != uint64(i+1) {
			t.Fatalf("message %d has offset %d", i, m.Offset)
		}
		var wi [2]int
		if err := json.Unmarshal(m.Payload, &wi); err != nil {
			t.Fatal(err)
		}
		if wi[1] != next[wi[0]] {
			t.Fatalf("writer %d: message %d arrived when %d was expected", wi[0], wi[1], next[wi[0]])
		}
		if positions[wi[0]][wi[1]] != m.Position() {
			t.Fatalf("writer %d message %d: Publish returned %v, delivered at %v", wi[0], wi[1], positions[wi[0]][wi[1]], m.Position())
		}
		next[wi[0]]++
	}
	st := a.Stats()
	t.Logf("node a: %d messages in %d transactions (max %d), %d notifications", st.Published, st.Batches, st.MaxBatch, st.Notifications)
}

// TestSimultaneousStart starts nodes at the same moment against an empty
// database: the migration runs once, the others wait for it.
func TestSimultaneousStart(t *testing.T) {
	u := pgtest.Database(t)
	const n = 4
	brokers := make([]*Broker, n)
	recs := make([]*recorder, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			brokers[i], errs[i] = New(context.Background(), Options{URL: u, Logger: testLogger(t)})
			if errs[i] == nil {
				recs[i] = newRecorder()
				brokers[i].Register(recs[i])
			}
		}()
	}
	close(start)
	wg.Wait()
	for i, b := range brokers {
		if b != nil {
			t.Cleanup(func() { b.Close() })
		}
		if errs[i] != nil {
			t.Fatalf("node %d: %v", i, errs[i])
		}
		if b.Channel() != "hearth" {
			t.Fatalf("node %d channel %q, want hearth in schema public", i, b.Channel())
		}
	}
	for _, b := range brokers[1:] {
		subscribe(t, b, "x")
	}
	publish(t, brokers[0], "x", "e", `{}`)
	for i, r := range recs[1:] {
		eventually(t, 10*time.Second, fmt.Sprint("node ", i+1), func() bool { return len(r.topic("x")) == 1 })
	}
	var version string
	if err := brokers[0].pool.QueryRow(ctxT(t), "SELECT value FROM hearth_meta WHERE key = 'version'").Scan(&version); err != nil || version != "2" {
		t.Fatalf("schema version %q, %v", version, err)
	}
}

func TestChannelMismatch(t *testing.T) {
	u, schema := pgtest.Schema(t)
	node(t, u, schema)
	_, err := New(ctxT(t), Options{URL: u, Schema: schema, Channel: "elsewhere"})
	if err == nil || !strings.Contains(err.Error(), "channel") {
		t.Fatalf("New with another channel: %v", err)
	}
	if _, err := New(ctxT(t), Options{URL: u, Schema: "bad-name"}); err == nil {
		t.Fatal("New accepted a bad schema name")
	}
	if _, err := New(ctxT(t), Options{}); err == nil {
		t.Fatal("New accepted no URL")
	}
}

func TestEmitterAndSQL(t *testing.T) {
	u, schema := pgtest.Schema(t)
	b, recB := node(t, u, schema)
	subscribe(t, b, "orders", "emitted")

	e, err := NewEmitter(ctxT(t), Options{URL: u, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	p1, err := e.Emit(ctxT(t), "emitted", "hello", map[string]int{"n": 1})
	if err != nil {
		t.Fatal(err)
	}
	big := []byte(`"` + strings.Repeat("b", 20_000) + `"`)
	p2, err := e.Emit(ctxT(t), "emitted", "big", json.RawMessage(big))
	if err != nil {
		t.Fatal(err)
	}
	p3, err := e.Publish(ctxT(t), pubsub.Message{Topic: "emitted", Event: "bin", Payload: []byte{0, 1}, Binary: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Emit(ctxT(t), "emitted", "bad", []byte("{nope")); err == nil {
		t.Fatal("Emit accepted invalid JSON")
	}
	eventually(t, 10*time.Second, "emitted messages", func() bool { return len(recB.topic("emitted")) == 3 })
	got := recB.topic("emitted")
	if string(got[0].Payload) != `{"n":1}` || got[0].Position() != p1 || string(got[1].Payload) != string(big) ||
		got[1].Position() != p2 || !got[2].Binary || got[2].Position() != p3 {
		t.Fatalf("emitted messages = %+v", got)
	}

	// The SQL function, from a trigger.
	s := pgx.Identifier{schema}.Sanitize()
	pgtest.Exec(t, u, `CREATE TABLE `+s+`.orders (id int PRIMARY KEY, item text);
		CREATE FUNCTION `+s+`.orders_notify() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			PERFORM `+s+`.hearth_broadcast('orders', 'created', to_jsonb(NEW));
			RETURN NEW;
		END $$;
		CREATE TRIGGER orders_notify AFTER INSERT ON `+s+`.orders FOR EACH ROW EXECUTE FUNCTION `+s+`.orders_notify();`)
	pgtest.Exec(t, u, `INSERT INTO `+s+`.orders VALUES (1, 'tea'), (2, 'cake')`)
	eventually(t, 10*time.Second, "the trigger's broadcasts", func() bool { return len(recB.topic("orders")) == 2 })
	for i, m := range recB.topic("orders") {
		var row struct {
			ID   int    `json:"id"`
			Item string `json:"item"`
		}
		if err := json.Unmarshal(m.Payload, &row); err != nil || row.ID != i+1 || m.Event != "created" || m.Offset != uint64(i+1) {
			t.Fatalf("trigger message %d = %+v (%v)", i, m, err)
		}
	}
	// And directly.
	var off int64
	if err := b.pool.QueryRow(ctxT(t), "SELECT "+s+".hearth_broadcast('orders', 'direct', '{\"x\":[1,2]}')").Scan(&off); err != nil || off != 3 {
		t.Fatalf("hearth_broadcast returned %d, %v", off, err)
	}
	eventually(t, 10*time.Second, "the direct broadcast", func() bool { return len(recB.topic("orders")) == 3 })
}

func TestClose(t *testing.T) {
	u, schema := pgtest.Schema(t)
	a, _ := node(t, u, schema)
	publish(t, a, "x", "e", `1`)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Publish(ctxT(t), pubsub.Message{Topic: "x"}); !errors.Is(err, pubsub.ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	if err := a.Subscribe(ctxT(t), "x"); !errors.Is(err, pubsub.ErrClosed) {
		t.Fatalf("Subscribe after Close: %v", err)
	}
	if a.State() != StateDown {
		t.Fatalf("state after Close: %v", a.State())
	}
	a.Close() // twice is fine
}

// TestLeastPrivilegeUser runs a node and an emitter as a user holding only
// the privileges docs/clustering.md lists, on a schema another user made.
func TestLeastPrivilegeUser(t *testing.T) {
	u, schema := pgtest.Schema(t)
	owner, _ := node(t, u, schema)
	role := strings.Replace(schema, "hearth_test_", "hearth_role_", 1)
	s := pgx.Identifier{schema}.Sanitize()
	pgtest.Exec(t, u, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() {
		pgtest.Exec(t, u, "DROP OWNED BY "+role)
		pgtest.Exec(t, u, "DROP ROLE "+role)
	})
	pgtest.Exec(t, u, `GRANT USAGE ON SCHEMA `+s+` TO `+role+`;
		GRANT SELECT ON `+s+`.hearth_meta TO `+role+`;
		GRANT SELECT, INSERT, UPDATE, DELETE ON `+s+`.hearth_topics, `+s+`.hearth_messages TO `+role+`;
		GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA `+s+` TO `+role)
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	pu.User = url.User(role)
	ru := pu.String()

	b, rec := node(t, ru, schema, func(o *Options) { o.HistorySize = 1 })
	subscribe(t, b, "priv")
	publish(t, owner, "priv", "e", "1")
	publish(t, b, "priv", "e", "2")
	e, err := NewEmitter(ctxT(t), Options{URL: ru, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Emit(ctxT(t), "priv", "e", 3); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "three messages", func() bool { return len(rec.topic("priv")) == 3 })
	if _, err := b.History(ctxT(t), "priv", pubsub.Position{}, 0); err != nil {
		t.Fatal(err)
	}
	if _, n, err := b.trim(ctxT(t), time.Time{}); err != nil || n != 2 {
		t.Fatalf("trim as %s: %d rows, %v", role, n, err)
	}
}

// TestTrimWalksTheIndex: on a history of 50 topics × 2,000 messages of
// which a pass must delete 5% (a steady state), both trimming statements use
// the primary key, never a sequential scan of the history (which would read
// all of it every pass), and delete exactly what they should.
func TestTrimWalksTheIndex(t *testing.T) {
	u, schema := pgtest.Schema(t)
	a, _ := node(t, u, schema, func(o *Options) { o.HistorySize = 1900; o.HistoryTTL = time.Hour; o.TrimInterval = time.Hour })
	ctx := ctxT(t)
	pgtest.Exec(t, u, "INSERT INTO "+a.names.topics+" (topic, seq) SELECT 't' || i, 2000 FROM generate_series(1, 50) i")
	// In every topic, the first 50 messages are past the TTL, 100 over the count.
	pgtest.Exec(t, u, "INSERT INTO "+a.names.messages+" (topic, seq, event, payload, created_at) "+
		"SELECT 't' || i, s, 'e', '\\x7b7d', CASE WHEN s <= 50 THEN now() - interval '2 hours' ELSE now() END "+
		"FROM generate_series(1, 50) i, generate_series(1, 2000) s")
	pgtest.Exec(t, u, "ANALYZE "+a.names.topics+", "+a.names.messages)
	minusInf := pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	for name, q := range map[string][]any{
		"age":   {trimAgeSQL, minusInf, time.Hour},
		"count": {trimCountSQL, minusInf, int64(1900)},
	} {
		rows, err := a.pool.Query(ctx, "EXPLAIN "+a.names.expand(q[0].(string)), q[1:]...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var line string
			if err := rows.Scan(&line); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, line)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		text := strings.Join(plan, "\n")
		if strings.Contains(text, "Seq Scan on hearth_messages") || !strings.Contains(text, "hearth_messages_pkey") {
			t.Errorf("%s trimming does not walk the primary key:\n%s", name, text)
		}
	}
	_, n, err := a.trim(ctx, time.Time{})
	if err != nil || n != 50*100 {
		t.Fatalf("trim deleted %d, %v; want %d", n, err, 50*100)
	}
	var count, lo int64
	if err := a.pool.QueryRow(ctx, "SELECT count(*), min(seq) FROM "+a.names.messages).Scan(&count, &lo); err != nil {
		t.Fatal(err)
	}
	if count != 50*1900 || lo != 101 {
		t.Fatalf("%d messages left from offset %d, want %d from 101", count, lo, 50*1900)
	}
	// An age-only pass on another layout: the expired head goes, the rest stays.
	pgtest.Exec(t, u, "UPDATE "+a.names.messages+" SET created_at = now() - interval '2 hours' WHERE seq <= 150")
	if _, n, err := a.trim(ctx, time.Time{}); err != nil || n != 50*50 {
		t.Fatalf("age trim deleted %d, %v; want %d", n, err, 50*50)
	}
}
