package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hearth-rt/hearth/pubsub"
)

// The listener: one dedicated connection per node, LISTENing on the
// schema's channel. It waits for notifications; after PingInterval of
// silence it pings, because a peer that vanished is only noticed on a write.
// When the connection fails it marks every topic stale, reconnects with
// jittered exponential backoff, LISTENs again and only then catches every
// topic up from the table: whatever committed before the new LISTEN is in
// the table, whatever commits after it arrives as a notification, and
// offsets drop what arrives twice.

// connectListener opens the listener connection, LISTENs, and proves that
// notifications reach it.
func (b *Broker) connectListener(ctx context.Context) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, b.opts.PingTimeout*3)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, b.lconf)
	if err != nil {
		return nil, fmt.Errorf("postgres: listener: %w", err)
	}
	// The schema's channel and the shards of the node's topics, in one
	// implicit transaction; the probe runs once it committed.
	shards := b.wantedShards()
	sql := "LISTEN " + pgx.Identifier{b.names.channel}.Sanitize()
	for _, i := range shards {
		sql += "; LISTEN " + pgx.Identifier{b.names.shardChans[i]}.Sanitize()
	}
	if _, err = conn.Exec(ctx, sql); err == nil {
		err = b.probe(ctx, conn)
	}
	if err != nil {
		closeConn(conn)
		if !errors.Is(err, ErrNotListening) {
			err = fmt.Errorf("postgres: listener: %w", err)
		}
		return nil, err
	}
	b.smu.Lock()
	for _, i := range shards {
		b.listened[i] = true
	}
	b.nListened.Store(int64(len(shards)))
	b.smu.Unlock()
	b.st.listens.Add(uint64(len(shards)))
	return conn, nil
}

// wantedShards returns the shards the node must listen to: all of them
// with Options.ListenAll, else those of its subscribed topics.
func (b *Broker) wantedShards() []int {
	b.smu.RLock()
	defer b.smu.RUnlock()
	var out []int
	for i, n := range b.shardSubs {
		if n > 0 || b.opts.ListenAll {
			out = append(out, i)
		}
	}
	return out
}

// syncShards LISTENs to the shards that gained a subscribed topic and
// UNLISTENs those that lost their last one, in one implicit transaction on
// the listener connection (listener goroutine only). A shard to drop is
// marked unlistened before the UNLISTEN, a shard to add listened only once
// its LISTEN committed: a topic subscribed meanwhile sees its shard
// unlistened, is subscribed stale, and is caught up after the next sync
// (staleTopics holds it back until its shard is listened).
func (b *Broker) syncShards(ctx context.Context, conn *pgx.Conn) error {
	b.lmu.Lock()
	b.shardSync = false
	b.lmu.Unlock()
	var add, drop []int
	b.smu.Lock()
	for i, n := range b.shardSubs {
		want := n > 0 || b.opts.ListenAll
		switch {
		case want && !b.listened[i]:
			add = append(add, i)
		case !want && b.listened[i]:
			drop = append(drop, i)
			b.listened[i] = false
			b.nListened.Add(-1)
		}
	}
	b.smu.Unlock()
	if len(add) == 0 && len(drop) == 0 {
		return nil
	}
	var sql []byte
	for _, i := range add {
		sql = append(sql, "LISTEN "+pgx.Identifier{b.names.shardChans[i]}.Sanitize()+";"...)
	}
	for _, i := range drop {
		sql = append(sql, "UNLISTEN "+pgx.Identifier{b.names.shardChans[i]}.Sanitize()+";"...)
	}
	ctx, cancel := context.WithTimeout(ctx, b.opts.PingTimeout)
	defer cancel()
	if _, err := conn.Exec(ctx, string(sql)); err != nil {
		return fmt.Errorf("changing the shards listened to: %w", err)
	}
	b.smu.Lock()
	for _, i := range add {
		b.listened[i] = true
	}
	b.nListened.Add(int64(len(add)))
	b.smu.Unlock()
	b.st.listens.Add(uint64(len(add)))
	b.st.unlistens.Add(uint64(len(drop)))
	return nil
}

// requestShardSync asks the listener goroutine to run syncShards.
func (b *Broker) requestShardSync() {
	b.lmu.Lock()
	b.shardSync = true
	if b.waitCancel != nil {
		b.waitCancel()
	}
	b.lmu.Unlock()
}

// ErrNotListening is returned by [New] (and logged by a node reconnecting
// its listener) when a notification sent to the cluster's channel does not
// reach the listener connection: typically because that connection goes
// through a transaction pooler, where LISTEN holds no session. Point
// Options.ListenURL at the server or a session pooler.
var ErrNotListening = errors.New("postgres: notifications do not reach the listener connection " +
	"(through PgBouncer or another pooler in transaction mode? set Options.ListenURL to a direct or session-mode URL)")

// probe notifies the channel from the pool, a session other than the
// listener's, and waits for that notification on conn. A node whose
// listener hears nothing would still publish, but never deliver what its
// peers publish: better a clear error at start. Other notifications that
// arrive meanwhile are kept for serve, in order.
func (b *Broker) probe(ctx context.Context, conn *pgx.Conn) error {
	clear(b.early) // from an earlier attempt whose connection failed: caught up anyway
	b.early = b.early[:0]
	note := probeNote(b.opts.Name, rand.Uint64())
	if _, err := b.pool.Exec(ctx, "SELECT pg_notify($1, $2)", b.names.channel, note); err != nil {
		return fmt.Errorf("probe: %w", poolerHint(err))
	}
	wctx, cancel := context.WithTimeout(ctx, b.opts.PingTimeout)
	defer cancel()
	for {
		n, err := conn.WaitForNotification(wctx)
		switch {
		case err == nil && n.Payload == note:
			return nil
		case err == nil:
			b.early = append(b.early, n)
		case wctx.Err() != nil && ctx.Err() == nil:
			return ErrNotListening
		default:
			return err
		}
	}
}

// listen is the listener goroutine.
func (b *Broker) listen(conn *pgx.Conn) {
	defer b.wg.Done()
	for {
		err := b.serve(conn)
		closeConn(conn)
		if b.ctx.Err() != nil {
			return
		}
		b.st.reconnects.Add(1)
		b.setState(StateDown)
		b.smu.Lock()
		clear(b.listened[:]) // a new connection listens to nothing yet
		b.nListened.Store(0)
		b.smu.Unlock()
		b.markStale()
		b.log.Warn("postgres: listener connection lost, reconnecting", "err", err)
		if conn = b.reconnect(); conn == nil {
			return
		}
	}
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// reconnect connects again and catches up, retrying with backoff. It
// returns nil once the broker is closed.
func (b *Broker) reconnect() *pgx.Conn {
	for attempt := 0; ; attempt++ {
		if !b.sleep(b.backoff(attempt)) {
			return nil
		}
		conn, err := b.connectListener(b.ctx)
		if err == nil {
			b.setState(StateCatchingUp)
			if err = b.catchUp(b.ctx, b.staleTopics()); err == nil {
				b.st.catchUps.Add(1)
				b.setState(StateHealthy)
				b.log.Info("postgres: listener reconnected and caught up", "attempts", attempt+1)
				return conn
			}
			closeConn(conn)
			b.setState(StateDown)
		}
		if b.ctx.Err() != nil {
			return nil
		}
		b.log.Warn("postgres: listener reconnect failed", "attempt", attempt+1, "err", err)
	}
}

// backoff returns a full-jitter delay for attempt (0-based): uniform in
// [0, min(ReconnectMax, ReconnectMin*2^attempt)], never below ReconnectMin/2
// so that a dead server is not hammered.
func (b *Broker) backoff(attempt int) time.Duration {
	ceil := b.opts.ReconnectMax
	if attempt < 30 {
		if d := b.opts.ReconnectMin << attempt; d < ceil {
			ceil = d
		}
	}
	floor := b.opts.ReconnectMin / 2
	return floor + rand.N(ceil-floor+1)
}

// sleep waits d, or returns false when the broker closes first.
func (b *Broker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.ctx.Done():
		return false
	}
}

// serve reads notifications until the connection fails or the broker
// closes.
func (b *Broker) serve(conn *pgx.Conn) error {
	v := &noteHandler{b: b}
	// What arrived while the connection was being probed comes first.
	for _, n := range b.early {
		b.handleNote(v, n)
	}
	b.early = b.early[:0]
	for {
		b.lmu.Lock()
		repair, sync := len(b.repairs) > 0, b.shardSync
		b.lmu.Unlock()
		if repair || sync {
			// LISTEN first, then catch up: see shard.go.
			if err := b.syncShards(b.ctx, conn); err != nil {
				return err
			}
		}
		if repair {
			if err := b.catchUp(b.ctx, b.staleTopics()); err != nil {
				return fmt.Errorf("catching up: %w", err)
			}
		}

		wctx, cancel := context.WithTimeout(b.ctx, b.opts.PingInterval)
		b.lmu.Lock()
		b.waitCancel = cancel
		if len(b.repairs) > 0 || b.shardSync {
			cancel() // asked for while we were busy
		}
		b.lmu.Unlock()
		n, err := conn.WaitForNotification(wctx)
		b.lmu.Lock()
		b.waitCancel = nil
		b.lmu.Unlock()
		cancel()

		if n != nil {
			b.handleNote(v, n)
		}
		switch {
		case err == nil:
		case b.ctx.Err() != nil:
			return err
		case errors.Is(wctx.Err(), context.DeadlineExceeded) && !conn.IsClosed():
			// Idle: prove the connection is alive.
			pctx, pcancel := context.WithTimeout(b.ctx, b.opts.PingTimeout)
			err = conn.Ping(pctx)
			pcancel()
			if err != nil {
				return fmt.Errorf("ping: %w", err)
			}
		case errors.Is(wctx.Err(), context.Canceled) && !conn.IsClosed():
			// Woken up for a repair or a change of shards.
		default:
			return err
		}
	}
}

// handleNote applies one notification.
func (b *Broker) handleNote(v *noteHandler, n *pgconn.Notification) {
	b.st.received.Add(1)
	if err := readNote(n.Payload, v); err != nil {
		b.st.badNotes.Add(1)
		b.log.Warn("postgres: malformed notification ignored", "pid", n.PID, "len", len(n.Payload))
	}
	v.release()
}

// noteHandler applies the records of one notification. It holds the mu of
// the topic whose records it is reading.
type noteHandler struct {
	b     *Broker
	ts    *topicState
	epoch string
}

func (v *noteHandler) release() {
	if v.ts != nil {
		v.ts.mu.Unlock()
		v.ts = nil
	}
}

func (v *noteHandler) topic(topic, epoch string) bool {
	v.release()
	v.b.smu.RLock()
	ts := v.b.topics[topic]
	v.b.smu.RUnlock()
	if ts == nil {
		return false
	}
	ts.mu.Lock()
	v.ts, v.epoch = ts, epoch
	return true
}

func (v *noteHandler) message(offset uint64, event, exclude string, payload []byte, binary bool) {
	m := &pubsub.Message{Topic: v.ts.name, Event: event, Payload: payload, Binary: binary,
		Exclude: exclude, Epoch: v.epoch, Offset: offset}
	v.b.apply(v.ts, &entry{epoch: v.epoch, from: offset, to: offset, msg: m})
}

func (v *noteHandler) ref(from, to uint64) {
	v.b.apply(v.ts, &entry{epoch: v.epoch, from: from, to: to})
}

func (v *noteHandler) control(data []byte) {
	v.release()
	if hb := v.b.handler.Load(); hb != nil && hb.h != nil {
		hb.h.HandleControl(data)
	}
}
