package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hearth-rt/hearth/pubsub"
)

// Emitter broadcasts to a Hearth cluster from any program that can reach
// its database: a worker, a cron job, another service. It is not a node: it
// does not listen and keeps no subscriptions. Each message is one call of
// the schema's hearth_publish SQL function, one short transaction, stored in
// the history and delivered by every node to its subscribers, exactly like
// a broadcast made on a node.
//
// Given several databases (Options.URLs), an Emitter publishes each message
// on its topic's database, as a node does. After a database was added or
// removed, make a new Emitter with the new list: the old one's messages to
// the topics that moved are refused (SQLSTATE HT001).
//
// An Emitter is safe for concurrent use.
type Emitter struct {
	pool       *pgxpool.Pool
	ownPool    bool
	names      names
	maxPayload int
	// Several databases: an Emitter per database, and their identities.
	parts []*Emitter
	ids   []string
}

// NewEmitter connects to the database of opts.URL (or uses opts.Pool) and
// makes sure the schema exists (migrating it like a node would). Only URL,
// URLs, Pool, Schema, Channel, Name, MaxPayload, SynchronousFailover and
// Logger are used. Given several databases, it connects to each; they must
// record the same set of databases (see Options.Rebalance), or, for a new
// cluster, hold nothing yet.
func NewEmitter(ctx context.Context, opts Options) (*Emitter, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if len(opts.URLs) > 1 {
		return newMultiEmitter(ctx, opts)
	}
	n := newNames(opts.Schema)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var st stats
	// Its connections check the server's timeline too (failover.go): an
	// emitter may be the first to publish after a failover.
	check := func(ctx context.Context, c *pgx.Conn) error {
		return checkTimeline(ctx, c, n, opts.SynchronousFailover, log, &st)
	}
	pool, own, err := openPool(ctx, opts, check)
	if err != nil {
		return nil, err
	}
	e := &Emitter{pool: pool, ownPool: own, names: n, maxPayload: opts.MaxPayload}
	channel, err := migrate(ctx, pool, opts.Schema, opts.Channel)
	if err != nil {
		e.Close()
		return nil, err
	}
	e.names.setChannel(channel)
	if err := pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error { return check(ctx, c.Conn()) }); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// Emit broadcasts event with a JSON payload on topic. payload may be
// json.RawMessage or []byte holding JSON text (sent as is), or any value
// encoding/json can marshal.
func (e *Emitter) Emit(ctx context.Context, topic, event string, payload any) (pubsub.Position, error) {
	var data []byte
	switch p := payload.(type) {
	case json.RawMessage:
		data = p
	case []byte:
		data = p
	default:
		var err error
		if data, err = json.Marshal(payload); err != nil {
			return pubsub.Position{}, fmt.Errorf("postgres: encoding payload: %w", err)
		}
	}
	if !json.Valid(data) {
		return pubsub.Position{}, errors.New("postgres: payload is not valid JSON")
	}
	return e.Publish(ctx, pubsub.Message{Topic: topic, Event: event, Payload: data})
}

// Publish broadcasts m (which may be binary, or exclude a connection) and
// returns its position. A text payload must be valid UTF-8.
func (e *Emitter) Publish(ctx context.Context, m pubsub.Message) (pubsub.Position, error) {
	if e.parts != nil {
		if err := pubsub.CheckTopic(m.Topic); err != nil {
			return pubsub.Position{}, err
		}
		return e.parts[ownerOf(m.Topic, e.ids)].Publish(ctx, m)
	}
	if err := checkMessage(&m, e.maxPayload); err != nil {
		return pubsub.Position{}, err
	}
	if !m.Binary && !inlineText(m.Payload) {
		return pubsub.Position{}, errors.New("postgres: text payload is not valid UTF-8")
	}
	data := m.Payload
	if data == nil {
		data = []byte{}
	}
	var pos pubsub.Position
	var off int64
	err := e.pool.QueryRow(ctx, `SELECT epoch, "offset" FROM `+e.names.publish+`($1, $2, $3, $4, $5)`,
		m.Topic, m.Event, data, m.Binary, m.Exclude).Scan(&pos.Epoch, &off)
	if err != nil {
		return pubsub.Position{}, fmt.Errorf("postgres: emitting on %q: %w", m.Topic, err)
	}
	pos.Offset = uint64(off)
	return pos, nil
}

// Close closes the Emitter's pool, unless it was given in Options.Pool.
func (e *Emitter) Close() {
	for _, p := range e.parts {
		p.Close()
	}
	if e.ownPool {
		e.pool.Close()
	}
}

func newMultiEmitter(ctx context.Context, opts Options) (*Emitter, error) {
	e := &Emitter{names: newNames(opts.Schema), maxPayload: opts.MaxPayload}
	pools := make([]*pgxpool.Pool, 0, len(opts.URLs))
	for i, u := range opts.URLs {
		o := opts
		o.URL, o.URLs, o.ListenURLs = u, nil, nil
		p, err := NewEmitter(ctx, o)
		if err != nil {
			e.Close()
			return nil, fmt.Errorf("postgres: database %d of %d: %w", i+1, len(opts.URLs), err)
		}
		e.parts = append(e.parts, p)
		pools = append(pools, p.pool)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ids, _, err := joinCluster(ctx, pools, e.names, false, log)
	if err != nil {
		e.Close()
		return nil, err
	}
	e.ids = ids
	return e, nil
}
