package postgres

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// State is the health of a node's listener connection.
type State int32

// Listener states.
const (
	// StateDown: the listener is disconnected and reconnecting; this node
	// receives nothing until it is back. Publishing may still work.
	StateDown State = iota
	// StateCatchingUp: the listener is connected again and the node is
	// reading what it missed from the history table.
	StateCatchingUp
	// StateHealthy: the listener is connected and the node is up to date.
	StateHealthy
)

// String returns "down", "catching_up" or "healthy".
func (s State) String() string {
	switch s {
	case StateDown:
		return "down"
	case StateCatchingUp:
		return "catching_up"
	case StateHealthy:
		return "healthy"
	}
	return "unknown"
}

// State returns the listener's current state. Readiness checks can require
// StateHealthy.
//
// With several databases, the node is down when every database's listener
// is down, healthy when every one is healthy, and catching up otherwise
// (Stats.Databases has each database's state). A node whose databases
// record another set of databases than it was started with (a database
// was added or removed since) is down until it is restarted.
func (b *Broker) State() State {
	if b.parts != nil {
		return b.multiState()
	}
	if b.outdated.Load() {
		return StateDown
	}
	return State(b.state.Load())
}

func (b *Broker) setState(s State) {
	if b.outdated.Load() {
		s = StateDown
	}
	if State(b.state.Swap(int32(s))) != s && b.opts.OnStateChange != nil {
		b.opts.OnStateChange(s)
	}
}

// BatchBuckets is the number of batch size buckets in Stats.BatchSizes.
const BatchBuckets = 8

// LatencyBuckets is the number of buckets in Stats.PublishLatency: bucket
// i (i < LatencyBuckets-1) counts the messages committed within
// LatencyBucketBound(i), more than the previous bound; the last bucket
// counts the rest.
const LatencyBuckets = 16

// LatencyBucketBound is the upper bound of bucket i of
// Stats.PublishLatency: 250 µs × 2^i, from 250 µs to about 4 s.
func LatencyBucketBound(i int) time.Duration { return 250 * time.Microsecond << i }

// Stats are a node's counters since New. All counts are cumulative.
type Stats struct {
	// State is the listener's state now.
	State State

	// Published is the number of messages this node committed.
	Published uint64
	// Batches is the number of publishing transactions, MaxBatch the most
	// messages one of them carried; Published/Batches is the mean batch.
	Batches  uint64
	MaxBatch uint64
	// BatchSizes counts transactions by message count: bucket 0 holds
	// batches of 1, bucket i (i >= 1) batches of 2^(2i-1) to 2^(2i+1)-1,
	// that is 2-7, 8-31, 32-127, 128-511, 512-2047, ...; the last bucket
	// holds everything larger.
	BatchSizes [BatchBuckets]uint64
	// Notifications is the number of NOTIFY payloads this node sent.
	Notifications uint64
	// PublishErrors is the number of failed publishing transactions.
	PublishErrors uint64
	// PublishLatency counts committed messages by the time from Publish or
	// PublishAsync to the end of their transaction (queue wait and
	// commit), in the buckets of LatencyBucketBound; PublishSeconds is the
	// sum of those times.
	PublishLatency [LatencyBuckets]uint64
	PublishSeconds float64
	// Queued is the number of messages waiting for a transaction now.
	Queued int

	// Received is the number of notifications the listener received.
	Received uint64
	// ShardsListened is the number of notification shards the listener
	// listens to now (out of Shards), besides the schema's channel.
	ShardsListened int
	// Listens and Unlistens count the shards the listener started and
	// stopped listening to, reconnects included.
	Listens, Unlistens uint64
	// Delivered is the number of messages handed to the Handler.
	Delivered uint64
	// Fetched is the number of messages read from the history table
	// (large payloads, gaps, catch-up) rather than taken from a
	// notification.
	Fetched uint64
	// Duplicates is the number of messages dropped because they had
	// already been delivered.
	Duplicates uint64
	// Missed is the number of messages that could not be delivered because
	// the history was trimmed before this node read them.
	Missed uint64
	// Gaps is the number of times a message arrived ahead of the next
	// expected offset and the range in between was read from the table.
	Gaps uint64
	// BadNotifications is the number of notifications that could not be
	// parsed.
	BadNotifications uint64

	// Reconnects is the number of times the listener lost its connection.
	Reconnects uint64
	// CatchUps is the number of completed catch-ups after a reconnect.
	CatchUps uint64
	// Trimmed is the number of history rows this node deleted.
	Trimmed uint64
	// EpochRotations counts topics this node moved to a new epoch because
	// the server was on a new timeline (a failover; see
	// Options.SynchronousFailover).
	EpochRotations uint64

	// Database is the identity of the database these figures are about
	// (hearth_meta key "database"), on a node given several databases.
	Database string
	// Databases holds the figures of each database, in the order of
	// Options.URLs, on a node given several; nil otherwise.
	Databases []Stats
}

type stats struct {
	published, batches, maxBatch, notifications, publishErrors atomic.Uint64
	batchSizes                                                 [BatchBuckets]atomic.Uint64
	latency                                                    [LatencyBuckets]atomic.Uint64
	latencyNanos                                               atomic.Uint64
	received, delivered, fetched, duplicates, missed, gaps     atomic.Uint64
	badNotes, reconnects, catchUps, trimmed                    atomic.Uint64
	listens, unlistens                                         atomic.Uint64
	epochRotations                                             atomic.Uint64 // topics moved to a new epoch after a failover
}

func batchBucket(n int) int {
	if n <= 1 {
		return 0
	}
	i := bits.Len(uint(n)) / 2 // 2-7 -> 1, 8-31 -> 2, ...
	if i >= BatchBuckets {
		i = BatchBuckets - 1
	}
	return i
}

// committed counts a message committed d after it was queued.
func (s *stats) committed(d time.Duration) {
	i := 0
	if d > 0 {
		i = bits.Len64(uint64((d - 1) / (250 * time.Microsecond))) // 0: ≤ 250 µs, 1: ≤ 500 µs, ...
	}
	s.latency[min(i, LatencyBuckets-1)].Add(1)
	s.latencyNanos.Add(uint64(d))
}

func (s *stats) batch(n, notes int) {
	s.notifications.Add(uint64(notes))
	if n == 0 {
		return // control messages only
	}
	s.batches.Add(1)
	s.published.Add(uint64(n))
	s.batchSizes[batchBucket(n)].Add(1)
	for {
		m := s.maxBatch.Load()
		if uint64(n) <= m || s.maxBatch.CompareAndSwap(m, uint64(n)) {
			break
		}
	}
}

// Stats returns the node's counters.
//
// With several databases the counts are the sums over the databases (and
// ShardsListened counts each database's shards), and Databases holds each
// database's own figures.
func (b *Broker) Stats() Stats {
	if b.parts != nil {
		return b.multiStats()
	}
	s := &b.st
	out := Stats{
		State:            b.State(),
		Published:        s.published.Load(),
		Batches:          s.batches.Load(),
		MaxBatch:         s.maxBatch.Load(),
		Notifications:    s.notifications.Load(),
		PublishErrors:    s.publishErrors.Load(),
		Received:         s.received.Load(),
		ShardsListened:   int(b.nListened.Load()),
		Listens:          s.listens.Load(),
		Unlistens:        s.unlistens.Load(),
		Delivered:        s.delivered.Load(),
		Fetched:          s.fetched.Load(),
		Duplicates:       s.duplicates.Load(),
		Missed:           s.missed.Load(),
		Gaps:             s.gaps.Load(),
		BadNotifications: s.badNotes.Load(),
		Reconnects:       s.reconnects.Load(),
		CatchUps:         s.catchUps.Load(),
		Trimmed:          s.trimmed.Load(),
		EpochRotations:   s.epochRotations.Load(),
	}
	for i := range out.BatchSizes {
		out.BatchSizes[i] = s.batchSizes[i].Load()
	}
	for i := range out.PublishLatency {
		out.PublishLatency[i] = s.latency[i].Load()
	}
	out.PublishSeconds = float64(s.latencyNanos.Load()) / 1e9
	out.Database = b.dbID
	b.qmu.Lock()
	out.Queued = len(b.queue)
	b.qmu.Unlock()
	return out
}
