package server

import (
	"context"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/hearth-rt/hearth/channels"
)

// Options configures a [Server]. The zero value works: same-host origins
// only, 64 KiB messages, a 1 MiB outgoing queue per connection, a 60 s idle
// timeout, 10 s handshake and write timeouts, 100 messages per second with
// bursts of 200, no logging.
type Options struct {
	// Logger receives structured logs. Nil means silent.
	Logger *slog.Logger

	// AllowedOrigins lists the browser origins that may connect: full
	// origins ("https://app.example.com") or host patterns matched with
	// path.Match ("*.example.com", "localhost:*"). Empty means only an
	// origin whose host is the request's Host. Requests without an Origin
	// header (non-browser clients) are always allowed.
	AllowedOrigins []string
	// InsecureSkipOriginCheck accepts every origin. It exposes the sockets
	// of logged-in users to any web page (cross-site WebSocket hijacking):
	// use it only for development or for token-only authentication.
	InsecureSkipOriginCheck bool

	// BlockingReads gives every connection its own reader goroutine
	// blocked in Read, instead of the shared epoll poller that serves
	// idle connections without a goroutine or a buffer each (Linux; other
	// systems, and TLS connections, always use reader goroutines). The
	// behaviour is the same; an idle connection costs about 8 KiB more.
	BlockingReads bool

	// MaxMessageSize is the largest inbound message in bytes, all of its
	// fragments together. A larger one closes the connection with 1009.
	// Zero means 64 KiB.
	MaxMessageSize int64
	// MaxQueueBytes bounds the bytes queued for writing to one connection
	// (including those being written). A client that falls further behind
	// is closed with 4008 "slow consumer". Zero means 1 MiB.
	MaxQueueBytes int
	// IdleTimeout closes a connection from which nothing arrived for that
	// long (close 1001 "idle timeout"). Phoenix clients send a heartbeat
	// every 30 s. Zero means 60 s.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the connect hook and the writing of the
	// upgrade response. Zero means 10 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one write to the network. A write that cannot
	// complete in time drops the connection without a close frame. Zero
	// means 10 s.
	WriteTimeout time.Duration
	// MessageRate is how many inbound messages per second one connection
	// may send on average (pings and heartbeats included). Going over
	// closes it with 4029 "rate limit exceeded". Zero means 100; a negative
	// value disables the limit.
	MessageRate float64
	// MessageBurst is how many messages may arrive at once above the rate.
	// Zero means twice MessageRate (at least 1).
	MessageBurst int
}

// closeGrace is how long a connection waits for the client's close frame
// after the server sent its own, before dropping the TCP connection.
const closeGrace = 3 * time.Second

// Server serves a [channels.Node] over WebSocket. It is an [http.Handler]:
// mount it at the socket's path (Phoenix clients connect to
// "<endpoint>/websocket"). Create it with [New].
type Server struct {
	node *channels.Node
	opts Options
	log  *slog.Logger

	// wg counts every goroutine and handler call of the server: ServeHTTP
	// calls in progress, readers and writers.
	wg sync.WaitGroup

	poll pollerRef // the epoll poller (netpoll.go)

	mu       sync.Mutex // guards conns, shutdown
	conns    map[*conn]struct{}
	shutdown bool
}

// New returns a Server for node. Register the node's channel handlers
// before the server receives its first connection.
func New(node *channels.Node, opts Options) *Server {
	if node == nil {
		panic("server: New called with a nil node")
	}
	if opts.MaxMessageSize <= 0 {
		opts.MaxMessageSize = 64 << 10
	}
	if opts.MaxQueueBytes <= 0 {
		opts.MaxQueueBytes = 1 << 20
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = 60 * time.Second
	}
	if opts.HandshakeTimeout <= 0 {
		opts.HandshakeTimeout = 10 * time.Second
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.MessageRate == 0 {
		opts.MessageRate = 100
		if opts.MessageBurst == 0 {
			opts.MessageBurst = 200
		}
	}
	if opts.MessageBurst <= 0 && opts.MessageRate > 0 {
		opts.MessageBurst = int(math.Min(math.Max(1, 2*opts.MessageRate), math.MaxInt32))
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		node:  node,
		opts:  opts,
		log:   log,
		conns: make(map[*conn]struct{}),
	}
}

// Connections returns how many WebSocket connections are open.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Shutdown stops accepting connections (new upgrade requests get HTTP 503),
// closes every open connection with 1001 "server shutting down", and waits
// until every goroutine of the server and every background worker of the
// node has finished, or ctx is done. In the latter case it drops the
// remaining connections without waiting for their close handshake and
// returns ctx's error; their goroutines end shortly after (a connect hook
// still running is not interrupted). Shutdown does not close the http.Server the handler
// is mounted on.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	list := s.connList()
	s.mu.Unlock()
	s.log.Info("server shutting down", "connections", len(list))
	for _, c := range list {
		c.Close(channels.CloseGoingAway, "server shutting down")
	}

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		s.poll.stop()
		s.node.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	list = s.connList()
	s.mu.Unlock()
	s.log.Warn("shutdown deadline reached: dropping connections", "connections", len(list))
	for _, c := range list {
		c.drop()
	}
	return ctx.Err()
}

// connList returns the open connections. s.mu must be held.
func (s *Server) connList() []*conn {
	list := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		list = append(list, c)
	}
	return list
}

// enter registers a ServeHTTP call with the WaitGroup unless the server is
// shutting down.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.shutdown {
		return false
	}
	s.wg.Add(1)
	return true
}

// register adds an upgraded connection. It reports false when the server
// started shutting down meanwhile.
func (s *Server) register(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[c] = struct{}{}
	return !s.shutdown
}

func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// ServeHTTP upgrades a Phoenix V2 socket request to a WebSocket connection
// and serves it until it closes. See the package documentation for what is
// refused and how.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		w.Header().Set("Connection", "close")
		http.Error(w, "server: shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.wg.Done()
	s.serveUpgrade(w, r)
}
