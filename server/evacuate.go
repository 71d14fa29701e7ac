package server

import "context"

// Evacuate closes the connections (and long-poll sessions) open now the way [Server.Shutdown] does,
// with 1012 "service restart" and reconnect hints spread over DrainWindow,
// but the server goes on serving: for a node that cannot serve its clients
// well for a while (its cluster pub/sub is cut off, say) while its load
// balancer already sends new connections elsewhere. It returns once every
// connection of the list was told to go, or ctx is done (the rest are then
// told at once). It does nothing on a server that is shutting down.
func (s *Server) Evacuate(ctx context.Context) {
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		return
	}
	list := s.connList()
	s.mu.Unlock()
	sessions := s.openLongPollSessions()
	s.log.Warn("evacuating connections", "connections", len(list), "long_poll_sessions", len(sessions))
	s.drain(ctx, drainList(list, sessions))
}
