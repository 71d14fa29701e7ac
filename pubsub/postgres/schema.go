package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// schemaVersion is the version of the objects that migrate creates. Each
// step in migrations takes the schema from version i to i+1.
const schemaVersion = 2

// names are the schema-qualified names of Hearth's objects in one schema.
type names struct {
	schema   string // quoted schema
	meta     string
	topics   string
	messages string
	publish  string // function hearth_publish
	channel  string // notification channel of controls, unquoted
	// shardPrefix + shard number is the channel of a shard (shard.go).
	shardPrefix string
	shardChans  []string // shardPrefix + i, for i < Shards
	lockKey     int64    // advisory lock key of this schema's migration
	trimKey     int64    // advisory lock key of this schema's trimming
}

func newNames(schema string) names {
	q := pgx.Identifier{schema}.Sanitize()
	return names{
		schema:   q,
		meta:     q + ".hearth_meta",
		topics:   q + ".hearth_topics",
		messages: q + ".hearth_messages",
		publish:  q + ".hearth_publish",
		lockKey:  lockKey("hearth.migrate." + schema),
		trimKey:  lockKey("hearth.trim." + schema),
	}
}

// setChannel sets the schema's channel and the shard channels' prefix.
func (n *names) setChannel(c string) {
	n.channel = c
	n.shardPrefix = shardPrefix(c)
	n.shardChans = make([]string, Shards)
	for i := range n.shardChans {
		n.shardChans[i] = n.shardPrefix + strconv.Itoa(i)
	}
}

func lockKey(s string) int64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return int64(h.Sum64())
}

// defaultChannel is the channel of a schema whose nodes did not choose one:
// "hearth" in schema public, "hearth_<schema>" elsewhere (hashed when that
// would exceed PostgreSQL's 63-byte identifiers), so that several Hearth
// schemas in one database do not hear each other.
func defaultChannel(schema string) string {
	if schema == "public" {
		return "hearth"
	}
	if c := "hearth_" + schema; len(c) <= 63 {
		return c
	}
	h := fnv.New64a()
	h.Write([]byte(schema))
	return "hearth_" + strconv.FormatUint(h.Sum64(), 16)
}

// validName reports whether s is an acceptable schema or channel name:
// 1 to 63 bytes of ASCII letters, digits and underscores.
func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// migrations[i] takes the schema from version i to i+1. The text is a
// template: {schema}, {meta}, {topics}, {messages}, {publish}, {channel},
// {shards} and {shardprefix} are replaced before it runs.
var migrations = []string{
	// 0 -> 1: topics, history, the SQL publishing functions.
	`
CREATE TABLE IF NOT EXISTS {topics} (
	topic      text PRIMARY KEY,
	epoch      text NOT NULL DEFAULT substr(md5(random()::text || clock_timestamp()::text), 1, 16)
		CHECK (octet_length(epoch) BETWEEN 1 AND 64), -- maxEpoch in notify.go
	seq        bigint NOT NULL DEFAULT 0,
	updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE {topics} IS 'Hearth: one row per topic, its epoch and the offset of its latest message';

CREATE TABLE IF NOT EXISTS {messages} (
	topic      text NOT NULL,
	seq        bigint NOT NULL,
	event      text NOT NULL,
	payload    bytea NOT NULL,
	is_binary  boolean NOT NULL DEFAULT false,
	exclude    text NOT NULL DEFAULT '',
	created_at timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (topic, seq)
);
COMMENT ON TABLE {messages} IS 'Hearth: the history of every topic, trimmed by age and count';
CREATE INDEX IF NOT EXISTS hearth_messages_created_at ON {messages} USING brin (created_at);

CREATE OR REPLACE FUNCTION {publish}(
	p_topic text, p_event text, p_payload bytea,
	p_binary boolean DEFAULT false, p_exclude text DEFAULT '')
RETURNS TABLE (epoch text, "offset" bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
	v_epoch text;
	v_seq   bigint;
	v_head  text;
	v_rec   text;
BEGIN
	IF p_topic IS NULL OR p_topic = '' OR octet_length(p_topic) > 255 THEN
		RAISE EXCEPTION 'hearth: invalid topic %', p_topic USING ERRCODE = '22023';
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
	PERFORM pg_notify('{channel}', v_head || v_rec);
	epoch := v_epoch;
	"offset" := v_seq;
	RETURN NEXT;
END
$fn$;
COMMENT ON FUNCTION {publish}(text, text, bytea, boolean, text) IS
	'Hearth: store a broadcast in the history and notify every node; returns its epoch and offset';

CREATE OR REPLACE FUNCTION {schema}.hearth_broadcast(topic text, event text, payload jsonb)
RETURNS bigint
LANGUAGE sql AS $fn$
	SELECT "offset" FROM {publish}($1, $2, convert_to($3::text, 'UTF8'))
$fn$;
COMMENT ON FUNCTION {schema}.hearth_broadcast(text, text, jsonb) IS
	'Hearth: broadcast a JSON payload on a topic to every subscriber on every node; returns its offset';
`,
	// 1 -> 2: interest-based listening (shard.go). hearth_shard computes a
	// topic's shard as shardOf does; hearth_publish notifies the topic's
	// shard channel instead of the schema's channel.
	`
INSERT INTO {meta} (key, value) VALUES ('shards', '{shards}')
	ON CONFLICT (key) DO UPDATE SET value = excluded.value;

CREATE OR REPLACE FUNCTION {schema}.hearth_shard(topic text)
RETURNS integer
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $fn$
	SELECT (('x' || substr(md5($1), 1, 8))::bit(32)::bigint % {shards})::integer
$fn$;
COMMENT ON FUNCTION {schema}.hearth_shard(text) IS
	'Hearth: the notification shard of a topic; its notifications go to channel ''{shardprefix}'' || shard';

CREATE OR REPLACE FUNCTION {publish}(
	p_topic text, p_event text, p_payload bytea,
	p_binary boolean DEFAULT false, p_exclude text DEFAULT '')
RETURNS TABLE (epoch text, "offset" bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
	v_epoch text;
	v_seq   bigint;
	v_head  text;
	v_rec   text;
BEGIN
	IF p_topic IS NULL OR p_topic = '' OR octet_length(p_topic) > 255 THEN
		RAISE EXCEPTION 'hearth: invalid topic %', p_topic USING ERRCODE = '22023';
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
`,
}

func (n names) expand(tmpl string) string {
	return strings.NewReplacer(
		"{schema}", n.schema,
		"{meta}", n.meta,
		"{topics}", n.topics,
		"{messages}", n.messages,
		"{publish}", n.publish,
		"{channel}", n.channel, // validName: no quote can appear
		"{shards}", strconv.Itoa(Shards),
		"{shardprefix}", n.shardPrefix, // validName plus '.' and hex digits
	).Replace(tmpl)
}

// migrate creates or upgrades Hearth's objects in schema and returns the
// schema's notification channel. It is idempotent, and safe when several
// nodes run it at the same moment: the work happens in one transaction under
// an advisory lock. channel is the channel the caller asks for ("" for the
// schema's own); it is recorded by the first node and must match later.
func migrate(ctx context.Context, pool *pgxpool.Pool, schema, channel string) (string, error) {
	n := newNames(schema)
	// Fast path, without DDL or locks: the schema is current.
	var version, stored string
	err := pool.QueryRow(ctx, `SELECT
		coalesce((SELECT value FROM `+n.meta+` WHERE key = 'version'), ''),
		coalesce((SELECT value FROM `+n.meta+` WHERE key = 'channel'), '')`).Scan(&version, &stored)
	var pgErr *pgconn.PgError
	switch {
	case err == nil && version == strconv.Itoa(schemaVersion):
		return checkChannel(stored, channel)
	case err == nil, errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000"):
		// Older version, or no table/schema yet.
	default:
		return "", fmt.Errorf("postgres: reading schema version: %w", err)
	}

	var encoding string
	if err := pool.QueryRow(ctx, "SHOW server_encoding").Scan(&encoding); err != nil {
		return "", fmt.Errorf("postgres: reading server encoding: %w", err)
	}
	if encoding != "UTF8" && encoding != "SQL_ASCII" {
		return "", fmt.Errorf("postgres: database encoding %s is not supported, use UTF8", encoding)
	}

	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", n.lockKey); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+n.schema); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+n.meta+" (key text PRIMARY KEY, value text NOT NULL)"); err != nil {
			return err
		}
		// Under the lock, what we read is what the last migration left.
		var v string
		if err := tx.QueryRow(ctx, "SELECT coalesce((SELECT value FROM "+n.meta+" WHERE key = 'version'), '0')").Scan(&v); err != nil {
			return err
		}
		cur, err := strconv.Atoi(v)
		if err != nil || cur < 0 {
			return fmt.Errorf("bad schema version %q", v)
		}
		if cur > schemaVersion {
			return fmt.Errorf("schema version %d is newer than this Hearth's %d: upgrade this node", cur, schemaVersion)
		}
		want := channel
		if want == "" {
			want = defaultChannel(schema)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+n.meta+" (key, value) VALUES ('channel', $1) ON CONFLICT (key) DO NOTHING", want); err != nil {
			return err
		}
		if err := tx.QueryRow(ctx, "SELECT value FROM "+n.meta+" WHERE key = 'channel'").Scan(&stored); err != nil {
			return err
		}
		if !validName(stored) {
			return fmt.Errorf("bad channel %q recorded in %s", stored, n.meta)
		}
		n.setChannel(stored)
		for i := cur; i < schemaVersion; i++ {
			if _, err := tx.Exec(ctx, n.expand(migrations[i])); err != nil {
				return fmt.Errorf("step %d: %w", i+1, err)
			}
		}
		_, err = tx.Exec(ctx, "INSERT INTO "+n.meta+" (key, value) VALUES ('version', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value", strconv.Itoa(schemaVersion))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("postgres: migrating schema %s: %w", schema, err)
	}
	return checkChannel(stored, channel)
}

func checkChannel(stored, asked string) (string, error) {
	if asked != "" && asked != stored {
		return "", fmt.Errorf("postgres: channel %q was asked for, but the schema's nodes use %q", asked, stored)
	}
	return stored, nil
}
