package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/presence"
	"github.com/hearth-rt/hearth/channels/token"
	"github.com/hearth-rt/hearth/pubsub"
	"github.com/hearth-rt/hearth/pubsub/postgres"
	"github.com/hearth-rt/hearth/server"
	"github.com/hearth-rt/hearth/server/api"
	"github.com/hearth-rt/hearth/templates"
)

func init() {
	register("serve", "run the demo chat app", runServe)
}

type serveConfig struct {
	addr      string
	logLevel  string
	tokenTTL  time.Duration
	window    [2]float64
	dbURL     string // one or several database URLs (splitDatabaseURLs)
	listenURL string // as many listener URLs, when set
	rebalance bool   // --database-rebalance
	nodeName  string
	syncFail  bool          // --synchronous-failover
	evacuate  time.Duration // --evacuate-after
	httpIdle  time.Duration // --http-idle-timeout
	secret    string
	ws        server.Options // admission control and drain (--drain-window, --conn-rate, ...)
	apiKeys   repeatFlag     // server API and dashboard keys (--api-key, $HEARTH_API_KEY); none: off
}

func runServe(args []string) error {
	var cfg serveConfig
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:4000", "address to listen on")
	fs.StringVar(&cfg.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.DurationVar(&cfg.tokenTTL, "token-ttl", 10*time.Minute, "lifetime of the tokens GET /token and the channel refresh mint")
	fs.Var(joinFlag{&cfg.dbURL}, "database-url", "PostgreSQL `URL`: turns cluster mode on (default $DATABASE_URL; empty: in-process pub/sub). Repeat it, or separate URLs by spaces or by commas before postgres://, to spread topics over several databases (docs/clustering.md)")
	fs.Var(joinFlag{&cfg.listenURL}, "listen-url", "direct PostgreSQL `URL` for the cluster listener, when --database-url goes through a transaction pooler such as PgBouncer (default $DATABASE_LISTEN_URL); with several databases, one per --database-url, in the same order")
	fs.BoolVar(&cfg.rebalance, "database-rebalance", false, "record the databases of --database-url as the cluster's, when a database was added or removed: topics that move start a new epoch (docs/clustering.md)")
	fs.StringVar(&cfg.secret, "secret", "", "secret signing the demo's sessions and tokens; all nodes of a cluster need the same (default $HEARTH_SECRET, else one kept in the user cache dir)")
	fs.BoolVar(&cfg.syncFail, "synchronous-failover", false, "the database fails over only to synchronous standbys: keep topic epochs on a new timeline, so clients recover across a failover (default: move topics to a new epoch, since an asynchronous failover may have lost commits)")
	fs.DurationVar(&cfg.evacuate, "evacuate-after", 0, "cluster mode: when the node has been cut off from PostgreSQL this long, close its sockets as a drain does (1012, spread over --drain-window) so that they reconnect to other nodes; 0: never (they stay, and catch up once it is back)")
	fs.DurationVar(&cfg.httpIdle, "http-idle-timeout", 75*time.Second, "close an HTTP keep-alive connection that has been idle between requests this long (WebSockets and waiting polls are not affected); keep it above the idle timeout of a balancer that pools connections to the nodes (AWS ALB: 60s), or set it under the 30s heartbeat (e.g. 10s) when long-poll clients reach the node directly, to free their POST connections between heartbeats; 0: never")
	fs.StringVar(&cfg.nodeName, "node-name", "", "this node's name in logs and pg_stat_activity (default random)")
	window := fs.String("refresh-window", "0.5-0.9", "when tokens are refreshed, as fractions of their lifetime (LOW-HIGH)")
	fs.DurationVar(&cfg.ws.DrainWindow, "drain-window", 30*time.Second, "on SIGTERM, close the sockets spread over this window (1012 with reconnect hints) so their reconnects reach the other nodes evenly; 0 closes them all at once")
	fs.Float64Var(&cfg.ws.ConnectRate, "conn-rate", 0, "new WebSocket connections admitted per second, the rest shed with 1013 or 503 (0: 2000 per CPU; -1: no limit)")
	fs.Float64Var(&cfg.ws.ConnectRatePerIP, "conn-rate-per-ip", 0, "new connections per second per client address (0: a quarter of --conn-rate; -1: no limit)")
	fs.Float64Var(&cfg.ws.MessageRate, "message-rate", 0, "inbound messages per second one socket may send, beyond which it is closed with 4029 (0: 100; -1: no limit)")
	fs.DurationVar(&cfg.ws.IdleTimeout, "idle-timeout", 0, "close a connection from which nothing arrived for this long: a client cut off by the network, whose channels then leave and whose presence ends (0: 60s; clients send a heartbeat every 30s)")
	fs.IntVar(&cfg.ws.MaxConnections, "max-conns", 0, "most open WebSocket connections (0: the open-file limit less a tenth; -1: no cap)")
	fs.BoolVar(&cfg.ws.Compression.Enabled, "compress", false, "accept permessage-deflate from clients that offer it (each broadcast is compressed once)")
	fs.IntVar(&cfg.ws.Compression.MinSize, "compress-min", 0, "smallest payload compressed, in bytes (0: 256; -1: every message)")
	fs.DurationVar(&cfg.ws.ReconnectCooldown, "reconnect-cooldown", 0, "how long a client that reads no Hearth close codes (phoenix.js) is refused (429) before the upgrade after being closed for what it did (4029, 1009, 4008); 6x that (403) after a terminal close (0: 10s; -1ns: off)")
	trusted := fs.String("trusted-proxies", "", "comma-separated CIDRs or addresses of load balancers whose X-Forwarded-For / X-Real-IP name the client, e.g. 10.0.0.0/8")
	fs.Var(&cfg.apiKeys, "api-key", "turn on the server API at /api and the dashboard at /dashboard with this key (Authorization: Bearer KEY); repeat for several keys (default $HEARTH_API_KEY; none: both off)")
	pprofAddr := fs.String("pprof", "", "serve net/http/pprof, /debug/vars and /debug/mem (memory figures as JSON) on this separate address, e.g. 127.0.0.1:6060")
	if err := fs.Parse(args); err != nil {
		return err
	}
	// Defaults from the environment, read after parsing so that -h never
	// prints a password or a secret. An explicit --database-url= keeps the
	// in-process broker even when DATABASE_URL is set.
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !set["database-url"] {
		cfg.dbURL = os.Getenv("DATABASE_URL")
	}
	if !set["listen-url"] {
		cfg.listenURL = os.Getenv("DATABASE_LISTEN_URL")
	}
	if !set["secret"] {
		cfg.secret = os.Getenv("HEARTH_SECRET")
	}
	if !set["api-key"] && os.Getenv("HEARTH_API_KEY") != "" {
		cfg.apiKeys = repeatFlag{os.Getenv("HEARTH_API_KEY")}
	}
	var err error
	if cfg.ws.DrainWindow == 0 {
		cfg.ws.DrainWindow = -1 // server.Options: negative closes at once
	}
	for _, p := range strings.Split(*trusted, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if _, err := server.ParseTrustedProxy(p); err != nil {
			return fmt.Errorf("--trusted-proxies: %w", err)
		}
		cfg.ws.TrustedProxies = append(cfg.ws.TrustedProxies, p)
	}
	if cfg.window, err = parseWindow(*window); err != nil {
		return fmt.Errorf("--refresh-window: %w", err)
	}
	if cfg.tokenTTL < time.Second {
		return errors.New("--token-ttl must be at least 1s")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *pprofAddr != "" {
		stopDebug, err := serveDebug(*pprofAddr, log)
		if err != nil {
			return fmt.Errorf("--pprof: %w", err)
		}
		defer stopDebug()
	}

	var broker pubsub.Broker
	if cfg.dbURL != "" {
		pg, err := openBroker(cfg, log)
		if err != nil {
			return err
		}
		defer pg.Close()
		broker = pg
		log.Info("cluster mode: pub/sub through PostgreSQL", "node", cfg.nodeName)
	} else if cfg.listenURL != "" {
		return errors.New("--listen-url (or $DATABASE_LISTEN_URL) needs --database-url (or $DATABASE_URL)")
	}
	app, err := newDemo(log, cfg, broker)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	evCtx, evCancel := context.WithCancel(context.Background())
	evDone := make(chan struct{})
	if pg, ok := broker.(*postgres.Broker); ok && cfg.evacuate > 0 {
		go func() { defer close(evDone); evacuateWhenCut(evCtx, pg, app.ws, cfg.evacuate, log) }()
	} else {
		close(evDone)
	}
	stopEvacuate := func() { evCancel(); <-evDone }
	defer stopEvacuate()
	hs := newHTTPServer(app.router, cfg.httpIdle)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("hearth demo listening", "url", "http://"+ln.Addr().String()+"/")
	select {
	case err := <-errc:
		return err
	case <-sigs:
	}
	stopEvacuate()
	// Drain: /readyz turns 503 at once, new upgrades get 503, the sockets
	// are closed spread over the window (the HTTP server keeps serving
	// /readyz and /healthz meanwhile). A second signal closes the rest at
	// once.
	log.Info("shutting down: draining", "drain_window", max(cfg.ws.DrainWindow, 0))
	sctx, cancel := context.WithTimeout(context.Background(), max(cfg.ws.DrainWindow, 0)+15*time.Second)
	defer cancel()
	go func() {
		select {
		case <-sigs:
			log.Warn("second signal: closing the remaining connections at once")
			cancel()
		case <-sctx.Done():
		}
	}()
	if err := app.ws.Shutdown(sctx); err != nil {
		log.Warn("websocket shutdown", "err", err)
	}
	// The sockets are gone: send the last presence changes and say goodbye
	// to the cluster (the broker closes after, deferred above).
	app.api.Close() // server API: stop the heartbeat before presence says goodbye
	if err := app.presence.Shutdown(sctx); err != nil {
		log.Warn("presence shutdown", "err", err)
	}
	hctx, hcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer hcancel()
	return hs.Shutdown(hctx)
}

// demo is the demo chat application: a chi router with the socket, the
// page, and the session/token endpoints.
type demo struct {
	router chi.Router
	node   *channels.Node
	ws     *server.Server
	auth   *demoAuth
	// presence tracks who is in each room, across the cluster.
	presence *presence.Presence
	// api is the server API (/api) and the dashboard (/dashboard).
	api *api.API

	extraMetrics prometheus.Collector // the broker's, in cluster mode
}

func newDemo(log *slog.Logger, cfg serveConfig, broker pubsub.Broker) (*demo, error) {
	secret, from, err := demoSecret(cfg.secret)
	if err != nil {
		return nil, err
	}
	log.Info("demo signing secret", "from", from)
	if cfg.dbURL != "" && cfg.secret == "" {
		// Each host would sign with a secret of its own: behind a
		// balancer, a session or token from one node is refused by the
		// others (close 4501, which clients do not retry).
		log.Warn("CLUSTER MODE WITHOUT A SHARED SECRET: this node signs sessions and tokens with its own secret ("+from+"); "+
			"nodes on other hosts refuse them (close 4501). Give every node the same --secret (or $HEARTH_SECRET)", "secret_from", from)
	}
	auth := newDemoAuth(secret, cfg.tokenTTL, cfg.window)
	d := &demo{auth: auth}
	if pg, ok := broker.(*postgres.Broker); ok {
		d.extraMetrics = pg.Collector()
	}
	d.node = channels.New(channels.Options{
		Broker: broker, // nil: in-process
		NodeID: cfg.nodeName,
		Logger: log,
		// Anonymous sockets may chat in room:*; a token (from GET /token)
		// identifies the user and opens private:<that user>.
		Connect: token.Connect(auth.keys, token.ConnectOptions{Optional: true, Session: auth.checkSession}),
		Refresh: auth.refreshOptions(),
	})
	auth.attach(d.node)
	d.presence = presence.New(d.node, presence.Options{Logger: log})
	d.node.Handle("room:*", channels.Handler{Join: d.joinRoom, In: d.handleIn})
	d.node.Handle("private:*", channels.Handler{Join: d.joinPrivate, In: d.handleIn})
	wsOpts := cfg.ws
	wsOpts.Logger = log
	d.ws = server.New(d.node, wsOpts)

	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Handle("/socket/websocket", d.ws)
	// Long-poll fallback; the shared secret lets any node serve any session.
	r.Handle("/socket/longpoll", server.NewLongPoll(d.ws, server.LongPollOptions{Secret: secret}))
	auth.routes(r)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	r.Get("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !d.ws.Ready() {
			http.Error(w, "draining", http.StatusServiceUnavailable) // load balancers: stop sending new connections
			return
		}
		// A node whose pub/sub listener is down would accept sockets it
		// cannot deliver broadcasts to.
		if pg, ok := broker.(*postgres.Broker); ok && pg.State() == postgres.StateDown {
			http.Error(w, "pubsub listener down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	r.Handle("/metrics", d.metricsHandler())
	r.Handle("/demo/*", http.StripPrefix("/demo/", http.FileServerFS(templates.Demo())))
	r.Get("/", func(w http.ResponseWriter, r *http.Request) { http.ServeFileFS(w, r, templates.Demo(), "index.html") })
	mountClient(r)
	d.mountAPI(r, log, cfg, broker)
	d.router = r
	return d, nil
}

// joinRoom lets everyone in; signed-in users are shown in the room's
// presence list (one entry per user, one meta per tab).
func (d *demo) joinRoom(_ context.Context, c *channels.Channel, _ channels.JoinEvent) (channels.JoinReply, error) {
	if cl := token.FromSocket(c.Socket()); cl != nil {
		if err := d.presence.Track(c, cl.Subject, map[string]any{"online_at": time.Now().Unix()}); err != nil {
			return channels.JoinReply{}, err
		}
	} else if err := d.presence.PushState(c); err != nil { // anonymous: watch, not listed
		return channels.JoinReply{}, err
	}
	return channels.JoinReply{}, nil
}

// joinPrivate is join authorization per user: "private:<user>" is the
// inbox of one user, joinable by that user only (the token's subject), and
// only if the token's channel scope, when it has one, allows the topic.
// Everyone else gets {"reason": "unauthorized"}.
func (d *demo) joinPrivate(_ context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
	cl := token.FromSocket(c.Socket())
	if cl == nil || ev.Topic != "private:"+cl.Subject || !cl.Allows(ev.Topic) {
		return channels.JoinReply{}, channels.Refuse("unauthorized")
	}
	return channels.JoinReply{}, nil
}

func (d *demo) handleIn(ctx context.Context, c *channels.Channel, ev channels.InEvent) (channels.Reply, error) {
	switch ev.Event {
	case "new_msg":
		var m struct {
			User string `json:"user"`
			Body string `json:"body"`
		}
		if err := ev.Decode(&m); err != nil || strings.TrimSpace(m.Body) == "" {
			return channels.ErrorReply(map[string]string{"reason": "new_msg needs {\"user\", \"body\"}"}), nil
		}
		if cl := token.FromSocket(c.Socket()); cl != nil {
			m.User = cl.Subject // an authenticated socket cannot speak for others
		}
		if err := c.Broadcast(ctx, "new_msg", m); err != nil {
			return channels.ErrorReply(map[string]string{"reason": "broadcast failed"}), nil
		}
		return channels.OK(nil), nil
	case "ping":
		if ev.Binary {
			return channels.OK(ev.Payload), nil
		}
		return channels.OK(json.RawMessage(ev.Payload)), nil
	}
	return channels.ErrorReply(map[string]string{"reason": "unknown event " + ev.Event}), nil
}

// openBroker starts the cluster broker of --database-url, its listener on
// --listen-url when set.
func openBroker(cfg serveConfig, log *slog.Logger) (*postgres.Broker, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	opts := postgres.Options{Name: cfg.nodeName, Logger: log, SynchronousFailover: cfg.syncFail, Rebalance: cfg.rebalance}
	opts.URLs = splitDatabaseURLs(cfg.dbURL)
	if cfg.listenURL != "" {
		opts.ListenURLs = splitDatabaseURLs(cfg.listenURL)
		if len(opts.ListenURLs) != len(opts.URLs) {
			return nil, fmt.Errorf("cluster mode: %d --listen-url for %d --database-url: give one per database, in the same order", len(opts.ListenURLs), len(opts.URLs))
		}
	}
	pg, err := postgres.New(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("cluster mode: %w", err)
	}
	return pg, nil
}

// evacuateWhenCut closes the node's sockets, as a drain does, once its
// pub/sub listener has been down for after: a node cut off from PostgreSQL
// is unready (the balancer sends new sockets elsewhere), and its clients
// would otherwise wait, receiving nothing, until it is back. Once per
// outage.
func evacuateWhenCut(ctx context.Context, pg *postgres.Broker, ws *server.Server, after time.Duration, log *slog.Logger) {
	tk := time.NewTicker(250 * time.Millisecond)
	defer tk.Stop()
	var downSince time.Time
	done := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-tk.C:
		}
		if pg.State() != postgres.StateDown {
			downSince, done = time.Time{}, false
			continue
		}
		if downSince.IsZero() {
			downSince = time.Now()
		}
		if !done && time.Since(downSince) >= after {
			done = true
			log.Warn("cut off from PostgreSQL: moving this node's clients to other nodes", "down_for", time.Since(downSince).Round(time.Millisecond))
			ws.Evacuate(ctx)
		}
	}
}

// mountAPI mounts the server API at /api and the dashboard at /dashboard,
// on with --api-key (or $HEARTH_API_KEY), answering 404 otherwise.
func (d *demo) mountAPI(r chi.Router, log *slog.Logger, cfg serveConfig, broker pubsub.Broker) {
	pg, _ := broker.(*postgres.Broker)
	d.api = api.New(api.Options{
		Node:     d.node,
		Presence: d.presence,
		Keys:     cfg.apiKeys,
		Logger:   log,
		Health: func() api.Health {
			st := d.ws.Stats()
			h := api.Health{
				Ready: st.Ready, Draining: st.Draining,
				ConnectionsShed: st.Shed.Total(), SlowConsumerCloses: st.SlowConsumerCloses, RateLimitCloses: st.RateLimitCloses,
			}
			if pg != nil {
				ps := pg.Stats()
				h.Listener, h.Published, h.PublishSeconds = ps.State.String(), ps.Published, ps.PublishSeconds
				h.Ready = h.Ready && ps.State != postgres.StateDown
			}
			return h
		},
	})
	if d.api.Enabled() {
		log.Info("server API on /api, dashboard on /dashboard", "keys", len(cfg.apiKeys))
	}
	r.Mount("/api", d.api)
	r.Handle("/dashboard", d.api.Dashboard())
	r.Handle("/dashboard/*", d.api.Dashboard())
}

// joinFlag is a string flag that may be repeated: the values are joined
// with spaces, as splitDatabaseURLs reads them.
type joinFlag struct{ s *string }

func (f joinFlag) String() string {
	if f.s == nil {
		return ""
	}
	return *f.s
}

func (f joinFlag) Set(v string) error {
	if *f.s != "" && v != "" {
		v = *f.s + " " + v
	}
	*f.s = v
	return nil
}

// splitDatabaseURLs splits --database-url (or $DATABASE_URL) into the
// URLs of several databases: they are separated by white space, or by a
// comma followed by "postgres://" or "postgresql://", so that the commas
// of a multi-host URL (postgres://h1:5432,h2:5432/db) stay inside it. A
// value without "://" is one keyword/value connection string
// ("host=... dbname=..."), which may hold spaces: it is not split.
func splitDatabaseURLs(v string) []string {
	if !strings.Contains(v, "://") {
		if v = strings.TrimSpace(v); v == "" {
			return nil
		}
		return []string{v}
	}
	var out []string
	for _, f := range strings.Fields(v) {
		for {
			i := nextURL(f)
			if i < 0 {
				break
			}
			if p := f[:i]; p != "" {
				out = append(out, p)
			}
			f = f[i+1:]
		}
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// nextURL returns the index of the first comma of s followed by a
// postgres:// or postgresql:// URL, or -1.
func nextURL(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] != ',' {
			continue
		}
		rest := strings.ToLower(s[i+1:])
		if strings.HasPrefix(rest, "postgres://") || strings.HasPrefix(rest, "postgresql://") {
			return i
		}
	}
	return -1
}

// newHTTPServer is the demo's HTTP server. idle closes keep-alive
// connections idle between requests (net/http keeps them forever
// otherwise): each costs a goroutine and 8 KiB of buffers, and a long-poll
// client keeps one for its POSTs beside its waiting poll. It does not
// touch hijacked WebSockets or requests in progress, such as a waiting
// poll.
func newHTTPServer(h http.Handler, idle time.Duration) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: idle}
}
