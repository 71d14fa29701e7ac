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
// everything queued (up to MaxBatch) and commit it in one transaction:
//
//	BEGIN; upsert the topics' rows, adding each topic's message count to its
//	seq under the row lock, RETURNING the new seq   (round trip 1)
//	INSERT the messages; pg_notify the packed notifications; COMMIT (round trip 2)
//
// Offsets taken under the row lock follow commit order, which is also the
// order in which every listener receives the notifications. A request that
// arrives while a commit is in flight waits for the next one: that is the
// batching, with no timer. The topics are locked in byte order so that
// concurrent batches cannot deadlock each other.

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
}

var reqPool = sync.Pool{New: func() any { return &pubReq{done: make(chan struct{}, 1)} }}

func (r *pubReq) finish(pos pubsub.Position, err error) {
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
	if err := checkMessage(&m, b.opts.MaxPayload); err != nil {
		return pubsub.Position{}, err
	}
	m.Epoch, m.Offset = "", 0
	r := reqPool.Get().(*pubReq)
	r.ctx, r.msg, r.control = ctx, m, nil
	return b.submit(ctx, r)
}

// ErrNotText is returned for a topic, event or exclude that is not UTF-8
// text without NUL bytes: PostgreSQL text cannot hold it.
var ErrNotText = errors.New("postgres: topic, event and exclude must be UTF-8 text without NUL bytes")

// checkMessage validates m before it joins a batch, where a bad message
// would fail the others' transaction too.
func checkMessage(m *pubsub.Message, maxPayload int) error {
	if !pubsub.ValidTopic(m.Topic) {
		return pubsub.ErrInvalidTopic
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
// are not UTF-8 text).
func (b *Broker) PublishControl(ctx context.Context, data []byte) error {
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
// most maxBatchBytes, but at least one) into batch. It returns false once
// the broker is closed, after failing what is still queued.
func (b *Broker) take(batch []*pubReq) ([]*pubReq, bool) {
	b.qmu.Lock()
	defer b.qmu.Unlock()
	for len(b.queue) == 0 && !b.closed {
		b.qcond.Wait()
	}
	if b.closed {
		for _, r := range b.queue {
			r.finish(pubsub.Position{}, pubsub.ErrClosed)
		}
		b.queue = nil
		return batch, false
	}
	n, size := 0, 0
	for n < len(b.queue) && n < b.opts.MaxBatch && (n == 0 || size+b.queue[n].size() <= maxBatchBytes) {
		size += b.queue[n].size()
		n++
	}
	batch = append(batch, b.queue[:n]...)
	rest := copy(b.queue, b.queue[n:])
	clear(b.queue[rest:])
	b.queue = b.queue[:rest]
	if rest > 0 {
		b.qcond.Signal() // another publisher may take the rest
	}
	return batch, true
}

// publisher is one publishing goroutine.
func (b *Broker) publisher() {
	defer b.pubWG.Done()
	var p batcher
	var batch []*pubReq
	for {
		var ok bool
		batch, ok = b.take(batch[:0])
		if !ok {
			return
		}
		b.commit(&p, batch)
		clear(batch)
	}
}

// batcher holds one publisher's scratch space, reused across batches.
type batcher struct {
	live    []*pubReq
	groups  map[string]*topicGroup
	order   []*topicGroup
	free    []*topicGroup
	notes   noteWriter
	topics  []string
	counts  []int64
	mTopic  []string
	mSeq    []int64
	mEvent  []string
	mData   [][]byte
	mBinary []bool
	mExcl   []string
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
		return
	}
	p.group()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if err = b.tryCommit(p); !retryable(err) {
			break
		}
	}
	if err != nil {
		b.st.publishErrors.Add(1)
		err = fmt.Errorf("postgres: publishing: %w", err)
		if b.pubCtx.Err() != nil {
			err = pubsub.ErrClosed
		}
		for _, r := range p.live {
			r.finish(pubsub.Position{}, err)
		}
		return
	}
	b.st.batch(len(p.mSeq), len(p.notes.notes))
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

// tryCommit runs the batch's transaction once.
func (b *Broker) tryCommit(p *batcher) error {
	ctx, cancel := context.WithTimeout(b.pubCtx, commitTimeout)
	defer cancel()
	conn, err := b.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	// A connection left inside a transaction by an error is destroyed by
	// the pool on Release.
	defer conn.Release()

	n := b.names
	if len(p.order) > 0 {
		var bt pgx.Batch
		bt.Queue("BEGIN")
		bt.Queue(`INSERT INTO `+n.topics+` AS t (topic, seq)
			SELECT u.topic, u.n FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS u(topic, n, i) ORDER BY u.i
			ON CONFLICT (topic) DO UPDATE SET seq = t.seq + excluded.seq, updated_at = now()
			RETURNING t.topic, t.epoch, t.seq`, p.topics, p.counts)
		res := conn.SendBatch(ctx, &bt)
		if _, err := res.Exec(); err != nil {
			res.Close()
			return err
		}
		rows, err := res.Query()
		if err != nil {
			res.Close()
			return err
		}
		var topic, epoch string
		var seq int64
		_, err = pgx.ForEachRow(rows, []any{&topic, &epoch, &seq}, func() error {
			g := p.groups[topic]
			if g == nil {
				return fmt.Errorf("unexpected topic %q in RETURNING", topic)
			}
			g.epoch, g.base = epoch, seq-int64(len(g.reqs))+1
			return nil
		})
		if cerr := res.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}

	// Rows and notifications.
	p.notes.reset()
	p.mTopic, p.mSeq, p.mEvent, p.mData, p.mBinary, p.mExcl =
		p.mTopic[:0], p.mSeq[:0], p.mEvent[:0], p.mData[:0], p.mBinary[:0], p.mExcl[:0]
	for _, g := range p.order {
		for i, r := range g.reqs {
			off := uint64(g.base) + uint64(i)
			p.notes.message(g.epoch, &r.msg, off)
			p.mTopic = append(p.mTopic, g.topic)
			p.mSeq = append(p.mSeq, int64(off))
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
	for _, r := range p.live {
		if r.control != nil {
			p.notes.control(r.control)
		}
	}
	notes := p.notes.finish()

	var bt pgx.Batch
	if len(p.order) > 0 {
		bt.Queue(`INSERT INTO `+n.messages+` (topic, seq, event, payload, is_binary, exclude)
			SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[], $5::boolean[], $6::text[])`,
			p.mTopic, p.mSeq, p.mEvent, p.mData, p.mBinary, p.mExcl)
	}
	if len(notes) > 0 {
		bt.Queue(`SELECT pg_notify($1, n) FROM unnest($2::text[]) AS n`, n.channel, notes)
	}
	if len(p.order) > 0 {
		bt.Queue("COMMIT")
	}
	return conn.SendBatch(ctx, &bt).Close()
}
