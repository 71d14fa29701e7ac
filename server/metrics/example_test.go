package metrics_test

import (
	"net/http"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/server"
	"github.com/hearth-rt/hearth/server/metrics"
)

func ExampleHandler() {
	node := channels.New(channels.Options{}) // with a postgres.Broker, its hearth_pubsub_* too
	srv := server.New(node, server.Options{})

	mux := http.NewServeMux()
	mux.Handle("/socket/websocket", srv)
	mux.Handle("/metrics", metrics.Handler(node, srv)) // Prometheus scrapes this
	_ = http.ListenAndServe("127.0.0.1:4000", mux)
}
