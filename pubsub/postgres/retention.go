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
		tag, err := tx.Exec(ctx, "DELETE FROM "+b.names.messages+" WHERE created_at < now() - $1::interval", b.opts.HistoryTTL)
		if err != nil {
			return err
		}
		deleted += tag.RowsAffected()
		sinceArg := pgtype.Timestamptz{Time: since, Valid: true}
		if since.IsZero() {
			sinceArg = pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
		}
		tag, err = tx.Exec(ctx, `DELETE FROM `+b.names.messages+` m
			USING (SELECT topic, seq FROM `+b.names.topics+` WHERE updated_at >= $1::timestamptz AND seq > $2) t
			WHERE m.topic = t.topic AND m.seq <= t.seq - $2`, sinceArg, int64(b.opts.HistorySize))
		if err != nil {
			return err
		}
		deleted += tag.RowsAffected()
		return nil
	})
	return start, deleted, err
}
