package channels

import (
	"encoding/json"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// joinLimiter is join admission control: token buckets on joins per node
// and per client IP. A join over the limit is refused with
// {"reason":"try again later","retry_after_ms":N}, N jittered so refused
// clients do not come back in lockstep; the Hearth client's rejoin honours it.
type joinLimiter struct {
	node  *rate.Limiter // nil: no node limit
	rate  rate.Limit    // per IP; 0: no per-IP limit
	burst int

	mu    sync.Mutex // guards ips, swept
	ips   map[string]*ipBucket
	swept time.Time
}

type ipBucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newJoinLimiter(o *Options) *joinLimiter {
	l := &joinLimiter{ips: make(map[string]*ipBucket)}
	if o.JoinRate > 0 {
		l.node = rate.NewLimiter(rate.Limit(o.JoinRate), max(o.JoinBurst, 1))
	}
	if o.JoinRatePerIP > 0 {
		l.rate, l.burst = rate.Limit(o.JoinRatePerIP), max(o.JoinBurstPerIP, 1)
	}
	return l
}

// allow reports whether a join from ip may proceed, and if not, after how
// long to retry.
func (l *joinLimiter) allow(ip string, now time.Time) (bool, time.Duration) {
	if l.rate > 0 && ip != "" {
		l.mu.Lock()
		b := l.ips[ip]
		if b == nil {
			b = &ipBucket{lim: rate.NewLimiter(l.rate, l.burst)}
			l.ips[ip] = b
		}
		b.seen = now
		ok := b.lim.AllowN(now, 1)
		var wait time.Duration
		if !ok {
			wait = b.lim.Reserve().Delay()
			b.lim.AllowN(now, 0) // nothing consumed
		}
		l.sweepLocked(now)
		l.mu.Unlock()
		if !ok {
			return false, wait
		}
	}
	if l.node != nil && !l.node.AllowN(now, 1) {
		return false, time.Duration(float64(time.Second) / float64(l.node.Limit()))
	}
	return true, 0
}

// sweepLocked forgets IPs whose bucket has been full (idle) for a while.
func (l *joinLimiter) sweepLocked(now time.Time) {
	if now.Sub(l.swept) < time.Minute {
		return
	}
	l.swept = now
	idle := time.Duration(float64(l.burst)/float64(l.rate)*float64(time.Second)) + time.Minute
	for ip, b := range l.ips {
		if now.Sub(b.seen) > idle {
			delete(l.ips, ip)
		}
	}
}

// retryReply is the refusal of a join over the limit.
func retryReply(wait time.Duration) json.RawMessage {
	// Spread the retries over [wait, 2*wait + 100ms).
	ms := wait.Milliseconds()
	ms += rand.Int64N(ms + 100)
	return json.RawMessage(`{"reason":"try again later","retry_after_ms":` + strconv.FormatInt(ms, 10) + `}`)
}

// clientIP extracts the host of an address ("1.2.3.4:5678" -> "1.2.3.4").
func clientIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}
