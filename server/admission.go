package server

import (
	"errors"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/hearth-rt/hearth/channels"
)

// Admission defaults. They come from measurements on a 2-core machine (see
// docs/operations.md, "Admission control"): a `hearth serve` node spent
// about 87 µs of CPU per new connection (TCP accept, HTTP upgrade, connect
// hook, join, over loopback), about 11,500 per second per core, and 56-75
// µs per refused one (the kernel and net/http's request parsing are most
// of both). The default admits 2,000 per second per core: about a sixth
// of a core's capacity with the demo's cheap hooks, so an application
// whose connect hook and joins cost several times more still leaves the
// node room for its established connections.
const (
	// defaultConnectRatePerCPU is the default ConnectRate per
	// GOMAXPROCS.
	defaultConnectRatePerCPU = 2000
	// defaultIPShare is the part of ConnectRate one client address gets
	// by default.
	defaultIPShare = 4
	// defaultRetryAfterMax bounds the retry hints of shed clients.
	defaultRetryAfterMax = 30 * time.Second
	// minRetrySpread is the narrowest window over which the retry hints
	// of shed clients are spread.
	minRetrySpread = time.Second
	// fullRetryBase is the least a client refused because the node is
	// full is asked to wait.
	fullRetryBase = time.Second
	// fdReserve is what the default MaxConnections leaves of the
	// open-file limit: a tenth of it, and at least this many, for the
	// database, listeners, files and connections being refused.
	fdReserve = 256
)

// Bounds of the per-address table: addresses idle long enough to have a
// full bucket again are forgotten at most every ipSweepEvery; beyond
// maxTrackedIPs addresses, new ones are only limited by the node's rate.
const (
	ipSweepEvery  = 10 * time.Second
	maxTrackedIPs = 1 << 17
)

// Shed connections that the server upgrades to send a close frame wait up
// to shedLinger for the client's close frame; at most maxLingering of them
// wait at once (beyond that they are closed at once).
const (
	shedLinger   = time.Second
	maxLingering = 1024
)

// admission is a server's admission control: token buckets on new
// connections per node and per client address, and a ceiling on open
// connections. Checking costs one or two limiter calls and, for a client
// address, one map lookup under a mutex; it allocates nothing unless an
// address is new.
type admission struct {
	node     *rate.Limiter // nil: no node limit
	nodeRate rate.Limit    // for retry hints even without a limit

	ipRate  rate.Limit // 0: no per-address limit
	ipBurst int

	maxConns int64        // 0: no ceiling
	active   atomic.Int64 // connections admitted and not yet gone

	trusted  []netip.Prefix
	retryMax time.Duration

	mu        sync.Mutex // guards ips, lastSweep, recent
	ips       map[netip.Addr]*ipBucket
	lastSweep time.Time
	recent    [numShedReasons]shedWindow // node-wide sheds per second

	lingering  atomic.Int64
	lastLog    atomic.Int64 // unix nanos of the last "shedding" log
	warnedXFF  atomic.Bool
	proxyAware bool // TrustedProxies configured
}

// ipBucket is one client address's token bucket.
type ipBucket struct {
	lim  *rate.Limiter
	seen time.Time
	shed shedWindow
}

// shedWindow estimates how many requests were shed in the last second.
type shedWindow struct {
	start     time.Time
	cur, prev int
}

// add counts one shed at now and returns the estimate, this one included.
func (w *shedWindow) add(now time.Time) int {
	switch d := now.Sub(w.start); {
	case d >= 2*time.Second || d < 0:
		w.start, w.prev, w.cur = now, 0, 0
	case d >= time.Second:
		w.start, w.prev, w.cur = w.start.Add(time.Second), w.cur, 0
	}
	w.cur++
	// The previous second, weighted by how much of it is still within a
	// second of now.
	frac := 1 - float64(now.Sub(w.start))/float64(time.Second)
	return w.cur + int(float64(w.prev)*max(frac, 0))
}

// applyAdmissionDefaults fills the admission options' zero values.
func applyAdmissionDefaults(o *Options) {
	if o.ConnectRate == 0 {
		o.ConnectRate = float64(defaultConnectRatePerCPU * runtime.GOMAXPROCS(0))
	}
	if o.ConnectBurst <= 0 && o.ConnectRate > 0 {
		o.ConnectBurst = burstFor(o.ConnectRate)
	}
	if o.ConnectRatePerIP == 0 {
		o.ConnectRatePerIP = -1
		if o.ConnectRate > 0 {
			o.ConnectRatePerIP = max(o.ConnectRate/defaultIPShare, 1)
		}
	}
	if o.ConnectBurstPerIP <= 0 && o.ConnectRatePerIP > 0 {
		o.ConnectBurstPerIP = burstFor(o.ConnectRatePerIP)
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = defaultMaxConnections()
	}
	if o.RetryAfterMax <= 0 {
		o.RetryAfterMax = defaultRetryAfterMax
	}
}

// burstFor is the default burst of a rate: one second's worth.
func burstFor(r float64) int {
	return int(math.Min(math.Max(1, math.Ceil(r)), math.MaxInt32))
}

// defaultMaxConnections derives the connection ceiling from the process's
// open-file limit (Go raises the soft limit to the hard one at startup):
// past it, accept fails with EMFILE and net/http stalls every client.
// It returns -1 (no ceiling) when the limit is unknown.
func defaultMaxConnections() int {
	n := openFileLimit()
	if n <= 0 {
		return -1
	}
	reserve := max(n/10, fdReserve)
	if n-reserve < 1 {
		return 1
	}
	return n - reserve
}

// init prepares admission control from the options (defaults applied).
// Malformed TrustedProxies entries are a programming error: it panics.
func (a *admission) init(o *Options) {
	a.nodeRate = rate.Limit(max(o.ConnectRate, 0))
	if o.ConnectRate > 0 {
		a.node = rate.NewLimiter(rate.Limit(o.ConnectRate), o.ConnectBurst)
	}
	if o.ConnectRatePerIP > 0 {
		a.ipRate, a.ipBurst = rate.Limit(o.ConnectRatePerIP), o.ConnectBurstPerIP
		a.ips = make(map[netip.Addr]*ipBucket)
	}
	if o.MaxConnections > 0 {
		a.maxConns = int64(o.MaxConnections)
	}
	a.retryMax = o.RetryAfterMax
	for _, s := range o.TrustedProxies {
		p, err := ParseTrustedProxy(s)
		if err != nil {
			panic(err.Error())
		}
		a.trusted = append(a.trusted, p)
	}
	a.proxyAware = len(a.trusted) > 0
}

// ParseTrustedProxy parses one entry of [Options.TrustedProxies]: a CIDR
// prefix ("10.0.0.0/8", "fd00::/8") or a single address ("10.1.2.3").
func ParseTrustedProxy(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, errors.New("server: trusted proxy " + strconv.Quote(s) + ": not a CIDR prefix")
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		return p.Masked(), nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, errors.New("server: trusted proxy " + strconv.Quote(s) + ": not an address or CIDR prefix")
	}
	ip = ip.Unmap()
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

// isTrusted reports whether ip is a configured trusted proxy.
func (a *admission) isTrusted(ip netip.Addr) bool {
	for _, p := range a.trusted {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// clientAddr returns the client's address: the immediate peer's, or, when
// the peer is a trusted proxy, the one it forwarded in X-Forwarded-For
// (the rightmost entry that is not itself a trusted proxy) or X-Real-IP.
// ok is false when no address could be parsed (then no per-address limit
// applies). fromHeader tells whether the address came from a header.
func (a *admission) clientAddr(r *http.Request) (ip netip.Addr, fromHeader, ok bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		peer, err := netip.ParseAddr(r.RemoteAddr)
		if err != nil {
			return netip.Addr{}, false, false
		}
		ap = netip.AddrPortFrom(peer, 0)
	}
	peer := ap.Addr().Unmap()
	if !a.proxyAware || !a.isTrusted(peer) {
		return peer, false, true
	}
	if vals := r.Header.Values("X-Forwarded-For"); len(vals) > 0 {
		if ip, ok := a.forwardedFor(vals); ok {
			return ip, true, true
		}
		return peer, false, true // malformed: do not guess
	}
	if v := r.Header.Get("X-Real-Ip"); v != "" { // canonical keys: no allocation
		if ip, ok := parseForwarded(v); ok {
			return ip, true, true
		}
	}
	return peer, false, true
}

// forwardedFor walks X-Forwarded-For from the right (the entry the
// nearest proxy appended) past trusted proxies; the first other address
// is the client. If every entry is a trusted proxy, the leftmost is.
func (a *admission) forwardedFor(vals []string) (netip.Addr, bool) {
	var last netip.Addr
	for i := len(vals) - 1; i >= 0; i-- {
		v := vals[i]
		for v != "" {
			var part string
			if j := strings.LastIndexByte(v, ','); j >= 0 {
				part, v = v[j+1:], v[:j]
			} else {
				part, v = v, ""
			}
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			ip, ok := parseForwarded(part)
			if !ok {
				return netip.Addr{}, false
			}
			if !a.isTrusted(ip) {
				return ip, true
			}
			last = ip
		}
	}
	return last, last.IsValid()
}

// parseForwarded parses one forwarded address: "1.2.3.4", "1.2.3.4:5678",
// "2001:db8::1" or "[2001:db8::1]:443".
func parseForwarded(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}

// ipKey is the address a per-address bucket is kept for: IPv4 addresses
// as they are, IPv6 addresses by their /64 (what one subscriber usually
// gets, and rotates through freely).
func ipKey(ip netip.Addr) netip.Addr {
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.Addr()
	}
	return ip
}

// reserve takes a connection slot. It fails when MaxConnections are open
// or being opened.
func (a *admission) reserve() bool {
	n := a.active.Add(1)
	if a.maxConns > 0 && n > a.maxConns {
		a.active.Add(-1)
		return false
	}
	return true
}

// release gives back a slot taken by reserve.
func (a *admission) release() { a.active.Add(-1) }

// allowIP applies the per-address bucket. When it refuses, it returns a
// retry hint.
func (a *admission) allowIP(ip netip.Addr, now time.Time) (bool, time.Duration) {
	if a.ipRate <= 0 || !ip.IsValid() {
		return true, 0
	}
	key := ipKey(ip)
	a.mu.Lock()
	b := a.ips[key]
	if b == nil {
		if now.Sub(a.lastSweep) >= ipSweepEvery || len(a.ips) >= maxTrackedIPs {
			a.sweepLocked(now)
		}
		if len(a.ips) >= maxTrackedIPs {
			a.mu.Unlock()
			return true, 0 // too many addresses to track: the node's bucket still applies
		}
		b = &ipBucket{lim: rate.NewLimiter(a.ipRate, a.ipBurst)}
		a.ips[key] = b
	}
	b.seen = now
	if b.lim.AllowN(now, 1) {
		a.mu.Unlock()
		return true, 0
	}
	wait := deficit(b.lim, now)
	recent := b.shed.add(now)
	a.mu.Unlock()
	return false, a.hint(wait, recent, a.ipRate)
}

// sweepLocked forgets the addresses whose bucket has been full for a
// while: they are as good as new. a.mu must be held.
func (a *admission) sweepLocked(now time.Time) {
	a.lastSweep = now
	idle := time.Duration(float64(a.ipBurst)/float64(a.ipRate)*float64(time.Second)) + ipSweepEvery
	for k, b := range a.ips {
		if now.Sub(b.seen) > idle {
			delete(a.ips, k)
		}
	}
}

// allowNode applies the node's bucket. When it refuses, it returns a
// retry hint.
func (a *admission) allowNode(now time.Time) (bool, time.Duration) {
	if a.node == nil || a.node.AllowN(now, 1) {
		return true, 0
	}
	wait := deficit(a.node, now)
	a.mu.Lock()
	recent := a.recent[shedNodeRate].add(now)
	a.mu.Unlock()
	return false, a.hint(wait, recent, a.nodeRate)
}

// fullHint is the retry hint for a client refused because the node is
// full.
func (a *admission) fullHint(now time.Time) time.Duration {
	a.mu.Lock()
	recent := a.recent[shedMaxConns].add(now)
	a.mu.Unlock()
	r := a.nodeRate
	if r <= 0 {
		r = defaultConnectRatePerCPU
	}
	return a.hint(fullRetryBase, recent, r)
}

// deficit is how long until lim has a token again.
func deficit(lim *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - lim.TokensAt(now)
	if missing <= 0 || lim.Limit() <= 0 {
		return 0
	}
	return time.Duration(missing / float64(lim.Limit()) * float64(time.Second))
}

// hint returns a jittered retry delay: a uniformly random part over the
// time the bucket needs to admit everyone shed in the last second (at
// least minRetrySpread), on top of wait, the time until the bucket has a
// token. Clients shed together come back spread over the time the node
// needs to take them, not in lockstep. The bound RetryAfterMax is applied
// before the jitter (to the spread, then to wait), never after it: capping
// after would send every client beyond the bound back at the same moment.
func (a *admission) hint(wait time.Duration, recent int, r rate.Limit) time.Duration {
	spread := minRetrySpread
	if r > 0 {
		spread = max(spread, time.Duration(float64(recent)/float64(r)*float64(time.Second)))
	}
	spread = max(min(spread, a.retryMax), time.Millisecond)
	base := min(wait, a.retryMax-spread)
	return max(base, 0) + rand.N(spread)
}

// admit applies admission control to an upgrade request that passed the
// protocol checks, before the connect hook runs. It returns the client's
// address for the connect hook and true, holding a connection slot the
// caller must give back with s.adm.release unless the connection gets
// registered (unregister gives it back then). When the request is shed it
// answers it itself and returns false.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) (remote string, ok bool) {
	a := &s.adm
	ip, fromHeader, valid := a.clientAddr(r)
	if !a.reserve() {
		s.shed(w, r, shedMaxConns, a.fullHint(time.Now()))
		return "", false
	}
	now := time.Now()
	if ok, hint := a.allowIP(ip, now); !ok {
		a.release()
		s.warnUntrustedProxy(r)
		s.shed(w, r, shedIPRate, hint)
		return "", false
	}
	if ok, hint := a.allowNode(now); !ok {
		a.release()
		s.shed(w, r, shedNodeRate, hint)
		return "", false
	}
	remote = r.RemoteAddr
	if fromHeader && valid {
		remote = ip.String()
	}
	return remote, true
}

// Header values shared by every 503 of the shed path (never modified: a
// header value slice is replaced, not written to).
var (
	headerClose = []string{"close"}
	headerText  = []string{"text/plain; charset=utf-8"}
)

// shed refuses an upgrade request: HTTP 503 with Retry-After for clients
// that do not read Hearth's close codes (see readsCloseCodes: their
// backoff climbs only when they are refused before the upgrade) or with
// ShedWithHTTP, otherwise an upgrade followed at once by close 1013 "try
// again later" whose reason carries retry_after_ms=<n>, which a browser's
// WebSocket can read. The connect hook never runs for a shed request.
func (s *Server) shed(w http.ResponseWriter, r *http.Request, why shedReason, hint time.Duration) {
	s.stats.shed[why].Add(1)
	s.logShedding(why)
	ms := hint.Milliseconds()
	if s.opts.ShedWithHTTP || !readsCloseCodes(r) {
		h := w.Header()
		h["Retry-After"] = []string{strconv.FormatInt(max((ms+999)/1000, 1), 10)}
		h["Connection"] = headerClose
		h["Content-Type"] = headerText
		w.WriteHeader(http.StatusServiceUnavailable)
		p := getBuf(64)
		b := append((*p)[:0], "server: try again later retry_after_ms="...)
		b = strconv.AppendInt(b, ms, 10)
		*p = append(b, '\n')
		_, _ = w.Write(*p)
		putBuf(p)
		return
	}
	s.upgradeAndClose(w, r, channels.CloseTryAgainLater, "try again later retry_after_ms="+strconv.FormatInt(ms, 10))
}

// upgradeAndClose completes the WebSocket handshake only to send a close
// frame, on the calling goroutine, without creating a connection: no
// socket, no reader, no queue. It then waits briefly for the client's
// close frame so that closing does not reset a connection with unread
// data (which could destroy the close frame before the client reads it).
func (s *Server) upgradeAndClose(w http.ResponseWriter, r *http.Request, code int, reason string) {
	up := upgrader
	up.Timeout = shedLinger
	nc, _, _, err := up.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			_ = nc.Close()
		}
		return
	}
	defer nc.Close()
	s.stats.upgrades.Add(1)
	_ = nc.SetDeadline(time.Now().Add(shedLinger))
	if _, err := nc.Write(closeFrame(code, reason)); err != nil {
		return
	}
	if n := s.adm.lingering.Add(1); n > maxLingering {
		s.adm.lingering.Add(-1)
		return // too many waiting already: close now
	}
	defer s.adm.lingering.Add(-1)
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	p := getBuf(512)
	defer putBuf(p)
	b := (*p)[:cap(*p)]
	for {
		// Whatever the client sends (data, its close frame) is discarded
		// until it closes or the linger ends.
		if _, err := nc.Read(b); err != nil {
			return
		}
	}
}

// logShedding logs, at most every 10 s, that the server sheds, with the
// counts so far.
func (s *Server) logShedding(why shedReason) {
	const every = int64(10 * time.Second)
	now := time.Now().UnixNano()
	last := s.adm.lastLog.Load()
	if now-last < every || !s.adm.lastLog.CompareAndSwap(last, now) {
		return
	}
	st := s.Stats().Shed
	s.log.Warn("shedding connections", "reason", why.String(),
		"shed_node_rate", st.NodeRate, "shed_ip_rate", st.IPRate,
		"shed_max_connections", st.MaxConnections, "shed_shutting_down", st.ShuttingDown)
}

// warnUntrustedProxy warns once when a client address over its limit
// sends X-Forwarded-For without being a trusted proxy: likely a proxy the
// options do not list, which makes all of its clients share one bucket.
func (s *Server) warnUntrustedProxy(r *http.Request) {
	if r.Header.Get("X-Forwarded-For") == "" && r.Header.Get("X-Real-Ip") == "" {
		return
	}
	if s.adm.warnedXFF.Swap(true) {
		return
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	s.log.Warn("per-address connection limit hit by a peer sending X-Forwarded-For or X-Real-IP that is not a trusted proxy: "+
		"if it is your load balancer, list it in TrustedProxies (hearth serve --trusted-proxy)", "peer", host)
}
