package server

import (
	"sync/atomic"

	"github.com/hearth-rt/hearth/channels"
)

// Stats are a server's counters, for metrics (package server/metrics
// exports them to Prometheus). Counters only grow; Connections, Ready,
// Draining and the drain progress are gauges.
type Stats struct {
	// Connections is how many connections are open now: WebSocket
	// connections (those refused with a close code included until they
	// end) and long-poll sessions.
	Connections int
	// LongPollSessions is how many of them are long-poll sessions.
	LongPollSessions int
	// Accepted counts the upgrades admission control let through.
	Accepted uint64
	// Upgrades counts every WebSocket upgrade the server completed,
	// including those made only to send a close frame (a refusal or a
	// shed told to a client that reads close codes).
	Upgrades uint64
	// RefusedHTTP counts connect requests refused by the connect hook and
	// answered with an HTTP status before the upgrade (clients that do not
	// read close codes: see Options.ReconnectCooldown).
	RefusedHTTP uint64
	// CooledDown counts reconnects refused before the upgrade (or before
	// a long-poll session opened) because the same client's connection
	// was just closed for what it did (see Options.ReconnectCooldown).
	CooledDown uint64
	// Shed counts the upgrade requests refused by admission control or
	// because the server was shutting down, by reason.
	Shed ShedStats
	// SlowConsumerCloses counts connections closed with 4008 because
	// their outgoing queue overflowed.
	SlowConsumerCloses uint64
	// RateLimitCloses counts connections closed with 4029 because they
	// sent more messages than MessageRate allows.
	RateLimitCloses uint64

	// Ready is false once Shutdown has begun (see [Server.Ready]).
	Ready bool
	// Draining is true from the start of Shutdown until every connection
	// the drain closes has been told to go.
	Draining bool
	// DrainTotal is how many connections (long-poll sessions included)
	// the drain set out to close, and DrainClosed how many of them it has
	// closed so far.
	DrainTotal, DrainClosed int
}

// ShedStats counts refused upgrade requests by reason.
type ShedStats struct {
	// NodeRate: over the node's new-connection rate (ConnectRate).
	NodeRate uint64
	// IPRate: over one client address's new-connection rate
	// (ConnectRatePerIP).
	IPRate uint64
	// MaxConnections: the node had MaxConnections open.
	MaxConnections uint64
	// ShuttingDown: the request arrived after Shutdown began (HTTP 503).
	ShuttingDown uint64
}

// Total returns the sum over all reasons.
func (s ShedStats) Total() uint64 {
	return s.NodeRate + s.IPRate + s.MaxConnections + s.ShuttingDown
}

// shedReason says why an upgrade request is refused.
type shedReason int

const (
	shedNodeRate shedReason = iota
	shedIPRate
	shedMaxConns
	shedShutdown
	numShedReasons
)

func (r shedReason) String() string {
	switch r {
	case shedNodeRate:
		return "node connection rate"
	case shedIPRate:
		return "per-address connection rate"
	case shedMaxConns:
		return "max connections"
	case shedShutdown:
		return "shutting down"
	}
	return "unknown"
}

// serverStats holds the counters behind [Stats]. Every field is updated
// with atomic operations; none is on the per-message path.
type serverStats struct {
	accepted     atomic.Uint64
	upgrades     atomic.Uint64
	refusedHTTP  atomic.Uint64
	cooledDown   atomic.Uint64
	shed         [numShedReasons]atomic.Uint64
	slowConsumer atomic.Uint64
	rateLimited  atomic.Uint64
	drainTotal   atomic.Int64
	drainClosed  atomic.Int64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	st := &s.stats
	return Stats{
		Connections:      s.Connections(),
		LongPollSessions: s.liveLongPollSessions(),
		Accepted:         st.accepted.Load(),
		Upgrades:         st.upgrades.Load(),
		RefusedHTTP:      st.refusedHTTP.Load(),
		CooledDown:       st.cooledDown.Load(),
		Shed: ShedStats{
			NodeRate:       st.shed[shedNodeRate].Load(),
			IPRate:         st.shed[shedIPRate].Load(),
			MaxConnections: st.shed[shedMaxConns].Load(),
			ShuttingDown:   st.shed[shedShutdown].Load(),
		},
		SlowConsumerCloses: st.slowConsumer.Load(),
		RateLimitCloses:    st.rateLimited.Load(),
		Ready:              s.Ready(),
		Draining:           s.draining.Load(),
		DrainTotal:         int(st.drainTotal.Load()),
		DrainClosed:        int(st.drainClosed.Load()),
	}
}

// Ready reports whether the server accepts new connections: true from
// [New] until [Server.Shutdown] begins. Serve it as the readiness probe
// (/readyz) so that load balancers stop sending new connections to a node
// that drains.
func (s *Server) Ready() bool {
	return !s.stopping.Load()
}

// countClose records why a connection ended, once, when it is
// unregistered.
func (s *Server) countClose(c *conn) {
	c.mu.Lock()
	code, by := c.code, c.initiator
	c.mu.Unlock()
	if by != "server" {
		return
	}
	switch code {
	case channels.CloseSlowConsumer:
		s.stats.slowConsumer.Add(1)
	case channels.CloseRateLimited:
		s.stats.rateLimited.Add(1)
	}
}
