package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hearth-rt/hearth/channels"
)

// closeRecord is how a client saw its connection end.
type closeRecord struct {
	at     time.Time
	code   int
	reason string
}

// watchCloses reads every client until its connection ends, in the
// background. The returned function waits for all of them and returns the
// records in the order of clients.
func watchCloses(clients []*client) func() []closeRecord {
	recs := make([]closeRecord, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_ = c.ws.SetReadDeadline(time.Now().Add(2 * wait))
				if _, _, err := c.ws.ReadMessage(); err != nil {
					recs[i] = closeRecord{at: time.Now(), code: websocket.CloseAbnormalClosure, reason: err.Error()}
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						recs[i].code, recs[i].reason = ce.Code, ce.Text
					}
					return
				}
			}
		}()
	}
	return func() []closeRecord {
		wg.Wait()
		return recs
	}
}

// joinedClients opens n joined sockets.
func joinedClients(t *testing.T, srv *testServer, n int) []*client {
	t.Helper()
	var cs []*client
	for i := range n {
		cs = append(cs, joinedSocket(t, srv, "room:"+strconv.Itoa(i%3)))
	}
	return cs
}

// restartHint checks a drain close and returns its hint.
func restartHint(t *testing.T, r closeRecord) time.Duration {
	t.Helper()
	if r.code != channels.CloseServiceRestart || !strings.HasPrefix(r.reason, "service restart retry_after_ms=") {
		t.Fatalf("closed with %d %q, want 1012 \"service restart retry_after_ms=<n>\"", r.code, r.reason)
	}
	return hintOf(t, r.reason)
}

func TestDrainSpreadsClosesOverWindow(t *testing.T) {
	const n, window = 20, time.Second
	srv := newTestServer(t, Options{DrainWindow: window, MinDrainRate: -1}, channels.Options{}, nil)
	clients := joinedClients(t, srv, n)
	wait := watchCloses(clients)
	if !srv.Ready() {
		t.Fatal("not ready before Shutdown")
	}

	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- srv.Shutdown(context.Background()) }()

	// Readiness drops at once, while most sockets are still open, and new
	// upgrades are refused.
	eventually(t, "the drain to start", func() bool { return srv.Stats().DrainTotal == n })
	st := srv.Stats()
	if st.Ready || !st.Draining || st.DrainClosed >= n {
		t.Fatalf("stats early in the drain: %+v", st)
	}
	c, err := dialWith(t, srv.url, dialOpts{})
	if !errors.Is(err, websocket.ErrBadHandshake) || c.resp == nil || c.resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial during the drain: %v, want 503", err)
	}

	recs := wait()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	var at []time.Duration
	for _, r := range recs {
		// No compression: each hint only spreads its tick (50 ms here).
		if h := restartHint(t, r); h >= window/n {
			t.Errorf("hint %v, want under the 50 ms step", h)
		}
		at = append(at, r.at.Sub(start))
	}
	slices.Sort(at)
	// Spread, not simultaneous: the closes span most of the window (the
	// last is due at 950 ms), and no 100 ms stretch holds half of them.
	if span := at[n-1] - at[0]; span < window/2 {
		t.Fatalf("closes span %v of a %v window: %v", span, window, at)
	}
	for i := range at {
		j := i
		for j < n && at[j]-at[i] < 100*time.Millisecond {
			j++
		}
		if j-i > n/2 {
			t.Fatalf("%d closes within 100 ms from %v: %v", j-i, at[i], at)
		}
	}
	if st := srv.Stats(); st.Draining || st.DrainClosed != n || st.Shed.ShuttingDown != 1 || st.Ready {
		t.Fatalf("stats after the drain: %+v", st)
	}
}

func TestDrainOfFewSocketsDoesNotTakeTheWindow(t *testing.T) {
	// Three sockets and a 60 s window: the minimum drain rate (500/s by
	// default) closes them within milliseconds, not 20 s apart.
	srv := newTestServer(t, Options{DrainWindow: time.Minute}, channels.Options{}, nil)
	wait := watchCloses(joinedClients(t, srv, 3))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 20*time.Second {
		t.Fatalf("Shutdown of 3 sockets took %v", el)
	}
	for _, r := range wait() {
		restartHint(t, r)
	}
}

func TestDrainFitsContextDeadline(t *testing.T) {
	// A 20 s window but a context that leaves about 1.5 s for closing
	// (5 s minus the close grace and margin): the closes are compressed,
	// and the hints grow so that the reconnects still land spread over
	// the whole window.
	const n = 10
	srv := newTestServer(t, Options{DrainWindow: 20 * time.Second, MinDrainRate: -1}, channels.Options{}, nil)
	clients := joinedClients(t, srv, n)
	wait := watchCloses(clients)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v (the drain must fit its context)", err)
	}
	recs := wait()
	slices.SortFunc(recs, func(a, b closeRecord) int { return a.at.Compare(b.at) })
	var hints []time.Duration
	for _, r := range recs {
		hints = append(hints, restartHint(t, r))
	}
	// Planned 2 s apart, closed about 0.15 s apart: socket k is told to
	// wait about k*1.85 s more. The last ones wait well beyond the
	// context's 5 s.
	if hints[0] > time.Second || hints[n-1] < 10*time.Second || hints[n-1] > 20*time.Second {
		t.Fatalf("hints in close order %v: want about 0, ..., 16.6 s", hints)
	}
	for i := 1; i < n; i++ {
		if hints[i] < hints[i-1] {
			t.Fatalf("hints in close order %v: later closes must wait longer", hints)
		}
	}
}

func TestDrainContextCancelled(t *testing.T) {
	const n = 10
	srv := newTestServer(t, Options{DrainWindow: time.Minute, MinDrainRate: -1}, channels.Options{}, nil)
	wait := watchCloses(joinedClients(t, srv, n))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(ctx) }()
	eventually(t, "the first close", func() bool { return srv.Stats().DrainClosed >= 1 })
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v, want context.Canceled", err)
	}
	// The rest were closed at once (with a hint, or dropped: the context
	// ended, nothing waits for the close handshake).
	recs := wait()
	if st := srv.Stats(); st.DrainClosed != n || st.Draining {
		t.Fatalf("stats %+v", st)
	}
	eventually(t, "the connections to end", func() bool { return srv.Connections() == 0 })
	for _, r := range recs {
		if r.code == channels.CloseServiceRestart {
			restartHint(t, r)
		}
	}
}

func TestDrainClosesHandshakeInProgress(t *testing.T) {
	// A connection whose connect hook runs when Shutdown begins is not in
	// the drain's list: it is closed with 1012 and a hint once upgraded.
	entered, release := make(chan struct{}), make(chan struct{})
	node := channels.New(channels.Options{
		Connect: func(ctx context.Context, ev channels.ConnectEvent) (channels.ConnectReply, error) {
			if ev.Params.Get("block") == "1" {
				close(entered)
				<-release
			}
			return channels.ConnectReply{}, nil
		},
	})
	t.Cleanup(func() { _ = node.Broker().Close() })
	srv := New(node, Options{DrainWindow: 10 * time.Second})
	hs := httptest.NewServer(srv)
	t.Cleanup(hs.Close)
	url := "ws" + strings.TrimPrefix(hs.URL, "http")

	dialed := make(chan *client, 1)
	go func() {
		c, err := dialWith(t, url, dialOpts{query: "block=1"})
		if err != nil {
			t.Errorf("dial: %v", err)
		}
		dialed <- c
	}()
	<-entered
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(context.Background()) }()
	eventually(t, "readiness to go false", func() bool { return !srv.Ready() })
	close(release)
	c := <-dialed
	if c == nil || c.ws == nil {
		t.FailNow()
	}
	code, reason := c.readClose()
	restartHint(t, closeRecord{code: code, reason: reason})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestDrainInterval(t *testing.T) {
	s := &Server{opts: Options{MinDrainRate: 500}}
	cases := []struct {
		window time.Duration
		n      int
		want   time.Duration
	}{
		{30 * time.Second, 15000, 2 * time.Millisecond},
		{30 * time.Second, 60000, 500 * time.Microsecond},
		{30 * time.Second, 3, 2 * time.Millisecond}, // capped: 6 ms in all, not 30 s
		{0, 100, 0},
		{time.Second, 0, 0},
	}
	for _, tc := range cases {
		if got := s.drainInterval(tc.window, tc.n); got != tc.want {
			t.Errorf("drainInterval(%v, %d) = %v, want %v", tc.window, tc.n, got, tc.want)
		}
	}
	s.opts.MinDrainRate = -1
	if got := s.drainInterval(30*time.Second, 3); got != 10*time.Second {
		t.Errorf("no minimum rate: %v, want the whole window", got)
	}
}
