package postgres

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
)

// Cross-node benchmarks: node A publishes, node B (another Broker with its
// own listener and pool, in the same process) delivers. Run them with a
// fixed message count, for example:
//
//	go test -run '^$' -bench CrossNode -benchtime 10000x ./pubsub/postgres
//
// (BenchmarkCrossNodeLatency takes b.N/1000 seconds.)

// latencyRecorder measures publish-to-delivery time from a send time
// carried in the payload.
type latencyRecorder struct {
	mu   sync.Mutex
	lat  []time.Duration
	n    atomic.Int64
	done chan struct{}
	want int64
}

func (r *latencyRecorder) HandleMessage(m *pubsub.Message) {
	sent := int64(binary.BigEndian.Uint64(m.Payload))
	d := time.Duration(time.Now().UnixNano() - sent)
	r.mu.Lock()
	r.lat = append(r.lat, d)
	r.mu.Unlock()
	if r.n.Add(1) == r.want {
		close(r.done)
	}
}

func (r *latencyRecorder) HandleControl([]byte) {}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

// BenchmarkCrossNodeLatency publishes 100-byte messages at a steady 1,000
// per second (open loop: each message is sent at its scheduled time,
// whatever happened to the previous ones) and reports the delivery latency
// percentiles on the other node, in microseconds.
func BenchmarkCrossNodeLatency(b *testing.B) {
	u, schema := pgtest.Schema(b)
	a, _ := node(b, u, schema)
	nb, _ := node(b, u, schema)
	rec := &latencyRecorder{done: make(chan struct{}), want: int64(b.N)}
	nb.Register(rec)
	subscribe(b, nb, "latency")
	payload := func() []byte {
		p := make([]byte, 100)
		binary.BigEndian.PutUint64(p, uint64(time.Now().UnixNano()))
		return p
	}
	// Warm the connections and prepared statements.
	for i := 0; i < 20; i++ {
		if _, err := a.Publish(context.Background(), pubsub.Message{Topic: "warmup", Payload: payload(), Binary: true}); err != nil {
			b.Fatal(err)
		}
	}
	const rate = 1000
	interval := time.Second / rate
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < b.N; i++ {
		if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Publish(context.Background(), pubsub.Message{Topic: "latency", Event: "e", Payload: payload(), Binary: true}); err != nil {
				b.Error(err)
			}
		}()
	}
	wg.Wait()
	select {
	case <-rec.done:
	case <-time.After(30 * time.Second):
		b.Fatalf("delivered %d of %d", rec.n.Load(), b.N)
	}
	b.StopTimer()
	rec.mu.Lock()
	lat := slices.Clone(rec.lat)
	rec.mu.Unlock()
	slices.Sort(lat)
	us := func(d time.Duration) float64 { return float64(d.Microseconds()) }
	b.ReportMetric(us(percentile(lat, 0.50)), "p50-µs")
	b.ReportMetric(us(percentile(lat, 0.99)), "p99-µs")
	b.ReportMetric(us(percentile(lat, 0.999)), "p99.9-µs")
	b.ReportMetric(us(lat[len(lat)-1]), "max-µs")
	st := a.Stats()
	b.ReportMetric(float64(st.Published)/float64(max(st.Batches, 1)), "msgs/batch")
}

// countRecorder counts deliveries.
type countRecorder struct {
	n    atomic.Int64
	want int64
	done chan struct{}
}

func (r *countRecorder) HandleMessage(*pubsub.Message) {
	if r.n.Add(1) == r.want {
		close(r.done)
	}
}

func (r *countRecorder) HandleControl([]byte) {}

// BenchmarkCrossNodeThroughput measures the sustained rate of 100-byte
// messages published on node A (by `writers` goroutines, each waiting for
// its Publish to return before the next, over 16 topics) and delivered on
// node B. "batched" is the Broker. "async" is the Broker's PublishAsync
// from one goroutine that does not wait (a feed). "naive" is one transaction and one
// NOTIFY per message, with the history row (the Emitter, through a pool of
// 16 connections). "notify-only" is what a plain LISTEN/NOTIFY adapter
// does: one pg_notify per message, no history, no offsets, counted on a
// bare listener connection.
func BenchmarkCrossNodeThroughput(b *testing.B) {
	writerCounts := map[string][]int{"batched": {1, 64, 1024}, "async": {1}, "naive": {64}, "notify-only": {64}}
	for _, mode := range []string{"batched", "async", "naive", "notify-only"} {
		for _, writers := range writerCounts[mode] {
			b.Run(fmt.Sprintf("%s/writers=%d", mode, writers), func(b *testing.B) {
				benchThroughput(b, mode, writers)
			})
		}
	}
}

func benchThroughput(b *testing.B, mode string, writers int) {
	u, schema := pgtest.Schema(b)
	if mode == "notify-only" {
		benchNotifyOnly(b, u, schema, writers)
		return
	}
	a, _ := node(b, u, schema, func(o *Options) { o.HistorySize = 100_000 })
	nb, _ := node(b, u, schema)
	rec := &countRecorder{want: int64(b.N), done: make(chan struct{})}
	nb.Register(rec)
	const topics = 16
	for i := 0; i < topics; i++ {
		subscribe(b, nb, fmt.Sprint("tp:", i))
	}
	payload := []byte(`"` + strings.Repeat("x", 98) + `"`)
	publish := func(ctx context.Context, m pubsub.Message) error { _, err := a.Publish(ctx, m); return err }
	if mode == "async" {
		publish = func(ctx context.Context, m pubsub.Message) error { return a.PublishAsync(ctx, m, nil) }
	}
	if mode == "naive" {
		e, err := NewEmitter(context.Background(), Options{URL: withURLParams(u, "pool_max_conns=16"), Schema: schema})
		if err != nil {
			b.Fatal(err)
		}
		defer e.Close()
		publish = func(ctx context.Context, m pubsub.Message) error { _, err := e.Publish(ctx, m); return err }
	}
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := publish(context.Background(), pubsub.Message{Topic: fmt.Sprint("tp:", i%topics), Event: "e", Payload: payload}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case <-rec.done:
	case <-time.After(60 * time.Second):
		b.Fatalf("delivered %d of %d", rec.n.Load(), b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	if mode == "batched" || mode == "async" {
		st := a.Stats()
		b.ReportMetric(float64(st.Published)/float64(max(st.Batches, 1)), "msgs/batch")
		b.ReportMetric(float64(st.MaxBatch), "max-batch")
		b.ReportMetric(float64(st.Published)/float64(max(st.Notifications, 1)), "msgs/notify")
	}
}

func benchNotifyOnly(b *testing.B, u, schema string, writers int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	channel := defaultChannel(schema)
	ln, err := pgx.Connect(ctx, u)
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close(ctx)
	if _, err := ln.Exec(ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		b.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, withURLParams(u, "pool_max_conns=16"))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	note := `{"topic":"tp:1","event":"e","payload":"` + strings.Repeat("x", 98) + `"}`
	received := make(chan time.Time, 1)
	go func() {
		for i := 0; i < b.N; i++ {
			if _, err := ln.WaitForNotification(ctx); err != nil {
				b.Error(err)
				break
			}
		}
		received <- time.Now()
	}()
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := pool.Exec(ctx, "SELECT pg_notify($1, $2)", channel, note); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var end time.Time
	select {
	case end = <-received:
	case <-time.After(60 * time.Second):
		b.Fatal("notifications missing")
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/end.Sub(start).Seconds(), "msgs/s")
}
