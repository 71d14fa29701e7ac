package postgres

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Options configures a Broker or an Emitter. Apart from the database (URL,
// URLs or Pool), the zero value works.
type Options struct {
	// URL is the database URL (postgres://user:pass@host:port/db?...), as
	// pgx understands it; pool settings such as pool_max_conns may be added
	// to it. Required unless Pool is set. Unless ListenURL is set, it must
	// reach PostgreSQL directly or through a session pooler: the listener's
	// LISTEN does not work through a transaction pooler such as PgBouncer
	// in transaction mode.
	URL string
	// Pool, when set, is used for publishing and queries instead of a pool
	// opened from URL; the listener connection is opened with the pool's
	// connection settings unless ListenURL is set. The broker does not
	// close it.
	Pool *pgxpool.Pool
	// ListenURL, when set, is where the listener connection goes instead:
	// a direct URL to the server, when URL or Pool go through a
	// transaction pooler. Such a URL or Pool also needs
	// default_query_exec_mode=exec (pgx's statement cache prepares
	// statements in sessions the pooler hands from client to client).
	ListenURL string

	// URLs, instead of URL, spreads the cluster's topics over several
	// databases (see "Several databases" in the package documentation and
	// docs/clustering.md): each topic lives on exactly one of them, chosen
	// by rendezvous hashing of the topic over the databases' identities,
	// and the node keeps one pool and one listener per database. Each URL
	// may itself be a multi-host failover URL. Every node (and Emitter)
	// of the cluster is given the same databases, in any order. One
	// element is the same as URL; setting both URL and URLs, or Pool or
	// ListenURL with several URLs, is an error. For example:
	//
	//	postgres.Options{URLs: []string{
	//		"postgres://hearth@db1/app",
	//		"postgres://hearth@db2/app",
	//		"postgres://hearth@db3a,db3b/app?target_session_attrs=read-write",
	//	}}
	URLs []string
	// ListenURLs, when set, has one element per URLs: the listener's
	// direct URL for each database (as ListenURL for one), "" for those
	// whose URL reaches the server directly.
	ListenURLs []string
	// Rebalance lets this node change the set of databases the cluster's
	// databases record (adding or removing one): without it, a node given
	// other databases than the recorded ones fails to start. The node then
	// records the new set in every database it was given, and each
	// database drops the topics that move (in or out), so that they start
	// a new epoch where they now live. See docs/clustering.md for the whole
	// operation. With one database (URL), Rebalance takes a database out
	// of a set of several.
	Rebalance bool

	// Schema holds Hearth's tables and functions. Zero means "public". All
	// nodes of a cluster use the same schema; different schemas in one
	// database are separate clusters.
	Schema string
	// Channel is the LISTEN/NOTIFY channel. Zero means the schema's own:
	// "hearth" in schema public, "hearth_<schema>" otherwise. The first node
	// records it in the schema; a node asking for another one fails to start.
	Channel string

	// ListenAll makes the node LISTEN to every notification shard, as
	// every node did before interest-based listening (see Shards): it then
	// receives every topic's notifications, subscribed or not. For nodes
	// that subscribe to most topics anyway, and for measuring what
	// interest-based listening saves.
	ListenAll bool

	// Name identifies this node in logs and in pg_stat_activity (the
	// listener's application_name is "hearth-listener <name>"). Zero means
	// a random name.
	Name string
	// Logger receives the broker's warnings and errors. Nil means silent.
	Logger *slog.Logger

	// HistorySize is how many messages are kept per topic. Zero (or
	// negative) means 1000: this broker always keeps a history, as its
	// nodes catch up from it. A node's catch-up after a listener outage can
	// only replay what is still kept, so keep it above what a busy topic
	// publishes during the longest outage you want to ride out. All nodes
	// should agree on it.
	HistorySize int
	// HistoryTTL is how long a message is kept. Zero means 5 minutes.
	HistoryTTL time.Duration
	// TrimInterval is how often the history is trimmed. Zero means 5
	// seconds. Only one node trims at a time.
	TrimInterval time.Duration
	// MaxPayload is the largest payload accepted. Zero means 1 MiB.
	// Payloads that do not fit in a notification travel through the table.
	MaxPayload int

	// MaxBatch is the most messages committed in one transaction. Zero
	// means 1000.
	MaxBatch int
	// Publishers is how many transactions may be in flight at once. Zero
	// means 2.
	Publishers int
	// MaxQueue is how many messages may wait for a transaction before
	// PublishAsync blocks. Zero means 16 × MaxBatch.
	MaxQueue int

	// PingInterval is how long the listener may stay silent before it pings
	// the server to detect a dead connection. Zero means 5 seconds.
	PingInterval time.Duration
	// PingTimeout bounds a ping (and the listener's connect). Zero means 5
	// seconds.
	PingTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the listener's reconnect backoff
	// (exponential, full jitter). Zero means 100 ms and 5 s.
	ReconnectMin, ReconnectMax time.Duration

	// SynchronousFailover says that the database fails over only to
	// synchronous standbys (synchronous_standby_names, synchronous_commit
	// on or remote_apply), so that a promoted standby has every commit the
	// old primary acknowledged. Then a new timeline keeps the topics'
	// epochs and clients recover across the failover. False (the safe
	// default) moves every topic to a new epoch when the server is on a new
	// timeline: asynchronous replication may have lost the last commits,
	// and their offsets would be handed out again (see failover.go).
	SynchronousFailover bool

	// OnStateChange, when set, is called with the listener's new state each
	// time it changes (see Broker.State), including StateHealthy from New
	// and StateDown from Close. It runs on the listener goroutine (or in New
	// and Close) and must not block. With several databases it is called
	// with the node's state as Broker.State computes it, from any
	// database's listener goroutine.
	OnStateChange func(State)
}

func (o *Options) setDefaults() error {
	if len(o.URLs) > 0 && o.URL != "" {
		return errors.New("postgres: set Options.URL or Options.URLs, not both")
	}
	if len(o.ListenURLs) > 0 && len(o.ListenURLs) != len(o.URLs) {
		return fmt.Errorf("postgres: Options.ListenURLs has %d elements, Options.URLs %d", len(o.ListenURLs), len(o.URLs))
	}
	for i, u := range o.URLs {
		if strings.TrimSpace(u) == "" {
			return fmt.Errorf("postgres: Options.URLs[%d] is empty", i)
		}
	}
	if len(o.URLs) == 1 {
		o.URL, o.URLs = o.URLs[0], nil
		if len(o.ListenURLs) == 1 {
			if o.ListenURL != "" {
				return errors.New("postgres: set Options.ListenURL or Options.ListenURLs, not both")
			}
			o.ListenURL = o.ListenURLs[0]
		}
		o.ListenURLs = nil
	}
	if len(o.URLs) > 1 && (o.Pool != nil || o.ListenURL != "") {
		return errors.New("postgres: with several Options.URLs, Pool and ListenURL cannot be used (ListenURLs can)")
	}
	if o.URL == "" && len(o.URLs) == 0 && o.Pool == nil {
		return errors.New("postgres: Options.URL, Options.URLs or Options.Pool is required")
	}
	if o.Schema == "" {
		o.Schema = "public"
	}
	if !validName(o.Schema) {
		return errors.New("postgres: schema names are 1 to 63 letters, digits and underscores")
	}
	if o.Channel != "" && !validName(o.Channel) {
		return errors.New("postgres: channel names are 1 to 63 letters, digits and underscores")
	}
	if o.Name == "" {
		o.Name = randomID()
	}
	if o.HistorySize <= 0 {
		o.HistorySize = 1000
	}
	if o.HistoryTTL <= 0 {
		o.HistoryTTL = 5 * time.Minute
	}
	if o.TrimInterval <= 0 {
		o.TrimInterval = 5 * time.Second
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = 1 << 20
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 1000
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 16 * o.MaxBatch
	}
	if o.Publishers <= 0 {
		o.Publishers = 2
	}
	if o.PingInterval <= 0 {
		o.PingInterval = 5 * time.Second
	}
	if o.PingTimeout <= 0 {
		o.PingTimeout = 5 * time.Second
	}
	if o.ReconnectMin <= 0 {
		o.ReconnectMin = 100 * time.Millisecond
	}
	if o.ReconnectMax <= 0 {
		o.ReconnectMax = 5 * time.Second
	}
	if o.ReconnectMax < o.ReconnectMin {
		o.ReconnectMax = o.ReconnectMin
	}
	return nil
}
