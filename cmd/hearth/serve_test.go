package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
	"github.com/hearth-rt/hearth/pubsub/postgres"
)

// startDemo runs the demo app in-process on a loopback listener.
func startDemo(t *testing.T, ttl time.Duration) *httptest.Server {
	return startDemoOn(t, ttl, nil)
}

func startDemoOn(t *testing.T, ttl time.Duration, broker pubsub.Broker) *httptest.Server {
	t.Helper()
	return startDemoCfg(t, serveConfig{tokenTTL: ttl, window: [2]float64{0.1, 0.2}, secret: "test secret, 16+ chars"}, broker)
}

func startDemoCfg(t *testing.T, cfg serveConfig, broker pubsub.Broker) *httptest.Server {
	t.Helper()
	d, err := newDemo(slog.New(slog.DiscardHandler), cfg, broker)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(d.router)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.ws.Shutdown(ctx)
		d.api.Close()
		_ = d.presence.Shutdown(ctx)
		hs.Close()
		d.node.Wait()
	})
	return hs
}

func wsURL(hs *httptest.Server, query string) string {
	return "ws" + strings.TrimPrefix(hs.URL, "http") + "/socket/websocket?vsn=2.0.0&" + query
}

// readUntil reads frames until one has the event, failing after 10 s.
func readUntil(t *testing.T, c *websocket.Conn, event string) []json.RawMessage {
	t.Helper()
	return readUntilAny(t, c, event)
}

// readUntilAny reads frames until one carries any of events.
func readUntilAny(t *testing.T, c *websocket.Conn, events ...string) []json.RawMessage {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %v: %v", events, err)
		}
		var m []json.RawMessage
		if json.Unmarshal(data, &m) != nil || len(m) != 5 {
			continue
		}
		for _, ev := range events {
			if string(m[3]) == strconv.Quote(ev) {
				return m
			}
		}
	}
}

// scrape returns the value of a series in the /metrics output.
func scrape(t *testing.T, hs *httptest.Server, series string) float64 {
	t.Helper()
	res, err := http.Get(hs.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("series %s missing from /metrics", series)
	return 0
}

// joinAndSay connects as ada, joins room:lobby and pushes one new_msg
// (ref "2"); the connection closes when the test ends.
func joinAndSay(t *testing.T, hs *httptest.Server) *websocket.Conn {
	t.Helper()
	c, _, err := websocket.DefaultDialer.Dial(wsURL(hs, "user=ada"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.WriteJSON([]any{"1", "1", "room:lobby", "phx_join", map[string]any{}})
	readUntil(t, c, "phx_reply")
	_ = c.WriteJSON([]any{"1", "2", "room:lobby", "new_msg", map[string]string{"user": "ada", "body": "hi"}})
	return c
}

func TestMetricsMove(t *testing.T) {
	hs := startDemo(t, time.Minute)
	series := []string{`hearth_sockets`, `hearth_connections`, `hearth_connections_accepted_total`, `hearth_joins_total{result="ok"}`, `hearth_messages_in_total`, `hearth_broadcasts_total`, `hearth_deliveries_total`}
	before := map[string]float64{}
	for _, s := range series {
		before[s] = scrape(t, hs, s)
	}
	c := joinAndSay(t, hs)
	readUntil(t, c, "new_msg")
	for _, s := range series {
		if after := scrape(t, hs, s); after <= before[s] {
			t.Errorf("%s did not move: %v -> %v", s, before[s], after)
		}
	}
	for _, s := range []string{`hearth_demo_token_requests_total`, `hearth_connections_shed_total{reason="ip_rate"}`, `hearth_ready`, `hearth_joins_total{result="shed"}`, `hearth_recoveries_total{result="incomplete"}`, `go_goroutines`} {
		scrape(t, hs, s) // present
	}
}

// TestClusterMetricsAndReadiness: in cluster mode /metrics carries the
// broker's series and /readyz reflects the listener.
func TestClusterMetricsAndReadiness(t *testing.T) {
	u, schema := pgtest.Schema(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := postgres.New(ctx, postgres.Options{URL: u, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	hs := startDemoOn(t, time.Minute, b)
	t.Cleanup(func() { _ = b.Close() })
	if res, err := http.Get(hs.URL + "/readyz"); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %v %v", res.Status, err)
	}
	if v := scrape(t, hs, `hearth_pubsub_listener_state{state="healthy"}`); v != 1 {
		t.Fatalf("listener state healthy = %v", v)
	}
	before := scrape(t, hs, "hearth_pubsub_published_total")
	c := joinAndSay(t, hs)
	// Both the broadcast, through Postgres and back, and the push's reply:
	// the listener can deliver the message before the publisher, back from
	// its commit, has counted it; the reply comes after.
	for gotMsg, gotReply := false, false; !gotMsg || !gotReply; {
		m := readUntilAny(t, c, "new_msg", "phx_reply")
		gotMsg = gotMsg || string(m[3]) == `"new_msg"`
		gotReply = gotReply || string(m[3]) == `"phx_reply"` && string(m[1]) == `"2"`
	}
	if after := scrape(t, hs, "hearth_pubsub_published_total"); after <= before {
		t.Fatalf("published did not move: %v -> %v", before, after)
	}
	if v := scrape(t, hs, "hearth_pubsub_batch_size_count"); v < 1 {
		t.Fatalf("batch size histogram count %v", v)
	}
	if v := scrape(t, hs, "hearth_pubsub_publish_seconds_count"); v < 1 {
		t.Fatalf("publish latency histogram count %v", v)
	}
	if v := scrape(t, hs, `hearth_pubsub_publish_seconds_bucket{le="+Inf"}`); v < 1 {
		t.Fatalf("publish latency +Inf bucket %v", v)
	}
	if v := scrape(t, hs, "hearth_pubsub_queue_length"); v != 0 {
		t.Fatalf("queue length %v with nothing to publish", v)
	}
}

// TestDemoSessionFlow: sign in, fetch a token, connect with it, join a
// private topic; sign out; the next refresh revokes the socket with a
// terminal close code.
func TestDemoSessionFlow(t *testing.T) {
	hs := startDemo(t, 2*time.Second)
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	if res, err := hc.Get(hs.URL + "/token"); err != nil || res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token without a session: %v %v", res.StatusCode, err)
	}
	res, err := hc.Post(hs.URL+"/login", "application/json", strings.NewReader(`{"user":"ada"}`))
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("login: %v %v", res.Status, err)
	}
	res, err = hc.Get(hs.URL + "/token")
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("token: %v %v", res.Status, err)
	}
	var tok struct {
		Token     string `json:"token"`
		ExpiresAt int64  `json:"expires_at"`
	}
	body, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(body, &tok); err != nil || tok.Token == "" || tok.ExpiresAt <= time.Now().Unix() {
		t.Fatalf("token response %s", body)
	}

	// Anonymous sockets are refused private topics; the token opens them.
	anon, _, err := websocket.DefaultDialer.Dial(wsURL(hs, ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	_ = anon.WriteJSON([]any{"1", "1", "private:ada", "phx_join", map[string]any{}})
	if m := readUntil(t, anon, "phx_reply"); !strings.Contains(string(m[4]), `"unauthorized"`) {
		t.Fatalf("anonymous private join: %s", m[4])
	}
	c, _, err := websocket.DefaultDialer.Dial(wsURL(hs, "token="+tok.Token), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.WriteJSON([]any{"1", "1", "private:ada", "phx_join", map[string]any{}})
	if m := readUntil(t, c, "phx_reply"); !strings.Contains(string(m[4]), `"status":"ok"`) {
		t.Fatalf("private join with a token: %s", m[4])
	}
	// Per-user authorization: signed in as ada, another user's private
	// topic is refused, and so is one that only starts like ada's.
	for i, topic := range []string{"private:bob", "private:ada2", "private:", "private:ada:x"} {
		ref := strconv.Itoa(i + 2)
		_ = c.WriteJSON([]any{ref, ref, topic, "phx_join", map[string]any{}})
		if m := readUntil(t, c, "phx_reply"); !strings.Contains(string(m[4]), `"status":"error"`) || !strings.Contains(string(m[4]), `"reason":"unauthorized"`) {
			t.Fatalf("ada joining %s: %s", topic, m[4])
		}
	}
	// A refresh arrives while the session lives ...
	if m := readUntil(t, c, "token"); string(m[2]) != `"phoenix"` {
		t.Fatalf("token refresh on topic %s", m[2])
	}
	// ... and after logout the next one revokes the socket.
	if res, err := hc.Post(hs.URL+"/logout", "", nil); err != nil || res.StatusCode != http.StatusNoContent {
		t.Fatalf("logout: %v", err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		_, _, err := c.ReadMessage()
		if err == nil {
			continue
		}
		ce, ok := err.(*websocket.CloseError)
		if !ok || ce.Code != channels.CloseRevoked || !channels.Terminal(ce.Code) {
			t.Fatalf("after logout: %v, want close %d", err, channels.CloseRevoked)
		}
		break
	}
	if res, _ := hc.Get(hs.URL + "/token"); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token after logout: %s", res.Status)
	}
	// The token of the ended session, still valid, no longer connects: a
	// client that reads no close codes gets 403 before the upgrade.
	if _, res, err := websocket.DefaultDialer.Dial(wsURL(hs, "token="+tok.Token), nil); err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("the revoked session's token: %v, want HTTP 403", err)
	}
	// An expired token at connect gets the terminal answer, not a retry
	// loop: 403 before the upgrade, or, for a Hearth client (_hearth=1),
	// an upgrade and close 4502.
	expired, _, _ := newDemoAuth([]byte("test secret, 16+ chars"), time.Minute, [2]float64{0.5, 0.9}).keys.Issue("ada", "s", -time.Minute)
	if _, res, err := websocket.DefaultDialer.Dial(wsURL(hs, "token="+expired), nil); err == nil || res == nil || res.StatusCode != http.StatusForbidden {
		t.Fatalf("expired token: %v, want HTTP 403", err)
	}
	c2, _, err := websocket.DefaultDialer.Dial(wsURL(hs, "token="+expired+"&_hearth=1"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	_ = c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, _, err = c2.ReadMessage()
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != channels.CloseTokenExpired {
		t.Fatalf("expired token: %v, want close %d", err, channels.CloseTokenExpired)
	}
}

// TestClusterWithoutSecretWarns: a cluster-mode node without --secret says
// loudly that other hosts will refuse its tokens; with one it does not.
func TestClusterWithoutSecretWarns(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir()) // where the node keeps its own secret
	for _, tc := range []struct {
		secret string
		warn   bool
	}{{"", true}, {"a shared secret, 16+ chars", false}} {
		var logs bytes.Buffer
		cfg := serveConfig{dbURL: "postgres://unused", secret: tc.secret, tokenTTL: time.Minute, window: [2]float64{0.5, 0.9}}
		d, err := newDemo(slog.New(slog.NewTextHandler(&logs, nil)), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(logs.String(), "CLUSTER MODE WITHOUT A SHARED SECRET"); got != tc.warn {
			t.Errorf("secret %q: warned %v, want %v:\n%s", tc.secret, got, tc.warn, logs.String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = d.ws.Shutdown(ctx)
		_ = d.presence.Shutdown(ctx)
		cancel()
		d.node.Wait()
	}
}

// TestTokenCommand: hearth token mints a token that the demo (same secret)
// accepts as that user's: private:<user> opens, another user's does not.
func TestTokenCommand(t *testing.T) {
	hs := startDemo(t, time.Minute) // secret "test secret, 16+ chars"
	var out, info bytes.Buffer
	if err := runToken([]string{"ada", "--secret", "test secret, 16+ chars", "--ttl", "5m"}, &out, &info); err != nil {
		t.Fatal(err)
	}
	tok := strings.TrimSpace(out.String())
	if tok == "" || strings.Contains(tok, "\n") || !strings.Contains(info.String(), "token for ada, valid until") {
		t.Fatalf("stdout %q, stderr %q", out.String(), info.String())
	}
	c, _, err := websocket.DefaultDialer.Dial(wsURL(hs, "token="+tok), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.WriteJSON([]any{"1", "1", "private:ada", "phx_join", map[string]any{}})
	if m := readUntil(t, c, "phx_reply"); !strings.Contains(string(m[4]), `"status":"ok"`) {
		t.Fatalf("private:ada with hearth token's token: %s", m[4])
	}
	_ = c.WriteJSON([]any{"2", "2", "private:bob", "phx_join", map[string]any{}})
	if m := readUntil(t, c, "phx_reply"); !strings.Contains(string(m[4]), `"unauthorized"`) {
		t.Fatalf("private:bob with ada's token: %s", m[4])
	}
	for _, args := range [][]string{{}, {"", "--secret", "test secret, 16+ chars"}, {"ada", "--secret", "short"}, {"ada", "--ttl", "0s"}} {
		if err := runToken(args, io.Discard, io.Discard); err == nil {
			t.Errorf("hearth token %q succeeded", args)
		}
	}
}
