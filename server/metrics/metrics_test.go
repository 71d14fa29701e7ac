package metrics_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/channeltest"
	"github.com/hearth-rt/hearth/pubsub"
	"github.com/hearth-rt/hearth/server"
	"github.com/hearth-rt/hearth/server/metrics"
)

// brokerWithCollector is an in-process broker that also exports a metric,
// as the Postgres broker does.
type brokerWithCollector struct {
	*pubsub.Memory
	published prometheus.Counter
}

func (b brokerWithCollector) Collector() prometheus.Collector { return b.published }

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d", rec.Code)
	}
	body, _ := io.ReadAll(rec.Body)
	return string(body)
}

func TestHandler(t *testing.T) {
	published := prometheus.NewCounter(prometheus.CounterOpts{Name: "test_broker_published_total", Help: "Test."})
	published.Add(3)
	broker := brokerWithCollector{pubsub.NewMemory(pubsub.MemoryOptions{}), published}
	srv := channeltest.NewServer(t, channels.Options{Broker: broker}, func(n *channels.Node) {
		n.Handle("room:*", channels.Handler{Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
			return channels.JoinReply{}, nil
		}})
	})
	ada := channeltest.Dial(t, srv.URL, url.Values{})
	if r := ada.Join("room:1", nil); r.Status != "ok" {
		t.Fatalf("join: %s %s", r.Status, r.Response)
	}
	if err := srv.Node.Broadcast(context.Background(), "room:1", "e", nil); err != nil {
		t.Fatal(err)
	}
	ada.Expect("room:1", "e")

	// The node counts a delivery after queueing the frame, so the client
	// may hold it a moment before the counter moves: scrape until it has.
	h := metrics.Handler(srv.Node, srv.WS)
	body := scrape(t, h)
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(body, "hearth_deliveries_total 1\n") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		body = scrape(t, h)
	}
	for _, want := range []string{
		"hearth_sockets 1\n",
		"hearth_channels 1\n",
		`hearth_joins_total{result="ok"} 1` + "\n",
		"hearth_deliveries_total 1\n",
		"hearth_upgrades_total 1\n",
		"hearth_connects_refused_http_total 0\n",
		"test_broker_published_total 3\n", // the broker's own collector
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}

	// A broker without a collector, and no server.
	plain := channels.New(channels.Options{})
	defer plain.Broker().Close()
	if body := scrape(t, metrics.Handler(plain, nil)); !strings.Contains(body, "hearth_sockets 0\n") || strings.Contains(body, "test_broker") {
		t.Errorf("metrics of a plain node:\n%s", body)
	}
}

// TestLongPollSessionsCounted: a long-poll session is a connection in
// hearth_connections, and counted on its own in hearth_longpoll_sessions.
func TestLongPollSessionsCounted(t *testing.T) {
	srv := channeltest.NewServer(t, channels.Options{}, nil)
	lp := server.NewLongPoll(srv.WS, server.LongPollOptions{})
	hs := httptest.NewServer(lp)
	defer hs.Close()
	channeltest.Dial(t, srv.URL, url.Values{})
	resp, err := http.Get(hs.URL + "?vsn=2.0.0")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"status":410`) {
		t.Fatalf("open: %s", b)
	}
	// The WebSocket client's dial returns on the 101, which the server
	// writes just before it registers the connection: scrape until both
	// count, or fail with what the last scrape said.
	wants := []string{"hearth_connections 2\n", "hearth_longpoll_sessions 1\n", "hearth_sockets 2\n"}
	var body string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		body = scrape(t, metrics.Handler(srv.Node, srv.WS))
		missing := false
		for _, want := range wants {
			missing = missing || !strings.Contains(body, want)
		}
		if !missing || time.Now().After(deadline) {
			break
		}
	}
	for _, want := range wants {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}
