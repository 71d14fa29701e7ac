package server

import (
	"context"
	"encoding/json"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// BenchmarkLongPollBroadcast measures one broadcast delivered to n
// long-poll sessions over loopback HTTP, each with a poll always in
// flight (the clients run in this process). Compare with
// BenchmarkBroadcast, in the same run:
//
//	go test -run '^$' -bench 'LongPollBroadcast|Broadcast/1000_' -benchtime 200x ./server/
func BenchmarkLongPollBroadcast(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(strconv.Itoa(n)+"_sessions", func(b *testing.B) {
			srv := newLPServer(b, Options{MessageRate: -1, ConnectRate: -1, ConnectRatePerIP: -1}, LongPollOptions{})
			var got atomic.Int64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range n {
				c := mustOpenLP(b, srv.base, "")
				c.join("room:lpbench", map[string]string{})
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						a := c.poll()
						for _, m := range a.Messages {
							if strings.Contains(m, `"new_msg"`) {
								got.Add(1)
							}
						}
					}
				}()
			}
			ctx := context.Background()
			payload := json.RawMessage(`{"user":"bench","body":"hello, subscribers: a message of ordinary size"}`)
			await := func(total int64) {
				for got.Load() < total {
					time.Sleep(50 * time.Microsecond)
				}
			}
			total := int64(n)
			if err := srv.node.Broadcast(ctx, "room:lpbench", "new_msg", payload); err != nil {
				b.Fatal(err)
			}
			await(total)
			b.ResetTimer()
			for range b.N {
				total += int64(n)
				if err := srv.node.Broadcast(ctx, "room:lpbench", "new_msg", payload); err != nil {
					b.Fatal(err)
				}
				await(total)
			}
			b.StopTimer()
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "deliveries/s")
			close(stop)
			// The polls in flight end with the server (Shutdown at cleanup).
			b.Cleanup(wg.Wait)
		})
	}
}
