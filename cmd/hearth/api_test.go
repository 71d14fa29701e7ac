package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub/postgres"
)

// TestServeAPICurl: the exact curl, against two demo nodes on
// PostgreSQL started with an API key, reaches a subscriber of the other
// node; without the key it gets 401, and without --api-key the API is off.
func TestServeAPICurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatal("curl is needed for this test: apt-get install curl")
	}
	u, schema := pgtest.Schema(t)
	const key = "s3cret-api-key"
	start := func(name string) *httptest.Server {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b, err := postgres.New(ctx, postgres.Options{URL: u, Schema: schema, Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		cfg := serveConfig{tokenTTL: time.Minute, window: [2]float64{0.1, 0.2}, secret: "test secret, 16+ chars", nodeName: name, apiKeys: repeatFlag{key}}
		return startDemoCfg(t, cfg, b)
	}
	a, b := start("a"), start("b")

	sub := joinAndSay(t, b)
	readUntil(t, sub, "new_msg") // its own message: subscribed

	run := func(args ...string) string {
		out, err := exec.Command(curl, append([]string{"-s", "-w", "\n%{http_code}"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := run("-H", "Authorization: Bearer "+key, "-d", `{"topic":"room:lobby","event":"new_msg","payload":{"body":"hi"}}`, a.URL+"/api/publish")
	if !strings.HasSuffix(out, "\n200") || !strings.Contains(out, `"offset":`) {
		t.Fatalf("publish: %s", out)
	}
	m := readUntil(t, sub, "new_msg")
	if !strings.Contains(string(m[4]), `"body":"hi"`) {
		t.Fatalf("subscriber on b got %s", m[4])
	}
	out = run("-d", `{"topic":"room:lobby","event":"new_msg","payload":{"body":"hi"}}`, a.URL+"/api/publish")
	if !strings.HasSuffix(out, "\n401") || !strings.Contains(out, `"unauthorized"`) {
		t.Fatalf("without the key: %s", out)
	}

	off := startDemo(t, time.Minute)
	res, err := http.Post(off.URL+"/api/publish", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound {
		t.Fatalf("API without --api-key: %d, want 404", res.StatusCode)
	}
}
