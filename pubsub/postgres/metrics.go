package postgres

import "github.com/prometheus/client_golang/prometheus"

// Collector returns a prometheus.Collector for the broker's Stats, read at
// scrape time. Metric names start with "hearth_pubsub_".
func (b *Broker) Collector() prometheus.Collector { return collector{b} }

type collector struct{ b *Broker }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("hearth_pubsub_"+name, help, labels, nil)
}

// descs are the collector's metric descriptions, with the given labels
// after their own (a node on several databases labels each database's
// figures with "database", its identity).
type descs struct {
	dState      *prometheus.Desc
	dPublished  *prometheus.Desc
	dBatches    *prometheus.Desc
	dLatency    *prometheus.Desc
	dQueued     *prometheus.Desc
	dNotes      *prometheus.Desc
	dPubErrors  *prometheus.Desc
	dReceived   *prometheus.Desc
	dDelivered  *prometheus.Desc
	dFetched    *prometheus.Desc
	dDuplicates *prometheus.Desc
	dMissed     *prometheus.Desc
	dGaps       *prometheus.Desc
	dReconnects *prometheus.Desc
	dCatchUps   *prometheus.Desc
	dTrimmed    *prometheus.Desc
	dShards     *prometheus.Desc
	dListens    *prometheus.Desc
	dUnlistens  *prometheus.Desc
	dRotations  *prometheus.Desc
	all         []*prometheus.Desc
}

func newDescs(labels ...string) *descs {
	d := &descs{
		dState:      desc("listener_state", "1 for the listener's current state (healthy, catching_up, down).", append([]string{"state"}, labels...)...),
		dPublished:  desc("published_total", "Messages this node committed.", labels...),
		dBatches:    desc("batch_size", "Messages per publishing transaction.", labels...),
		dLatency:    desc("publish_seconds", "Time from Publish to the end of the message's transaction (queue wait and commit), committed messages.", labels...),
		dQueued:     desc("queue_length", "Messages waiting for a publishing transaction.", labels...),
		dNotes:      desc("notifications_total", "NOTIFY payloads this node sent.", labels...),
		dPubErrors:  desc("publish_errors_total", "Failed publishing transactions.", labels...),
		dReceived:   desc("notifications_received_total", "Notifications the listener received.", labels...),
		dDelivered:  desc("delivered_total", "Messages handed to the node.", labels...),
		dFetched:    desc("fetched_total", "Messages read from the history table (large payloads, gaps, catch-up).", labels...),
		dDuplicates: desc("duplicates_total", "Messages dropped because they had already been delivered.", labels...),
		dMissed:     desc("missed_total", "Messages that could not be delivered: trimmed before this node read them.", labels...),
		dGaps:       desc("gaps_total", "Gaps filled from the history table.", labels...),
		dReconnects: desc("listener_reconnects_total", "Times the listener lost its connection.", labels...),
		dCatchUps:   desc("catch_ups_total", "Completed catch-ups after a listener reconnect.", labels...),
		dTrimmed:    desc("trimmed_total", "History rows this node deleted.", labels...),
		dShards:     desc("listened_shards", "Notification shards the listener listens to now.", labels...),
		dListens:    desc("shard_listens_total", "Notification shards the listener started listening to.", labels...),
		dUnlistens:  desc("shard_unlistens_total", "Notification shards the listener stopped listening to.", labels...),
		dRotations:  desc("epoch_rotations_total", "Topics this node moved to a new epoch after finding the server on a new timeline (a failover).", labels...),
	}
	d.all = []*prometheus.Desc{d.dState, d.dPublished, d.dBatches, d.dLatency, d.dQueued, d.dNotes, d.dPubErrors, d.dReceived, d.dDelivered, d.dFetched, d.dDuplicates, d.dMissed, d.dGaps, d.dReconnects, d.dCatchUps, d.dTrimmed, d.dShards, d.dListens, d.dUnlistens, d.dRotations}
	return d
}

var (
	plainDescs = newDescs()
	dbDescs    = newDescs("database")
)

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	d := plainDescs
	if c.b.parts != nil {
		d = dbDescs
	}
	for _, x := range d.all {
		ch <- x
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Stats()
	if st.Databases == nil {
		collectStats(ch, plainDescs, &st)
		return
	}
	for i := range st.Databases {
		collectStats(ch, dbDescs, &st.Databases[i], st.Databases[i].Database)
	}
}

// collectStats sends one database's figures (or the node's), with the
// label values lv.
func collectStats(ch chan<- prometheus.Metric, d *descs, st *Stats, lv ...string) {
	for _, s := range []State{StateHealthy, StateCatchingUp, StateDown} {
		v := 0.0
		if st.State == s {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(d.dState, prometheus.GaugeValue, v, append([]string{s.String()}, lv...)...)
	}
	counter := func(x *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(x, prometheus.CounterValue, float64(v), lv...)
	}
	counter(d.dPublished, st.Published)
	counter(d.dNotes, st.Notifications)
	counter(d.dPubErrors, st.PublishErrors)
	counter(d.dReceived, st.Received)
	counter(d.dDelivered, st.Delivered)
	counter(d.dFetched, st.Fetched)
	counter(d.dDuplicates, st.Duplicates)
	counter(d.dMissed, st.Missed)
	counter(d.dGaps, st.Gaps)
	counter(d.dReconnects, st.Reconnects)
	counter(d.dCatchUps, st.CatchUps)
	counter(d.dTrimmed, st.Trimmed)
	counter(d.dListens, st.Listens)
	counter(d.dUnlistens, st.Unlistens)
	ch <- prometheus.MustNewConstMetric(d.dShards, prometheus.GaugeValue, float64(st.ShardsListened), lv...)
	counter(d.dRotations, st.EpochRotations)
	// Batch sizes: bucket i of Stats.BatchSizes holds batches up to
	// 2^(2i+1)-1 messages (1, 7, 31, 127, ...); the sum of all batch sizes
	// is the number of messages published.
	buckets := make(map[float64]uint64, BatchBuckets-1)
	var cum uint64
	for i := 0; i < BatchBuckets-1; i++ {
		cum += st.BatchSizes[i]
		buckets[float64(uint64(1)<<(2*i+1)-1)] = cum
	}
	ch <- prometheus.MustNewConstHistogram(d.dBatches, st.Batches, float64(st.Published), buckets, lv...)
	lat := make(map[float64]uint64, LatencyBuckets-1)
	var committed uint64
	for i := 0; i < LatencyBuckets-1; i++ {
		committed += st.PublishLatency[i]
		lat[LatencyBucketBound(i).Seconds()] = committed
	}
	committed += st.PublishLatency[LatencyBuckets-1]
	ch <- prometheus.MustNewConstHistogram(d.dLatency, committed, st.PublishSeconds, lat, lv...)
	ch <- prometheus.MustNewConstMetric(d.dQueued, prometheus.GaugeValue, float64(st.Queued), lv...)

}
