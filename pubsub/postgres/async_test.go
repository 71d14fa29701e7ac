package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
)

// outcomes records the callbacks of PublishAsync, one slot per message.
type outcomes struct {
	mu    sync.Mutex
	pos   map[[2]int]pubsub.Position
	errs  map[[2]int]error
	calls int
	all   chan struct{}
	want  int
}

func newOutcomes(want int) *outcomes {
	return &outcomes{pos: map[[2]int]pubsub.Position{}, errs: map[[2]int]error{}, all: make(chan struct{}), want: want}
}

func (o *outcomes) done(key [2]int) func(pubsub.Position, error) {
	return func(p pubsub.Position, err error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if _, dup := o.pos[key]; dup {
			panic(fmt.Sprintf("callback of %v called twice", key))
		}
		if _, dup := o.errs[key]; dup {
			panic(fmt.Sprintf("callback of %v called twice", key))
		}
		if err != nil {
			o.errs[key] = err
		} else {
			o.pos[key] = p
		}
		o.calls++
		if o.calls == o.want {
			close(o.all)
		}
	}
}

func (o *outcomes) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-o.all:
	case <-time.After(d):
		o.mu.Lock()
		defer o.mu.Unlock()
		t.Fatalf("%d of %d callbacks after %v", o.calls, o.want, d)
	}
}

// TestPublishAsyncOrder: messages queued with PublishAsync by one goroutine
// to one topic get increasing offsets and are delivered in that order,
// while many transactions are in flight at once and synchronous publishers
// share the topics.
func TestPublishAsyncOrder(t *testing.T) {
	u, schema := pgtest.Schema(t)
	a, _ := node(t, u, schema, func(o *Options) { o.Publishers = 4; o.MaxBatch = 20; o.HistorySize = 100000 })
	b, recB := node(t, u, schema)
	topics := []string{"async:1", "async:2"}
	subscribe(t, b, topics...)

	const writers, each, syncWriters, syncEach = 6, 400, 4, 50
	out := newOutcomes(writers * each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m := pubsub.Message{Topic: topics[w%2], Event: "a", Payload: []byte(fmt.Sprintf(`[%d,%d]`, w, i))}
				if err := a.PublishAsync(context.Background(), m, out.done([2]int{w, i})); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	for w := range syncWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range syncEach {
				m := pubsub.Message{Topic: topics[w%2], Event: "s", Payload: []byte(fmt.Sprintf(`[%d,%d]`, writers+w, i))}
				if _, err := a.Publish(context.Background(), m); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	out.wait(t, 30*time.Second)
	if len(out.errs) != 0 {
		t.Fatalf("%d failed, e.g. %v", len(out.errs), out.errs)
	}
	// The callbacks' positions: increasing per writer.
	for w := range writers {
		for i := 1; i < each; i++ {
			prev, cur := out.pos[[2]int{w, i - 1}], out.pos[[2]int{w, i}]
			if cur.Epoch != prev.Epoch || cur.Offset <= prev.Offset {
				t.Fatalf("writer %d: message %d at %v, message %d at %v", w, i-1, prev, i, cur)
			}
		}
	}
	// Delivery on another node: every message once, each writer's in order.
	per := (writers*each + syncWriters*syncEach) / 2
	for _, topic := range topics {
		eventually(t, 30*time.Second, "node b to receive "+topic, func() bool { return len(recB.topic(topic)) == per })
		for wi, m := range checkWriters(t, topic, recB.topic(topic)) {
			if wi[0] < writers && out.pos[wi] != m.Position() {
				t.Fatalf("writer %d message %d: callback said %v, delivered at %v", wi[0], wi[1], out.pos[wi], m.Position())
			}
		}
	}
	st := a.Stats()
	t.Logf("node a: %d messages in %d transactions (max %d)", st.Published, st.Batches, st.MaxBatch)
}

// TestPublishAsyncBackpressure holds a topic's row lock in another
// transaction, so that the publisher stalls: PublishAsync blocks once
// MaxQueue messages wait, and gives up when its ctx ends; when the lock
// goes, everything queued commits in order.
func TestPublishAsyncBackpressure(t *testing.T) {
	u, schema := pgtest.Schema(t)
	a, rec := node(t, u, schema, func(o *Options) { o.MaxBatch = 5; o.MaxQueue = 10 })
	subscribe(t, a, "slow")
	publish(t, a, "slow", "e", `0`) // the topic's row exists

	ctx := ctxT(t)
	tx := lockTopic(t, a, u, "slow")

	// The first message's batch stalls on the lock, holding the topic's
	// claim; the next MaxQueue wait in the queue.
	const queued = 11
	out := newOutcomes(queued)
	for i := range queued {
		if err := a.PublishAsync(ctx, pubsub.Message{Topic: "slow", Event: "e", Payload: []byte(fmt.Sprint(i + 1))}, out.done([2]int{0, i})); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if i == 0 {
			eventually(t, 10*time.Second, "the first batch to be in flight", func() bool {
				a.qmu.Lock()
				defer a.qmu.Unlock()
				return len(a.queue) == 0 && a.claims["slow"] != nil
			})
		}
	}
	if st := a.Stats(); st.Queued != queued-1 {
		t.Fatalf("Stats.Queued = %d while the topic is locked, want %d", st.Queued, queued-1)
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := a.PublishAsync(short, pubsub.Message{Topic: "slow", Event: "e", Payload: []byte(`99`)}, out.done([2]int{1, 0}))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 150*time.Millisecond {
		t.Fatalf("PublishAsync on a full queue: %v after %v, want to block until the deadline", err, time.Since(start))
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	out.wait(t, 20*time.Second)
	// The stalled messages waited at least the 200 ms above: the latency
	// figures count the queue and the lock wait, not just the commit.
	st := a.Stats()
	slow := uint64(0)
	for i := range LatencyBuckets {
		if LatencyBucketBound(i) > 200*time.Millisecond {
			slow += st.PublishLatency[i]
		}
	}
	if slow < queued || st.PublishSeconds < queued*0.2 || st.Queued != 0 {
		t.Fatalf("after the stall: %d messages over 200 ms (want %d), %.2f s in all, %d queued; %v", slow, queued, st.PublishSeconds, st.Queued, st.PublishLatency)
	}
	for i := range queued {
		if p := out.pos[[2]int{0, i}]; p.Offset != uint64(i+2) {
			t.Fatalf("message %d at %v (error %v), want offset %d", i, p, out.errs[[2]int{0, i}], i+2)
		}
	}
	eventually(t, 10*time.Second, "delivery", func() bool { return len(rec.topic("slow")) == queued+1 })
	for i, m := range rec.topic("slow") {
		if string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("delivered %d: %s", i, m.Payload)
		}
	}
}

// TestPublishAsyncClose: Close fails what is still queued, each callback
// once, and PublishAsync after Close says so.
func TestPublishAsyncClose(t *testing.T) {
	u, schema := pgtest.Schema(t)
	a, _ := node(t, u, schema, func(o *Options) { o.MaxBatch = 1; o.Publishers = 1 })
	publish(t, a, "closing", "e", `0`)
	ctx := ctxT(t)
	tx := lockTopic(t, a, u, "closing")
	out := newOutcomes(3)
	for i := range 3 {
		if err := a.PublishAsync(ctx, pubsub.Message{Topic: "closing", Event: "e", Payload: []byte(`1`)}, out.done([2]int{0, i})); err != nil {
			t.Fatal(err)
		}
	}
	// Close waits a few seconds for the stalled transaction, then cancels
	// it; release the lock meanwhile so that it can commit.
	committed := make(chan error, 1)
	go func() {
		time.Sleep(500 * time.Millisecond)
		committed <- tx.Commit(context.Background())
	}()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-committed; err != nil {
		t.Fatal(err)
	}
	out.wait(t, 10*time.Second)
	if len(out.pos)+len(out.errs) != 3 || len(out.errs) == 0 {
		t.Fatalf("after Close: %d published, %d failed (%v)", len(out.pos), len(out.errs), out.errs)
	}
	for _, err := range out.errs {
		if !errors.Is(err, pubsub.ErrClosed) {
			t.Fatalf("queued message failed with %v, want ErrClosed", err)
		}
	}
	if err := a.PublishAsync(ctx, pubsub.Message{Topic: "closing"}, nil); !errors.Is(err, pubsub.ErrClosed) {
		t.Fatalf("PublishAsync after Close: %v", err)
	}
	if err := a.PublishAsync(ctx, pubsub.Message{Topic: ""}, nil); !errors.Is(err, pubsub.ErrInvalidTopic) {
		t.Fatalf("PublishAsync of an invalid topic: %v", err)
	}
}

// TestPublishAsyncConnectionsKilled terminates the publishing node's pool
// connections while one goroutine streams with PublishAsync: messages whose
// transaction failed get an error, and what is delivered is still in call
// order, each message once, with every acknowledged message among it.
func TestPublishAsyncConnectionsKilled(t *testing.T) {
	u, schema := pgtest.Schema(t)
	a, _ := node(t, u, schema, func(o *Options) { o.MaxBatch = 50; o.HistorySize = 100000 })
	b, recB := node(t, u, schema)
	subscribe(t, b, "killed")

	const n = 6000
	out := newOutcomes(n)
	killed := make(chan error, 1)
	go func() {
		time.Sleep(20 * time.Millisecond)
		conn, err := pgx.Connect(context.Background(), u)
		if err != nil {
			killed <- err
			return
		}
		defer conn.Close(context.Background())
		var k int
		err = conn.QueryRow(context.Background(), `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
			"hearth "+a.Name()).Scan(&k)
		if err == nil && k == 0 {
			err = errors.New("no publishing backend to kill")
		}
		killed <- err
	}()
	for i := range n {
		m := pubsub.Message{Topic: "killed", Event: "e", Payload: []byte(fmt.Sprintf(`[0,%d]`, i))}
		if err := a.PublishAsync(context.Background(), m, out.done([2]int{0, i})); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if i%500 == 499 {
			time.Sleep(5 * time.Millisecond) // spread the stream over the kill
		}
	}
	if err := <-killed; err != nil {
		t.Fatal(err)
	}
	out.wait(t, 30*time.Second)
	acked := len(out.pos)
	t.Logf("%d acknowledged, %d failed", acked, len(out.errs))
	if acked == 0 {
		t.Fatal("nothing was published")
	}
	// Acknowledged positions increase with the call order.
	var last pubsub.Position
	for i := range n {
		if p, ok := out.pos[[2]int{0, i}]; ok {
			if last.Offset != 0 && (p.Epoch != last.Epoch || p.Offset <= last.Offset) {
				t.Fatalf("message %d at %v after %v", i, p, last)
			}
			last = p
		}
	}
	// Delivered: the acknowledged messages (and possibly some whose commit
	// reply was lost), in call order, once each, with no offset gap.
	eventually(t, 20*time.Second, "the acknowledged messages on node b", func() bool { return len(recB.topic("killed")) >= acked })
	time.Sleep(200 * time.Millisecond) // let anything else arrive
	prev := -1
	seen := map[int]bool{}
	for i, m := range recB.topic("killed") {
		if m.Offset != uint64(i+1) {
			t.Fatalf("delivery %d has offset %d", i, m.Offset)
		}
		var wi [2]int
		if err := json.Unmarshal(m.Payload, &wi); err != nil {
			t.Fatal(err)
		}
		if wi[1] <= prev {
			t.Fatalf("message %d delivered after message %d", wi[1], prev)
		}
		prev = wi[1]
		seen[wi[1]] = true
	}
	for key := range out.pos {
		if !seen[key[1]] {
			t.Fatalf("acknowledged message %d was not delivered", key[1])
		}
	}
}
