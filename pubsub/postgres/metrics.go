package postgres

import "github.com/prometheus/client_golang/prometheus"

// Collector returns a prometheus.Collector for the broker's Stats, read at
// scrape time. Metric names start with "hearth_pubsub_".
func (b *Broker) Collector() prometheus.Collector { return collector{b} }

type collector struct{ b *Broker }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("hearth_pubsub_"+name, help, labels, nil)
}

var (
	dState      = desc("listener_state", "1 for the listener's current state (healthy, catching_up, down).", "state")
	dPublished  = desc("published_total", "Messages this node committed.")
	dBatches    = desc("batch_size", "Messages per publishing transaction.")
	dLatency    = desc("publish_seconds", "Time from Publish to the end of the message's transaction (queue wait and commit), committed messages.")
	dQueued     = desc("queue_length", "Messages waiting for a publishing transaction.")
	dNotes      = desc("notifications_total", "NOTIFY payloads this node sent.")
	dPubErrors  = desc("publish_errors_total", "Failed publishing transactions.")
	dReceived   = desc("notifications_received_total", "Notifications the listener received.")
	dDelivered  = desc("delivered_total", "Messages handed to the node.")
	dFetched    = desc("fetched_total", "Messages read from the history table (large payloads, gaps, catch-up).")
	dDuplicates = desc("duplicates_total", "Messages dropped because they had already been delivered.")
	dMissed     = desc("missed_total", "Messages that could not be delivered: trimmed before this node read them.")
	dGaps       = desc("gaps_total", "Gaps filled from the history table.")
	dReconnects = desc("listener_reconnects_total", "Times the listener lost its connection.")
	dCatchUps   = desc("catch_ups_total", "Completed catch-ups after a listener reconnect.")
	dTrimmed    = desc("trimmed_total", "History rows this node deleted.")
	dShards     = desc("listened_shards", "Notification shards the listener listens to now.")
	dListens    = desc("shard_listens_total", "Notification shards the listener started listening to.")
	dUnlistens  = desc("shard_unlistens_total", "Notification shards the listener stopped listening to.")
	dRotations  = desc("epoch_rotations_total", "Topics this node moved to a new epoch after finding the server on a new timeline (a failover).")
)

var all = []*prometheus.Desc{dState, dPublished, dBatches, dLatency, dQueued, dNotes, dPubErrors, dReceived, dDelivered, dFetched, dDuplicates, dMissed, dGaps, dReconnects, dCatchUps, dTrimmed, dShards, dListens, dUnlistens, dRotations}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range all {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.b.Stats()
	for _, s := range []State{StateHealthy, StateCatchingUp, StateDown} {
		v := 0.0
		if st.State == s {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(dState, prometheus.GaugeValue, v, s.String())
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	counter(dPublished, st.Published)
	counter(dNotes, st.Notifications)
	counter(dPubErrors, st.PublishErrors)
	counter(dReceived, st.Received)
	counter(dDelivered, st.Delivered)
	counter(dFetched, st.Fetched)
	counter(dDuplicates, st.Duplicates)
	counter(dMissed, st.Missed)
	counter(dGaps, st.Gaps)
	counter(dReconnects, st.Reconnects)
	counter(dCatchUps, st.CatchUps)
	counter(dTrimmed, st.Trimmed)
	counter(dListens, st.Listens)
	counter(dUnlistens, st.Unlistens)
	ch <- prometheus.MustNewConstMetric(dShards, prometheus.GaugeValue, float64(st.ShardsListened))
	counter(dRotations, st.EpochRotations)
	// Batch sizes: bucket i of Stats.BatchSizes holds batches up to
	// 2^(2i+1)-1 messages (1, 7, 31, 127, ...); the sum of all batch sizes
	// is the number of messages published.
	buckets := make(map[float64]uint64, BatchBuckets-1)
	var cum uint64
	for i := 0; i < BatchBuckets-1; i++ {
		cum += st.BatchSizes[i]
		buckets[float64(uint64(1)<<(2*i+1)-1)] = cum
	}
	ch <- prometheus.MustNewConstHistogram(dBatches, st.Batches, float64(st.Published), buckets)
	lat := make(map[float64]uint64, LatencyBuckets-1)
	var committed uint64
	for i := 0; i < LatencyBuckets-1; i++ {
		committed += st.PublishLatency[i]
		lat[LatencyBucketBound(i).Seconds()] = committed
	}
	committed += st.PublishLatency[LatencyBuckets-1]
	ch <- prometheus.MustNewConstHistogram(dLatency, committed, st.PublishSeconds, lat)
	ch <- prometheus.MustNewConstMetric(dQueued, prometheus.GaugeValue, float64(st.Queued))
}
