package server

import (
	"context"
	"hash/maphash"
	"log/slog"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/wire"
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
	// MaxReplayBytes bounds the bytes of recovery replays (the missed
	// messages a rejoining client asked for) that one connection may have
	// waiting for the network, counted apart from MaxQueueBytes: a client
	// that reads receives a replay of any size up to this, while live
	// traffic behind it is still bound by MaxQueueBytes. A replay that does
	// not fit is not sent, and the join reply says recovered: false. Zero
	// means 16 MiB.
	MaxReplayBytes int
	// IdleTimeout closes a connection from which nothing arrived for that
	// long (close 1001 "idle timeout"). Phoenix clients send a heartbeat
	// every 30 s. The frames of an unfinished fragmented message (and pings
	// between them) do not restart it: a message must be complete within
	// it. Zero means 60 s.
	IdleTimeout time.Duration
	// HandshakeTimeout bounds the connect hook and the writing of the
	// upgrade response. Zero means 10 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one write to the network. A write that cannot
	// complete in time drops the connection without a close frame. Zero
	// means 10 s.
	WriteTimeout time.Duration
	// MessageRate is how many inbound messages per second one connection
	// may send on average (pings, pongs, heartbeats and each fragment of a
	// fragmented message included). Going over
	// closes it with 4029 "rate limit exceeded". Zero means 100; a negative
	// value disables the limit.
	MessageRate float64
	// MessageBurst is how many messages may arrive at once above the rate.
	// Zero means twice MessageRate (at least 1).
	MessageBurst int

	// Admission control (see admission.go and docs/operations.md). A
	// request over a limit is shed before the connect hook runs: browsers
	// get the upgrade and then close 1013 "try again later
	// retry_after_ms=<n>", other clients HTTP 503 with Retry-After. The
	// hint is jittered so that clients shed together do not come back
	// together.

	// ConnectRate is how many new connections per second the node admits
	// on average. Zero means 2,000 per GOMAXPROCS (about a sixth of what
	// one core completed when measured with cheap hooks); a negative value
	// disables the limit.
	ConnectRate float64
	// ConnectBurst is how many connections may be admitted at once above
	// ConnectRate. Zero means one second's worth.
	ConnectBurst int
	// ConnectRatePerIP is how many new connections per second one client
	// address may open (IPv6 addresses count per /64). Zero means a
	// quarter of ConnectRate: no single address (a NAT, a proxy not listed
	// in TrustedProxies, a misbehaving script) takes the whole node. A
	// negative value disables the limit.
	ConnectRatePerIP float64
	// ConnectBurstPerIP is the per-address burst. Zero means one second's
	// worth.
	ConnectBurstPerIP int
	// MaxConnections caps the open connections of the node. Zero means the
	// process's open-file limit less a tenth of it (at least 256 kept):
	// beyond it accept fails and stalls every client. A negative value
	// disables the cap.
	MaxConnections int
	// TrustedProxies lists the load balancers and proxies (CIDR prefixes or
	// addresses) whose X-Forwarded-For or X-Real-IP header names the client.
	// For requests from them, the client's address is the rightmost
	// X-Forwarded-For entry that is not a trusted proxy (else X-Real-IP);
	// it is used for the per-address limit and passed to the connect hook
	// as ConnectEvent.RemoteAddr. From any other peer these headers are
	// ignored. A malformed entry makes New panic (see ParseTrustedProxy).
	TrustedProxies []string
	// ShedWithHTTP answers every shed request with HTTP 503 and
	// Retry-After. By default only clients that announced that they read
	// Hearth's close codes (the Hearth client's query parameter _hearth,
	// channels.ExtParam) are upgraded and closed with 1013 and a retry
	// hint, because a browser's WebSocket cannot see the status of a
	// failed handshake; every other client gets the 503, which makes
	// Phoenix clients back off (an upgrade would reset their backoff).
	ShedWithHTTP bool
	// RetryAfterMax bounds the retry hints given to shed clients. Zero
	// means 30 s.
	RetryAfterMax time.Duration

	// ReconnectCooldown is how long the server refuses, before the
	// upgrade, the reconnect of a client that does not read Hearth's close
	// codes (no _hearth query parameter) after closing its connection for
	// what it did: 4029 too many messages, 1009 a message too big, 4008
	// too slow to read, 1002 or 1007 a broken frame. It answers 429 with
	// Retry-After, so that a Phoenix client, which reconnects 10 ms after
	// any close and resets its backoff on every upgrade, backs off instead
	// of looping. After a terminal close (4500-4999: revoked, expired,
	// unauthorized) the same credentials get 403 for 6 times as long. The
	// client is recognized by its address, query and offered
	// subprotocols (which carry a Phoenix 1.8 token). A long-poll session
	// ([LongPoll]) gets the same: the client's next session open is
	// refused (HTTP 429 or 403, and a status phoenix.js backs off from),
	// its token taken from X-Phoenix-AuthToken. Zero means 10 s; a
	// negative value disables it. See refuse.go.
	ReconnectCooldown time.Duration

	// DrainWindow is the time over which Shutdown spreads the closing of
	// the open connections (1012 "service restart retry_after_ms=<n>"),
	// long-poll sessions included, so that their reconnects reach the
	// other nodes at an even rate. Zero
	// means 30 s; a negative value closes them all at once.
	DrainWindow time.Duration
	// MinDrainRate is the fewest connections per second the drain closes:
	// a node with few connections finishes early instead of taking the
	// whole window. Zero means 500 per second; a negative value always
	// uses the whole window.
	MinDrainRate float64

	// Compression configures permessage-deflate. The zero value is off;
	// see [Compression] for the trade-offs and compress.go.
	Compression Compression
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

	adm      admission    // admission.go
	cool     cooldowns    // refuse.go
	stats    serverStats  // stats.go
	stopping atomic.Bool  // Shutdown has begun: not ready
	draining atomic.Bool  // the drain is closing connections
	drainEnd atomic.Int64 // unix nanos: when the drain's hints end (drain.go)

	lpmu   sync.Mutex  // guards lps
	lps    []*LongPoll // long-poll handlers of the node (longpoll.go)
	lpDone bool        // the drain is over: no more long-poll requests (s.mu)

	deflater *wire.Deflater // nil unless Options.Compression.Enabled (compress.go)

	originLog originRefusals // origin_log.go
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
	if opts.MaxReplayBytes <= 0 {
		opts.MaxReplayBytes = 16 << 20
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
	if opts.ReconnectCooldown == 0 {
		opts.ReconnectCooldown = defaultReconnectCooldown
	}
	applyAdmissionDefaults(&opts)
	applyDrainDefaults(&opts)
	applyCompressionDefaults(&opts.Compression)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		node:  node,
		opts:  opts,
		log:   log,
		conns: make(map[*conn]struct{}),
	}
	s.adm.init(&s.opts)
	s.deflater = newDeflater(opts.Compression)
	s.cool.seed = maphash.MakeSeed()
	return s
}

// Connections returns how many connections are open: WebSocket
// connections and long-poll sessions ([LongPoll.Sessions]).
func (s *Server) Connections() int {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	return n + s.liveLongPollSessions()
}

// Shutdown drains the server: [Server.Ready] turns false at once, new
// upgrade requests (and new long-poll sessions) get HTTP 503, and the open
// connections and long-poll sessions are closed with
// 1012 "service restart retry_after_ms=<n>" spread over DrainWindow (see
// drain.go: at least MinDrainRate per second, compressed to fit ctx's
// deadline), each with its own reconnect hint. It then waits until every
// goroutine of the server and every background worker of the node has
// finished, or ctx is done. In the latter case the connections not yet
// closed are told to go at once, every connection is dropped without
// waiting for its close handshake, and ctx's error is returned; their
// goroutines end shortly after (a connect hook still running is not
// interrupted). Shutdown does not close the http.Server the handler is
// mounted on.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	s.stopping.Store(true)
	list := s.connList()
	s.mu.Unlock()
	sessions := s.longPollSessions()
	s.log.Info("server shutting down", "connections", len(list), "long_poll_sessions", len(sessions))
	// Long-poll sessions are drained with the WebSockets, their closes
	// spread over the same window: each is told at its next poll (410
	// with the 1012 close), so that phoenix.js clients, which reconnect
	// 10 ms after a 410, come back spread out too.
	s.drain(ctx, drainList(list, sessions))
	s.mu.Lock()
	s.lpDone = true
	s.mu.Unlock()
	s.stopLongPollForwarding()

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
	s.countClose(c)
	s.rememberClose(c)
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.adm.release()
}

// ServeHTTP upgrades a Phoenix V2 socket request to a WebSocket connection
// and serves it until it closes. See the package documentation for what is
// refused and how.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		s.stats.shed[shedShutdown].Add(1)
		w.Header().Set("Connection", "close")
		http.Error(w, "server: shutting down", http.StatusServiceUnavailable)
		return
	}
	defer s.wg.Done()
	s.serveUpgrade(w, r)
}
