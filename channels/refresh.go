package channels

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"github.com/hearth-rt/hearth/channels/wire"
)

// RefreshOptions makes a node push fresh tokens to its sockets over their
// live connections, before their credentials expire. A client that then has
// to reconnect (the server restarted, the network dropped) already holds a
// valid token and needs no token service: a crash does not turn into a
// stampede on it. Each refresh re-checks the session through Mint, so a
// session that ended stops being refreshed and its sockets are revoked.
//
// The token travels as the socket-level message
// [null, null, "phoenix", "token", {"token": "...", "expires_at": <unix seconds>}]
// (see docs/protocol.md).
type RefreshOptions struct {
	// Mint re-checks the socket's session and returns its next token and
	// that token's expiry. Return [ErrRevoked] (or a *CloseError) when the
	// session is gone: the socket is closed with 4503 "session revoked"
	// (terminal: the Hearth client does not reconnect and tells the app).
	// Any other error is retried, with jitter, until the current token
	// expires; then the socket is closed with 4502 "token expired".
	Mint func(ctx context.Context, s *Socket) (token string, expiresAt time.Time, err error)
	// Window is where, as fractions of a token's remaining lifetime, the
	// refresh happens: at a uniformly random moment between Window[0] and
	// Window[1]. Zero means {0.5, 0.9}: a 10-minute token is refreshed
	// between 5 and 9 minutes after it was issued.
	Window [2]float64
	// Timeout bounds one Mint call. Zero means 10 s.
	Timeout time.Duration
}

// ErrRevoked, returned by RefreshOptions.Mint, revokes the socket.
var ErrRevoked = errors.New("channels: session revoked")

// refresher is a socket's token refresh state.
type refresher struct {
	mu        sync.Mutex // guards timer, stopped, expiresAt
	timer     *time.Timer
	stopped   bool
	expiresAt time.Time
}

func (o *RefreshOptions) window() (lo, hi float64) {
	lo, hi = o.Window[0], o.Window[1]
	if lo == 0 && hi == 0 {
		return 0.5, 0.9
	}
	return lo, hi
}

// startRefresh schedules the first refresh, or closes a socket whose
// credentials already expired.
func (s *Socket) startRefresh() {
	if s.refresh == nil {
		return
	}
	s.refresh.mu.Lock()
	defer s.refresh.mu.Unlock()
	expiresAt := s.refresh.expiresAt
	if !time.Now().Before(expiresAt) {
		s.Close(CloseTokenExpired, "token expired")
		return
	}
	s.scheduleLocked(refreshDelay(time.Until(expiresAt), s.node.opts.Refresh))
}

// refreshDelay picks the moment of the next refresh within the window of
// the remaining lifetime.
func refreshDelay(remaining time.Duration, o *RefreshOptions) time.Duration {
	lo, hi := o.window()
	f := lo + rand.Float64()*(hi-lo)
	return time.Duration(float64(remaining) * f)
}

func (s *Socket) scheduleLocked(d time.Duration) {
	if s.refresh.stopped {
		return
	}
	if s.refresh.timer == nil {
		s.refresh.timer = time.AfterFunc(d, s.runRefresh)
		return
	}
	s.refresh.timer.Reset(d)
}

func (s *Socket) stopRefresh() {
	if s.refresh == nil {
		return
	}
	s.refresh.mu.Lock()
	s.refresh.stopped = true
	if s.refresh.timer != nil {
		s.refresh.timer.Stop()
	}
	s.refresh.mu.Unlock()
}

// runRefresh mints and pushes the next token. It runs on the timer's
// goroutine; the node waits for it on shutdown.
func (s *Socket) runRefresh() {
	s.refresh.mu.Lock()
	if s.refresh.stopped {
		s.refresh.mu.Unlock()
		return
	}
	s.node.wg.Add(1) // under the lock: Closed cannot have passed stopRefresh yet
	expiresAt := s.refresh.expiresAt
	s.refresh.mu.Unlock()
	defer s.node.wg.Done()

	o := s.node.opts.Refresh
	timeout := o.Timeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(s.Context(), timeout)
	tok, exp, err := o.Mint(ctx, s)
	cancel()
	log := s.node.log.With("conn", s.connID, "socket_id", s.id)
	var ce *CloseError
	switch {
	case err == nil && exp.After(time.Now()):
		s.node.stats.tokenRefreshes.Add(1)
		s.pushToken(tok, exp)
		log.Debug("token refreshed", "expires_at", exp.Unix())
		s.refresh.mu.Lock()
		s.refresh.expiresAt = exp
		s.scheduleLocked(refreshDelay(time.Until(exp), o))
		s.refresh.mu.Unlock()
	case errors.Is(err, ErrRevoked):
		s.node.stats.revocations.Add(1)
		log.Info("socket revoked: session ended")
		s.Close(CloseRevoked, "session revoked")
	case errors.As(err, &ce):
		log.Info("socket closed by token refresh", "code", ce.Code)
		s.Close(ce.Code, ce.Reason)
	default:
		if err == nil {
			err = errors.New("minted token already expired")
		}
		left := time.Until(expiresAt)
		if left <= 0 {
			log.Warn("token refresh failed until expiry", "err", err)
			s.Close(CloseTokenExpired, "token expired")
			return
		}
		// Retry with jitter, at most every 30 s, before the token expires.
		retry := min(left/2, 30*time.Second)
		retry = retry/2 + time.Duration(rand.Int64N(int64(retry/2)+1))
		log.Warn("token refresh failed, will retry", "err", err, "retry_in", retry)
		s.refresh.mu.Lock()
		s.scheduleLocked(max(retry, time.Millisecond))
		s.refresh.mu.Unlock()
	}
}

// pushToken sends the socket-level token message.
func (s *Socket) pushToken(tok string, exp time.Time) {
	payload := make([]byte, 0, len(tok)+48)
	payload = append(payload, `{"token":`...)
	payload = wire.AppendString(payload, tok)
	payload = append(payload, `,"expires_at":`...)
	payload = strconv.AppendInt(payload, exp.Unix(), 10)
	payload = append(payload, '}')
	buf := wire.BeginFrame(make([]byte, 0, len(payload)+48))
	buf = wire.AppendText(buf, "", "", "phoenix", "token", payload)
	s.send(wire.FinishFrame(buf, wire.OpText))
}
