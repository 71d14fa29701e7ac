package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hearth-rt/hearth/server/metrics"
)

// metricsHandler serves the node's metrics, the Go runtime's and the demo
// token service's, in the Prometheus text format.
func (d *demo) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		metrics.New(d.node, d.ws),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "hearth_demo_token_requests_total",
			Help: "Requests to the demo's token service (GET /token).",
		}, func() float64 { return float64(d.auth.tokenCalls.Load()) }),
	)
	if d.extraMetrics != nil {
		reg.MustRegister(d.extraMetrics)
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}
