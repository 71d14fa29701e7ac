package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hearth-rt/hearth/channels"
)

// codeServer serves a node whose connect hook refuses with the close code
// of the query parameter "code" (and the reason of "reason"), and accepts
// sockets without one. Its refresh revokes the sockets that connected with
// "revoke=1" within a few milliseconds; those that connected with
// "expire=1" hold credentials for 300 ms that the refresh fails to renew,
// so they are closed with 4502 when they expire.
func codeServer(t *testing.T, opts Options) *testServer {
	t.Helper()
	node := codeNode()
	srv := New(node, opts)
	hs := httptest.NewServer(srv)
	return finishCodeServer(t, node, srv, hs)
}

// codeNode is codeServer's node: query "code" refuses with that close
// code, "user" names the socket, "revoke=1" has it revoked a few
// milliseconds after it opens (4503) and "expire=1" expired (4502).
func codeNode() *channels.Node {
	node := channels.New(channels.Options{
		Connect: func(ctx context.Context, ev channels.ConnectEvent) (channels.ConnectReply, error) {
			if c := ev.Params.Get("code"); c != "" {
				code, _ := strconv.Atoi(c)
				return channels.ConnectReply{}, &channels.CloseError{Code: code, Reason: ev.Params.Get("reason")}
			}
			reply := channels.ConnectReply{ID: ev.Params.Get("user")}
			switch {
			case ev.Params.Get("revoke") == "1":
				reply.ExpiresAt = time.Now().Add(time.Hour)
			case ev.Params.Get("expire") == "1":
				reply.ID = "expiring"
				reply.ExpiresAt = time.Now().Add(300 * time.Millisecond)
			}
			return reply, nil
		},
		Refresh: &channels.RefreshOptions{
			Mint: func(_ context.Context, s *channels.Socket) (string, time.Time, error) {
				if s.ID() == "expiring" {
					return "", time.Time{}, errors.New("token service down")
				}
				return "", time.Time{}, channels.ErrRevoked
			},
			Window: [2]float64{1e-6, 2e-6}, // 4-7 ms into an hour
		},
	})
	node.Handle("room:*", channels.Handler{
		Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
			return channels.JoinReply{}, nil
		},
	})
	return node
}

func finishCodeServer(t *testing.T, node *channels.Node, srv *Server, hs *httptest.Server) *testServer {
	ts := &testServer{Server: srv, node: node, http: hs, url: "ws" + strings.TrimPrefix(hs.URL, "http") + "/socket/websocket"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		hs.Close()
		_ = node.Broker().Close()
	})
	return ts
}

// refusal is what a handshake got: an HTTP status before the upgrade, or
// an upgrade and then a close code.
type refusal struct {
	status     int
	retryAfter string
	closeHdr   string
	body       string
	code       int
	reason     string
}

// tryConnect dials with query and reports the refusal (status 101 and the
// close when upgraded; the connection must then be closed by the server).
func tryConnect(t *testing.T, url, query string) refusal {
	t.Helper()
	c, err := dialWith(t, url, dialOpts{query: query})
	if err != nil {
		if !errors.Is(err, websocket.ErrBadHandshake) || c.resp == nil {
			t.Fatalf("dial %s: %v", query, err)
		}
		defer c.resp.Body.Close()
		b := make([]byte, 512)
		n, _ := c.resp.Body.Read(b)
		return refusal{status: c.resp.StatusCode, retryAfter: c.resp.Header.Get("Retry-After"),
			closeHdr: c.resp.Header.Get("X-Hearth-Close"), body: string(b[:n])}
	}
	code, reason := c.readClose()
	return refusal{status: http.StatusSwitchingProtocols, code: code, reason: reason}
}

// TestRefusalBeforeUpgrade: a connect hook's refusal reaches a client that
// does not read close codes (phoenix.js) as an HTTP status before the
// upgrade, and one that announced _hearth=1 as an upgrade and the close
// code.
func TestRefusalBeforeUpgrade(t *testing.T) {
	srv := codeServer(t, Options{})
	for _, tc := range []struct {
		name       string
		code       int
		reason     string
		status     int
		retryAfter string // "" none, "*" any of 1..5
	}{
		{"unauthorized", channels.CloseUnauthorized, "unauthorized", http.StatusForbidden, ""},
		{"token expired", channels.CloseTokenExpired, "token expired", http.StatusForbidden, ""},
		{"revoked", channels.CloseRevoked, "session revoked", http.StatusForbidden, ""},
		{"policy", channels.ClosePolicyViolation, "banned", http.StatusForbidden, ""},
		{"app disconnect", channels.CloseDisconnected, "go away", http.StatusForbidden, ""},
		{"rate limited", channels.CloseRateLimited, "too many connects", http.StatusTooManyRequests, "*"},
		{"try again later, hint", channels.CloseTryAgainLater, "busy retry_after_ms=2500", http.StatusServiceUnavailable, "3"},
		{"try again later", channels.CloseTryAgainLater, "busy", http.StatusServiceUnavailable, "*"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := "code=" + strconv.Itoa(tc.code) + "&reason=" + strings.ReplaceAll(tc.reason, " ", "+")
			got := tryConnect(t, srv.url, q)
			if got.status != tc.status || got.closeHdr != strconv.Itoa(tc.code) || !strings.Contains(got.body, tc.reason) {
				t.Fatalf("without the marker: %+v, want HTTP %d naming close %d %q", got, tc.status, tc.code, tc.reason)
			}
			switch tc.retryAfter {
			case "":
				if got.retryAfter != "" {
					t.Fatalf("Retry-After %q on a %d", got.retryAfter, got.status)
				}
			case "*":
				if n, err := strconv.Atoi(got.retryAfter); err != nil || n < 1 || n > 5 {
					t.Fatalf("Retry-After %q, want 1..5", got.retryAfter)
				}
			default:
				if got.retryAfter != tc.retryAfter {
					t.Fatalf("Retry-After %q, want %s (the reason's hint, rounded up)", got.retryAfter, tc.retryAfter)
				}
			}
			got = tryConnect(t, srv.url, q+"&"+channels.ExtParam+"=1")
			if got.status != http.StatusSwitchingProtocols || got.code != tc.code || got.reason != tc.reason {
				t.Fatalf("with the marker: %+v, want an upgrade and close %d %q", got, tc.code, tc.reason)
			}
		})
	}
	eventually(t, "refused connections to end", func() bool { return srv.Connections() == 0 })
	st := srv.Stats()
	if st.RefusedHTTP != 8 || st.Upgrades != 8 || st.Accepted != 8 {
		t.Fatalf("stats %+v, want 8 refused before the upgrade, 8 upgraded to be told", st)
	}
	if n := srv.node.Sockets(); n != 0 {
		t.Fatalf("%d sockets", n)
	}
}

// TestReadsCloseCodes: only a non-empty _hearth parameter is the marker.
func TestReadsCloseCodes(t *testing.T) {
	for q, want := range map[string]bool{
		"vsn=2.0.0&_hearth=1": true, "_hearth=yes&vsn=2.0.0": true, "vsn=2.0.0": false,
		"vsn=2.0.0&_hearth=": false, "vsn=2.0.0&_hearth": false, "x_hearth=1": false, "": false,
	} {
		r := httptest.NewRequest(http.MethodGet, "/socket/websocket?"+q, nil)
		if got := readsCloseCodes(r); got != want {
			t.Errorf("%q: %v, want %v", q, got, want)
		}
	}
}

// TestCooldown: after the server closed a Phoenix client's connection for
// what it did, the same client's reconnect is refused before the upgrade
// until the cooldown ends; another client, and a Hearth client, are not.
func TestCooldown(t *testing.T) {
	for _, tc := range []struct {
		name   string
		query  string
		offend func(t *testing.T, c *client)
		code   int
		reason string
		status int
	}{
		{"rate limit 4029", "user=a", func(t *testing.T, c *client) {
			for range 20 {
				c.send("", c.nextRef(), "phoenix", "heartbeat", map[string]any{})
			}
		}, channels.CloseRateLimited, "rate limit exceeded", http.StatusTooManyRequests},
		{"too big 1009", "user=b", func(t *testing.T, c *client) {
			c.send("", "1", "phoenix", "heartbeat", map[string]string{"pad": strings.Repeat("x", 2000)})
		}, channels.CloseTooBig, "message too big", http.StatusTooManyRequests},
		{"invalid 1007", "user=c", func(t *testing.T, c *client) {
			c.sendRaw(websocket.TextMessage, []byte(`{"not":"an array"}`))
		}, channels.CloseInvalidPayload, "", http.StatusTooManyRequests},
		{"revoked 4503", "user=d&revoke=1", func(t *testing.T, c *client) {}, channels.CloseRevoked, "session revoked", http.StatusForbidden},
		{"expired 4502", "expire=1", func(t *testing.T, c *client) {}, channels.CloseTokenExpired, "token expired", http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := codeServer(t, Options{MessageRate: 10, MessageBurst: 5, MaxMessageSize: 1024, ReconnectCooldown: time.Minute})
			c, err := dialWith(t, srv.url, dialOpts{query: tc.query})
			if err != nil {
				t.Fatal(err)
			}
			tc.offend(t, c)
			code, reason := c.readClose()
			if code != tc.code || (tc.reason != "" && reason != tc.reason) {
				t.Fatalf("closed with %d %q, want %d %q", code, reason, tc.code, tc.reason)
			}
			eventually(t, "the connection to end", func() bool { return srv.Connections() == 0 })

			got := tryConnect(t, srv.url, tc.query)
			if got.status != tc.status || got.closeHdr == "" {
				t.Fatalf("reconnect: %+v, want HTTP %d before the upgrade", got, tc.status)
			}
			if tc.status == http.StatusTooManyRequests {
				if n, err := strconv.Atoi(got.retryAfter); err != nil || n < 50 || n > 60 {
					t.Fatalf("Retry-After %q, want the rest of the minute", got.retryAfter)
				}
			}
			// Someone else from the same address, and a Hearth client,
			// are upgraded.
			other := tryConnectOpen(t, srv.url, "user=z")
			other.heartbeat()
			hearth := tryConnectOpen(t, srv.url, tc.query+"&"+channels.ExtParam+"=1")
			if !channels.Terminal(tc.code) {
				hearth.heartbeat()
			}
			if st := srv.Stats(); st.CooledDown != 1 {
				t.Fatalf("stats %+v, want 1 reconnect cooled down", st)
			}
		})
	}
}

// tryConnectOpen dials and fails unless upgraded.
func tryConnectOpen(t *testing.T, url, query string) *client {
	t.Helper()
	c, err := dialWith(t, url, dialOpts{query: query})
	if err != nil {
		t.Fatalf("dial %s: %v", query, err)
	}
	return c
}

// TestNoCooldown: closes that are no client's fault (idle timeout, an
// application's disconnect) and closes with the cooldown off let the
// client straight back in; the cooldown ends.
func TestNoCooldown(t *testing.T) {
	t.Run("idle timeout", func(t *testing.T) {
		srv := codeServer(t, Options{IdleTimeout: 200 * time.Millisecond})
		c := tryConnectOpen(t, srv.url, "user=a")
		c.expectClose(channels.CloseGoingAway, "idle timeout")
		eventually(t, "the connection to end", func() bool { return srv.Connections() == 0 })
		tryConnectOpen(t, srv.url, "user=a").heartbeat()
	})
	t.Run("app disconnect", func(t *testing.T) {
		srv := codeServer(t, Options{})
		c := tryConnectOpen(t, srv.url, "user=a")
		eventually(t, "the socket", func() bool { return srv.node.Sockets() == 1 })
		if err := srv.node.Disconnect(context.Background(), "a", 0, "logged out"); err != nil {
			t.Fatal(err)
		}
		c.expectClose(channels.CloseDisconnected, "logged out")
		eventually(t, "the connection to end", func() bool { return srv.Connections() == 0 })
		tryConnectOpen(t, srv.url, "user=a").heartbeat()
	})
	t.Run("disabled", func(t *testing.T) {
		srv := codeServer(t, Options{MessageRate: 10, MessageBurst: 5, ReconnectCooldown: -1})
		c := tryConnectOpen(t, srv.url, "user=a")
		for range 20 {
			c.send("", c.nextRef(), "phoenix", "heartbeat", map[string]any{})
		}
		if code, _ := c.readClose(); code != channels.CloseRateLimited {
			t.Fatalf("closed with %d", code)
		}
		eventually(t, "the connection to end", func() bool { return srv.Connections() == 0 })
		tryConnectOpen(t, srv.url, "user=a").heartbeat()
		// Refusals still go before the upgrade.
		if got := tryConnect(t, srv.url, "code=4502&reason=token+expired"); got.status != http.StatusForbidden {
			t.Fatalf("%+v, want 403", got)
		}
	})
	t.Run("ends", func(t *testing.T) {
		srv := codeServer(t, Options{MessageRate: 10, MessageBurst: 5, ReconnectCooldown: 300 * time.Millisecond})
		c := tryConnectOpen(t, srv.url, "user=a")
		for range 20 {
			c.send("", c.nextRef(), "phoenix", "heartbeat", map[string]any{})
		}
		if code, _ := c.readClose(); code != channels.CloseRateLimited {
			t.Fatalf("closed with %d", code)
		}
		eventually(t, "the cooldown to end", func() bool {
			c, err := dialWith(t, srv.url, dialOpts{query: "user=a"})
			if err != nil {
				return false
			}
			_ = c.ws.Close()
			return true
		})
	})
}

// TestCooldownTableBounded: the table never holds more than maxCooldowns
// clients, forgets expired ones, and an entry ends with its cooldown.
func TestCooldownTableBounded(t *testing.T) {
	var tab cooldowns
	now := time.Now()
	for i := range maxCooldowns + 100 {
		tab.add(uint64(i)+1, channels.CloseRateLimited, "rate limit exceeded", time.Second, now)
	}
	if n := len(tab.m); n != maxCooldowns {
		t.Fatalf("%d entries, want the bound %d", n, maxCooldowns)
	}
	if _, ok := tab.check(1, now); !ok {
		t.Fatal("a live entry is not found")
	}
	if _, ok := tab.check(1, now.Add(time.Second)); ok {
		t.Fatal("an entry outlives its cooldown")
	}
	later := now.Add(2 * cooldownSweepEvery)
	tab.add(1<<40, channels.CloseTooBig, "message too big", time.Second, later)
	if n := len(tab.m); n != 1 {
		t.Fatalf("%d entries after the sweep, want only the new one", n)
	}
}
