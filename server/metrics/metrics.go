// Package metrics exports Hearth's counters to Prometheus
// (github.com/prometheus/client_golang).
//
// The core packages keep plain atomic counters ([channels.Node.Stats],
// [server.Server.Stats]); this package reads them at scrape time, so the
// hot path pays nothing for metrics. [Handler] serves them with the
// broker's and the Go runtime's:
//
//	r.Handle("/metrics", metrics.Handler(node, srv))
//
// or register the collector in a registry of your own:
//
//	reg.MustRegister(metrics.New(node, srv))
//	reg.MustRegister(postgresBroker.Collector()) // cluster mode
//
// Hearth's metric names start with "hearth_".
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/server"
)

// Collector is a prometheus.Collector for a node and its server.
type Collector struct {
	node *channels.Node
	srv  *server.Server
}

// New returns a collector for node and srv; either may be nil.
func New(node *channels.Node, srv *server.Server) *Collector {
	return &Collector{node: node, srv: srv}
}

// Handler serves, in the Prometheus text format, the metrics of node and
// srv ([New]), those of the node's broker when it has a Collector method (the
// Postgres broker does: hearth_pubsub_*), and the Go runtime's and the
// process's.
func Handler(node *channels.Node, srv *server.Server) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(New(node, srv),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if node != nil {
		if b, ok := node.Broker().(interface{ Collector() prometheus.Collector }); ok {
			reg.MustRegister(b.Collector())
		}
	}
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

type metric struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
}

func gauge(name, help string, labels ...string) metric {
	return metric{prometheus.NewDesc("hearth_"+name, help, labels, nil), prometheus.GaugeValue}
}

func counter(name, help string, labels ...string) metric {
	return metric{prometheus.NewDesc("hearth_"+name, help, labels, nil), prometheus.CounterValue}
}

var (
	mSockets    = gauge("sockets", "Sockets connected to this node.")
	mChannels   = gauge("channels", "Channels joined on this node.")
	mJoins      = counter("joins_total", "Join attempts by result (ok, refused, crashed, shed).", "result")
	mMessagesIn = counter("messages_in_total", "Client pushes handled by channel handlers.")
	mBroadcasts = counter("broadcasts_total", "Broadcasts fanned out on this node.")
	mDeliveries = counter("deliveries_total", "Broadcast frames queued to sockets on this node.")
	mRecoveries = counter("recoveries_total", "Joins that asked to recover missed messages, by result (complete, incomplete).", "result")
	mReplayed   = counter("replayed_messages_total", "Messages replayed to recovering clients.")
	mCrashes    = counter("channel_crashes_total", "Channels that crashed (a handler panicked or failed).")
	mRefreshes  = counter("token_refreshes_total", "Tokens pushed to sockets by the channel refresh.")
	mRevoked    = counter("revocations_total", "Sockets revoked because their session ended.")
)

var nodeMetrics = []metric{mSockets, mChannels, mJoins, mMessagesIn, mBroadcasts, mDeliveries, mRecoveries, mReplayed, mCrashes, mRefreshes, mRevoked}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	if c.node != nil {
		for _, m := range nodeMetrics {
			ch <- m.desc
		}
	}
	if c.srv != nil {
		for _, m := range serverMetrics {
			ch <- m.desc
		}
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	emit := func(m metric, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, v, labels...)
	}
	if c.node != nil {
		st := c.node.Stats()
		emit(mSockets, float64(st.Sockets))
		emit(mChannels, float64(st.Channels))
		emit(mJoins, float64(st.JoinsOK), "ok")
		emit(mJoins, float64(st.JoinsRefused), "refused")
		emit(mJoins, float64(st.JoinsCrashed), "crashed")
		emit(mJoins, float64(st.JoinsShed), "shed")
		emit(mMessagesIn, float64(st.MessagesIn))
		emit(mBroadcasts, float64(st.Broadcasts))
		emit(mDeliveries, float64(st.Deliveries))
		emit(mRecoveries, float64(st.Recoveries-st.RecoveriesIncomplete), "complete")
		emit(mRecoveries, float64(st.RecoveriesIncomplete), "incomplete")
		emit(mReplayed, float64(st.Replayed))
		emit(mCrashes, float64(st.ChannelCrashes))
		emit(mRefreshes, float64(st.TokenRefreshes))
		emit(mRevoked, float64(st.Revocations))
	}
	if c.srv != nil {
		collectServer(c.srv, emit)
	}
}
