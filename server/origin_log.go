package server

import (
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// originLogEvery is the least time between two warnings about upgrades
// refused by the origin check: a misconfigured proxy or allowlist refuses
// every browser, and one line per interval says so without flooding.
const originLogEvery = 10 * time.Second

// originRefusals rate-limits the warnings of logOriginRefused.
type originRefusals struct {
	now        func() time.Time // nil: time.Now (tests set a clock)
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// logOriginRefused warns that the origin check refused an upgrade, with
// the Origin and the Host the server compared it with, at most once per
// originLogEvery (the count of refusals not logged in between comes with
// the next warning). The usual causes: a page served from another origin
// that AllowedOrigins does not list, or a proxy that drops the port of the
// Host header (nginx: proxy_set_header Host $http_host, not $host).
func (s *Server) logOriginRefused(log *slog.Logger, r *http.Request) {
	o := &s.originLog
	now := time.Now()
	if o.now != nil {
		now = o.now()
	}
	o.mu.Lock()
	if !o.last.IsZero() && now.Sub(o.last) < originLogEvery {
		o.suppressed++
		o.mu.Unlock()
		return
	}
	suppressed := o.suppressed
	o.last, o.suppressed = now, 0
	o.mu.Unlock()
	log.Warn("upgrade refused: origin not allowed (list it in server.Options.AllowedOrigins; behind a proxy, pass the Host header with its port: nginx proxy_set_header Host $http_host)",
		"origin", truncate(r.Header.Get("Origin"), 256), "host", truncate(r.Host, 256), "refusals_not_logged", suppressed)
}
