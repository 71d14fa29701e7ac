package server

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/internal/bench"
)

// outcome is what a raw client saw of one connection attempt.
type outcome struct {
	status     int    // HTTP status of the handshake
	retryAfter string // its Retry-After header
	body       string // its body, when not 101
	code       int    // close code when the server closed first (0: it did not)
	reason     string
	joined     bool
}

// rawOpts configures rawConnect.
type rawOpts struct {
	header http.Header
	local  string // source address, e.g. "127.0.0.2"
	join   bool   // join room:raw after the upgrade, then close
	query  string // appended to the URL's query, e.g. "&_hearth=1"
}

// hearthQuery is the marker of a client that reads Hearth's close codes.
const hearthQuery = "&" + channels.ExtParam + "=1"

// rawConnect opens one connection with a minimal client: the handshake,
// then either the server's immediate close (a shed) or, with join, a join
// and a clean close. It completes the close handshake either way.
func rawConnect(addr string, o rawOpts) (outcome, error) {
	d := net.Dialer{Timeout: wait}
	if o.local != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.local)}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return outcome{}, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(wait))
	var req strings.Builder
	req.WriteString("GET /socket/websocket?vsn=2.0.0" + o.query + " HTTP/1.1\r\nHost: " + addr +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
	for k, vs := range o.header {
		for _, v := range vs {
			req.WriteString(k + ": " + v + "\r\n")
		}
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(nc, req.String()); err != nil {
		return outcome{}, err
	}
	br := bufio.NewReaderSize(nc, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return outcome{}, err
	}
	out := outcome{status: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After")}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		out.body = string(b)
		return out, nil
	}
	if o.join {
		if _, err := nc.Write(rawFrame(true, 0, 0x1, []byte(`["1","1","room:raw","phx_join",{}]`))); err != nil {
			return out, err
		}
	}
	for {
		op, payload, err := readServerFrame(br)
		if err != nil {
			return out, err
		}
		switch op {
		case 0x8:
			if len(payload) >= 2 {
				out.code = int(binary.BigEndian.Uint16(payload))
				out.reason = string(payload[2:])
			}
			_, _ = nc.Write(rawFrame(true, 0, 0x8, payload[:min(len(payload), 2)]))
			_, _ = io.Copy(io.Discard, br) // until the server closes
			return out, nil
		case 0x1:
			if strings.Contains(string(payload), `"phx_reply"`) && strings.Contains(string(payload), `"ok"`) {
				out.joined = true
				// Close first, then read the echo.
				if _, err := nc.Write(rawFrame(true, 0, 0x8, []byte{0x03, 0xe8})); err != nil {
					return out, err
				}
				for {
					op, _, err := readServerFrame(br)
					if err != nil || op == 0x8 {
						return out, nil
					}
				}
			}
		}
	}
}

// readServerFrame reads one unmasked, unfragmented server frame.
func readServerFrame(br *bufio.Reader) (op byte, payload []byte, err error) {
	var h [2]byte
	if _, err := io.ReadFull(br, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return 0, nil, err
		}
		n = int(binary.BigEndian.Uint64(b[:]))
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(br, payload)
	return h[0] & 0x0f, payload, err
}

// hintRe is the hint format both clients parse: the Hearth client
// (js-client/src/timer.ts) and the bench tool (internal/bench/policy.go).
var hintRe = regexp.MustCompile(`retry_after_ms=(\d+)`)

// hintOf returns the retry_after_ms hint of a close reason or body.
func hintOf(t testing.TB, s string) time.Duration {
	t.Helper()
	m := hintRe.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("no retry_after_ms hint in %q", s)
	}
	n, _ := strconv.Atoi(m[1])
	return time.Duration(n) * time.Millisecond
}

// noLimits disables every admission limit of o (tests that set one).
func noLimits(o Options) Options {
	if o.ConnectRate == 0 {
		o.ConnectRate = -1
	}
	if o.ConnectRatePerIP == 0 {
		o.ConnectRatePerIP = -1
	}
	if o.MaxConnections == 0 {
		o.MaxConnections = -1
	}
	return o
}

func (s *testServer) addr() string { return s.http.Listener.Addr().String() }

// connects returns how many times the connect hook ran.
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.connects)
}

func TestShedByNodeRate(t *testing.T) {
	// A rate this low refills nothing during the test: after the burst of
	// one, every request is shed.
	srv := newTestServer(t, noLimits(Options{ConnectRate: 0.001, ConnectBurst: 1, RetryAfterMax: 20 * time.Second}), channels.Options{}, nil)
	browser := http.Header{"Origin": {"http://" + srv.addr()}}

	first, err := rawConnect(srv.addr(), rawOpts{header: browser, join: true})
	if err != nil || !first.joined {
		t.Fatalf("first connection (within the burst): %+v %v", first, err)
	}

	t.Run("Hearth client in a browser: upgrade, then 1013 with a hint", func(t *testing.T) {
		out, err := rawConnect(srv.addr(), rawOpts{header: browser, join: true, query: hearthQuery})
		if err != nil {
			t.Fatal(err)
		}
		if out.status != http.StatusSwitchingProtocols || out.code != channels.CloseTryAgainLater || out.joined {
			t.Fatalf("got %+v, want an upgrade closed with 1013", out)
		}
		if !strings.HasPrefix(out.reason, "try again later retry_after_ms=") {
			t.Fatalf("close reason %q", out.reason)
		}
		if h := hintOf(t, out.reason); h > 20*time.Second {
			t.Fatalf("hint %v over RetryAfterMax", h)
		}
	})
	t.Run("Phoenix client in a browser: HTTP 503, no upgrade", func(t *testing.T) {
		out, err := rawConnect(srv.addr(), rawOpts{header: browser, join: true})
		if err != nil {
			t.Fatal(err)
		}
		if out.status != http.StatusServiceUnavailable || out.retryAfter == "" {
			t.Fatalf("got %+v, want 503 with Retry-After: an upgrade would reset phoenix.js's backoff", out)
		}
	})
	t.Run("no Origin: HTTP 503 with Retry-After", func(t *testing.T) {
		out, err := rawConnect(srv.addr(), rawOpts{join: true})
		if err != nil {
			t.Fatal(err)
		}
		if out.status != http.StatusServiceUnavailable {
			t.Fatalf("got %+v, want 503", out)
		}
		secs, err := strconv.Atoi(out.retryAfter)
		if err != nil || secs < 1 || secs > 20 {
			t.Fatalf("Retry-After %q, want 1..20 seconds", out.retryAfter)
		}
		h := hintOf(t, out.body)
		if want := int((h + time.Second - 1) / time.Second); max(want, 1) != secs {
			t.Fatalf("Retry-After %d s does not round up the body's hint %v", secs, h)
		}
	})
	t.Run("gorilla client sees the 503", func(t *testing.T) {
		c, err := dialWith(t, srv.url, dialOpts{})
		if !errors.Is(err, websocket.ErrBadHandshake) || c.resp == nil || c.resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("dial: %v", err)
		}
	})

	if n := srv.rec.count(); n != 1 {
		t.Fatalf("the connect hook ran %d times, want once: shed requests must not reach it", n)
	}
	st := srv.Stats()
	if st.Accepted != 1 || st.Shed.NodeRate != 4 || st.Shed.Total() != 4 || st.Upgrades != 2 {
		t.Fatalf("stats %+v, want 1 accepted, 4 shed by the node rate, 2 upgrades (one only to close)", st)
	}
}

func TestShedWithHTTPOption(t *testing.T) {
	srv := newTestServer(t, noLimits(Options{ConnectRate: 0.001, ConnectBurst: 1, ShedWithHTTP: true}), channels.Options{}, nil)
	browser := http.Header{"Origin": {"http://" + srv.addr()}}
	if out, err := rawConnect(srv.addr(), rawOpts{header: browser, join: true}); err != nil || !out.joined {
		t.Fatalf("first: %+v %v", out, err)
	}
	out, err := rawConnect(srv.addr(), rawOpts{header: browser})
	if err != nil || out.status != http.StatusServiceUnavailable || out.retryAfter == "" {
		t.Fatalf("got %+v %v, want 503 with Retry-After for a browser too", out, err)
	}
}

func TestShedHintsAreJittered(t *testing.T) {
	srv := newTestServer(t, noLimits(Options{ConnectRate: 0.001, ConnectBurst: 1, RetryAfterMax: time.Minute}), channels.Options{}, nil)
	if out, err := rawConnect(srv.addr(), rawOpts{join: true}); err != nil || !out.joined {
		t.Fatalf("first: %+v %v", out, err)
	}
	const n = 40
	seen := map[time.Duration]bool{}
	for range n {
		out, err := rawConnect(srv.addr(), rawOpts{})
		if err != nil || out.status != http.StatusServiceUnavailable {
			t.Fatalf("%+v %v", out, err)
		}
		seen[hintOf(t, out.body)] = true
	}
	// 40 hints drawn over at least a second: a handful of collisions at
	// most, never lockstep.
	if len(seen) < n/2 {
		t.Fatalf("%d distinct hints among %d shed requests: not jittered", len(seen), n)
	}
}

func TestShedByAddress(t *testing.T) {
	srv := newTestServer(t, noLimits(Options{ConnectRatePerIP: 0.001, ConnectBurstPerIP: 2}), channels.Options{}, nil)
	for i := range 2 {
		if out, err := rawConnect(srv.addr(), rawOpts{local: "127.0.0.2", join: true}); err != nil || !out.joined {
			t.Fatalf("connection %d from 127.0.0.2: %+v %v", i, out, err)
		}
	}
	out, err := rawConnect(srv.addr(), rawOpts{local: "127.0.0.2", header: http.Header{"Origin": {"http://" + srv.addr()}}, query: hearthQuery})
	if err != nil || out.code != channels.CloseTryAgainLater {
		t.Fatalf("third from 127.0.0.2: %+v %v, want 1013", out, err)
	}
	hintOf(t, out.reason)
	if out, err := rawConnect(srv.addr(), rawOpts{local: "127.0.0.3", join: true}); err != nil || !out.joined {
		t.Fatalf("another address has its own bucket: %+v %v", out, err)
	}
	if st := srv.Stats(); st.Shed.IPRate != 1 || st.Shed.Total() != 1 {
		t.Fatalf("stats %+v", st.Shed)
	}
}

func TestTrustedProxy(t *testing.T) {
	srv := newTestServer(t, noLimits(Options{
		ConnectRatePerIP: 0.001, ConnectBurstPerIP: 1,
		TrustedProxies: []string{"127.0.0.0/8", "10.0.0.0/8"},
	}), channels.Options{}, nil)
	xff := func(v string) http.Header { return http.Header{"X-Forwarded-For": {v}} }

	if out, err := rawConnect(srv.addr(), rawOpts{header: xff("203.0.113.7"), join: true}); err != nil || !out.joined {
		t.Fatalf("first from 203.0.113.7: %+v %v", out, err)
	}
	if got := srv.rec.lastConnect().RemoteAddr; got != "203.0.113.7" {
		t.Fatalf("connect hook saw RemoteAddr %q, want the forwarded client 203.0.113.7", got)
	}
	if out, _ := rawConnect(srv.addr(), rawOpts{header: xff("203.0.113.7")}); out.status != http.StatusServiceUnavailable {
		t.Fatalf("second from 203.0.113.7: %+v, want shed", out)
	}
	// The same proxy, another client: its own bucket. The chain names the
	// client left of a second trusted proxy.
	if out, err := rawConnect(srv.addr(), rawOpts{header: xff("198.51.100.1, 203.0.113.8, 10.1.2.3"), join: true}); err != nil || !out.joined {
		t.Fatalf("203.0.113.8 through two proxies: %+v %v", out, err)
	}
	if got := srv.rec.lastConnect().RemoteAddr; got != "203.0.113.8" {
		t.Fatalf("RemoteAddr %q, want 203.0.113.8 (the rightmost untrusted entry; 198.51.100.1 may be spoofed)", got)
	}
	if out, err := rawConnect(srv.addr(), rawOpts{header: http.Header{"X-Real-Ip": {"192.0.2.44"}}, join: true}); err != nil || !out.joined {
		t.Fatalf("X-Real-IP: %+v %v", out, err)
	}
	if got := srv.rec.lastConnect().RemoteAddr; got != "192.0.2.44" {
		t.Fatalf("RemoteAddr %q from X-Real-IP", got)
	}
	if st := srv.Stats(); st.Shed.IPRate != 1 {
		t.Fatalf("stats %+v", st.Shed)
	}
}

func TestSpoofedHeaderFromUntrustedPeerIgnored(t *testing.T) {
	// Loopback is not a trusted proxy here: its headers are client data.
	srv := newTestServer(t, noLimits(Options{
		ConnectRatePerIP: 0.001, ConnectBurstPerIP: 1,
		TrustedProxies: []string{"10.0.0.0/8"},
	}), channels.Options{}, nil)
	out, err := rawConnect(srv.addr(), rawOpts{local: "127.0.0.4", header: http.Header{"X-Forwarded-For": {"203.0.113.1"}}, join: true})
	if err != nil || !out.joined {
		t.Fatalf("first: %+v %v", out, err)
	}
	if got := srv.rec.lastConnect().RemoteAddr; !strings.HasPrefix(got, "127.0.0.4:") {
		t.Fatalf("connect hook saw RemoteAddr %q, want the peer 127.0.0.4:port", got)
	}
	// A fresh spoofed address does not buy a fresh bucket.
	out, err = rawConnect(srv.addr(), rawOpts{local: "127.0.0.4", header: http.Header{"X-Forwarded-For": {"203.0.113.2"}, "X-Real-Ip": {"203.0.113.3"}}})
	if err != nil || out.status != http.StatusServiceUnavailable {
		t.Fatalf("spoofed header: %+v %v, want shed by the peer's bucket", out, err)
	}
}

func TestMaxConnections(t *testing.T) {
	srv := newTestServer(t, noLimits(Options{MaxConnections: 2}), channels.Options{}, nil)
	a := joinedSocket(t, srv, "room:a")
	b := joinedSocket(t, srv, "room:b")
	out, err := rawConnect(srv.addr(), rawOpts{header: http.Header{"Origin": {"http://" + srv.addr()}}, join: true, query: hearthQuery})
	if err != nil || out.code != channels.CloseTryAgainLater || out.joined {
		t.Fatalf("third connection: %+v %v, want 1013", out, err)
	}
	if h := hintOf(t, out.reason); h < fullRetryBase {
		t.Fatalf("hint %v, want at least %v", h, fullRetryBase)
	}
	if n := srv.rec.count(); n != 2 {
		t.Fatalf("connect hook ran %d times", n)
	}
	_ = a.ws.Close()
	eventually(t, "a slot to free up", func() bool { return srv.Connections() == 1 })
	c := joinedSocket(t, srv, "room:c")
	c.heartbeat()
	b.heartbeat()
	if st := srv.Stats(); st.Shed.MaxConnections != 1 || st.Accepted != 3 {
		t.Fatalf("stats %+v", st)
	}
}

func TestMaxConnectionsCountsFailedHandshakes(t *testing.T) {
	// Refused handshakes (connect hook errors, refusals with a close code)
	// must give their slot back.
	srv := newTestServer(t, noLimits(Options{MaxConnections: 1}), channels.Options{}, nil)
	for range 3 {
		if _, err := dialWith(t, srv.url, dialOpts{query: "deny=1"}); err == nil {
			t.Fatal("deny=1 was accepted")
		}
		if _, err := dialWith(t, srv.url, dialOpts{query: "close=1"}); err == nil {
			t.Fatal("close=1 was upgraded for a client that does not read close codes")
		}
		c, err := dialWith(t, srv.url, dialOpts{query: "close=1&" + channels.ExtParam + "=1"})
		if err != nil {
			t.Fatal(err)
		}
		c.expectClose(channels.CloseUnauthorized, "unauthorized")
		eventually(t, "the refused connection to end", func() bool { return srv.Connections() == 0 })
	}
	joinedSocket(t, srv, "room:after").heartbeat()
}

func TestCloseCounters(t *testing.T) {
	srv := newTestServer(t, Options{MessageRate: 1, MessageBurst: 1}, channels.Options{}, nil)
	c := dial(t, srv.url)
	for range 3 {
		c.send("", c.nextRef(), "phoenix", "heartbeat", map[string]any{})
	}
	c.expectClose(channels.CloseRateLimited, "")
	eventually(t, "the rate-limit close to be counted", func() bool { return srv.Stats().RateLimitCloses == 1 })
	if st := srv.Stats(); st.SlowConsumerCloses != 0 || st.Accepted != 1 || !st.Ready {
		t.Fatalf("stats %+v", st)
	}
}

func TestClientAddr(t *testing.T) {
	a := admission{}
	o := Options{TrustedProxies: []string{"10.0.0.0/8", "192.168.1.1", "fd00::/8"}}
	applyAdmissionDefaults(&o)
	a.init(&o)
	cases := []struct {
		name, remote string
		header       http.Header
		want         string
		fromHeader   bool
	}{
		{"direct", "203.0.113.1:5555", nil, "203.0.113.1", false},
		{"direct, header ignored", "203.0.113.1:5555", http.Header{"X-Forwarded-For": {"1.1.1.1"}}, "203.0.113.1", false},
		{"trusted, no header", "10.0.0.1:80", nil, "10.0.0.1", false},
		{"trusted, XFF", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7", true},
		{"trusted, XFF chain", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7, 10.2.2.2"}}, "198.51.100.7", true},
		{"trusted, XFF in two headers", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"6.6.6.6, 198.51.100.7", "10.2.2.2"}}, "198.51.100.7", true},
		{"trusted, XFF with port", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"198.51.100.7:4711"}}, "198.51.100.7", true},
		{"trusted, XFF IPv6 bracketed", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"[2001:db8::5]:443"}}, "2001:db8::5", true},
		{"trusted, XFF all proxies", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"10.9.9.9, 192.168.1.1"}}, "10.9.9.9", true},
		{"trusted, XFF malformed", "10.0.0.1:80", http.Header{"X-Forwarded-For": {"unknown, 198.51.100.7x"}}, "10.0.0.1", false},
		{"trusted single address", "192.168.1.1:80", http.Header{"X-Real-Ip": {"198.51.100.9"}}, "198.51.100.9", true},
		{"untrusted neighbour", "192.168.1.2:80", http.Header{"X-Real-Ip": {"198.51.100.9"}}, "192.168.1.2", false},
		{"IPv6 proxy", "[fd00::1]:80", http.Header{"X-Forwarded-For": {"2001:db8::9"}}, "2001:db8::9", true},
		{"IPv4-mapped peer", "[::ffff:10.0.0.1]:80", http.Header{"X-Forwarded-For": {"198.51.100.7"}}, "198.51.100.7", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: tc.remote, Header: tc.header}
			if r.Header == nil {
				r.Header = http.Header{}
			}
			ip, fromHeader, ok := a.clientAddr(r)
			if !ok || ip.String() != tc.want || fromHeader != tc.fromHeader {
				t.Fatalf("got %v (header %v, ok %v), want %s (header %v)", ip, fromHeader, ok, tc.want, tc.fromHeader)
			}
		})
	}
}

func TestIPKeyGroupsIPv6By64(t *testing.T) {
	a, b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2:ffff::9")
	c := netip.MustParseAddr("2001:db8:1:3::1")
	if ipKey(a) != ipKey(b) || ipKey(a) == ipKey(c) {
		t.Fatalf("keys %v %v %v", ipKey(a), ipKey(b), ipKey(c))
	}
	v4 := netip.MustParseAddr("198.51.100.1")
	if ipKey(v4) != v4 {
		t.Fatal("IPv4 keys must be the address")
	}
}

func TestParseTrustedProxy(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.0/8":          "10.0.0.0/8",
		"10.1.2.3/8":          "10.0.0.0/8",
		" 192.168.0.1 ":       "192.168.0.1/32",
		"fd00::/8":            "fd00::/8",
		"::ffff:10.0.0.0/104": "10.0.0.0/8",
		"2001:db8::1":         "2001:db8::1/128",
	} {
		p, err := ParseTrustedProxy(in)
		if err != nil || p.String() != want {
			t.Errorf("%q: %v %v, want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "10.0.0.0/33", "example.com", "10.0.0"} {
		if _, err := ParseTrustedProxy(bad); err == nil || !strings.HasPrefix(err.Error(), "server: ") {
			t.Errorf("%q: %v, want a server: error", bad, err)
		}
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "trusted proxy") {
			t.Fatalf("New with a malformed trusted proxy: %v, want a panic", r)
		}
	}()
	node, _ := newTestNode(t, channels.Options{})
	New(node, Options{TrustedProxies: []string{"nonsense"}})
}

func TestDefaults(t *testing.T) {
	var o Options
	applyAdmissionDefaults(&o)
	if o.ConnectRate <= 0 || o.ConnectBurst < 1 || o.ConnectRatePerIP != o.ConnectRate/defaultIPShare || o.RetryAfterMax != defaultRetryAfterMax {
		t.Fatalf("defaults %+v", o)
	}
	if lim := openFileLimit(); lim > 0 && (o.MaxConnections <= 0 || o.MaxConnections >= lim) {
		t.Fatalf("MaxConnections %d with an open-file limit of %d", o.MaxConnections, lim)
	}
	o = Options{ConnectRate: -1}
	applyAdmissionDefaults(&o)
	if o.ConnectRatePerIP >= 0 {
		t.Fatalf("no node limit, but a per-address limit of %v derived from it", o.ConnectRatePerIP)
	}
}

func TestShedWindow(t *testing.T) {
	var w shedWindow
	t0 := time.Unix(1000, 0)
	for i := range 100 {
		w.add(t0.Add(time.Duration(i) * 5 * time.Millisecond)) // 100 in 0.5 s
	}
	if got := w.add(t0.Add(999 * time.Millisecond)); got != 101 {
		t.Fatalf("estimate %d within the first second", got)
	}
	// Half a second into the next one, half the previous second counts.
	if got := w.add(t0.Add(1500 * time.Millisecond)); got < 50 || got > 52 {
		t.Fatalf("estimate %d, want about 51", got)
	}
	if got := w.add(t0.Add(10 * time.Second)); got != 1 {
		t.Fatalf("estimate %d after a quiet spell", got)
	}
}

// TestBenchClientHonoursHint closes a shed connection and hands the hint
// the bench tool's load client would read to its Hearth reconnect policy,
// which must wait at least that long and at most 20% more (the jitter the
// JS client adds too, so a shed wave does not return in lockstep).
func TestBenchClientHonoursHint(t *testing.T) {
	srv := newTestServer(t, noLimits(Options{ConnectRate: 0.001, ConnectBurst: 1}), channels.Options{}, nil)
	browser := http.Header{"Origin": {"http://" + srv.addr()}}
	if out, err := rawConnect(srv.addr(), rawOpts{header: browser, join: true}); err != nil || !out.joined {
		t.Fatalf("first: %+v %v", out, err)
	}
	out, err := rawConnect(srv.addr(), rawOpts{header: browser, query: hearthQuery})
	if err != nil || out.code != channels.CloseTryAgainLater {
		t.Fatalf("%+v %v", out, err)
	}
	hint := hintOf(t, out.reason)
	p, err := bench.PolicyByName("hearth")
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Delay(3, hint); hint > 0 && (d < hint || d > hint+hint/5) {
		t.Fatalf("Hearth policy waits %v, want the hint %v plus at most 20%%", d, hint)
	}
}

// BenchmarkConnect measures what one node admits: each operation is a
// full connection from a minimal client over loopback (TCP, upgrade,
// connect hook, join, close handshake), with 32 clients at once, every
// limit off. conns/s is the figure docs/operations.md derives the
// admission defaults from. The clients run on the same cores.
func BenchmarkConnect(b *testing.B) {
	srv := newTestServer(b, noLimits(Options{}), channels.Options{JoinRate: -1, JoinRatePerIP: -1}, nil)
	runConnects(b, srv, rawOpts{join: true}, func(o outcome) bool { return o.joined })
}

// BenchmarkShed measures refusing: every request is over the node's rate.
// 503 is the reply to clients that do not read close codes; 1013 (for
// those that do) upgrades and closes.
func BenchmarkShed(b *testing.B) {
	for _, tc := range []struct {
		name string
		opts rawOpts
		ok   func(outcome) bool
	}{
		{"503", rawOpts{}, func(o outcome) bool { return o.status == http.StatusServiceUnavailable }},
		{"1013", rawOpts{header: http.Header{"Origin": {"x"}}, query: hearthQuery}, func(o outcome) bool { return o.code == channels.CloseTryAgainLater }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv := newTestServer(b, noLimits(Options{ConnectRate: 1e-9, ConnectBurst: 1, InsecureSkipOriginCheck: true}), channels.Options{}, nil)
			if out, err := rawConnect(srv.addr(), rawOpts{join: true}); err != nil || !out.joined {
				b.Fatalf("the burst's connection: %+v %v", out, err)
			}
			runConnects(b, srv, tc.opts, tc.ok)
		})
	}
}

func runConnects(b *testing.B, srv *testServer, o rawOpts, ok func(outcome) bool) {
	const clients = 32
	var next atomic.Int64
	var bad atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				out, err := rawConnect(srv.addr(), o)
				if err != nil || !ok(out) {
					if bad.Add(1) == 1 {
						firstErr.Store(fmt.Sprintf("%+v %v", out, err))
					}
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	if n := bad.Load(); n > 0 {
		b.Fatalf("%d of %d attempts did not end as expected, the first: %v", n, b.N, firstErr.Load())
	}
	b.ReportMetric(float64(b.N)/el.Seconds(), "conns/s")
}

// discardWriter is a ResponseWriter that keeps nothing but its headers.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkShedPath measures what the server itself spends on refusing an
// upgrade request with 503, from ServeHTTP on (net/http's reading of the
// request excluded): the protocol checks, admission control and the
// response.
func BenchmarkShedPath(b *testing.B) {
	node, _ := newTestNode(b, channels.Options{})
	b.Cleanup(func() { _ = node.Broker().Close() })
	srv := New(node, noLimits(Options{ConnectRate: 1e-9, ConnectBurst: 1, ConnectRatePerIP: 1e-9, ConnectBurstPerIP: 1}))
	r, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:4000/socket/websocket?vsn=2.0.0", nil)
	if err != nil {
		b.Fatal(err)
	}
	r.RemoteAddr = "127.0.0.1:50000"
	r.Header.Set("Connection", "Upgrade")
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Sec-WebSocket-Version", "13")
	r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	w := &discardWriter{h: http.Header{}}
	srv.adm.allowIP(netip.MustParseAddr("127.0.0.1"), time.Now()) // the burst's token
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		srv.ServeHTTP(w, r)
	}
	if st := srv.Stats(); st.Shed.IPRate < uint64(b.N) {
		b.Fatalf("%d shed, want %d", st.Shed.IPRate, b.N)
	}
}
