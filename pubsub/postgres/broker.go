package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/hearth-rt/hearth/pubsub"
)

// Broker is a pubsub.Broker on PostgreSQL: one node of a cluster whose
// nodes share a database (and schema). See the package documentation.
//
// The Handler's HandleMessage runs on the listener goroutine (or, for a
// topic's first messages, in Subscribe), while that topic's deliveries are
// held back: it may call the Broker, but must not wait for another
// delivery.
type Broker struct {
	// Lock order: smu, then a topic's mu, then lmu. qmu is never held with
	// another lock. HandleMessage is called with the topic's mu held.

	opts       Options
	names      names
	publishSQL string // publishSQL for this schema
	pool       *pgxpool.Pool
	ownPool    bool
	lconf      *pgx.ConnConfig // the listener's connection settings
	log        *slog.Logger

	handler atomic.Pointer[handlerBox]

	ctx    context.Context // cancelled by Close: listener, trimmer, fetches
	cancel context.CancelFunc
	// pubCtx bounds publishing transactions; Close cancels it last, so that
	// batches in flight can commit.
	pubCtx    context.Context
	pubCancel context.CancelFunc
	pubWG     sync.WaitGroup
	wg        sync.WaitGroup // listener and trimmer
	closeOnce sync.Once

	// Publishing queue.
	qmu    sync.Mutex
	qcond  *sync.Cond // requests queued, or claims released
	qroom  *sync.Cond // room in the queue for PublishAsync
	queue  []*pubReq
	claims map[string]*batcher // topics whose PublishAsync requests a batch in flight holds
	closed bool

	// Subscriptions.
	smu    sync.RWMutex
	topics map[string]*topicState

	// Listener.
	state      atomic.Int32
	lmu        sync.Mutex
	waitCancel context.CancelFunc       // interrupts the listener's wait
	repairs    map[*topicState]struct{} // topics to catch up from the table
	early      []*pgconn.Notification   // received during the probe, for serve (listener goroutine only)
	shardSync  bool                     // guarded by lmu: syncShards asked for

	// Interest-based listening (shard.go), guarded by smu.
	shardSubs [Shards]int32 // subscribed topics per shard
	listened  [Shards]bool  // shards whose LISTEN committed (and no UNLISTEN is under way)
	nListened atomic.Int64  // shards listened to now

	st stats

	// Several databases (multi.go). A node given several URLs does its
	// work through parts, one Broker per database; ids are their database
	// identities, in the same order. members is the set of databases this
	// node (or part) was started with, as the databases record it ("" for
	// a database of its own); outdated is set once the database records
	// another set (a node added or removed a database since).
	parts    []*Broker
	ids      []string
	dbID     string
	members  string
	outdated atomic.Bool
	// The node's state as last reported to OnStateChange (parts' parent).
	stateMu   sync.Mutex
	lastState State
	started   atomic.Bool // every part started
}

type handlerBox struct{ h pubsub.Handler }

// New connects to the database (or, with Options.URLs, to every database),
// creates or migrates Hearth's schema, opens the listener connection(s) and
// starts the node's goroutines.
func New(ctx context.Context, opts Options) (*Broker, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	if len(opts.URLs) > 1 {
		return newMulti(ctx, opts)
	}
	b, err := prepare(ctx, opts)
	if err != nil {
		return nil, err
	}
	// A database that is one of several of a cluster refuses a node that
	// would take every topic for its own (multi.go).
	var members *string
	if err := b.pool.QueryRow(ctx, "SELECT value FROM "+b.names.meta+" WHERE key = 'members'").Scan(&members); err != nil && !errors.Is(err, pgx.ErrNoRows) {
		b.closePool()
		return nil, fmt.Errorf("postgres: reading the cluster's databases: %w", err)
	}
	if members != nil {
		if _, _, err := joinCluster(ctx, []*pgxpool.Pool{b.pool}, b.names, opts.Rebalance, b.log); err != nil {
			b.closePool()
			return nil, err
		}
	}
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	return b, nil
}

// prepare opens the database's pool and migrates the schema: everything
// New does before the node starts working.
func prepare(ctx context.Context, opts Options) (*Broker, error) {
	b := &Broker{
		opts:    opts,
		names:   newNames(opts.Schema),
		log:     opts.Logger,
		topics:  make(map[string]*topicState),
		repairs: make(map[*topicState]struct{}),
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.log = b.log.With("node", opts.Name)
	b.qcond = sync.NewCond(&b.qmu)
	b.qroom = sync.NewCond(&b.qmu)

	var err error
	b.pool, b.ownPool, err = openPool(ctx, opts, b.checkTimeline)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Broker, error) {
		b.closePool()
		return nil, poolerHint(err)
	}
	var channel string
	if channel, err = migrate(ctx, b.pool, opts.Schema, opts.Channel); err != nil {
		return fail(err)
	}
	b.names.setChannel(channel)
	b.publishSQL = b.names.expand(publishSQL)
	// The pool's connections check the server's timeline as they open (see
	// failover.go); the first ones may have opened before the schema
	// existed, and a Pool from the caller has no such hook: check now.
	if err := b.pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error { return b.checkTimeline(ctx, c.Conn()) }); err != nil {
		return fail(err)
	}
	var autovacuum string
	if err := b.pool.QueryRow(ctx, "SHOW autovacuum").Scan(&autovacuum); err == nil && autovacuum != "on" {
		// Trimming deletes rows; without autovacuum nothing reclaims them,
		// and the history table and its index only grow.
		b.log.Warn("postgres: autovacuum is off: the space of trimmed history is never reclaimed; run VACUUM on the history tables regularly",
			"tables", b.names.messages+", "+b.names.topics)
	}
	if opts.ListenURL != "" {
		if b.lconf, err = pgx.ParseConfig(opts.ListenURL); err != nil {
			return fail(fmt.Errorf("postgres: parsing ListenURL: %w", err))
		}
	} else {
		b.lconf = b.pool.Config().ConnConfig.Copy()
	}
	if b.lconf.RuntimeParams == nil {
		b.lconf.RuntimeParams = map[string]string{}
	}
	b.lconf.RuntimeParams["application_name"] = "hearth-listener " + opts.Name
	if b.lconf.ConnectTimeout == 0 || b.lconf.ConnectTimeout > opts.PingTimeout {
		b.lconf.ConnectTimeout = opts.PingTimeout
	}
	return b, nil
}

// start opens the listener connection and starts the node's goroutines.
// On failure it closes the pool.
func (b *Broker) start(ctx context.Context) error {
	conn, err := b.connectListener(ctx)
	if err != nil {
		b.closePool()
		return poolerHint(err)
	}
	b.setState(StateHealthy)

	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.pubCtx, b.pubCancel = context.WithCancel(context.Background())
	for i := 0; i < b.opts.Publishers; i++ {
		b.pubWG.Add(1)
		go b.publisher()
	}
	b.wg.Add(2)
	go b.listen(conn)
	go b.trimLoop()
	return nil
}

func (b *Broker) closePool() {
	if b.ownPool {
		b.pool.Close()
	}
}

// openPool returns opts.Pool, or a new pool opened from opts.URL.
// A pool it opens runs afterConnect on every new connection.
func openPool(ctx context.Context, opts Options, afterConnect func(context.Context, *pgx.Conn) error) (*pgxpool.Pool, bool, error) {
	if opts.Pool != nil {
		return opts.Pool, false, nil
	}
	cfg, err := pgxpool.ParseConfig(opts.URL)
	if err != nil {
		return nil, false, fmt.Errorf("postgres: parsing URL: %w", err)
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "hearth " + opts.Name
	}
	cfg.AfterConnect = afterConnect
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, false, fmt.Errorf("postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, false, fmt.Errorf("postgres: connecting: %w", err)
	}
	return pool, true, nil
}

// Register implements pubsub.Broker.
func (b *Broker) Register(h pubsub.Handler) {
	b.handler.Store(&handlerBox{h: h})
	for _, p := range b.parts {
		p.Register(h)
	}
}

// Name returns the node's name (Options.Name).
func (b *Broker) Name() string { return b.opts.Name }

// Channel returns the schema's notification channel, which every node
// listens to: controls and the listener's probe travel on it. Topic
// notifications travel on its shards (see [Shards]): Channel() + "." + the
// shard number, for channels short enough.
//
// With several databases, it is the first database's (each has the same).
func (b *Broker) Channel() string {
	if b.parts != nil {
		return b.parts[0].Channel()
	}
	return b.names.channel
}

// Close implements pubsub.Broker. Publish calls still queued fail with
// pubsub.ErrClosed; transactions already sent are given a few seconds to
// commit.
func (b *Broker) Close() error {
	if b.parts != nil {
		b.closeParts()
		return nil
	}
	b.closeOnce.Do(func() {
		b.qmu.Lock()
		b.closed = true
		b.qcond.Broadcast()
		b.qroom.Broadcast()
		b.qmu.Unlock()

		done := make(chan struct{})
		go func() { b.pubWG.Wait(); close(done) }()
		t := time.NewTimer(5 * time.Second)
		select {
		case <-done:
		case <-t.C:
			b.pubCancel()
			<-done
		}
		t.Stop()
		b.pubCancel()
		b.cancel()
		b.wg.Wait()
		if b.ownPool {
			b.pool.Close()
		}
		b.setState(StateDown)
	})
	return nil
}

func randomID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var _ pubsub.AsyncBroker = (*Broker)(nil)

// poolerHint adds a hint to the errors pgx's statement cache meets behind a
// transaction pooler: prepared statements live in server sessions, which
// the pooler hands from client to client.
func poolerHint(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (pe.Code == "42P05" || pe.Code == "26000") {
		return fmt.Errorf("%w (through PgBouncer or another pooler in transaction mode? add default_query_exec_mode=exec to the URL)", err)
	}
	return err
}
