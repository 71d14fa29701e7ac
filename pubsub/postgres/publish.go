package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hearth-rt/hearth/pubsub"
)

// Publishing: Publish queues a request; publisher goroutines take
// everything queued (up to MaxBatch) and commit it as one statement, one
// round trip, its own transaction (see publishSQL):
//
//   - upsert the topics' rows, adding each topic's message count to its seq
//     under the row lock; the new seq gives the topic's base offset;
//   - insert the messages at base+1, base+2, ...;
//   - pg_notify the notifications, packed beforehand into templates whose
//     topic headers the statement fills with the epochs and bases.
//
// Offsets taken under the row lock follow commit order, which is also the
// order in which every listener receives the notifications. A request that
// arrives while a commit is in flight waits for the next one: that is the
// batching, with no timer. The topics are locked in byte order so that
// concurrent batches cannot deadlock each other.
//
// PublishAsync requests claim their topic for the batch that takes them:
// until that batch's transaction ends, no other batch takes a request of
// the topic, so that the topic's asynchronous messages commit in queue
// order (two batches in flight could otherwise take the row lock in either
// order). Publish requests wait for such claims but make none: their
// callers wait for each message, which orders them already.

// maxBatchBytes caps the payload bytes of one transaction.
const maxBatchBytes = 8 << 20

// commitTimeout bounds one attempt at a publishing transaction, so that a
// server that stopped answering fails the batch instead of holding it.
const commitTimeout = 30 * time.Second

type pubReq struct {
	ctx     context.Context
	msg     pubsub.Message
	control []byte // non-nil: a control message
	done    chan struct{}
	pos     pubsub.Position
	err     error
	// async: queued by PublishAsync, which claims the topic and is told
	// the outcome through cb (if any) instead of done.
	async bool
	cb    func(pubsub.Position, error)
	// queued is when the request was queued (for Stats.PublishLatency).
	queued time.Time
}

var reqPool = sync.Pool{New: func() any { return &pubReq{done: make(chan struct{}, 1)} }}

// finish hands the outcome to the request's caller. An asynchronous
// request goes back to the pool first: nobody else holds it.
func (r *pubReq) finish(pos pubsub.Position, err error) {
	if r.async {
		cb := r.cb
		*r = pubReq{done: r.done}
		reqPool.Put(r)
		if cb != nil {
			cb(pos, err)
		}
		return
	}
	r.pos, r.err = pos, err
	r.done <- struct{}{}
}

func (r *pubReq) size() int { return len(r.msg.Payload) + len(r.control) }

// Publish implements pubsub.Broker. It returns once the transaction holding
// the message committed. If ctx ends first, Publish returns ctx.Err() and
// the message may or may not be published; m.Payload must then stay
// unchanged, as the publisher may still be sending it. An error from a
// commit whose connection failed is ambiguous in the same way.
func (b *Broker) Publish(ctx context.Context, m pubsub.Message) (pubsub.Position, error) {
	if b.parts != nil {
		if err := pubsub.CheckTopic(m.Topic); err != nil {
			return pubsub.Position{}, err
		}
		return b.part(m.Topic).Publish(ctx, m)
	}
	if err := checkMessage(&m, b.opts.MaxPayload); err != nil {
		return pubsub.Position{}, err
	}
	m.Epoch, m.Offset = "", 0
	r := reqPool.Get().(*pubReq)
	r.ctx, r.msg, r.control = ctx, m, nil
	return b.submit(ctx, r)
}

// PublishAsync implements pubsub.AsyncBroker: it queues m and returns. done,
// when not nil, is called once the transaction holding m committed or
// failed, on a publishing goroutine: it must not block (nor call
// PublishAsync, which may block). The messages PublishAsync queues for a
// topic commit in the order they were queued, also across transactions in
// flight at once. PublishAsync blocks while Options.MaxQueue messages wait,
// until ctx ends; ctx has no say over a message once it is queued. An error
// means m was not queued, and done is not called.
func (b *Broker) PublishAsync(ctx context.Context, m pubsub.Message, done func(pubsub.Position, error)) error {
	if b.parts != nil {
		if err := pubsub.CheckTopic(m.Topic); err != nil {
			return err
		}
		return b.part(m.Topic).PublishAsync(ctx, m, done)
	}
	if err := checkMessage(&m, b.opts.MaxPayload); err != nil {
		return err
	}
	m.Epoch, m.Offset = "", 0
	b.qmu.Lock()
	if len(b.queue) >= b.opts.MaxQueue && !b.closed {
		// Wait for room; an ended ctx wakes the wait.
		stop := context.AfterFunc(ctx, func() {
			b.qmu.Lock()
			b.qroom.Broadcast()
			b.qmu.Unlock()
		})
		for len(b.queue) >= b.opts.MaxQueue && !b.closed && ctx.Err() == nil {
			b.qroom.Wait()
		}
		stop()
	}
	if b.closed {
		b.qmu.Unlock()
		return pubsub.ErrClosed
	}
	if len(b.queue) >= b.opts.MaxQueue {
		b.qmu.Unlock()
		return ctx.Err()
	}
	r := reqPool.Get().(*pubReq)
	r.ctx, r.msg, r.async, r.cb, r.queued = context.Background(), m, true, done, time.Now()
	b.queue = append(b.queue, r)
	b.qcond.Signal()
	b.qmu.Unlock()
	return nil
}

// ErrNotText is returned for a topic, event or exclude that is not UTF-8
// text without NUL bytes: PostgreSQL text cannot hold it.
var ErrNotText = errors.New("postgres: topic, event and exclude must be UTF-8 text without NUL bytes")

// checkMessage validates m before it joins a batch, where a bad message
// would fail the others' transaction too.
func checkMessage(m *pubsub.Message, maxPayload int) error {
	if err := pubsub.CheckTopic(m.Topic); err != nil {
		return err
	}
	if len(m.Payload) > maxPayload {
		return pubsub.ErrTooLarge
	}
	if !isText(m.Topic) || !isText(m.Event) || !isText(m.Exclude) {
		return ErrNotText
	}
	return nil
}

func isText(s string) bool { return strings.IndexByte(s, 0) < 0 && utf8.ValidString(s) }

// PublishControl implements pubsub.Broker. data must fit in one
// notification once encoded (about 7.8 KB of text, or 5.8 KB of bytes that
// are not UTF-8 text). With several databases it goes through one of them,
// whose control channel every node listens to: the first one given whose
// listener is not down.
func (b *Broker) PublishControl(ctx context.Context, data []byte) error {
	if b.parts != nil {
		return b.controlPart().PublishControl(ctx, data)
	}
	if _, ok := appendControl(nil, data); !ok {
		return pubsub.ErrTooLarge
	}
	if data == nil {
		data = []byte{}
	}
	r := reqPool.Get().(*pubReq)
	r.ctx, r.msg, r.control = ctx, pubsub.Message{}, data
	_, err := b.submit(ctx, r)
	return err
}

func (b *Broker) submit(ctx context.Context, r *pubReq) (pubsub.Position, error) {
	r.queued = time.Now()
	b.qmu.Lock()
	if b.closed {
		b.qmu.Unlock()
		*r = pubReq{done: r.done}
		reqPool.Put(r)
		return pubsub.Position{}, pubsub.ErrClosed
	}
	b.queue = append(b.queue, r)
	b.qcond.Signal()
	b.qmu.Unlock()

	select {
	case <-r.done:
		pos, err := r.pos, r.err
		*r = pubReq{done: r.done}
		reqPool.Put(r)
		return pos, err
	case <-ctx.Done():
		// The request stays with the publisher, which will finish it; it is
		// not returned to the pool.
		return pubsub.Position{}, ctx.Err()
	}
}

// take waits for queued requests and moves up to MaxBatch of them (and at
// most maxBatchBytes, but at least one) into batch, in queue order, passing
// over those whose topic another batch claimed. It returns false once the
// broker is closed, after failing what is still queued.
func (b *Broker) take(p *batcher, batch []*pubReq) ([]*pubReq, bool) {
	b.qmu.Lock()
	for {
		for len(b.queue) == 0 && !b.closed {
			b.qcond.Wait()
		}
		if b.closed {
			dead := b.queue
			b.queue = nil
			b.qroom.Broadcast()
			b.qmu.Unlock()
			for _, r := range dead { // outside qmu: callbacks may publish
				r.finish(pubsub.Position{}, pubsub.ErrClosed)
			}
			return batch, false
		}
		before := len(b.queue)
		batch = b.takeLocked(p, batch)
		if len(batch) > 0 {
			if len(b.queue) > 0 {
				b.qcond.Signal() // another publisher may take the rest
			}
			if before >= b.opts.MaxQueue && len(b.queue) < b.opts.MaxQueue {
				b.qroom.Broadcast()
			}
			b.qmu.Unlock()
			return batch, true
		}
		// Everything queued waits for topics that batches in flight
		// claimed: their release wakes us.
		b.qcond.Wait()
	}
}

// takeLocked moves requests from the queue into batch; see take. qmu is
// held.
func (b *Broker) takeLocked(p *batcher, batch []*pubReq) []*pubReq {
	kept, size := 0, 0 // b.queue[:kept] stays queued, in order
	for i, r := range b.queue {
		if len(batch) > 0 && (len(batch) >= b.opts.MaxBatch || size+r.size() > maxBatchBytes) {
			kept += copy(b.queue[kept:], b.queue[i:]) // full: the rest waits
			break
		}
		if r.control == nil {
			if owner := b.claims[r.msg.Topic]; owner != nil && owner != p {
				b.queue[kept] = r // its topic's earlier messages are in flight
				kept++
				continue
			}
			if r.async && b.claims[r.msg.Topic] == nil {
				if b.claims == nil {
					b.claims = make(map[string]*batcher)
				}
				b.claims[r.msg.Topic] = p
				p.claimed = append(p.claimed, r.msg.Topic)
			}
		}
		batch = append(batch, r)
		size += r.size()
	}
	clear(b.queue[kept:])
	b.queue = b.queue[:kept]
	return batch
}

// release gives up the topics p's batch claimed, once its transaction
// ended, and wakes the publishers whose requests waited for them.
func (b *Broker) release(p *batcher) {
	if len(p.claimed) == 0 {
		return
	}
	b.qmu.Lock()
	for _, t := range p.claimed {
		delete(b.claims, t)
	}
	b.qcond.Broadcast()
	b.qmu.Unlock()
	clear(p.claimed)
	p.claimed = p.claimed[:0]
}

// publisher is one publishing goroutine.
func (b *Broker) publisher() {
	defer b.pubWG.Done()
	var p batcher
	var batch []*pubReq
	for {
		var ok bool
		batch, ok = b.take(&p, batch[:0])
		if !ok {
			return
		}
		b.commit(&p, batch)
		clear(batch)
	}
}

// batcher holds one publisher's scratch space, reused across batches.
type batcher struct {
	claimed []string // topics this batch claimed (see take)
	live    []*pubReq
	groups  map[string]*topicGroup
	order   []*topicGroup
	free    []*topicGroup
	notes   noteWriter
	topics  []string
	counts  []int64
	mGroup  []int64
	mRel    []int64
	mEvent  []string
	mData   [][]byte
	mBinary []bool
	mExcl   []string
	epochs  []string
	bases   []int64
	byShard []int // indexes into order, sorted by the topic's shard
	shards  []int // shard of order[i]
}

type topicGroup struct {
	topic string
	reqs  []*pubReq
	epoch string
	base  int64 // offset of the group's first message
}

// commit publishes one batch, retrying on deadlocks and serialization
// failures, and finishes every request in it.
func (b *Broker) commit(p *batcher, batch []*pubReq) {
	p.live = p.live[:0]
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.finish(pubsub.Position{}, err)
			continue
		}
		p.live = append(p.live, r)
	}
	if len(p.live) == 0 {
		b.release(p)
		return
	}
	p.group()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = b.tryCommit(p); !retryable(err) {
			break
		}
	}
	// The offsets are taken (or nothing was): the next batch of the claimed
	// topics may go.
	b.release(p)
	if err != nil {
		b.st.publishErrors.Add(1)
		err = fmt.Errorf("postgres: publishing: %w", poolerHint(err))
		if b.pubCtx.Err() != nil {
			err = pubsub.ErrClosed
		}
		for _, r := range p.live {
			r.finish(pubsub.Position{}, err)
		}
		return
	}
	b.st.batch(len(p.mRel), len(p.notes.notes))
	now := time.Now()
	for _, r := range p.live {
		if r.control == nil {
			b.st.committed(now.Sub(r.queued))
		}
	}
	// Positions first: a finished request belongs to its caller again.
	for _, g := range p.order {
		for i, r := range g.reqs {
			r.pos = pubsub.Position{Epoch: g.epoch, Offset: uint64(g.base) + uint64(i)}
		}
	}
	for _, r := range p.live {
		r.finish(r.pos, nil)
	}
}

// group sorts the live requests into per-topic groups, topics in byte order.
func (p *batcher) group() {
	if p.groups == nil {
		p.groups = make(map[string]*topicGroup)
	}
	for _, g := range p.order {
		clear(g.reqs)
		g.reqs = g.reqs[:0]
		p.free = append(p.free, g)
	}
	clear(p.groups)
	p.order = p.order[:0]
	for _, r := range p.live {
		if r.control != nil {
			continue
		}
		g := p.groups[r.msg.Topic]
		if g == nil {
			if n := len(p.free); n > 0 {
				g, p.free = p.free[n-1], p.free[:n-1]
			} else {
				g = new(topicGroup)
			}
			g.topic = r.msg.Topic
			p.groups[g.topic] = g
			p.order = append(p.order, g)
		}
		g.reqs = append(g.reqs, r)
	}
	slices.SortFunc(p.order, func(a, b *topicGroup) int { return strings.Compare(a.topic, b.topic) })
	p.topics, p.counts = p.topics[:0], p.counts[:0]
	for _, g := range p.order {
		p.topics = append(p.topics, g.topic)
		p.counts = append(p.counts, int64(len(g.reqs)))
	}
}

func retryable(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// publishSQL commits a batch: $1, $2 are the topics (in lock order) and
// their message counts; $3..$8 the messages (group index, 1-based position
// in the group, event, payload, binary, exclude); $9 the channel of each
// notification and $10 the notification templates. It returns the number of notifications sent and
// each group's epoch and base (its first message is at base+1).
const publishSQL = `WITH inp AS (
	SELECT * FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS u(topic, n, i)
), up AS (
	INSERT INTO {topics} AS t (topic, seq) SELECT topic, n FROM inp ORDER BY i
	ON CONFLICT (topic) DO UPDATE SET seq = t.seq + excluded.seq, updated_at = now()
	RETURNING t.topic, t.epoch, t.seq
), g AS (
	SELECT inp.i, up.topic, up.epoch, up.seq - inp.n AS base FROM inp JOIN up USING (topic)
), ins AS (
	INSERT INTO {messages} (topic, seq, event, payload, is_binary, exclude)
	SELECT g.topic, g.base + m.k, m.event, m.payload, m.bin, m.excl
	FROM unnest($3::bigint[], $4::bigint[], $5::text[], $6::bytea[], $7::boolean[], $8::text[])
		AS m(gi, k, event, payload, bin, excl)
	JOIN g ON g.i = m.gi
), hdr AS (
	SELECT coalesce(array_agg('B' || octet_length(topic) || ':' || topic || octet_length(epoch) || ':' || epoch
		|| base || ',' ORDER BY i), '{}') AS a FROM g
), sent AS (
	SELECT count(pg_notify(c, format(f, VARIADIC hdr.a))) AS n FROM unnest($10::text[], $9::text[]) AS u(f, c), hdr
)
SELECT (SELECT n FROM sent),
	(SELECT array_agg(epoch ORDER BY i) FROM g),
	(SELECT array_agg(base ORDER BY i) FROM g)`

// tryCommit runs the batch's statement once.
func (b *Broker) tryCommit(p *batcher) error {
	if b.outdated.Load() {
		return errOutdated
	}
	ctx, cancel := context.WithTimeout(b.pubCtx, commitTimeout)
	defer cancel()

	p.notes.reset()
	p.mGroup, p.mRel, p.mEvent, p.mData, p.mBinary, p.mExcl =
		p.mGroup[:0], p.mRel[:0], p.mEvent[:0], p.mData[:0], p.mBinary[:0], p.mExcl[:0]
	// Each shard's records go to its channel: the groups in shard order
	// (topic order within a shard, as the groups are sorted by topic).
	p.byShard, p.shards = p.byShard[:0], p.shards[:0]
	for gi, g := range p.order {
		p.byShard = append(p.byShard, gi)
		p.shards = append(p.shards, shardOf(g.topic))
	}
	slices.SortStableFunc(p.byShard, func(a, b int) int { return p.shards[a] - p.shards[b] })
	for _, gi := range p.byShard {
		g := p.order[gi]
		p.notes.channel(b.names.shardChans[p.shards[gi]])
		for i, r := range g.reqs {
			p.notes.message(gi+1, &r.msg, uint64(i+1))
			p.mGroup = append(p.mGroup, int64(gi+1))
			p.mRel = append(p.mRel, int64(i+1))
			p.mEvent = append(p.mEvent, r.msg.Event)
			data := r.msg.Payload
			if data == nil {
				data = []byte{}
			}
			p.mData = append(p.mData, data)
			p.mBinary = append(p.mBinary, r.msg.Binary)
			p.mExcl = append(p.mExcl, r.msg.Exclude)
		}
	}
	p.notes.channel(b.names.channel)
	for _, r := range p.live {
		if r.control != nil {
			p.notes.control(r.control)
		}
	}
	notes := p.notes.finish()

	var sent int64
	p.epochs, p.bases = p.epochs[:0], p.bases[:0]
	var row pgx.Row
	if b.members == "" {
		row = b.pool.QueryRow(ctx, b.publishSQL, p.topics, p.counts,
			p.mGroup, p.mRel, p.mEvent, p.mData, p.mBinary, p.mExcl,
			p.notes.chans, notes)
	} else {
		// One of several databases: the statement checks that the
		// database still records the set this node routes by.
		row = b.pool.QueryRow(ctx, b.publishSQL, p.topics, p.counts,
			p.mGroup, p.mRel, p.mEvent, p.mData, p.mBinary, p.mExcl,
			p.notes.chans, notes, b.members)
	}
	err := row.Scan(&sent, &p.epochs, &p.bases)
	if err != nil {
		return err
	}
	if int(sent) != len(notes) || len(p.epochs) != len(p.order) || len(p.bases) != len(p.order) {
		return fmt.Errorf("publishing statement returned %d notifications and %d/%d groups, want %d and %d",
			sent, len(p.epochs), len(p.bases), len(notes), len(p.order))
	}
	for i, g := range p.order {
		g.epoch, g.base = p.epochs[i], p.bases[i]+1
	}
	return nil
}
