package postgres

import (
	"context"
	"fmt"

	"github.com/hearth-rt/hearth/pubsub"
)

// History implements pubsub.Broker. It reads the topic's position and the
// messages after since in one statement, so they are consistent. Messages
// older than HistoryTTL count as trimmed even before the trimmer removed
// them. A topic that does not exist yet is created, so that the position
// returned has the epoch its first messages will carry.
func (b *Broker) History(ctx context.Context, topic string, since pubsub.Position, limit int) (pubsub.History, error) {
	if err := pubsub.CheckTopic(topic); err != nil {
		return pubsub.History{}, err
	}
	if b.parts != nil {
		return b.part(topic).History(ctx, topic, since, limit)
	}
	if b.isClosed() {
		return pubsub.History{}, pubsub.ErrClosed
	}
	if limit <= 0 || limit > b.opts.HistorySize {
		limit = b.opts.HistorySize
	}
	h, found, err := b.readHistory(ctx, topic, since, limit)
	if err != nil {
		return pubsub.History{}, fmt.Errorf("postgres: reading history of %q: %w", topic, err)
	}
	if !found {
		// Nothing was published yet: only "before the first message" is
		// complete, whatever epoch the caller had.
		epoch, top, err := b.head(ctx, topic, true)
		if err != nil {
			return pubsub.History{}, fmt.Errorf("postgres: reading history of %q: %w", topic, err)
		}
		if top != 0 {
			// Published between the two reads: read again.
			if h, _, err = b.readHistory(ctx, topic, since, limit); err != nil {
				return pubsub.History{}, fmt.Errorf("postgres: reading history of %q: %w", topic, err)
			}
			return h, nil
		}
		return pubsub.History{Top: pubsub.Position{Epoch: epoch}, Complete: since.Offset == 0}, nil
	}
	return h, nil
}

func (b *Broker) readHistory(ctx context.Context, topic string, since pubsub.Position, limit int) (pubsub.History, bool, error) {
	rows, err := b.pool.Query(ctx, `SELECT t.epoch, t.seq, m.seq, coalesce(m.event, ''), coalesce(m.payload, ''::bytea),
				coalesce(m.is_binary, false), coalesce(m.exclude, '')
		FROM `+b.names.topics+` t LEFT JOIN LATERAL (
			SELECT seq, event, payload, is_binary, exclude FROM `+b.names.messages+` m
			WHERE m.topic = t.topic AND m.seq > $2 AND m.seq <= t.seq AND t.epoch = $3
				AND m.created_at > now() - $5::interval
			ORDER BY m.seq LIMIT $4) m ON true
		WHERE t.topic = $1`, topic, int64(min(since.Offset, 1<<63-1)), since.Epoch, limit, b.opts.HistoryTTL)
	if err != nil {
		return pubsub.History{}, false, err
	}
	defer rows.Close()
	var h pubsub.History
	found := false
	for rows.Next() {
		var top int64
		var seq *int64
		m := pubsub.Message{Topic: topic}
		if err := rows.Scan(&h.Top.Epoch, &top, &seq, &m.Event, &m.Payload, &m.Binary, &m.Exclude); err != nil {
			return pubsub.History{}, false, err
		}
		found = true
		h.Top.Offset = uint64(top)
		if seq != nil {
			m.Epoch, m.Offset = h.Top.Epoch, uint64(*seq)
			h.Messages = append(h.Messages, m)
		}
	}
	if err := rows.Err(); err != nil {
		return pubsub.History{}, false, err
	}
	if !found {
		return pubsub.History{}, false, nil
	}
	switch {
	case since.Epoch != h.Top.Epoch:
		// Another epoch: the caller's position means nothing here.
	case since.Offset >= h.Top.Offset:
		h.Complete = since.Offset == h.Top.Offset
	default:
		n := len(h.Messages)
		h.Complete = n > 0 && h.Messages[0].Offset == since.Offset+1 && h.Messages[n-1].Offset == h.Top.Offset
	}
	return h, true, nil
}
