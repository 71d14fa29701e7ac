package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels"
)

// lpRaw sends a long-poll request and returns the HTTP status, the headers
// and the answer.
func lpRaw(t testing.TB, method, u string, body string) (int, http.Header, lpAnswer) {
	t.Helper()
	status, hdr, a, err := lpTry(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	return status, hdr, a
}

func lpTry(method, u string, body string) (int, http.Header, lpAnswer, error) {
	var a lpAnswer
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		return 0, nil, a, err
	}
	if method == http.MethodPost {
		req.Header.Set("Content-Type", "application/x-ndjson")
	}
	resp, err := lpHTTP.Do(req)
	if err != nil {
		return 0, nil, a, fmt.Errorf("%s %s: %w", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &a); err != nil {
		return 0, nil, a, fmt.Errorf("%s %s: HTTP %d, body %q is not a long-poll answer", method, u, resp.StatusCode, b)
	}
	return resp.StatusCode, resp.Header, a, nil
}

// TestLongPollCountsAsConnections: long-poll sessions are connections in
// Server.Connections, Stats (and so /metrics' hearth_connections) and the
// node's socket count (the server API and dashboard), until they end.
func TestLongPollCountsAsConnections(t *testing.T) {
	srv := newLPServer(t, Options{}, LongPollOptions{SessionTimeout: 300 * time.Millisecond, PollTimeout: 50 * time.Millisecond})
	ws := dial(t, "ws"+strings.TrimPrefix(srv.base, "http")+"/websocket")
	a := mustOpenLP(t, srv.base, "user=a")
	mustOpenLP(t, srv.base, "user=b") // never polled: it expires
	// The client's dial returns on the 101, which the server writes just
	// before it registers the connection.
	eventually(t, "a WebSocket and two long-poll sessions to count as 3 connections", func() bool { return srv.Connections() == 3 })
	if st := srv.Stats(); st.Connections != 3 || st.LongPollSessions != 2 {
		t.Fatalf("stats %+v, want 3 connections of which 2 long-poll sessions", st)
	}
	if n := srv.node.Stats().Sockets; n != 3 {
		t.Fatalf("node sockets %d, want 3", n)
	}
	// a keeps polling; b expires and stops counting.
	eventually(t, "the unpolled session to end", func() bool {
		if p := a.poll(); p.Status != 204 && p.Status != 200 {
			t.Fatalf("poll: %+v", p)
		}
		return srv.Connections() == 2
	})
	if st := srv.Stats(); st.LongPollSessions != 1 || srv.lp.Sessions() != 1 {
		t.Fatalf("stats %+v, want one long-poll session left", st)
	}
	_ = ws.ws.Close()
	eventually(t, "the WebSocket to end", func() bool { return srv.Connections() == 1 })
}

// TestLongPollCooldown: a long-poll session closed for what its client did
// holds the same client's next sessions off for the reconnect cooldown, as
// for a WebSocket: HTTP 429 with Retry-After (403 after a terminal close),
// and a status phoenix.js backs off from without an open (500, or 403);
// another user, and a client that reads close codes, open at once.
func TestLongPollCooldown(t *testing.T) {
	for _, tc := range []struct {
		name     string
		query    string
		offend   func(t *testing.T, c *lpClient) lpAnswer
		code     int
		http     int
		status   int
		terminal bool
	}{
		{"rate limit 4029", "user=a", func(t *testing.T, c *lpClient) lpAnswer {
			hb := make([]string, 20)
			for i := range hb {
				hb[i] = c.frame("", c.nextRef(), "phoenix", "heartbeat", map[string]any{})
			}
			return c.post(hb...)
		}, channels.CloseRateLimited, http.StatusTooManyRequests, 500, false},
		{"too big 1009", "user=b", func(t *testing.T, c *lpClient) lpAnswer {
			return c.post(c.frame("", "1", "phoenix", "heartbeat", map[string]string{"pad": strings.Repeat("x", 2000)}))
		}, channels.CloseTooBig, http.StatusTooManyRequests, 500, false},
		{"revoked 4503", "user=d&revoke=1", func(t *testing.T, c *lpClient) lpAnswer {
			for {
				if a := c.poll(); a.Status != 204 && a.Status != 200 {
					return a
				}
			}
		}, channels.CloseRevoked, http.StatusForbidden, 403, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := codeNode()
			srv := New(node, Options{MessageRate: 10, MessageBurst: 5, MaxMessageSize: 1024, ReconnectCooldown: time.Minute})
			lp := NewLongPoll(srv, LongPollOptions{PollTimeout: 100 * time.Millisecond})
			hs := httptest.NewServer(lp)
			finishCodeServer(t, node, srv, hs)
			base := hs.URL + "?vsn=2.0.0&"

			c := &lpClient{t: t, url: base + tc.query}
			_, _, open := lpRaw(t, http.MethodGet, c.url, "")
			if open.Status != 410 || open.Token == "" {
				t.Fatalf("open: %+v", open)
			}
			c.token = open.Token
			if a := tc.offend(t, c); a.Close == nil || a.Close.Code != tc.code {
				t.Fatalf("offence answered %+v, want close %d", a, tc.code)
			}
			eventually(t, "the session to end", func() bool { return srv.Connections() == 0 })

			status, hdr, a := lpRaw(t, http.MethodGet, c.url, "")
			if status != tc.http || a.Status != tc.status || a.Token != "" || a.Close == nil || !strings.Contains(a.Close.Reason, "reconnecting too soon") {
				t.Fatalf("reopen: HTTP %d %+v, want HTTP %d, status %d and a close", status, a, tc.http, tc.status)
			}
			if tc.terminal {
				if a.Close.Code != tc.code {
					t.Fatalf("reopen after a terminal close: code %d, want %d", a.Close.Code, tc.code)
				}
			} else if n, err := strconv.Atoi(hdr.Get("Retry-After")); err != nil || n < 50 || n > 60 {
				t.Fatalf("Retry-After %q, want the rest of the minute", hdr.Get("Retry-After"))
			}
			if st := srv.Stats(); st.CooledDown != 1 {
				t.Fatalf("stats %+v, want 1 reconnect cooled down", st)
			}
			// Someone else from the same address, and a Hearth client.
			for _, q := range []string{"user=z", tc.query + "&" + channels.ExtParam + "=1"} {
				if _, _, a := lpRaw(t, http.MethodGet, base+q, ""); a.Status != 410 || a.Token == "" {
					t.Fatalf("open with %q: %+v, want a session", q, a)
				}
			}
		})
	}
}

// TestLongPollCooldownOff: with ReconnectCooldown below zero nothing is
// remembered.
func TestLongPollCooldownOff(t *testing.T) {
	srv := newLPServer(t, Options{MessageRate: 10, MessageBurst: 5, ReconnectCooldown: -1}, LongPollOptions{})
	c := mustOpenLP(t, srv.base, "user=a")
	hb := make([]string, 20)
	for i := range hb {
		hb[i] = c.frame("", c.nextRef(), "phoenix", "heartbeat", map[string]any{})
	}
	if a := c.post(hb...); a.Close == nil || a.Close.Code != channels.CloseRateLimited {
		t.Fatalf("flood answered %+v", a)
	}
	mustOpenLP(t, srv.base, "user=a")
}

// TestLongPollDrainSpread: Shutdown drains long-poll sessions with the
// WebSockets, spread over the drain window: the node goes on answering the
// polls of sessions not yet told, and each session's poll gets its 410
// with 1012 and a hint at its own time, not all at once, so that phoenix.js
// clients (which reconnect 10 ms after a 410) come back spread out.
func TestLongPollDrainSpread(t *testing.T) {
	const nLP, nWS, window = 16, 4, time.Second
	srv := newLPServer(t, Options{DrainWindow: window, MinDrainRate: -1}, LongPollOptions{PollTimeout: 100 * time.Millisecond})
	wsURL := "ws" + strings.TrimPrefix(srv.base, "http") + "/websocket"
	var wss []*client
	for range nWS {
		wss = append(wss, dial(t, wsURL))
	}
	wsWait := watchCloses(wss)

	type end struct {
		at    time.Time
		a     lpAnswer
		polls int // answered 200/204 while the drain ran
	}
	ends := make([]end, nLP)
	var started sync.WaitGroup
	var wg sync.WaitGroup
	for i := range nLP {
		c := mustOpenLP(t, srv.base, "")
		if _, st, _ := c.join("room:drain", map[string]string{}); st != "ok" {
			t.Fatal("join failed")
		}
		started.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			first := true
			var begin time.Time
			for {
				_, _, a, err := lpTry(http.MethodGet, c.withToken(), "")
				if err != nil {
					t.Error(err)
					if first {
						started.Done()
					}
					return
				}
				if first {
					first = false
					started.Done()
				}
				if begin.IsZero() && !srv.Ready() {
					begin = time.Now()
				}
				if a.Status == 200 || a.Status == 204 {
					if !begin.IsZero() {
						ends[i].polls++
					}
					continue
				}
				ends[i].at, ends[i].a = time.Now(), a
				return
			}
		}()
	}
	started.Wait()
	if n := srv.Connections(); n != nLP+nWS {
		t.Fatalf("Connections() = %d, want %d", n, nLP+nWS)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	wsWait()
	if st := srv.Stats(); st.DrainTotal != nLP+nWS || st.DrainClosed != nLP+nWS {
		t.Fatalf("drain stats %+v, want %d sockets drained", st, nLP+nWS)
	}
	var at []time.Duration
	served := 0
	for i, e := range ends {
		if e.a.Status != 410 || e.a.Close == nil || e.a.Close.Code != channels.CloseServiceRestart || !strings.Contains(e.a.Close.Reason, "retry_after_ms=") {
			t.Fatalf("session %d ended with %+v, want 410 with 1012 and a hint", i, e.a)
		}
		at = append(at, e.at.Sub(start))
		served += e.polls
	}
	slices.Sort(at)
	// Spread over most of the window (20 closes 50 ms apart), no 100 ms
	// stretch holding half of the sessions.
	if span := at[nLP-1] - at[0]; span < window/3 {
		t.Fatalf("long-poll closes span %v of a %v window: %v", span, window, at)
	}
	for i := range at {
		j := i
		for j < nLP && at[j]-at[i] < 100*time.Millisecond {
			j++
		}
		if j-i > nLP/2 {
			t.Fatalf("%d long-poll closes within 100 ms from %v: %v", j-i, at[i], at)
		}
	}
	// Sessions told late were polled, and answered, during the drain.
	if served == 0 {
		t.Fatal("no poll was answered during the drain")
	}
	// After the drain, a poll and a new session get 503.
	if status, _, a := lpRaw(t, http.MethodGet, srv.base+"/longpoll?vsn=2.0.0", ""); status != http.StatusServiceUnavailable || a.Status != 500 {
		t.Fatalf("open after shutdown: HTTP %d %+v", status, a)
	}
}

// TestLongPollEvacuate: Evacuate tells long-poll sessions to go as it
// tells WebSockets (410 with 1012 and a hint), and the node goes on opening
// new sessions.
func TestLongPollEvacuate(t *testing.T) {
	srv := newLPServer(t, Options{DrainWindow: 200 * time.Millisecond}, LongPollOptions{PollTimeout: 100 * time.Millisecond})
	var cs []*lpClient
	for range 3 {
		cs = append(cs, mustOpenLP(t, srv.base, ""))
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	srv.Evacuate(ctx)
	for i, c := range cs {
		a := c.poll()
		if a.Status != 410 || a.Close == nil || a.Close.Code != channels.CloseServiceRestart || !strings.Contains(a.Close.Reason, "retry_after_ms=") {
			t.Fatalf("session %d after Evacuate: %+v", i, a)
		}
	}
	eventually(t, "the sessions to end", func() bool { return srv.Connections() == 0 })
	mustOpenLP(t, srv.base, "")
}
