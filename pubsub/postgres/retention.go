package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// Retention: every TrimInterval one node (whichever takes the schema's trim
// lock) deletes messages older than HistoryTTL, and for every topic
// published since its previous run, the messages beyond the newest
// HistorySize. The topic rows stay: they hold the epoch and the offset.

// The trimming statements walk the history's primary key (topic, seq) from
// each candidate topic's oldest message, so a pass costs about the rows it
// deletes however large the table is. A sequential scan, which a join
// against the topics lets the planner choose, would read the whole history
// (all of it, dead rows included) every TrimInterval. The LATERAL
// subqueries, fenced with OFFSET 0 so that the planner cannot flatten them
// into such a join, keep it on the index; the rows are then deleted by
// ctid.
//
// trimAgeSQL deletes, in every topic published since $1, the messages
// before its first one younger than the TTL ($2). A topic last published
// before the previous pass's cutoff lost all its messages in that pass.
// Offsets follow commit order while created_at is each batch's transaction
// start, so a message can be a few milliseconds older than one before it:
// at the TTL's edge the cut is that precise.
const trimAgeSQL = `DELETE FROM {messages} WHERE ctid = ANY (ARRAY(
	SELECT m.ctid FROM {topics} t
	CROSS JOIN LATERAL (
		SELECT ctid FROM {messages}
		WHERE topic = t.topic AND seq < coalesce(
			(SELECT seq FROM {messages} WHERE topic = t.topic AND created_at >= now() - $2::interval ORDER BY seq LIMIT 1),
			t.seq + 1)
		OFFSET 0
	) m
	WHERE t.updated_at >= $1::timestamptz))`

// trimCountSQL deletes, in every topic published since $1, the messages
// beyond its newest $2.
const trimCountSQL = `DELETE FROM {messages} WHERE ctid = ANY (ARRAY(
	SELECT m.ctid FROM {topics} t
	CROSS JOIN LATERAL (SELECT ctid FROM {messages} WHERE topic = t.topic AND seq <= t.seq - $2 OFFSET 0) m
	WHERE t.updated_at >= $1::timestamptz AND t.seq > $2))`

// trimSlack widens the "published since" window of the count trimming, so a
// transaction that started before the previous run but committed after it
// is still seen.
const trimSlack = time.Minute

func (b *Broker) trimLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.TrimInterval)
	defer t.Stop()
	var since time.Time // zero: every topic, on the first run
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		b.checkMembers(b.ctx)
		start, n, err := b.trim(b.ctx, since)
		if err != nil {
			if b.ctx.Err() == nil {
				b.log.Warn("postgres: trimming history failed", "err", err)
			}
			continue
		}
		if !start.IsZero() {
			since = start.Add(-trimSlack)
		}
		b.st.trimmed.Add(uint64(n))
	}
}

// trim runs one trimming pass for the topics updated after since (all of
// them when since is zero). It returns the database time at which the pass
// started (zero if another node held the lock) and the rows deleted.
func (b *Broker) trim(ctx context.Context, since time.Time) (time.Time, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var start time.Time
	var deleted int64
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var locked bool
		if err := tx.QueryRow(ctx, "SELECT pg_try_advisory_xact_lock($1), now()", b.names.trimKey).Scan(&locked, &start); err != nil {
			return err
		}
		if !locked {
			start = time.Time{}
			return nil
		}
		sinceArg := pgtype.Timestamptz{Time: since, Valid: true}
		ttlSince := pgtype.Timestamptz{Time: since.Add(-b.opts.HistoryTTL), Valid: true}
		if since.IsZero() {
			sinceArg = pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
			ttlSince = sinceArg
		}
		tag, err := tx.Exec(ctx, b.names.expand(trimAgeSQL), ttlSince, b.opts.HistoryTTL)
		if err != nil {
			return err
		}
		deleted += tag.RowsAffected()
		tag, err = tx.Exec(ctx, b.names.expand(trimCountSQL), sinceArg, int64(b.opts.HistorySize))
		if err != nil {
			return err
		}
		deleted += tag.RowsAffected()
		return nil
	})
	return start, deleted, err
}
