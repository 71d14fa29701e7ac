package postgres

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
)

// fanoutCounter counts what one node delivered and the controls it got,
// into counters shared by all nodes.
type fanoutCounter struct {
	delivered, controls *atomic.Int64
}

func (c fanoutCounter) HandleMessage(*pubsub.Message) { c.delivered.Add(1) }
func (c fanoutCounter) HandleControl([]byte)          { c.controls.Add(1) }

// BenchmarkListenFanout measures the notifications PostgreSQL sends per
// published message as nodes are added, with interest-based listening
// ("interest") and with every node listening to every shard ("all", as
// before sharding). N nodes, each a Broker with its own listener
// connection (they share one pool of 8 connections, to stay within
// max_connections), on a private server; 4N topics, each subscribed on 2
// nodes, so each node holds 8 topics. Node 0 publishes b.N messages one at
// a time (one notification each), round robin over the topics. Reported:
// notes/msg, the notifications all listeners received per message (read
// from Stats.Received, not pg_stat); deliveries/msg (2 for N >= 2);
// shards/node, the mean number of shards a node listens to; pg-cpu-ms/1k,
// the CPU time of the server's processes (from /proc, the postmaster's
// children) per 1,000 messages; µs/msg, the wall time of one Publish
// (commit and NOTIFY included: they run one after the other).
//
//	go test -run '^$' -bench ListenFanout -benchtime 1000x ./pubsub/postgres
func BenchmarkListenFanout(b *testing.B) {
	c := pgtest.StartCluster(b)
	cpu := serverCPU(b, c.Dir)
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(c.URL)
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	for _, n := range []int{1, 2, 4, 8, 16, 32, 64} {
		for _, all := range []bool{false, true} {
			mode := "interest"
			if all {
				mode = "all"
			}
			fanoutRun(b, pool, cpu, fmt.Sprintf("nodes=%d/%s", n, mode), n, all)
		}
	}
}

func fanoutRun(b *testing.B, pool *pgxpool.Pool, cpu func() time.Duration, name string, n int, all bool) {
	var delivered, controls atomic.Int64
	nodes := make([]*Broker, n)
	for i := range nodes {
		nb, err := New(context.Background(), Options{Pool: pool, ListenAll: all, Name: fmt.Sprintf("n%d", i),
			PingInterval: time.Minute, HistoryTTL: time.Minute})
		if err != nil {
			b.Fatal(err)
		}
		nb.Register(fanoutCounter{&delivered, &controls})
		nodes[i] = nb
	}
	defer func() {
		for _, nb := range nodes {
			nb.Close()
		}
	}()
	topics := make([]string, 4*n)
	for j := range topics {
		topics[j] = fmt.Sprintf("fan:%d:%d", n, j)
		subscribe(b, nodes[j%n], topics[j])
		if n > 1 {
			subscribe(b, nodes[(j+1)%n], topics[j])
		}
	}
	// Wait until every node listens to its topics' shards.
	eventually(b, time.Minute, "the shards listened", func() bool {
		for _, nb := range nodes {
			if nb.Stats().ShardsListened == 0 {
				return false
			}
		}
		return true
	})
	perMsg := 2
	if n == 1 {
		perMsg = 1
	}
	b.Run(name, func(b *testing.B) {
		received := func() (sum uint64) {
			for _, nb := range nodes {
				sum += nb.Stats().Received
			}
			return sum
		}
		d0, c0, r0 := delivered.Load(), controls.Load(), received()
		cpu0, start := cpu(), time.Now()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			publish(b, nodes[0], topics[i%len(topics)], "e", `{"n":1}`)
		}
		elapsed := time.Since(start)
		// A control reaches every node after every notification sent
		// before it: once all have it, every count is final.
		if err := nodes[0].PublishControl(context.Background(), []byte(`{}`)); err != nil {
			b.Fatal(err)
		}
		eventually(b, time.Minute, "the control on every node", func() bool { return controls.Load()-c0 == int64(n) })
		b.StopTimer()
		if got, want := delivered.Load()-d0, int64(b.N*perMsg); got != want {
			b.Fatalf("delivered %d, want %d", got, want)
		}
		notes := received() - r0 - uint64(n) // less the control
		var shards int
		for _, nb := range nodes {
			shards += nb.Stats().ShardsListened
		}
		b.ReportMetric(float64(notes)/float64(b.N), "notes/msg")
		b.ReportMetric(float64(perMsg), "deliveries/msg")
		b.ReportMetric(float64(shards)/float64(n), "shards/node")
		b.ReportMetric(float64((cpu()-cpu0).Milliseconds())*1000/float64(b.N), "pg-cpu-ms/1k")
		b.ReportMetric(float64(elapsed.Microseconds())/float64(b.N), "µs/msg")
		b.ReportMetric(0, "ns/op")
	})
}

// serverCPU returns a function reading the CPU time (user and system) of
// the processes of the private server in dir: the postmaster's children,
// backends included, as /proc shows them now. Backends that exited are not
// counted: the benchmark's connections live through each run.
func serverCPU(b *testing.B, dir string) func() time.Duration {
	f, err := os.Open(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		b.Fatalf("reading the postmaster's pid: %v", err)
	}
	sc := bufio.NewScanner(f)
	sc.Scan()
	f.Close()
	pm := strings.TrimSpace(sc.Text())
	const tick = 10 * time.Millisecond // USER_HZ is 100 on Linux
	return func() time.Duration {
		stats, _ := filepath.Glob("/proc/[0-9]*/stat")
		var sum time.Duration
		for _, p := range stats {
			data, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			// pid (comm) state ppid ... utime(14) stime(15): after the
			// closing parenthesis, fields from state on.
			s := string(data)
			i := strings.LastIndexByte(s, ')')
			if i < 0 {
				continue
			}
			f := strings.Fields(s[i+1:])
			if len(f) < 13 || (f[1] != pm && !strings.HasPrefix(p, "/proc/"+pm+"/")) {
				continue
			}
			ut, _ := strconv.ParseInt(f[11], 10, 64)
			st, _ := strconv.ParseInt(f[12], 10, 64)
			sum += time.Duration(ut+st) * tick
		}
		return sum
	}
}
