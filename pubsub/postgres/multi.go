package postgres

import (
	"context"
	"crypto/md5"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Several databases. A node given several URLs (Options.URLs) spreads the
// cluster's topics over them: each topic lives on exactly one database,
// its owner, with its row, history, epoch and notifications. The node
// keeps one Broker per database (its parts: a pool, a listener, publishers
// and a trimmer each) and hands every call about a topic to its owner's.
//
// The owner is chosen by rendezvous (highest random weight) hashing: each
// database has a random identity, recorded in its hearth_meta under key
// "database"; the topic's score on a database is the first eight bytes of
// md5(identity || ':' || topic) as a signed big-endian integer, and the
// database with the highest score owns it (the smallest identity on a
// tie). ownerOf computes it in Go, hearth_owner() in SQL. Adding a
// database moves only the topics the new one wins, about 1/(K+1) of them;
// removing one moves only its own.
//
// Every database records the set of the cluster's databases (key
// "members": their identities, sorted, comma-separated) and a generation
// (key "members_gen") that each change increments. hearth_publish()
// refuses a topic its database does not own, and a node's publishing
// statements check that the database still records the set the node
// routes by, so that a topic is never split across two databases by a
// node that missed a change. A node whose databases record another set
// (its trimmer checks every TrimInterval) reports StateDown until it is
// restarted with the current databases.
//
// Changing the set (Options.Rebalance, see joinCluster) drops, in each
// database, the topics whose owner changes, both those moving out and
// those moving in: a moved topic starts a new epoch where it now lives,
// so clients holding a position of its old epoch are told that recovery is
// incomplete rather than missing what was published meanwhile, and a topic
// that comes back to a database later cannot meet its old offsets there.
//
// Controls (PublishControl) go through one database, which every node
// listens to: each part listens to its database's control channel.

// clusterVersion is the version of the objects clusterSQL creates,
// recorded under hearth_meta key "cluster".
const clusterVersion = "1"

// clusterSQL creates the objects of a database that is one of several:
// its identity, hearth_owner(), hearth_check_members(), and a
// hearth_publish() that refuses the topics of other databases. It is a
// template like the migrations. A later schema migration that replaces
// hearth_publish must keep its ownership check.
const clusterSQL = `
INSERT INTO {meta} (key, value) VALUES ('database', substr(md5(random()::text || clock_timestamp()::text), 1, 16))
	ON CONFLICT (key) DO NOTHING;

CREATE OR REPLACE FUNCTION {schema}.hearth_owner(p_topic text, p_members text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
	SELECT m FROM unnest(string_to_array(p_members, ',')) AS m
	ORDER BY ('x' || substr(md5(m || ':' || p_topic), 1, 16))::bit(64)::bigint DESC, m COLLATE "C"
	LIMIT 1
$fn$;
COMMENT ON FUNCTION {schema}.hearth_owner(text, text) IS
	'Hearth: the database that owns a topic among the given comma-separated database identities (rendezvous hashing)';

CREATE OR REPLACE FUNCTION {schema}.hearth_owner(p_topic text)
RETURNS text
LANGUAGE sql STABLE AS $fn$
	SELECT coalesce({schema}.hearth_owner(p_topic, (SELECT value FROM {meta} WHERE key = 'members')),
		(SELECT value FROM {meta} WHERE key = 'database'))
$fn$;
COMMENT ON FUNCTION {schema}.hearth_owner(text) IS
	'Hearth: the identity (hearth_meta key ''database'') of the cluster database that owns a topic';

CREATE OR REPLACE FUNCTION {schema}.hearth_check_members(p_members text)
RETURNS boolean
LANGUAGE plpgsql STABLE AS $fn$
DECLARE
	v_members text;
BEGIN
	SELECT value INTO v_members FROM {meta} WHERE key = 'members';
	IF v_members IS DISTINCT FROM p_members THEN
		RAISE EXCEPTION 'hearth: this node routes topics by the databases %, but the cluster''s databases are now %', p_members, coalesce(v_members, 'this one alone')
			USING ERRCODE = 'HT002', HINT = 'a database was added or removed: restart this node with the current database URLs';
	END IF;
	RETURN true;
END
$fn$;

CREATE OR REPLACE FUNCTION {publish}(
	p_topic text, p_event text, p_payload bytea,
	p_binary boolean DEFAULT false, p_exclude text DEFAULT '')
RETURNS TABLE (epoch text, "offset" bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
	v_epoch   text;
	v_seq     bigint;
	v_head    text;
	v_rec     text;
	v_members text;
	v_owner   text;
	v_self    text;
BEGIN
	IF p_topic IS NULL OR p_topic = '' OR octet_length(p_topic) > 255 THEN
		RAISE EXCEPTION 'hearth: invalid topic %', p_topic USING ERRCODE = '22023';
	END IF;
	SELECT value INTO v_members FROM {meta} WHERE key = 'members';
	IF v_members IS NOT NULL THEN
		v_owner := {schema}.hearth_owner(p_topic, v_members);
		SELECT value INTO v_self FROM {meta} WHERE key = 'database';
		IF v_owner IS DISTINCT FROM v_self THEN
			RAISE EXCEPTION 'hearth: topic % belongs to database % of the cluster, not to this one (%)', p_topic, v_owner, v_self
				USING ERRCODE = 'HT001',
				HINT = 'publish it on the database whose hearth_meta key ''database'' is ' || v_owner || ', or through a Hearth node or Emitter given every database URL';
		END IF;
	END IF;
	p_event := coalesce(p_event, '');
	p_exclude := coalesce(p_exclude, '');
	INSERT INTO {topics} AS t (topic, seq) VALUES (p_topic, 1)
		ON CONFLICT (topic) DO UPDATE SET seq = t.seq + 1, updated_at = now()
		RETURNING t.epoch, t.seq INTO v_epoch, v_seq;
	INSERT INTO {messages} (topic, seq, event, payload, is_binary, exclude)
		VALUES (p_topic, v_seq, p_event, p_payload, coalesce(p_binary, false), p_exclude);
	v_head := 'h1T' || octet_length(p_topic) || ':' || p_topic || octet_length(v_epoch) || ':' || v_epoch;
	IF NOT coalesce(p_binary, false) AND octet_length(p_payload) < 7000 AND position('\x00'::bytea IN p_payload) = 0 THEN
		v_rec := 'M' || v_seq || ',j,' || octet_length(p_event) || ':' || p_event
			|| octet_length(p_exclude) || ':' || p_exclude
			|| octet_length(p_payload) || ':' || convert_from(p_payload, 'UTF8');
	END IF;
	IF v_rec IS NULL OR octet_length(v_head) + octet_length(v_rec) > 7900 THEN
		v_rec := 'R' || v_seq || ',' || v_seq;
	END IF;
	PERFORM pg_notify('{shardprefix}' || {schema}.hearth_shard(p_topic), v_head || v_rec);
	epoch := v_epoch;
	"offset" := v_seq;
	RETURN NEXT;
END
$fn$;
`

// publishCheckedSQL is publishSQL for one of several databases: $11 is the
// set of databases the node routes by, which the database must record.
var publishCheckedSQL = strings.Replace(publishSQL,
	"WITH ORDINALITY AS u(topic, n, i)\n)",
	"WITH ORDINALITY AS u(topic, n, i) WHERE {schema}.hearth_check_members($11)\n)", 1)

// errOutdated fails the publishing of a node whose database now records
// another set of databases.
var errOutdated = errors.New("postgres: the cluster's databases changed since this node started (a database was added or removed): restart it with the current database URLs")

// ownerOf returns the index in ids of the database that owns topic: the
// highest score md5(id || ':' || topic)[:8] as a signed big-endian
// integer, the smallest id on a tie. hearth_owner() in SQL computes the
// same.
func ownerOf(topic string, ids []string) int {
	var buf [64 + 256]byte
	best, bestScore := 0, int64(0)
	for i, id := range ids {
		sum := md5.Sum(append(append(append(buf[:0], id...), ':'), topic...))
		s := int64(binary.BigEndian.Uint64(sum[:8]))
		if i == 0 || s > bestScore || s == bestScore && id < ids[best] {
			best, bestScore = i, s
		}
	}
	return best
}

// part returns the part of the database that owns topic.
func (b *Broker) part(topic string) *Broker { return b.parts[ownerOf(topic, b.ids)] }

// Database returns the identity of the database that owns topic (its
// hearth_meta key "database"), on a node given several databases, and its
// index in Options.URLs. With one database it returns "" and 0.
func (b *Broker) Database(topic string) (id string, index int) {
	if b.parts == nil {
		return "", 0
	}
	i := ownerOf(topic, b.ids)
	return b.ids[i], i
}

// newMulti starts a node on several databases: a part per database, then
// the cluster's set of databases (joinCluster), then the parts' listeners.
func newMulti(ctx context.Context, opts Options) (*Broker, error) {
	b := &Broker{opts: opts, names: newNames(opts.Schema), log: opts.Logger}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	b.log = b.log.With("node", opts.Name)
	b.lastState = StateDown
	fail := func(err error) (*Broker, error) {
		for _, p := range b.parts {
			if p.ctx != nil {
				p.Close()
			} else {
				p.closePool()
			}
		}
		return nil, err
	}
	pools := make([]*pgxpool.Pool, 0, len(opts.URLs))
	for i, u := range opts.URLs {
		o := opts
		o.URL, o.URLs, o.ListenURL, o.ListenURLs = u, nil, "", nil
		if opts.ListenURLs != nil {
			o.ListenURL = opts.ListenURLs[i]
		}
		o.Logger = opts.Logger
		if o.Logger != nil {
			o.Logger = o.Logger.With("database", i)
		}
		o.OnStateChange = func(State) { b.partStateChanged() }
		p, err := prepare(ctx, o)
		if err != nil {
			return fail(fmt.Errorf("postgres: database %d of %d: %w", i+1, len(opts.URLs), err))
		}
		b.parts = append(b.parts, p)
		pools = append(pools, p.pool)
	}
	ids, members, err := joinCluster(ctx, pools, b.names, opts.Rebalance, b.log)
	if err != nil {
		return fail(err)
	}
	b.ids, b.members = ids, members
	for i, p := range b.parts {
		p.dbID, p.members = ids[i], members
		p.publishSQL = p.names.expand(publishCheckedSQL)
	}
	for i, p := range b.parts {
		if err := p.start(ctx); err != nil {
			b.parts[i] = &Broker{pool: p.pool} // pool closed by start
			return fail(fmt.Errorf("postgres: database %d of %d: %w", i+1, len(opts.URLs), err))
		}
	}
	b.started.Store(true)
	b.partStateChanged()
	return b, nil
}

// closeParts closes every part, at once.
func (b *Broker) closeParts() {
	var wg sync.WaitGroup
	for _, p := range b.parts {
		wg.Add(1)
		go func() { defer wg.Done(); p.Close() }()
	}
	wg.Wait()
	b.partStateChanged()
}

// controlPart is where controls go: the first part whose listener is up
// (its database answers, as far as the node knows), else the first.
func (b *Broker) controlPart() *Broker {
	for _, p := range b.parts {
		if p.State() != StateDown {
			return p
		}
	}
	return b.parts[0]
}

// multiState is the state of a node on several databases.
func (b *Broker) multiState() State {
	down, healthy := 0, 0
	for _, p := range b.parts {
		if p.outdated.Load() {
			return StateDown
		}
		switch p.State() {
		case StateDown:
			down++
		case StateHealthy:
			healthy++
		}
	}
	switch {
	case down == len(b.parts):
		return StateDown
	case healthy == len(b.parts):
		return StateHealthy
	}
	return StateCatchingUp
}

// partStateChanged tells OnStateChange about a change of the node's state
// that a part's change made.
func (b *Broker) partStateChanged() {
	if b.opts.OnStateChange == nil || !b.started.Load() {
		return // New reports the state once every part started
	}
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	if s := b.multiState(); s != b.lastState {
		b.lastState = s
		b.opts.OnStateChange(s)
	}
}

// multiStats sums the parts' figures.
func (b *Broker) multiStats() Stats {
	out := Stats{State: b.multiState(), Databases: make([]Stats, len(b.parts))}
	for i, p := range b.parts {
		s := p.Stats()
		out.Databases[i] = s
		out.Published += s.Published
		out.Batches += s.Batches
		out.MaxBatch = max(out.MaxBatch, s.MaxBatch)
		for j := range s.BatchSizes {
			out.BatchSizes[j] += s.BatchSizes[j]
		}
		out.Notifications += s.Notifications
		out.PublishErrors += s.PublishErrors
		for j := range s.PublishLatency {
			out.PublishLatency[j] += s.PublishLatency[j]
		}
		out.PublishSeconds += s.PublishSeconds
		out.Queued += s.Queued
		out.Received += s.Received
		out.ShardsListened += s.ShardsListened
		out.Listens += s.Listens
		out.Unlistens += s.Unlistens
		out.Delivered += s.Delivered
		out.Fetched += s.Fetched
		out.Duplicates += s.Duplicates
		out.Missed += s.Missed
		out.Gaps += s.Gaps
		out.BadNotifications += s.BadNotifications
		out.Reconnects += s.Reconnects
		out.CatchUps += s.CatchUps
		out.Trimmed += s.Trimmed
		out.EpochRotations += s.EpochRotations
	}
	return out
}

// checkMembers notices that the database records another set of databases
// than this node (or part) was started with: its publishing then fails and
// it reports StateDown until restarted.
func (b *Broker) checkMembers(ctx context.Context) {
	if b.outdated.Load() {
		return
	}
	var v string
	if err := b.pool.QueryRow(ctx, "SELECT coalesce((SELECT value FROM "+b.names.meta+" WHERE key = 'members'), '')").Scan(&v); err != nil || v == b.members {
		return
	}
	b.log.Error("postgres: the cluster's databases changed since this node started (a database was added or removed): it refuses to publish and reports down; restart it with the current database URLs",
		"started_with", b.members, "now", v)
	b.outdated.Store(true)
	b.setState(StateDown)
}

// dbRecord is what a database records about the cluster.
type dbRecord struct {
	id      string
	members *string // nil: a database of its own
	gen     int64
	topics  bool // it holds topics
}

func sameMembers(a *string, b string) bool {
	if a == nil {
		return b == ""
	}
	return *a == b
}

// installCluster creates or updates the objects of clusterSQL in the
// database.
func installCluster(ctx context.Context, pool *pgxpool.Pool, n names) error {
	var v string
	if err := pool.QueryRow(ctx, "SELECT coalesce((SELECT value FROM "+n.meta+" WHERE key = 'cluster'), '')").Scan(&v); err != nil {
		return err
	}
	if v == clusterVersion {
		return nil
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", n.lockKey); err != nil {
			return err
		}
		var channel string
		if err := tx.QueryRow(ctx, "SELECT value FROM "+n.meta+" WHERE key = 'channel'").Scan(&channel); err != nil {
			return err
		}
		n.setChannel(channel)
		if _, err := tx.Exec(ctx, n.expand(clusterSQL)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO "+n.meta+" (key, value) VALUES ('cluster', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value", clusterVersion)
		return err
	})
}

const recordSQL = `SELECT (SELECT value FROM {meta} WHERE key = 'database'),
	(SELECT value FROM {meta} WHERE key = 'members'),
	coalesce((SELECT value FROM {meta} WHERE key = 'members_gen'), '0'),
	EXISTS (SELECT 1 FROM {topics})`

func readRecord(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, n names) (dbRecord, error) {
	var r dbRecord
	var gen string
	if err := q.QueryRow(ctx, n.expand(recordSQL)).Scan(&r.id, &r.members, &gen, &r.topics); err != nil {
		return r, err
	}
	var err error
	if r.gen, err = strconv.ParseInt(gen, 10, 64); err != nil {
		return r, fmt.Errorf("bad members_gen %q", gen)
	}
	return r, nil
}

// joinCluster makes the databases of pools (one per URL, in the node's
// order) record them as the cluster's databases, and returns their
// identities and the set they record ("" for a single database, which
// then records none). A database's record changes only when every
// database records nothing and holds no topic yet (a new cluster), or with
// rebalance: then each database drops the topics whose owner changes,
// moving out or in (see the top of this file), keeping those it owned
// before and owns still; a database that missed the last change (it was
// removed and comes back, or two clusters merge) keeps none.
func joinCluster(ctx context.Context, pools []*pgxpool.Pool, n names, rebalance bool, log *slog.Logger) ([]string, string, error) {
	recs := make([]dbRecord, len(pools))
	for i, pool := range pools {
		if err := installCluster(ctx, pool, n); err != nil {
			return nil, "", fmt.Errorf("postgres: database %d of %d: installing the cluster functions: %w", i+1, len(pools), err)
		}
		r, err := readRecord(ctx, pool, n)
		if err != nil {
			return nil, "", fmt.Errorf("postgres: database %d of %d: reading its cluster record: %w", i+1, len(pools), err)
		}
		recs[i] = r
	}
	ids := make([]string, len(recs))
	for i, r := range recs {
		if j := slices.Index(ids[:i], r.id); j >= 0 {
			return nil, "", fmt.Errorf("postgres: database URLs %d and %d reach the same database (identity %s)", j+1, i+1, r.id)
		}
		ids[i] = r.id
	}
	sorted := slices.Sorted(slices.Values(ids))
	owners := strings.Join(sorted, ",") // the set topics are placed by
	want := owners                      // what the databases record
	if len(ids) == 1 {
		want = ""
	}
	same, fresh := true, true
	var maxGen int64
	for _, r := range recs {
		if !sameMembers(r.members, want) {
			same = false
			if r.members != nil || r.topics || r.gen != 0 {
				fresh = false
			}
		}
		maxGen = max(maxGen, r.gen)
	}
	if same {
		return ids, want, nil
	}
	if !rebalance && !fresh {
		var b strings.Builder
		for i, r := range recs {
			rec := "none (a database of its own)"
			if r.members != nil {
				rec = *r.members
			}
			fmt.Fprintf(&b, "; database %d (%s) records %s", i+1, r.id, rec)
		}
		return nil, "", fmt.Errorf("postgres: this node was given the databases %s, but the databases record another set%s: adding or removing a database moves topics to a new epoch; to do it, start one node with Options.Rebalance (hearth serve --database-rebalance), see docs/clustering.md",
			owners, b.String())
	}
	// The set before this change: the one of the latest generation.
	var prev *string
	for _, r := range recs {
		if r.gen == maxGen {
			prev = r.members
			break
		}
	}
	newGen := maxGen + 1
	for i, r := range recs {
		moved, err := applyMembers(ctx, pools[i], n, r, prev, maxGen, owners, want, newGen)
		if err != nil {
			return nil, "", fmt.Errorf("postgres: database %d of %d: recording the cluster's databases: %w", i+1, len(pools), err)
		}
		if moved > 0 || !sameMembers(r.members, want) {
			log.Info("postgres: database records the cluster's databases", "database", r.id, "members", want, "generation", newGen, "topics_dropped", moved)
		}
	}
	return ids, want, nil
}

// applyMembers records want (and newGen) in one database, dropping the
// topics whose owner changes. r is what it recorded when joinCluster read
// it, prev and prevGen the set of the latest generation.
func applyMembers(ctx context.Context, pool *pgxpool.Pool, n names, r dbRecord, prev *string, prevGen int64, owners, want string, newGen int64) (int64, error) {
	var dropped int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", n.lockKey); err != nil {
			return err
		}
		cur, err := readRecord(ctx, tx, n)
		if err != nil {
			return err
		}
		switch {
		case sameMembers(cur.members, want) && cur.gen >= newGen:
			return nil // another node did it meanwhile
		case !sameMembers(cur.members, want) && (cur.gen != r.gen || !sameMembers(cur.members, strOr(r.members))):
			return fmt.Errorf("another node changed the cluster's databases meanwhile: start this node again")
		}
		var topics []string
		var q string
		var args []any
		switch {
		case sameMembers(cur.members, want):
			// A change begun before and left unfinished: this database's
			// topics already follow want.
		case cur.gen == prevGen && sameMembers(cur.members, strOr(prev)):
			// Keep what it owned and owns still. A database of its own
			// (prev nil) owned everything.
			q = `WITH d AS (DELETE FROM {topics} WHERE {schema}.hearth_owner(topic, $1) IS DISTINCT FROM $3
				OR ($2::text IS NOT NULL AND {schema}.hearth_owner(topic, $2) IS DISTINCT FROM $3) RETURNING topic)
				SELECT coalesce(array_agg(topic), '{}') FROM d`
			args = []any{owners, prev, r.id}
		default:
			// It missed the last change: nothing it holds can be trusted.
			q = `WITH d AS (DELETE FROM {topics} RETURNING topic) SELECT coalesce(array_agg(topic), '{}') FROM d`
		}
		if q != "" {
			if err := tx.QueryRow(ctx, n.expand(q), args...).Scan(&topics); err != nil {
				return err
			}
		}
		dropped = int64(len(topics))
		if len(topics) > 0 {
			if _, err := tx.Exec(ctx, "DELETE FROM "+n.messages+" WHERE topic = ANY($1)", topics); err != nil {
				return err
			}
		}
		if want == "" {
			_, err = tx.Exec(ctx, "DELETE FROM "+n.meta+" WHERE key = 'members'")
		} else {
			_, err = tx.Exec(ctx, "INSERT INTO "+n.meta+" (key, value) VALUES ('members', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value", want)
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "INSERT INTO "+n.meta+" (key, value) VALUES ('members_gen', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value", strconv.FormatInt(newGen, 10))
		return err
	})
	return dropped, err
}

func strOr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
