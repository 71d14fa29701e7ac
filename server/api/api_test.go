package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/channeltest"
	"github.com/hearth-rt/hearth/channels/presence"
	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
	"github.com/hearth-rt/hearth/pubsub/postgres"
	"github.com/hearth-rt/hearth/server"
	"github.com/hearth-rt/hearth/server/api"
)

func TestMain(m *testing.M) {
	code := m.Run()
	pgtest.Shutdown()
	if code == 0 {
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck")); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

const testKey = "test-key-1234"

// app is one node of a test cluster: room:* open to everyone, sockets
// identified by ?user=, presence tracked by user, the API at /api.
type app struct {
	name string
	node *channels.Node
	pres *presence.Presence
	api  *api.API
	ws   *server.Server
	http *httptest.Server
}

func startApp(t *testing.T, broker pubsub.Broker, name string, opts api.Options) *app {
	t.Helper()
	n := channels.New(channels.Options{
		Broker: broker,
		NodeID: name,
		Connect: func(_ context.Context, ev channels.ConnectEvent) (channels.ConnectReply, error) {
			return channels.ConnectReply{ID: ev.Params.Get("user")}, nil
		},
		JoinRatePerIP: -1,
	})
	a := &app{name: name, node: n, pres: presence.New(n, presence.Options{HeartbeatInterval: 200 * time.Millisecond})}
	n.Handle("room:*", channels.Handler{
		Join: func(_ context.Context, c *channels.Channel, _ channels.JoinEvent) (channels.JoinReply, error) {
			if id := c.Socket().ID(); id != "" {
				return channels.JoinReply{}, a.pres.Track(c, id, map[string]any{"node": name})
			}
			return channels.JoinReply{}, nil
		},
	})
	opts.Node, opts.Presence = n, a.pres
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 200 * time.Millisecond
	}
	a.api = api.New(opts)
	a.ws = server.New(n, server.Options{})
	mux := http.NewServeMux()
	mux.Handle("/socket/websocket", a.ws)
	mux.Handle("/api/", a.api)
	mux.Handle("/dashboard/", a.api.Dashboard())
	a.http = httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = a.ws.Shutdown(ctx)
		a.http.Close()
		a.api.Close()
		_ = a.pres.Shutdown(ctx)
		_ = broker.Close()
	})
	return a
}

// cluster starts two nodes on one PostgreSQL schema.
func cluster(t *testing.T) (*app, *app) {
	t.Helper()
	u, schema := pgtest.Schema(t)
	mk := func(name string) pubsub.Broker {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b, err := postgres.New(ctx, postgres.Options{URL: u, Schema: schema, Name: name})
		if err != nil {
			t.Fatalf("broker %s: %v", name, err)
		}
		return b
	}
	return startApp(t, mk("a"), "a", api.Options{Keys: []string{testKey}}),
		startApp(t, mk("b"), "b", api.Options{Keys: []string{testKey}})
}

func (a *app) dial(t *testing.T, user string) *channeltest.Client {
	t.Helper()
	return channeltest.Dial(t, channeltest.SocketURL(a.http.URL), url.Values{"user": {user}})
}

// call makes an API request with the test key and decodes the answer.
func (a *app) call(t *testing.T, method, path, body string, out any) int {
	t.Helper()
	return a.callWith(t, method, path, body, "Bearer "+testKey, out)
}

func (a *app) callWith(t *testing.T, method, path, body, auth string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, a.http.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("%s %s: Content-Type %q, body %s", method, path, ct, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: answer %s: %v", method, path, b, err)
		}
	}
	return res.StatusCode
}

// eventually polls cond until it holds, failing after a generous deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type errBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func TestCluster(t *testing.T) {
	a, b := cluster(t)

	t.Run("publish on A reaches a subscriber on B", func(t *testing.T) {
		c := b.dial(t, "")
		if r := c.Join("room:lobby", nil); r.Status != "ok" {
			t.Fatalf("join: %s %s", r.Status, r.Response)
		}
		var pub api.Published
		if st := a.call(t, "POST", "/api/publish", `{"topic":"room:lobby","event":"new_msg","payload":{"body":"hi"}}`, &pub); st != 200 {
			t.Fatalf("publish: %d", st)
		}
		if pub.Topic != "room:lobby" || pub.Epoch == "" || pub.Offset == 0 {
			t.Fatalf("publish answered %+v", pub)
		}
		m := c.Expect("room:lobby", "new_msg")
		var p struct{ Body string }
		m.Decode(t, &p)
		if p.Body != "hi" {
			t.Fatalf("payload %s", m.Payload)
		}

		var batch struct{ Results []api.BatchResult }
		body := `{"messages":[{"topic":"room:lobby","event":"n","payload":1},{"topic":"room:lobby","event":"n","payload":2},{"topic":"room:lobby","event":"n","payload":3}]}`
		if st := a.call(t, "POST", "/api/publish/batch", body, &batch); st != 200 {
			t.Fatalf("batch: %d %+v", st, batch)
		}
		if len(batch.Results) != 3 {
			t.Fatalf("batch results %+v", batch.Results)
		}
		for i, r := range batch.Results {
			if r.Error != nil || r.Offset != pub.Offset+uint64(i)+1 || r.Epoch != pub.Epoch {
				t.Fatalf("batch result %d: %+v (first publish at %d)", i, r, pub.Offset)
			}
		}
		for i := 1; i <= 3; i++ {
			if m := c.Expect("room:lobby", "n"); string(m.Payload) != string(rune('0'+i)) {
				t.Fatalf("batch message %d: %s", i, m.Payload)
			}
		}

		// History, asked on B, holds them with their offsets.
		var h struct {
			Epoch    string
			Top      uint64
			Complete bool
			Messages []api.HistoryMessage
		}
		if st := b.call(t, "GET", "/api/history?topic=room:lobby&since="+itoa(pub.Offset), "", &h); st != 200 {
			t.Fatalf("history: %d", st)
		}
		if !h.Complete || h.Epoch != pub.Epoch || h.Top != pub.Offset+3 || len(h.Messages) != 3 || h.Messages[0].Offset != pub.Offset+1 || string(h.Messages[2].Payload) != "3" {
			t.Fatalf("history %+v", h)
		}
		if st := b.call(t, "GET", "/api/history?topic=room:lobby&since="+pub.Epoch+":"+itoa(pub.Offset+2)+"&limit=10", "", &h); st != 200 || len(h.Messages) != 1 || h.Messages[0].Event != "n" {
			t.Fatalf("history since epoch:offset: %d %+v", st, h)
		}
	})

	t.Run("disconnect on B closes a socket on A", func(t *testing.T) {
		victim := a.dial(t, "mallory")
		other := a.dial(t, "alice")
		victim.Join("room:x", nil)
		other.Join("room:x", nil)
		var out map[string]any
		if st := b.call(t, "POST", "/api/disconnect", `{"user":"mallory"}`, &out); st != 200 {
			t.Fatalf("disconnect: %d %v", st, out)
		}
		code, reason := victim.ExpectClose()
		if code != channels.CloseRevoked || !channels.Terminal(code) || reason == "" {
			t.Fatalf("closed with %d %q, want the terminal %d", code, reason, channels.CloseRevoked)
		}
		if r := other.Join("room:y", nil); r.Status != "ok" {
			t.Fatalf("another user's socket was affected: %s", r.Status)
		}
	})

	t.Run("unsubscribe on A closes a channel on B", func(t *testing.T) {
		c := b.dial(t, "bob")
		c.Join("room:u", nil)
		c.Join("room:v", nil)
		if st := a.call(t, "POST", "/api/unsubscribe", `{"user":"bob","topic":"room:u"}`, nil); st != 200 {
			t.Fatalf("unsubscribe: %d", st)
		}
		c.Expect("room:u", "phx_close")
		// The socket and its other channel stay.
		if st := a.call(t, "POST", "/api/publish", `{"topic":"room:v","event":"still","payload":{}}`, nil); st != 200 {
			t.Fatal(st)
		}
		c.Expect("room:v", "still")
	})

	t.Run("presence, topics, sockets and nodes span the cluster", func(t *testing.T) {
		ca := a.dial(t, "carol")
		cb := b.dial(t, "dave")
		ca.Join("room:p", nil)
		cb.Join("room:p", nil)
		eventually(t, "both presences seen from B", func() bool {
			var out struct{ Presences map[string]json.RawMessage }
			b.call(t, "GET", "/api/presence?topic=room:p", "", &out)
			return out.Presences["carol"] != nil && out.Presences["dave"] != nil
		})
		eventually(t, "both presences counted on A", func() bool {
			var cnt struct{ Keys, Metas int }
			st := a.call(t, "GET", "/api/presence/count?topic=room:p", "", &cnt)
			return st == 200 && cnt.Keys == 2 && cnt.Metas == 2
		})
		eventually(t, "both nodes listed", func() bool {
			var out struct{ Nodes []api.NodeInfo }
			a.call(t, "GET", "/api/nodes", "", &out)
			return len(out.Nodes) == 2 && out.Nodes[0].Node == "a" && out.Nodes[1].Node == "b" &&
				out.Nodes[0].State == "ready" && out.Nodes[1].State == "ready" && out.Nodes[1].Sockets >= 1 && out.Nodes[1].Version != ""
		})
		var tops struct {
			Topics       []api.TopicInfo
			MissingNodes []string `json:"missing_nodes"`
		}
		if st := a.call(t, "GET", "/api/topics", "", &tops); st != 200 || len(tops.MissingNodes) != 0 {
			t.Fatalf("topics: %d %+v", st, tops)
		}
		found := false
		for _, ti := range tops.Topics {
			if ti.Topic == "room:p" {
				found = ti.Subscribers == 2 && ti.Nodes["a"] == 1 && ti.Nodes["b"] == 1
			}
		}
		if !found {
			t.Fatalf("room:p not counted per node: %+v", tops.Topics)
		}
		var socks struct{ Sockets []api.SocketEntry }
		if st := b.call(t, "GET", "/api/sockets?user=carol", "", &socks); st != 200 || len(socks.Sockets) != 1 ||
			socks.Sockets[0].Node != "a" || socks.Sockets[0].ID != "carol" || strings.Join(socks.Sockets[0].Topics, ",") != "room:p" {
			t.Fatalf("sockets of carol: %+v", socks)
		}
		if st := a.call(t, "GET", "/api/sockets?topic=room:p", "", &socks); st != 200 || len(socks.Sockets) != 2 {
			t.Fatalf("sockets of room:p: %+v", socks)
		}
	})

	t.Run("bad input gets its 4xx", func(t *testing.T) {
		big := `{"topic":"room:a","event":"e","payload":"` + strings.Repeat("x", 70<<10) + `"}`
		huge := `{"topic":"room:a","event":"e","payload":"` + strings.Repeat("x", 2<<20) + `"}`
		for _, tc := range []struct {
			name, method, path, body, auth string
			status                         int
			code                           string
		}{
			{"no key", "POST", "/api/publish", `{}`, "-", 401, "unauthorized"},
			{"wrong key", "POST", "/api/publish", `{}`, "Bearer nope", 401, "unauthorized"},
			{"not bearer", "GET", "/api/nodes", ``, "Basic " + testKey, 401, "unauthorized"},
			{"bad json", "POST", "/api/publish", `{"topic":`, "", 400, "bad_json"},
			{"unknown field", "POST", "/api/publish", `{"topic":"room:a","event":"e","body":1}`, "", 400, "bad_json"},
			{"two values", "POST", "/api/publish", `{"topic":"room:a","event":"e"}{}`, "", 400, "bad_json"},
			{"missing topic", "POST", "/api/publish", `{"event":"e"}`, "", 400, "missing_topic"},
			{"long topic", "POST", "/api/publish", `{"topic":"room:` + strings.Repeat("a", 300) + `","event":"e"}`, "", 400, "invalid_topic"},
			{"unknown topic", "POST", "/api/publish", `{"topic":"nowhere:1","event":"e"}`, "", 404, "unknown_topic"},
			{"no event", "POST", "/api/publish", `{"topic":"room:a"}`, "", 400, "invalid_event"},
			{"reserved event", "POST", "/api/publish", `{"topic":"room:a","event":"phx_close"}`, "", 400, "invalid_event"},
			{"oversize payload", "POST", "/api/publish", big, "", 413, "payload_too_large"},
			{"oversize body", "POST", "/api/publish", huge, "", 413, "body_too_large"},
			{"empty batch", "POST", "/api/publish/batch", `{"messages":[]}`, "", 400, "empty_batch"},
			{"bad message in batch", "POST", "/api/publish/batch", `{"messages":[{"topic":"room:a","event":"e"},{"topic":"x:1","event":"e"}]}`, "", 404, "unknown_topic"},
			{"presence without topic", "GET", "/api/presence", ``, "", 400, "missing_topic"},
			{"presence of unknown topic", "GET", "/api/presence/count?topic=zzz", ``, "", 404, "unknown_topic"},
			{"history bad since", "GET", "/api/history?topic=room:a&since=x", ``, "", 400, "invalid_since"},
			{"history bad limit", "GET", "/api/history?topic=room:a&limit=0", ``, "", 400, "invalid_limit"},
			{"disconnect without user", "POST", "/api/disconnect", `{}`, "", 400, "missing_user"},
			{"unsubscribe unknown topic", "POST", "/api/unsubscribe", `{"user":"u","topic":"nope"}`, "", 404, "unknown_topic"},
			{"sockets without query", "GET", "/api/sockets", ``, "", 400, "missing_query"},
			{"wrong method", "GET", "/api/publish", ``, "", 405, "method_not_allowed"},
			{"unknown call", "GET", "/api/nope", ``, "", 404, "not_found"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				auth := "Bearer " + testKey
				switch tc.auth {
				case "-":
					auth = ""
				case "":
				default:
					auth = tc.auth
				}
				var e errBody
				st := a.callWith(t, tc.method, tc.path, tc.body, auth, &e)
				if st != tc.status || e.Error.Code != tc.code || e.Error.Message == "" {
					t.Fatalf("got %d %+v, want %d %s", st, e.Error, tc.status, tc.code)
				}
			})
		}
	})
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// TestOffWithoutKey: no key configured means the API is off, not open.
func TestOffWithoutKey(t *testing.T) {
	a := startApp(t, pubsub.NewMemory(pubsub.MemoryOptions{}), "solo", api.Options{})
	var e errBody
	if st := a.callWith(t, "POST", "/api/publish", `{"topic":"room:a","event":"e"}`, "", &e); st != 404 || e.Error.Code != "api_disabled" {
		t.Fatalf("got %d %+v", st, e)
	}
	if st := a.callWith(t, "GET", "/api/nodes", ``, "Bearer anything", &e); st != 404 || e.Error.Code != "api_disabled" {
		t.Fatalf("got %d %+v", st, e)
	}
	// Nor can the dashboard channel be joined.
	c := a.dial(t, "")
	if r := c.Join(api.DashboardTopic, map[string]string{"key": ""}); r.Status != "error" {
		t.Fatalf("dashboard join without key: %s", r.Status)
	}
}

// TestRateLimit: over the key's rate, 429 with Retry-After.
func TestRateLimit(t *testing.T) {
	a := startApp(t, pubsub.NewMemory(pubsub.MemoryOptions{}), "solo", api.Options{Keys: []string{testKey}, Rate: 0.001, Burst: 3})
	codes := map[int]int{}
	for range 6 {
		codes[a.call(t, "GET", "/api/nodes", "", nil)]++
	}
	if codes[200] != 3 || codes[429] != 3 {
		t.Fatalf("statuses %v: want 3 OK then 429", codes)
	}
}

// TestDashboardChannel: the key opens the channel, which pushes the
// cluster's state; a wrong key is refused.
func TestDashboardChannel(t *testing.T) {
	a := startApp(t, pubsub.NewMemory(pubsub.MemoryOptions{}), "solo", api.Options{Keys: []string{"other", testKey}})
	c := a.dial(t, "")
	if r := c.Join(api.DashboardTopic, map[string]string{"key": "wrong"}); r.Status != "error" || r.Reason() != "unauthorized" {
		t.Fatalf("wrong key: %s %s", r.Status, r.Response)
	}
	if r := c.Join(api.DashboardTopic, map[string]string{"key": testKey}); r.Status != "ok" {
		t.Fatalf("right key: %s %s", r.Status, r.Response)
	}
	m := c.Expect(api.DashboardTopic, "state")
	var st struct {
		Node  string
		Nodes []api.NodeInfo
	}
	m.Decode(t, &st)
	if st.Node != "solo" || len(st.Nodes) != 1 || st.Nodes[0].Sockets != 1 {
		t.Fatalf("state %s", m.Payload)
	}
	// The page and its script are served.
	for _, p := range []string{"/dashboard/", "/dashboard/dashboard.js"} {
		res, err := http.Get(a.http.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || len(b) < 1000 {
			t.Fatalf("%s: %d, %d bytes", p, res.StatusCode, len(b))
		}
	}
}

// TestOpenAPIMatchesRoutes: every call the handler serves is in the
// OpenAPI document with its method, and nothing else is; docs/api.md shows
// each with curl.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	a := startApp(t, pubsub.NewMemory(pubsub.MemoryOptions{}), "solo", api.Options{Keys: []string{testKey}})
	var doc struct {
		Paths map[string]map[string]json.RawMessage
	}
	if st := a.call(t, "GET", "/api/openapi.json", "", &doc); st != 200 || len(doc.Paths) < 10 {
		t.Fatalf("openapi: %d, %d paths", st, len(doc.Paths))
	}
	md, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	other := map[string]string{"get": "POST", "post": "GET"}
	for p, ops := range doc.Paths {
		for m := range ops {
			method := strings.ToUpper(m)
			// The real route answers the documented method (anything but
			// 404/405), and the other method with 405.
			var e errBody
			st := a.call(t, method, "/api"+p, "", &e)
			if st == 404 && e.Error.Code == "not_found" || st == 405 {
				t.Errorf("%s %s: documented but answered %d %+v", method, p, st, e.Error)
			}
			if p != "/openapi.json" {
				if st := a.call(t, other[m], "/api"+p, "", &e); st != 405 {
					t.Errorf("%s %s: want 405, got %d", other[m], p, st)
				}
				if !bytes.Contains(md, []byte("/api"+p)) {
					t.Errorf("docs/api.md has no curl for %s", p)
				}
			}
		}
	}
	for _, p := range api.Routes(a.api) {
		if doc.Paths[p] == nil {
			t.Errorf("%s is served but not in openapi.json", p)
		}
	}
}

// TestHeartbeatFastOnlyWhileWatched: with a long heartbeat interval the
// nodes stay quiet; once a dashboard joins on A, B heartbeats every second
// (A sees B's new socket).
func TestHeartbeatFastOnlyWhileWatched(t *testing.T) {
	u, schema := pgtest.Schema(t)
	mk := func(name string) *app {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		br, err := postgres.New(ctx, postgres.Options{URL: u, Schema: schema, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		return startApp(t, br, name, api.Options{Keys: []string{testKey}, HeartbeatInterval: time.Hour})
	}
	a, b := mk("a"), mk("b")
	nodeB := func() (api.NodeInfo, bool) {
		var out struct{ Nodes []api.NodeInfo }
		a.call(t, "GET", "/api/nodes", "", &out)
		for _, n := range out.Nodes {
			if n.Node == "b" {
				return n, true
			}
		}
		return api.NodeInfo{}, false
	}
	// Both beat once at start; b may have started before a listened, so
	// a may not know b at all yet: that is the quiet state.
	b.dial(t, "quiet")
	time.Sleep(1500 * time.Millisecond) // a negative check: no heartbeat within the hour-long interval
	if n, ok := nodeB(); ok && n.Sockets != 0 {
		t.Fatalf("b heartbeated while nobody watched: %+v", n)
	}
	dash := a.dial(t, "")
	if r := dash.Join(api.DashboardTopic, map[string]string{"key": testKey}); r.Status != "ok" {
		t.Fatalf("dashboard join: %s", r.Status)
	}
	eventually(t, "b's socket seen on a while the dashboard is open", func() bool {
		n, ok := nodeB()
		return ok && n.Sockets == 1
	})
}

// TestLimits: a batch over MaxBatch, a body that is not JSON, and a broker
// that is gone each get their status and code, never a 500.
func TestLimits(t *testing.T) {
	br := pubsub.NewMemory(pubsub.MemoryOptions{})
	a := startApp(t, br, "solo", api.Options{Keys: []string{testKey}, MaxBatch: 2})
	var e errBody
	batch := `{"messages":[{"topic":"room:a","event":"e"},{"topic":"room:a","event":"e"},{"topic":"room:a","event":"e"}]}`
	if st := a.call(t, "POST", "/api/publish/batch", batch, &e); st != 413 || e.Error.Code != "batch_too_large" {
		t.Fatalf("batch of 3: %d %+v", st, e)
	}
	req, _ := http.NewRequest("POST", a.http.URL+"/api/publish", strings.NewReader(`<xml/>`))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/xml")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 415 {
		t.Fatalf("XML body: %d, want 415", res.StatusCode)
	}
	_ = br.Close()
	if st := a.call(t, "POST", "/api/publish", `{"topic":"room:a","event":"e"}`, &e); st != 503 || e.Error.Code != "unavailable" {
		t.Fatalf("publish with the broker closed: %d %+v", st, e)
	}
	var out struct{ Results []api.BatchResult }
	if st := a.call(t, "POST", "/api/publish/batch", `{"messages":[{"topic":"room:a","event":"e"}]}`, &out); st != 503 || len(out.Results) != 1 || out.Results[0].Error == nil || out.Results[0].Offset != 0 {
		t.Fatalf("batch with the broker closed: %d %+v", st, out)
	}
}

// TestAppAuth: the app's own authentication replaces the keys, for the
// calls, the page and the dashboard channel.
func TestAppAuth(t *testing.T) {
	a := startApp(t, pubsub.NewMemory(pubsub.MemoryOptions{}), "solo", api.Options{
		Authorize: func(r *http.Request) bool { return r.Header.Get("X-User") == "admin" },
		AuthorizeDashboard: func(c *channels.Channel, _ channels.JoinEvent) bool {
			return c.Socket().ID() == "admin"
		},
	})
	var e errBody
	if st := a.callWith(t, "GET", "/api/nodes", "", "Bearer "+testKey, &e); st != 401 || e.Error.Code != "unauthorized" {
		t.Fatalf("a key instead of the app's auth: %d %+v", st, e)
	}
	for _, tc := range []struct {
		user string
		want int
	}{{"", 401}, {"eve", 401}, {"admin", 200}} {
		for _, p := range []string{"/api/nodes", "/dashboard/"} {
			req, _ := http.NewRequest("GET", a.http.URL+p, nil)
			if tc.user != "" {
				req.Header.Set("X-User", tc.user)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tc.want {
				t.Fatalf("%s as %q: %d, want %d", p, tc.user, res.StatusCode, tc.want)
			}
			if p == "/dashboard/" && tc.want == 200 && !strings.Contains(string(b), `data-auth="app"`) {
				t.Fatal("the page does not know the app authenticates")
			}
		}
	}
	if r := a.dial(t, "eve").Join(api.DashboardTopic, nil); r.Status != "error" {
		t.Fatalf("eve joined the dashboard: %s", r.Status)
	}
	if r := a.dial(t, "admin").Join(api.DashboardTopic, nil); r.Status != "ok" {
		t.Fatalf("admin could not join the dashboard: %s %s", r.Status, r.Response)
	}
}
