package server

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/hearth-rt/hearth/channels"
)

// Drain defaults.
const (
	defaultDrainWindow = 30 * time.Second
	// defaultMinDrainRate is the slowest a drain goes, in connections per
	// second: a small node is not kept alive for the whole window when
	// its connections would all fit in a fraction of it. 500 per second is
	// a quarter of what one core admits by default (see admission.go), so
	// the nodes taking the reconnects barely notice; a node with 15,000
	// connections or more uses the whole default window.
	defaultMinDrainRate = 500
	// drainTick is the finest step of the drain schedule: connections due
	// within one tick are closed together.
	drainTick = 10 * time.Millisecond
	// drainMargin is kept between the end of the drain and the deadline of
	// Shutdown's context, besides closeGrace for the close handshakes.
	drainMargin = 500 * time.Millisecond
)

// applyDrainDefaults fills the drain options' zero values.
func applyDrainDefaults(o *Options) {
	if o.DrainWindow == 0 {
		o.DrainWindow = defaultDrainWindow
	}
	if o.MinDrainRate == 0 {
		o.MinDrainRate = defaultMinDrainRate
	}
}

// drainInterval is the time between two closes when n connections are
// closed over window, never longer than the minimum drain rate allows.
func (s *Server) drainInterval(window time.Duration, n int) time.Duration {
	if window <= 0 || n <= 0 {
		return 0
	}
	iv := window / time.Duration(n)
	if s.opts.MinDrainRate > 0 {
		iv = min(iv, time.Duration(float64(time.Second)/s.opts.MinDrainRate))
	}
	return iv
}

// drain closes the connections of list one after another, evenly spread
// over the drain window, each with 1012 "service restart" and a reconnect
// hint retry_after_ms=<n>. The closes are spaced by window/len(list), at
// most 1/MinDrainRate; connections due within one drainTick are closed
// together and their hints spread over the tick, so that the reconnects
// reach the other nodes at an even rate.
//
// When ctx has a deadline too close for the window (minus the close
// handshake's grace), the closes are compressed to fit, and each hint
// grows by how much earlier than planned its connection was closed: the
// reconnects still land spread over the whole window. If ctx ends before
// the drain is over, the remaining connections are closed at once, with
// hints in the same way.
func (s *Server) drain(ctx context.Context, list []drainee) {
	n := len(s.drainOrder(list))
	s.draining.Store(true)
	defer s.draining.Store(false)
	s.stats.drainClosed.Store(0)
	s.stats.drainTotal.Store(int64(n))
	if n == 0 {
		return
	}

	window := max(s.opts.DrainWindow, 0)
	nominal := s.drainInterval(window, n)
	if dl, ok := ctx.Deadline(); ok {
		window = min(window, max(time.Until(dl)-closeGrace-drainMargin, 0))
	}
	interval := s.drainInterval(window, n)
	step := max(interval, drainTick)
	start := time.Now()
	s.drainEnd.Store(start.Add(nominal * time.Duration(n)).UnixNano())
	s.log.Info("draining connections", "connections", n, "interval", interval, "window", interval*time.Duration(n))

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for i := 0; i < n; {
		now := time.Now()
		if due := start.Add(time.Duration(i) * interval); due.After(now) {
			wait := due.Sub(now)
			if interval < drainTick {
				wait = max(wait, drainTick)
			}
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
				s.drainRest(list[i:], i, start, nominal, step)
				return
			}
			now = time.Now()
		}
		// Everything due by now, at least the next one.
		j := i + 1
		for j < n && !start.Add(time.Duration(j)*interval).After(now) {
			j++
		}
		for k := i; k < j; k++ {
			late := time.Duration(k) * (nominal - interval) // > 0 when compressed
			s.restartClose(list[k], late+rand.N(step))
		}
		s.stats.drainClosed.Add(int64(j - i))
		i = j
	}
}

// drainee is what a drain closes: a WebSocket connection (*conn) or a
// long-poll session (*lpSession).
type drainee interface {
	Close(code int, reason string)
}

// drainList joins the connections and the long-poll sessions.
func drainList(conns []*conn, sessions []*lpSession) []drainee {
	list := make([]drainee, 0, len(conns)+len(sessions))
	for _, c := range conns {
		list = append(list, c)
	}
	for _, ss := range sessions {
		list = append(list, ss)
	}
	return list
}

// drainOrder shuffles list in place (connections are drained in no
// particular order, old and new alike) and returns it.
func (s *Server) drainOrder(list []drainee) []drainee {
	rand.Shuffle(len(list), func(i, j int) { list[i], list[j] = list[j], list[i] })
	return list
}

// drainRest closes the connections left when Shutdown's context ended,
// all at once, each hinted to reconnect when the drain would have closed
// it.
func (s *Server) drainRest(rest []drainee, first int, start time.Time, nominal, step time.Duration) {
	now := time.Now()
	s.log.Warn("shutdown context ended during the drain: closing the remaining connections at once", "connections", len(rest))
	for k, c := range rest {
		planned := start.Add(time.Duration(first+k) * nominal)
		s.restartClose(c, max(planned.Sub(now), 0)+rand.N(step))
	}
	s.stats.drainClosed.Add(int64(len(rest)))
}

// restartClose closes c with 1012 "service restart" and a reconnect hint.
func (s *Server) restartClose(c drainee, hint time.Duration) {
	c.Close(channels.CloseServiceRestart, "service restart retry_after_ms="+strconv.FormatInt(hint.Milliseconds(), 10))
}

// closeLate closes a connection whose handshake completed after Shutdown
// took its list: it is hinted to reconnect at a random moment before the
// drain's planned end (or within a tick when that has passed).
func (s *Server) closeLate(c *conn) {
	left := time.Until(time.Unix(0, s.drainEnd.Load()))
	s.restartClose(c, rand.N(max(left, drainTick)))
}
