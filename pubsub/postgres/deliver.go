package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"

	"github.com/hearth-rt/hearth/pubsub"
)

// Delivery. The history table is the truth; notifications are hints that
// usually carry the messages themselves. Each subscribed topic keeps the
// offset of the last message handed to the Handler, and:
//
//   - a message at or below it is a duplicate and dropped;
//   - the next offset is delivered;
//   - a message further ahead means some were not seen (the node subscribed
//     while they were in flight, or a notification was lost): the range in
//     between is read from the table first;
//   - a reference (payload too large for a notification) is read from the
//     table;
//   - when anything goes wrong (the listener dropped, a read failed) the
//     topic turns stale: live notifications are ignored until the listener
//     goroutine has caught it up from the table.
//
// A topic's delivery runs under its mu, so messages of one topic reach the
// Handler one at a time, in offset order.

// fetchPage is how many rows one history read returns.
const fetchPage = 1000

type topicState struct {
	name  string
	shard int
	subs  int           // guarded by Broker.smu
	ready chan struct{} // closed once the baseline is known, or err is set
	err   error         // the baseline read's error
	gone  atomic.Bool   // unsubscribed: deliver nothing more

	mu      sync.Mutex
	ok      bool // baseline known
	stale   bool // must be caught up from the table before live messages
	epoch   string
	last    uint64  // offset of the last message delivered (or skipped)
	pending []entry // entries that arrived before the baseline was known
}

// entry is a message (msg set, from == to) or a reference to the messages
// from..to in the table (msg nil), as read from a notification.
type entry struct {
	epoch    string
	from, to uint64
	msg      *pubsub.Message
}

func (b *Broker) isClosed() bool {
	b.qmu.Lock()
	defer b.qmu.Unlock()
	return b.closed
}

// Subscribe implements pubsub.Broker. The first Subscribe of a topic on this
// node reads the topic's current position (creating the topic, and so its
// epoch, if it has none yet); the node delivers every message after it.
func (b *Broker) Subscribe(ctx context.Context, topic string) error {
	if err := pubsub.CheckTopic(topic); err != nil {
		return err
	}
	if b.parts != nil {
		return b.part(topic).Subscribe(ctx, topic)
	}
	if b.isClosed() {
		return pubsub.ErrClosed
	}
	b.smu.Lock()
	if ts := b.topics[topic]; ts != nil {
		ts.subs++
		b.smu.Unlock()
		select {
		case <-ts.ready:
		case <-ctx.Done():
			b.unsubscribe(ts)
			return ctx.Err()
		}
		if ts.err != nil {
			b.unsubscribe(ts)
			return ts.err
		}
		return nil
	}
	ts := &topicState{name: topic, shard: shardOf(topic), subs: 1, ready: make(chan struct{})}
	// A topic subscribed while the listener is not up to date must be
	// caught up once its baseline is known (markStale cannot see it yet);
	// so must one whose shard the listener does not hear yet, once the
	// listener LISTENs to it (shard.go).
	b.shardSubs[ts.shard]++
	listened := b.listened[ts.shard]
	ts.stale = b.State() != StateHealthy || !listened
	b.topics[topic] = ts
	b.smu.Unlock()

	epoch, top, err := b.head(ctx, topic, true)
	if err != nil {
		ts.err = fmt.Errorf("postgres: subscribing to %q: %w", topic, err)
		close(ts.ready)
		b.unsubscribe(ts)
		return ts.err
	}
	ts.mu.Lock()
	ts.epoch, ts.last, ts.ok = epoch, top, true
	pending := ts.pending
	ts.pending = nil
	for i := range pending {
		b.apply(ts, &pending[i])
	}
	stale := ts.stale
	ts.mu.Unlock()
	close(ts.ready)
	if !listened {
		b.requestShardSync()
	}
	if stale {
		b.requestRepair(ts)
	}
	return nil
}

// Unsubscribe implements pubsub.Broker.
func (b *Broker) Unsubscribe(ctx context.Context, topic string) error {
	if b.parts != nil {
		return b.part(topic).Unsubscribe(ctx, topic)
	}
	b.smu.Lock()
	ts := b.topics[topic]
	b.smu.Unlock()
	if ts != nil {
		b.unsubscribe(ts)
	}
	return nil
}

func (b *Broker) unsubscribe(ts *topicState) {
	b.smu.Lock()
	defer b.smu.Unlock()
	if ts.subs > 0 {
		ts.subs--
	}
	if ts.subs == 0 && b.topics[ts.name] == ts {
		delete(b.topics, ts.name)
		ts.gone.Store(true)
		if b.shardSubs[ts.shard]--; b.shardSubs[ts.shard] == 0 && !b.opts.ListenAll {
			b.requestShardSync() // lmu after smu: the lock order
		}
	}
}

// head returns the topic's epoch and latest offset; with create, a topic
// that does not exist yet is created so that it has an epoch.
func (b *Broker) head(ctx context.Context, topic string, create bool) (string, uint64, error) {
	for attempt := 0; ; attempt++ {
		var epoch string
		var seq int64
		err := b.pool.QueryRow(ctx, "SELECT epoch, seq FROM "+b.names.topics+" WHERE topic = $1", topic).Scan(&epoch, &seq)
		if err == nil {
			return epoch, uint64(seq), nil
		}
		if !errors.Is(err, pgx.ErrNoRows) || !create || attempt > 0 {
			if errors.Is(err, pgx.ErrNoRows) {
				return "", 0, nil
			}
			return "", 0, err
		}
		if _, err := b.pool.Exec(ctx, "INSERT INTO "+b.names.topics+" (topic) VALUES ($1) ON CONFLICT (topic) DO NOTHING", topic); err != nil {
			return "", 0, err
		}
	}
}

// apply processes one entry of a notification for a subscribed topic.
// ts.mu is held.
func (b *Broker) apply(ts *topicState, e *entry) {
	if !ts.ok {
		ts.pending = append(ts.pending, *e)
		return
	}
	if ts.stale || ts.gone.Load() {
		return
	}
	if e.epoch != ts.epoch {
		if ts.epoch != "" {
			b.log.Warn("postgres: topic history was reset", "topic", ts.name, "epoch", e.epoch)
		}
		ts.epoch, ts.last = e.epoch, 0
	}
	if e.to <= ts.last {
		b.st.duplicates.Add(1)
		return
	}
	if e.msg == nil || e.from > ts.last+1 {
		to := e.to
		if e.msg != nil {
			to = e.from - 1
			b.st.gaps.Add(1)
		}
		if err := b.fetch(ts, to); err != nil {
			if b.ctx.Err() == nil {
				b.log.Warn("postgres: reading history failed, catching up later", "topic", ts.name, "err", err)
			}
			ts.stale = true
			b.requestRepair(ts)
			return
		}
	}
	if e.msg != nil && e.from > ts.last {
		b.deliver(ts, e.msg)
	}
}

// deliver hands m to the Handler and moves the topic's position. ts.mu is
// held.
func (b *Broker) deliver(ts *topicState, m *pubsub.Message) {
	if m.Offset > ts.last+1 {
		b.st.missed.Add(m.Offset - ts.last - 1)
	}
	ts.last = m.Offset
	if hb := b.handler.Load(); hb != nil && hb.h != nil {
		b.st.delivered.Add(1)
		hb.h.HandleMessage(m)
	}
}

// fetch delivers the topic's messages after ts.last up to to, from the
// table. Messages no longer there (trimmed) are counted as missed and
// skipped. ts.mu is held.
func (b *Broker) fetch(ts *topicState, to uint64) error {
	for ts.last < to {
		msgs, err := b.readRange(b.ctx, ts.name, ts.epoch, ts.last, to, fetchPage)
		if err != nil {
			return err
		}
		for _, m := range msgs {
			if m.Offset > ts.last {
				b.st.fetched.Add(1)
				b.deliver(ts, m)
			}
		}
		if len(msgs) < fetchPage {
			if ts.last < to {
				b.st.missed.Add(to - ts.last)
				ts.last = to
			}
			break
		}
	}
	return nil
}

// readRange reads up to limit messages of topic with after < offset <= to.
func (b *Broker) readRange(ctx context.Context, topic, epoch string, after, to uint64, limit int) ([]*pubsub.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.PingTimeout*4)
	defer cancel()
	rows, err := b.pool.Query(ctx, "SELECT seq, event, payload, is_binary, exclude FROM "+b.names.messages+
		" WHERE topic = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4", topic, int64(after), int64(to), limit)
	if err != nil {
		return nil, err
	}
	var out []*pubsub.Message
	for rows.Next() {
		m := &pubsub.Message{Topic: topic, Epoch: epoch}
		var seq int64
		if err := rows.Scan(&seq, &m.Event, &m.Payload, &m.Binary, &m.Exclude); err != nil {
			rows.Close()
			return nil, err
		}
		m.Offset = uint64(seq)
		out = append(out, m)
	}
	return out, rows.Err()
}

// requestRepair asks the listener goroutine to catch ts up from the table.
func (b *Broker) requestRepair(ts *topicState) {
	b.lmu.Lock()
	b.repairs[ts] = struct{}{}
	if b.waitCancel != nil {
		b.waitCancel()
	}
	b.lmu.Unlock()
}

// markStale marks every subscribed topic stale: the listener lost messages.
func (b *Broker) markStale() {
	b.smu.RLock()
	defer b.smu.RUnlock()
	for _, ts := range b.topics {
		ts.mu.Lock()
		ts.stale = true
		ts.mu.Unlock()
	}
}

// staleTopics returns the subscribed topics that need a catch-up and whose
// baseline is known (the others are caught up when it is).
//
// A stale topic whose shard the listener does not hear yet is held back: a
// catch-up before the LISTEN committed could miss what commits in between.
// It stays asked for, and the listener's next round LISTENs to its shard
// before catching it up.
func (b *Broker) staleTopics() []*topicState {
	b.lmu.Lock()
	clear(b.repairs)
	b.lmu.Unlock()
	var out, later []*topicState
	b.smu.RLock()
	for _, ts := range b.topics {
		ts.mu.Lock()
		if ts.ok && ts.stale {
			if b.listened[ts.shard] {
				out = append(out, ts)
			} else {
				later = append(later, ts)
			}
		}
		ts.mu.Unlock()
	}
	b.smu.RUnlock()
	if len(later) > 0 {
		b.lmu.Lock()
		for _, ts := range later {
			b.repairs[ts] = struct{}{}
		}
		b.shardSync = true
		b.lmu.Unlock()
	}
	return out
}

// catchUp reads what the stale topics missed from the table and delivers
// it, then lets live notifications through again. Reads for up to 64
// topics share one round trip.
func (b *Broker) catchUp(ctx context.Context, list []*topicState) error {
	const perTrip = 64
	type read struct {
		ts    *topicState
		after uint64
	}
	for len(list) > 0 {
		n := min(len(list), perTrip)
		chunk := list[:n]
		var next []*topicState
		var bt pgx.Batch
		reads := make([]read, 0, n)
		for _, ts := range chunk {
			ts.mu.Lock()
			after := ts.last
			ts.mu.Unlock()
			reads = append(reads, read{ts, after})
			bt.Queue(`SELECT t.epoch, t.seq, m.seq, coalesce(m.event, ''), coalesce(m.payload, ''::bytea),
				coalesce(m.is_binary, false), coalesce(m.exclude, '')
				FROM `+b.names.topics+` t LEFT JOIN LATERAL (
					SELECT seq, event, payload, is_binary, exclude FROM `+b.names.messages+` m
					WHERE m.topic = t.topic AND m.seq > $2 ORDER BY m.seq LIMIT $3) m ON true
				WHERE t.topic = $1`, ts.name, int64(after), fetchPage)
		}
		qctx, cancel := context.WithTimeout(ctx, b.opts.PingTimeout*4)
		res := b.pool.SendBatch(qctx, &bt)
		for _, rd := range reads {
			var epoch string
			var top int64
			var msgs []*pubsub.Message
			rows, err := res.Query()
			if err == nil {
				for rows.Next() {
					var seq *int64
					m := &pubsub.Message{Topic: rd.ts.name}
					if err = rows.Scan(&epoch, &top, &seq, &m.Event, &m.Payload, &m.Binary, &m.Exclude); err != nil {
						break
					}
					if seq != nil {
						m.Offset = uint64(*seq)
						msgs = append(msgs, m)
					}
				}
				rows.Close()
				if err == nil {
					err = rows.Err()
				}
			}
			if err != nil {
				res.Close()
				cancel()
				return err
			}
			if b.applyCatchUp(rd.ts, rd.after, epoch, uint64(top), msgs) {
				next = append(next, rd.ts)
			}
		}
		err := res.Close()
		cancel()
		if err != nil {
			return err
		}
		list = append(next, list[n:]...)
	}
	return nil
}

// applyCatchUp delivers one topic's catch-up read; it reports whether the
// topic needs another read.
func (b *Broker) applyCatchUp(ts *topicState, after uint64, epoch string, top uint64, msgs []*pubsub.Message) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.gone.Load() || !ts.stale || ts.last != after {
		return false
	}
	if epoch == "" { // the topic's row is gone: nothing to deliver
		ts.stale = false
		return false
	}
	if epoch != ts.epoch {
		reset := ts.epoch != "" && ts.last > 0
		if ts.epoch != "" {
			b.log.Warn("postgres: topic history was reset", "topic", ts.name, "epoch", epoch)
		}
		ts.epoch, ts.last = epoch, 0
		if reset {
			return true // read again from the start of the new epoch
		}
	}
	for _, m := range msgs {
		if m.Offset > ts.last {
			m.Epoch = epoch
			b.st.fetched.Add(1)
			b.deliver(ts, m)
		}
	}
	if len(msgs) == fetchPage {
		return true
	}
	if ts.last < top {
		b.st.missed.Add(top - ts.last)
		ts.last = top
	}
	ts.stale = false
	return false
}
