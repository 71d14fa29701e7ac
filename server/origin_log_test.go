package server

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels"
)

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestOriginRefusalLogged: an upgrade refused by the origin check is
// logged as a warning naming the origin and the host, at most once per
// interval, the next warning counting the refusals left out.
func TestOriginRefusalLogged(t *testing.T) {
	var logs syncBuffer
	srv := newTestServer(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, channels.Options{}, nil)
	var mu sync.Mutex
	clock := time.Unix(1_800_000_000, 0)
	srv.originLog.now = func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}
	warnings := func() []string {
		var w []string
		for _, l := range strings.Split(logs.String(), "\n") {
			if strings.Contains(l, "level=WARN") && strings.Contains(l, "origin not allowed") {
				w = append(w, l)
			}
		}
		return w
	}
	evil := http.Header{"Origin": {"https://evil.example"}}
	for range 3 {
		if status, _ := refusedDial(t, srv.url+"?vsn=2.0.0", evil, nil); status != http.StatusForbidden {
			t.Fatalf("status %d, want 403", status)
		}
	}
	w := warnings()
	if len(w) != 1 {
		t.Fatalf("%d warnings for 3 refusals within the interval, want 1:\n%s", len(w), logs.String())
	}
	host := strings.TrimPrefix(srv.http.URL, "http://")
	for _, want := range []string{"origin=https://evil.example", "host=" + host, "$http_host", "refusals_not_logged=0"} {
		if !strings.Contains(w[0], want) {
			t.Errorf("warning lacks %q: %s", want, w[0])
		}
	}

	mu.Lock()
	clock = clock.Add(originLogEvery)
	mu.Unlock()
	refusedDial(t, srv.url+"?vsn=2.0.0", evil, nil)
	if w := warnings(); len(w) != 2 || !strings.Contains(w[1], "refusals_not_logged=2") {
		t.Fatalf("after the interval: %d warnings, want 2, the last counting 2 refusals not logged:\n%s", len(w), logs.String())
	}
	// The server keeps serving allowed clients.
	c := dial(t, srv.url)
	c.heartbeat()
}
