package server

import (
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/internal/pgtest"
)

// BenchmarkLongPollIdleSession measures the heap an idle long-poll session
// costs its node (socket, session, timer), opened over HTTP:
//
//	go test -run '^$' -bench LongPollIdleSession -benchtime 5000x ./server/
func BenchmarkLongPollIdleSession(b *testing.B) {
	srv := newLPServer(b, Options{ConnectRate: -1, ConnectRatePerIP: -1}, LongPollOptions{SessionTimeout: time.Hour})
	// Warm the HTTP client and server up before measuring.
	for range 10 {
		mustOpenLP(b, srv.base, "")
	}
	before := heapInUse()
	b.ResetTimer()
	for range b.N {
		mustOpenLP(b, srv.base, "")
	}
	b.StopTimer()
	after := heapInUse()
	if n := srv.lp.Sessions(); n != b.N+10 {
		b.Fatalf("%d sessions, want %d", n, b.N+10)
	}
	b.ReportMetric(float64(after-before)/float64(b.N), "heap-B/session")
}

func heapInUse() uint64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// BenchmarkLongPollForwarded measures one push and its reply over
// long-poll (a POST, then the poll that brings the reply) when both
// requests reach the session's node ("local") and when both reach the
// other node and are forwarded through PostgreSQL ("forwarded"):
//
//	go test -run '^$' -bench LongPollForwarded -benchtime 300x ./server/
func BenchmarkLongPollForwarded(b *testing.B) {
	u, schema := pgtest.Schema(b)
	secret := []byte("bench secret shared by both nodes")
	a := newLPNode(b, u, schema, "a", secret)
	o := newLPNode(b, u, schema, "b", secret)
	c := mustOpenLP(b, a.http.URL+"/socket", "")
	for _, bc := range []struct {
		name string
		node *lpNode
	}{{"local", a}, {"forwarded", o}} {
		b.Run(bc.name, func(b *testing.B) {
			c.url = bc.node.http.URL + "/socket/longpoll?vsn=2.0.0"
			for i := range b.N {
				ref := "h" + strconv.Itoa(i)
				if got := c.post(`[null,"` + ref + `","phoenix","heartbeat",{}]`); got.Status != 200 {
					b.Fatalf("post: %+v", got)
				}
				for {
					got := c.poll()
					if got.Status == 200 && len(got.Messages) > 0 {
						break
					}
					if got.Status != 204 {
						b.Fatalf("poll: %+v", got)
					}
				}
			}
		})
	}
}
