package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Failover: NOTIFY is not replicated, and with asynchronous replication
// the last commits before a primary's crash may be missing on the standby
// that replaces it. The new primary then hands out offsets that clients
// already saw for other messages: a client recovering "after offset N"
// would silently skip the new messages numbered up to N. A promoted standby
// runs on a new timeline, so every new connection compares the server's
// timeline with the one recorded in the schema; on a change, the first
// node to see it moves every topic to a new epoch (offsets restart, the
// old history is dropped) in the same transaction that records the new
// timeline, before anything is published there. Clients that rejoin with
// a position of the old epoch are told that recovery was incomplete, and
// the app refetches, instead of missing messages. With
// Options.SynchronousFailover the operator vouches that failovers go only
// to synchronous standbys (nothing acknowledged was lost): the timeline is
// recorded and the epochs stay.

// timelineSQL reads the server's current WAL timeline (the first 8 hex
// digits of the current WAL file's name), which every promotion increases.
const timelineSQL = `SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int`

// checkTimeline is run on every new connection of the broker's pool
// before it is used, and once by New.
func (b *Broker) checkTimeline(ctx context.Context, conn *pgx.Conn) error {
	return checkTimeline(ctx, conn, b.names, b.opts.SynchronousFailover, b.log, &b.st)
}

func checkTimeline(ctx context.Context, conn *pgx.Conn, n names, syncFailover bool, log *slog.Logger, st *stats) error {
	var cur int64
	var stored string
	err := conn.QueryRow(ctx, `SELECT (`+timelineSQL+`), coalesce((SELECT value FROM `+n.meta+` WHERE key = 'timeline'), '')`).Scan(&cur, &stored)
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && (pgErr.Code == "42P01" || pgErr.Code == "3F000"):
		return nil // no schema yet: New migrates, then checks again
	case err != nil:
		return fmt.Errorf("postgres: reading the server's timeline: %w", err)
	case stored == strconv.FormatInt(cur, 10):
		return nil
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", n.lockKey); err != nil {
			return err
		}
		var stored string
		if err := tx.QueryRow(ctx, "SELECT coalesce((SELECT value FROM "+n.meta+" WHERE key = 'timeline'), '')").Scan(&stored); err != nil {
			return err
		}
		now := strconv.FormatInt(cur, 10)
		if stored == now {
			return nil // another node did it meanwhile
		}
		if stored != "" && !syncFailover {
			tag, err := tx.Exec(ctx, "UPDATE "+n.topics+" SET epoch = substr(md5(random()::text || clock_timestamp()::text || topic), 1, 16), seq = 0, updated_at = now()")
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "TRUNCATE "+n.messages); err != nil {
				return err
			}
			st.epochRotations.Add(uint64(tag.RowsAffected()))
			log.Warn("postgres: the server is on a new timeline (a failover): every topic moves to a new epoch, so that clients are told their recovery is incomplete (commits may have been lost; set SynchronousFailover if failovers only go to synchronous standbys)",
				"timeline_was", stored, "timeline", now, "topics", tag.RowsAffected())
		} else if stored != "" {
			log.Warn("postgres: the server is on a new timeline (a failover); SynchronousFailover is set, so the topics keep their epochs",
				"timeline_was", stored, "timeline", now)
		}
		_, err := tx.Exec(ctx, "INSERT INTO "+n.meta+" (key, value) VALUES ('timeline', $1) ON CONFLICT (key) DO UPDATE SET value = excluded.value", now)
		return err
	})
}
