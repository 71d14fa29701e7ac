package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/server/api"
)

// BenchmarkPublish: one POST /api/publish through the handler (key check,
// rate limit off, JSON decoding, validation, the in-process broker and the
// fan-out to no local subscriber), without the network.
func BenchmarkPublish(b *testing.B) {
	node := channels.New(channels.Options{})
	node.Handle("room:*", channels.Handler{Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
		return channels.JoinReply{}, nil
	}})
	a := api.New(api.Options{Node: node, Keys: []string{"k"}, Rate: -1})
	defer a.Close()
	defer node.Broker().Close()
	body := `{"topic":"room:lobby","event":"new_msg","payload":{"body":"hello, world"}}`
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/api/publish", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer k")
		w := httptest.NewRecorder()
		a.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}
