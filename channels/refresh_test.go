package channels_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels"
)

// tokenNode returns a node whose sockets' credentials expire after
// lifetime and whose Mint gives tokens of the same lifetime while the
// session (the socket's ID) is in sessions.
func tokenNode(t *testing.T, lifetime time.Duration, sessions *sync.Map, mints *atomic.Int64) *channels.Node {
	t.Helper()
	n := channels.New(channels.Options{
		Connect: func(_ context.Context, ev channels.ConnectEvent) (channels.ConnectReply, error) {
			return channels.ConnectReply{ID: ev.Params.Get("sid"), ExpiresAt: time.Now().Add(lifetime)}, nil
		},
		Refresh: &channels.RefreshOptions{
			Mint: func(_ context.Context, s *channels.Socket) (string, time.Time, error) {
				mints.Add(1)
				if _, ok := sessions.Load(s.ID()); !ok {
					return "", time.Time{}, channels.ErrRevoked
				}
				return "tok-" + s.ID(), time.Now().Add(lifetime), nil
			},
		},
	})
	t.Cleanup(n.Wait)
	return n
}

func TestTokenRefreshArrivesInWindow(t *testing.T) {
	var sessions sync.Map
	var mints atomic.Int64
	sessions.Store("s1", true)
	const lifetime = 400 * time.Millisecond
	n := tokenNode(t, lifetime, &sessions, &mints)
	start := time.Now()
	c := connect(t, n, map[string][]string{"sid": {"s1"}})
	m := c.next()
	elapsed := time.Since(start)
	if m.Topic != "phoenix" || m.Event != "token" || m.JoinRef != "" || m.Ref != "" {
		t.Fatalf("token message = %+v", m.Message)
	}
	var p struct {
		Token     string `json:"token"`
		ExpiresAt int64  `json:"expires_at"`
	}
	if err := json.Unmarshal(m.Payload, &p); err != nil || p.Token != "tok-s1" || p.ExpiresAt < time.Now().Unix() {
		t.Fatalf("token payload %s: %v", m.Payload, err)
	}
	// The window is 50%..90% of the lifetime; the lower bound is exact,
	// the upper gets slack for a loaded machine.
	if elapsed < lifetime/2 {
		t.Fatalf("refresh after %v, before the window opened at %v", elapsed, lifetime/2)
	}
	if elapsed > lifetime*9/10+time.Second {
		t.Fatalf("refresh after %v, long after the window closed at %v", elapsed, lifetime*9/10)
	}
	// And it keeps refreshing.
	if m := c.next(); m.Event != "token" {
		t.Fatalf("second refresh = %+v", m.Message)
	}
}

func TestTokenRefreshRevokesEndedSession(t *testing.T) {
	var sessions sync.Map
	var mints atomic.Int64
	sessions.Store("alive", true)
	n := tokenNode(t, 200*time.Millisecond, &sessions, &mints)
	alive := connect(t, n, map[string][]string{"sid": {"alive"}})
	gone := connect(t, n, map[string][]string{"sid": {"gone"}}) // logged out: no session
	deadline := time.Now().Add(5 * time.Second)
	for {
		gone.r.mu.Lock()
		code, reason := gone.r.code, gone.r.reason
		gone.r.mu.Unlock()
		if code != 0 {
			if code != channels.CloseRevoked || reason != "session revoked" || !channels.Terminal(code) {
				t.Fatalf("revoked socket closed with %d %q", code, reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("socket without a session was not revoked")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if m := alive.next(); m.Event != "token" {
		t.Fatalf("live session got %+v", m.Message)
	}
	alive.r.mu.Lock()
	defer alive.r.mu.Unlock()
	if alive.r.code != 0 {
		t.Fatalf("live session closed with %d", alive.r.code)
	}
}

// TestExpiredCredentialsRefusedAtConnect: credentials that the connect
// hook let through (a verifier's leeway) but that expired already are
// refused by NewSocket with 4502, before the transport upgrades, instead
// of a socket closed as soon as it starts (which phoenix.js, reading no
// close codes, would answer with a reconnect 10 ms later).
func TestExpiredCredentialsRefusedAtConnect(t *testing.T) {
	n := channels.New(channels.Options{
		Connect: func(context.Context, channels.ConnectEvent) (channels.ConnectReply, error) {
			return channels.ConnectReply{ExpiresAt: time.Now().Add(-time.Second)}, nil
		},
		Refresh: &channels.RefreshOptions{Mint: func(context.Context, *channels.Socket) (string, time.Time, error) {
			return "", time.Time{}, errors.New("must not be called")
		}},
	})
	s, err := n.NewSocket(context.Background(), channels.ConnectEvent{})
	if code, _ := channels.CloseCode(err); s != nil || code != channels.CloseTokenExpired {
		t.Fatalf("expired credentials: %v %v, want close 4502 before the socket exists", s, err)
	}
}

// TestTokenRefreshSpread connects 1,000 sockets at once and checks that
// their refreshes are spread over the window rather than in lockstep.
func TestTokenRefreshSpread(t *testing.T) {
	const lifetime = 2 * time.Second
	const sockets = 1000
	var mu sync.Mutex
	var at []time.Duration
	start := time.Now()
	n := channels.New(channels.Options{
		Connect: func(_ context.Context, ev channels.ConnectEvent) (channels.ConnectReply, error) {
			return channels.ConnectReply{ExpiresAt: start.Add(lifetime)}, nil
		},
		Refresh: &channels.RefreshOptions{Mint: func(_ context.Context, s *channels.Socket) (string, time.Time, error) {
			mu.Lock()
			at = append(at, time.Since(start))
			mu.Unlock()
			return "", time.Time{}, channels.ErrRevoked // one refresh each is enough
		}},
	})
	t.Cleanup(n.Wait)
	for i := 0; i < sockets; i++ {
		connect(t, n, nil)
	}
	connected := time.Since(start)
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got := len(at)
		mu.Unlock()
		if got == sockets {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sockets refreshed", got, sockets)
		}
		time.Sleep(20 * time.Millisecond)
	}
	sort.Slice(at, func(i, j int) bool { return at[i] < at[j] })
	// Uniform over about [1.0 s, 1.8 s]: in 100 ms buckets about 12.5%
	// each. In lockstep they would all share one bucket.
	buckets := map[int]int{}
	var sum, sumsq float64
	for _, d := range at {
		buckets[int(d/(100*time.Millisecond))]++
		s := d.Seconds()
		sum += s
		sumsq += s * s
	}
	peak := 0
	for _, c := range buckets {
		peak = max(peak, c)
	}
	mean := sum / sockets
	std := math.Sqrt(sumsq/sockets - mean*mean)
	t.Logf("1000 sockets connected in %v; refresh moments: first %v, last %v, mean %.3fs, stddev %.3fs, busiest 100ms bucket %d",
		connected, at[0], at[sockets-1], mean, std, peak)
	if at[0] < (lifetime-connected)/2 {
		t.Fatalf("first refresh at %v, before the window", at[0])
	}
	if peak > sockets/4 {
		t.Fatalf("%d of %d refreshes in one 100 ms bucket: not spread", peak, sockets)
	}
	// A uniform distribution over 0.8 s has a stddev of about 0.23 s.
	if std < 0.15 {
		t.Fatalf("stddev of refresh moments %.3fs: not spread", std)
	}
}
