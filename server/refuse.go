package server

import (
	"hash/maphash"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-rt/hearth/channels"
)

// Refusals that every client backs off from.
//
// Phoenix clients (phoenix.js, and the Swift, Kotlin and Dart ones) read no
// close codes: they reconnect after any close, and every successful upgrade
// resets their backoff to 10 ms. A refusal sent after the upgrade (a close
// frame with 4502 "token expired") is therefore a reconnect loop for them,
// about 70 upgrades a second per client. Refused before the upgrade with an
// HTTP status, their backoff climbs (10 ms ... 5 s), as it does against
// Phoenix, which answers a refused connect with 403.
//
// Only clients that announced that they read Hearth's close codes (the
// query parameter _hearth, [channels.ExtParam], which the Hearth client
// sends) are upgraded to be told the code and reason: a browser cannot see
// the status of a failed handshake, and the Hearth client backs off (or
// stops, on a terminal code) by itself.
//
// A connection the server closes because of what the client did (4029 too
// many messages, 1009 a message too big, 4008 too slow to read, 1002/1007 a
// broken frame) or with a terminal code is remembered for a while (see
// Options.ReconnectCooldown): the same client's reconnect (same address,
// query and offered subprotocols, which carry the Phoenix 1.8 token) is
// refused before the upgrade until the cooldown ends, so that phoenix.js's
// reconnect 10 ms later does not meet a fresh upgrade and a reset backoff.

// Cooldown defaults and bounds.
const (
	// defaultReconnectCooldown is how long a client closed for what it
	// did is refused before the upgrade by default. Longer than the 9.3 s
	// phoenix.js takes to reach its 5 s step, so that its schedule holds
	// once (about 11 attempts) before the next upgrade resets it: a
	// cooldown shorter than that lets two resets into ten seconds.
	defaultReconnectCooldown = 10 * time.Second
	// terminalCooldownFactor: a terminal close (4500-4999) holds the same
	// credentials off this many times longer.
	terminalCooldownFactor = 6
	// maxCooldowns bounds the cooldown table; beyond it no new entry is
	// made (the refusals still happen, only the memory of them is lost).
	maxCooldowns = 1 << 16
	// cooldownSweepEvery is how often expired entries are forgotten.
	cooldownSweepEvery = 10 * time.Second
)

// readsCloseCodes reports whether the request announces, with a non-empty
// query parameter _hearth ([channels.ExtParam]), a client that reads
// Hearth's close codes and reasons. It allocates nothing.
func readsCloseCodes(r *http.Request) bool {
	q := r.URL.RawQuery
	for q != "" {
		var kv string
		kv, q, _ = strings.Cut(q, "&")
		if k, v, _ := strings.Cut(kv, "="); k == channels.ExtParam && v != "" {
			return true
		}
	}
	return false
}

// refusalStatus maps the close code of a connect refusal to the HTTP
// status a client that cannot read close codes gets instead: 429 for a
// rate limit, 503 for a server that asks to be retried later, 403 for
// everything else (authorization, as Phoenix answers any refused connect).
func refusalStatus(code int) int {
	switch code {
	case channels.CloseRateLimited:
		return http.StatusTooManyRequests
	case channels.CloseTryAgainLater, channels.CloseServiceRestart, channels.CloseSlowConsumer:
		return http.StatusServiceUnavailable
	}
	return http.StatusForbidden
}

// refuseConnect answers a connect request refused with code and reason by
// an HTTP status before any upgrade, for a client that cannot read close
// codes. A 429 or 503 carries Retry-After (retry, seconds, at least 1),
// taken from a retry_after_ms=<n> in the reason when there is one.
func (s *Server) refuseConnect(w http.ResponseWriter, code int, reason string, retry time.Duration) {
	status := refusalStatus(code)
	h := w.Header()
	if status != http.StatusForbidden {
		if ms, ok := retryAfterMs(reason); ok {
			retry = time.Duration(ms) * time.Millisecond
		}
		if retry <= 0 {
			retry = time.Second + rand.N(4*time.Second)
		}
		h["Retry-After"] = []string{strconv.FormatInt(max(int64((retry+time.Second-1)/time.Second), 1), 10)}
	}
	h["Connection"] = headerClose
	h["Content-Type"] = headerText
	h["X-Hearth-Close"] = []string{strconv.Itoa(code)}
	w.WriteHeader(status)
	_, _ = w.Write([]byte("server: " + reason + " (close " + strconv.Itoa(code) + ")\n"))
}

// retryAfterMs finds retry_after_ms=<n> in a close reason.
func retryAfterMs(reason string) (int64, bool) {
	_, v, ok := strings.Cut(reason, "retry_after_ms=")
	if !ok {
		return 0, false
	}
	end := 0
	for end < len(v) && v[end] >= '0' && v[end] <= '9' {
		end++
	}
	n, err := strconv.ParseInt(v[:end], 10, 64)
	return n, err == nil && n >= 0
}

// cooldownFor returns how long a client closed by the server with code is
// refused before the upgrade, and the close it is refused with; zero when
// the close does not call for one: an idle timeout, a drain (the node
// answers 503 to everyone then), an application's disconnect (its connect
// hook decides), or a normal close.
func (s *Server) cooldownFor(code int) time.Duration {
	d := s.opts.ReconnectCooldown
	if d <= 0 {
		return 0
	}
	switch {
	case channels.Terminal(code):
		return terminalCooldownFactor * d
	case code == channels.CloseRateLimited, code == channels.CloseTooBig, code == channels.CloseSlowConsumer,
		code == channels.CloseProtocolError, code == channels.CloseInvalidPayload:
		return d
	}
	return 0
}

// cooldowns remembers the clients closed for what they did, by a hash of
// their address, query and offered subprotocols, until their cooldown
// ends.
type cooldowns struct {
	seed  maphash.Seed
	count atomic.Int64 // entries, so that an empty table costs one load

	mu        sync.Mutex // guards m, lastSweep
	m         map[uint64]cooldown
	lastSweep time.Time
}

// cooldown is one remembered close.
type cooldown struct {
	until  time.Time
	code   int
	reason string
}

// cooldownKey identifies a client across its reconnects: its address (a
// trusted proxy's forwarded one; IPv6 by /64), the raw query and the
// offered subprotocols (where Phoenix 1.8 puts the token). Phoenix clients
// reconnect with the same URL and token, so the key matches; another user
// behind the same address has other credentials, so it does not. It is
// never 0 (0 means "not tracked" in a conn).
func (s *Server) cooldownKey(r *http.Request) uint64 {
	return s.cooldownKeyFor(r, "Sec-Websocket-Protocol")
}

// cooldownKeyFor is cooldownKey with the credentials in the header named
// cred (canonical form): a long-poll client sends its token in
// X-Phoenix-AuthToken.
func (s *Server) cooldownKeyFor(r *http.Request, cred string) uint64 {
	ip, _, _ := s.adm.clientAddr(r)
	if ip.IsValid() {
		ip = ipKey(ip)
	}
	var h maphash.Hash
	h.SetSeed(s.cool.seed)
	b := ip.As16()
	if !ip.IsValid() {
		b = netip.IPv6Unspecified().As16()
	}
	_, _ = h.Write(b[:])
	_, _ = h.WriteString(r.URL.RawQuery)
	for _, v := range r.Header[cred] { // canonical key: no allocation
		_ = h.WriteByte(0)
		_, _ = h.WriteString(v)
	}
	return h.Sum64() | 1
}

// check returns the remembered close of key while its cooldown lasts.
func (t *cooldowns) check(key uint64, now time.Time) (cooldown, bool) {
	if t.count.Load() == 0 {
		return cooldown{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[key]
	if !ok || !now.Before(e.until) {
		return cooldown{}, false
	}
	return e, true
}

// add remembers a close of key for d.
func (t *cooldowns) add(key uint64, code int, reason string, d time.Duration, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = make(map[uint64]cooldown)
	}
	// Sweep every cooldownSweepEvery, and when full at most every second
	// (a full table of live entries is not swept at every close).
	if since := now.Sub(t.lastSweep); since >= cooldownSweepEvery || len(t.m) >= maxCooldowns && since >= time.Second {
		t.lastSweep = now
		for k, e := range t.m {
			if !now.Before(e.until) {
				delete(t.m, k)
			}
		}
	}
	if _, ok := t.m[key]; !ok && len(t.m) >= maxCooldowns {
		return
	}
	t.m[key] = cooldown{until: now.Add(d), code: code, reason: reason}
	t.count.Store(int64(len(t.m)))
}

// rememberClose starts the cooldown of a connection the server closed,
// when its close calls for one and its client cannot read close codes.
func (s *Server) rememberClose(c *conn) {
	if c.coolKey == 0 {
		return
	}
	c.mu.Lock()
	code, reason, by := c.code, c.reason, c.initiator
	c.mu.Unlock()
	if by != "server" {
		return
	}
	if d := s.cooldownFor(code); d > 0 {
		s.cool.add(c.coolKey, code, reason, d, time.Now())
	}
}

// coolingDown reports whether the client keyed key (0: untracked) is
// held off, with its cooldown and the time left, and counts the refusal.
// Both transports refuse through it: refuseCoolingDown (WebSocket) and
// refuseLongPollCoolingDown.
func (s *Server) coolingDown(key uint64) (cooldown, time.Duration, bool) {
	if key == 0 {
		return cooldown{}, 0, false
	}
	now := time.Now()
	e, ok := s.cool.check(key, now)
	if !ok {
		return cooldown{}, 0, false
	}
	s.stats.cooledDown.Add(1)
	return e, e.until.Sub(now), true
}

// refuseCoolingDown refuses, before the upgrade, the reconnect of a client
// that cannot read close codes and whose previous connection was closed
// for what it did: 429 (or 403 after a terminal close) with Retry-After
// the rest of the cooldown. It reports whether it answered.
func (s *Server) refuseCoolingDown(w http.ResponseWriter, r *http.Request, key uint64) bool {
	e, left, ok := s.coolingDown(key)
	if !ok {
		return false
	}
	code := e.code
	if !channels.Terminal(code) {
		code = channels.CloseRateLimited // the client reconnects too soon after what it did
	}
	s.log.Debug("reconnect refused: cooling down", "remote", r.RemoteAddr, "code", e.code, "retry_after", left)
	s.refuseConnect(w, code, e.reason+": reconnecting too soon", left)
	return true
}
