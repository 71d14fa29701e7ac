package bench

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func init() {
	Register(&Scenario{
		Name: "roundrobin",
		Summary: "long-poll subscribers through a balancer without sticky sessions (each request to the next of two clustered nodes), " +
			"and through an IP-sticky one: share of sessions that join and of messages delivered",
		Targets: []string{TargetLongPoll, TargetSocketIOPolling},
		Run:     runRoundRobin,
	})
}

// Balancer modes of the roundrobin scenario.
const (
	rrRoundRobin = "roundrobin" // every request to the next node (HAProxy's balance roundrobin in HTTP mode)
	rrSticky     = "sticky-ip"  // every request of a client address to one node (balance source)
)

// rrRun is one target behind one balancer mode.
type rrRun struct {
	Target   string `json:"target"`
	Balancer string `json:"balancer"`
	Sessions int    `json:"sessions"`
	// JoinedAtStart is how many subscribers were joined when publishing
	// began (after JoinWait), JoinedAtEnd when it ended.
	JoinedAtStart int64   `json:"joined_at_start"`
	JoinedAtEnd   int64   `json:"joined_at_end"`
	JoinWaitSec   float64 `json:"join_wait_seconds"`
	// Opens counts sessions the subscribers opened (first GET answered),
	// Drops those that then failed.
	Opens     int64 `json:"opens"`
	Drops     int64 `json:"drops"`
	Published int64 `json:"published"`
	Received  int64 `json:"received"`
	// DeliveredFrac is Received / (Published x Sessions).
	DeliveredFrac float64 `json:"delivered_fraction"`
	// NoMessages counts subscribers that received nothing.
	NoMessages int64 `json:"no_messages"`
	P50        Float `json:"p50_ms"`
	P99        Float `json:"p99_ms"`
	// Requests is what the balancer passed on; Status4xx those the nodes
	// answered with an HTTP 4xx (Engine.IO: 400 "Session ID unknown").
	// -1 when the balancer does not say (HAProxy).
	Requests  int64            `json:"requests"`
	Status4xx int64            `json:"status_4xx"`
	Errors    map[string]int64 `json:"errors"`
}

// runRoundRobin reads DatabaseURL (required), Clients (subscribers,
// default 200), Rate (default 2), Duration (default 20 s), Warmup (the
// wait for joins, default 15 s), Balancer (empty: a reverse proxy in this
// process; "haproxy": a real HAProxy with balance roundrobin / source). Each target
// runs twice on two fresh nodes clustered through Postgres: behind a
// per-request round-robin proxy, then behind an IP-sticky one. The
// subscribers poll through the proxy; one publisher is on node 0 over a
// WebSocket.
func runRoundRobin(ctx context.Context, env *Env) (*Report, error) {
	o := env.Opts
	if o.DatabaseURL == "" {
		return nil, errors.New("bench: the roundrobin scenario needs Postgres (two clustered nodes): pass --database-url (or set HEARTH_BENCH_DATABASE_URL)")
	}
	switch o.Balancer {
	case "", "haproxy":
	default:
		return nil, fmt.Errorf("bench: roundrobin: --balancer %q: want haproxy, or none for the bench's own proxy", o.Balancer)
	}
	subs := pick(o.Clients, 200, 10, o.Smoke)
	rate := pick(o.Rate, 2, 5, o.Smoke)
	dur := pick(o.Duration, 20*time.Second, 3*time.Second, o.Smoke)
	joinWait := pick(o.Warmup, 15*time.Second, 5*time.Second, o.Smoke)
	rep := &Report{Params: map[string]any{"subscribers": subs, "rate": rate, "seconds": dur.Seconds(), "join_wait_seconds": joinWait.Seconds()}}
	tab := &Table{
		Title: fmt.Sprintf("roundrobin: %d long-poll subscribers through %s over 2 nodes (Postgres), 1 publisher on node 0 at %g msg/s, %v",
			subs, map[string]string{"": "the bench's proxy", "haproxy": "HAProxy"}[o.Balancer], rate, dur),
		Header: []string{"target", "balancer", "joined after " + joinWait.String(), "joined at end", "sessions opened", "sessions dropped",
			"delivered", "subs with nothing", "p50", "p99", "requests", "HTTP 4xx", "top errors"},
	}
	rep.Tables = append(rep.Tables, tab)
	var runs []*rrRun
	var err error
	for _, kind := range o.Targets {
		for _, mode := range []string{rrSticky, rrRoundRobin} {
			var r *rrRun
			r, err = rrOne(ctx, env, kind, mode, subs, rate, dur, joinWait)
			if err != nil {
				err = fmt.Errorf("roundrobin against %s (%s): %w", kind, mode, err)
				break
			}
			runs = append(runs, r)
			tab.Add(kind, r.Balancer, fmt.Sprintf("%d (%.0f%%)", r.JoinedAtStart, 100*float64(r.JoinedAtStart)/float64(subs)),
				fmt.Sprintf("%d (%.0f%%)", r.JoinedAtEnd, 100*float64(r.JoinedAtEnd)/float64(subs)),
				fint(r.Opens), fint(r.Drops), fmt.Sprintf("%.1f%%", 100*r.DeliveredFrac), fint(r.NoMessages),
				fms(float64(r.P50)), fms(float64(r.P99)), fcount(r.Requests), fcount(r.Status4xx), topErrors(r.Errors, 2))
		}
		if err != nil {
			break
		}
	}
	rep.Results = runs
	bars := &Chart{Title: "Long-poll without sticky sessions: share joined and delivered", YLabel: "%",
		Categories: []string{"joined after wait", "messages delivered"}}
	for _, r := range runs {
		bars.Bars = append(bars.Bars, BarSeries{Name: r.Target + " " + r.Balancer,
			Values: []Float{Float(100 * float64(r.JoinedAtStart) / float64(r.Sessions)), Float(100 * r.DeliveredFrac)}})
	}
	rep.Charts = append(rep.Charts, bars)
	return rep, err
}

// fcount formats a count, "-" when unknown (negative).
func fcount(n int64) string {
	if n < 0 {
		return "-"
	}
	return fint(n)
}

// topErrors names the n most frequent error labels.
func topErrors(m map[string]int64, n int) string {
	type kv struct {
		k string
		v int64
	}
	var l []kv
	for k, v := range m {
		if !strings.HasPrefix(k, "closed_") {
			l = append(l, kv{k, v})
		}
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || l[i].v == l[j].v && l[i].k < l[j].k })
	var out []string
	for i := 0; i < len(l) && i < n; i++ {
		out = append(out, fmt.Sprintf("%s %d", l[i].k, l[i].v))
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, ", ")
}

func rrOne(ctx context.Context, env *Env, kind, mode string, subs int, rate float64, dur, joinWait time.Duration) (*rrRun, error) {
	t, err := env.Target(ctx, kind, env.Opts.DatabaseURL)
	if err != nil {
		return nil, err
	}
	if kind == TargetLongPoll {
		// The proxy names the client in X-Forwarded-For, as a production
		// balancer does: per-address admission sees the clients, not it.
		t.opts.Args = append(t.opts.Args, "--trusted-proxies", "127.0.0.0/8")
	}
	servers, addrs, err := startServers(ctx, t, 2)
	if err != nil {
		return nil, err
	}
	defer stopServers(servers)
	var px rrBalancer
	if env.Opts.Balancer == "haproxy" {
		px, err = startRRHAProxy(ctx, env.Opts.Out, addrs, mode == rrSticky)
	} else {
		px, err = startRRProxy(addrs, mode == rrSticky)
	}
	if err != nil {
		return nil, err
	}
	defer px.close()
	fleet, err := env.Fleet(subs + 1)
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	topics := []string{runTopicPrefix("room:rr") + "0"}
	epoch := env.Epoch.UnixNano()
	connRate := env.Opts.ConnectRate
	if connRate == 0 {
		connRate = defaultConnectRate
	}
	sub := GroupSpec{
		Name: "subs", Proto: t.Proto(), Transport: t.Transport(), Addrs: []string{px.address()}, Policy: "hearth", Topics: topics,
		TopicsPerClient: 1, Count: subs, SourceIPs: env.SourceIPs(subs), ConnectRate: connRate,
		HeartbeatMS: env.heartbeatMS(), EpochNS: epoch,
	}
	label := fmt.Sprintf("roundrobin %s %s", kind, mode)
	p := env.progress(label+" join", fleet, joinedLine(int64(subs), "subs"))
	if err := fleet.Start(sub); err != nil {
		p.done()
		return nil, err
	}
	// Not an error when they do not all join: that is what is measured.
	_ = waitJoined(ctx, fleet, int64(subs), joinWait, "subs")
	p.done()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	pub := GroupSpec{
		Name: "pubs", Proto: t.Proto(), Addrs: addrs[:1], Policy: "hearth", Topics: topics,
		Count: 1, HeartbeatMS: env.heartbeatMS(), EpochNS: epoch,
		Publish: &PublishSpec{Total: 1, Rate: rate, Size: 64},
	}
	if err := fleet.Start(pub); err != nil {
		return nil, err
	}
	if err := waitJoined(ctx, fleet, 1, time.Minute, "pubs"); err != nil {
		return nil, err
	}
	st, err := fleet.Stats()
	if err != nil {
		return nil, err
	}
	joinedStart := st["subs"].Joined
	p = env.progress(label+" publish", fleet, joinedLine(int64(subs), "subs"))
	err = sleepCtx(ctx, dur)
	p.done()
	if err != nil {
		return nil, err
	}
	st, err = fleet.Stats()
	if err != nil {
		return nil, err
	}
	joinedEnd := st["subs"].Joined
	res, _, err := finishAll(ctx, fleet, "subs", "pubs")
	if err != nil {
		return nil, err
	}
	sr, pr := res["subs"], res["pubs"]
	r := &rrRun{
		Target: kind, Balancer: mode, Sessions: subs, JoinedAtStart: joinedStart, JoinedAtEnd: joinedEnd,
		JoinWaitSec: joinWait.Seconds(), Opens: sr.Stats.Counters["conn_ok"], Drops: sr.Stats.Counters["disconnects"],
		Published: pr.Stats.Counters["published"], Received: sr.Stats.Counters["received"],
		Errors: sr.Stats.Errors,
	}
	r.Requests, r.Status4xx = px.counts()
	r.Balancer = mode + px.kind()
	if r.Published > 0 {
		r.DeliveredFrac = float64(r.Received) / float64(r.Published*int64(subs))
	}
	r.NoMessages = int64(subs) - sr.Receivers
	lat := hist(sr.Latency)
	r.P50, r.P99 = Float(lat.Quantile(0.5)), Float(lat.Quantile(0.99))
	return r, nil
}

// rrBalancer is what the subscribers connect to: the bench's own reverse
// proxy or a real HAProxy.
type rrBalancer interface {
	address() string
	kind() string                   // "" for the bench's proxy, " (haproxy)"
	counts() (requests, c4xx int64) // -1 when unknown
	close()
}

// rrProxy is an HTTP reverse proxy over the nodes: each request to the
// next node, or (sticky) every request of one client address to one node.
type rrProxy struct {
	addr      string
	srv       *http.Server
	ln        net.Listener
	requests  atomic.Int64
	status4xx atomic.Int64
	tr        *http.Transport
	once      sync.Once
}

func (px *rrProxy) address() string { return px.addr }
func (px *rrProxy) kind() string    { return "" }
func (px *rrProxy) counts() (int64, int64) {
	return px.requests.Load(), px.status4xx.Load()
}

func startRRProxy(backends []string, sticky bool) (*rrProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	px := &rrProxy{addr: ln.Addr().String(), ln: ln,
		tr: &http.Transport{MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute, DisableCompression: true}}
	targets := make([]*url.URL, len(backends))
	for i, b := range backends {
		targets[i] = &url.URL{Scheme: "http", Host: b}
	}
	var next atomic.Uint64
	rp := &httputil.ReverseProxy{
		Transport: px.tr,
		Rewrite: func(r *httputil.ProxyRequest) {
			i := int(next.Add(1) % uint64(len(targets)))
			if sticky {
				host, _, _ := net.SplitHostPort(r.In.RemoteAddr)
				h := fnv.New32a()
				h.Write([]byte(host))
				i = int(h.Sum32() % uint32(len(targets)))
			}
			r.SetURL(targets[i])
			r.SetXForwarded()
		},
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode >= 400 && resp.StatusCode < 500 {
				px.status4xx.Add(1)
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			// A client gave up its request (a superseded poll, the end of
			// the run), or a node is gone: not a figure of the run.
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	px.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		px.requests.Add(1)
		rp.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = px.srv.Serve(ln) }()
	return px, nil
}

func (px *rrProxy) close() {
	px.once.Do(func() {
		_ = px.srv.Close()
		px.tr.CloseIdleConnections()
	})
}

// rrHAProxy is HAProxy in HTTP mode over the nodes, without health checks:
// balance roundrobin (each request to the next node; HAProxy balances
// every request of a keep-alive connection) or balance source.
type rrHAProxy struct {
	addr string
	cmd  *exec.Cmd
	done chan struct{}
}

const rrHAProxyConfig = `global
    log stderr format short local0 warning
defaults
    mode http
    timeout connect 5s
    timeout client 75s
    timeout server 75s
    timeout http-request 10s
    option forwardfor
frontend fe
    bind %s
    default_backend nodes
backend nodes
    balance %s
%s`

func startRRHAProxy(ctx context.Context, dir string, backends []string, sticky bool) (*rrHAProxy, error) {
	bin, err := exec.LookPath("haproxy")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/haproxy"); serr != nil {
			return nil, errors.New("bench: --balancer haproxy needs HAProxy (apt-get install haproxy)")
		}
		bin = "/usr/sbin/haproxy"
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	balance := "roundrobin"
	if sticky {
		balance = "source"
	}
	var servers strings.Builder
	for i, b := range backends {
		fmt.Fprintf(&servers, "    server n%d %s\n", i, b)
	}
	cfg := filepath.Join(dir, fmt.Sprintf("roundrobin-haproxy-%s.cfg", balance))
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(rrHAProxyConfig, addr, balance, servers.String())), 0o644); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-db", "-f", cfg)
	cmd.SysProcAttr = childAttr()
	logf, err := os.Create(strings.TrimSuffix(cfg, ".cfg") + ".log")
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench: start haproxy: %w", err)
	}
	h := &rrHAProxy{addr: addr, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(h.done)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-h.done:
			return nil, fmt.Errorf("bench: haproxy exited at startup (see %s)", logf.Name())
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return h, nil
		}
		if time.Now().After(deadline) {
			h.close()
			return nil, fmt.Errorf("bench: haproxy does not listen on %s after 20 s", addr)
		}
		if err := sleepCtx(ctx, 50*time.Millisecond); err != nil {
			h.close()
			return nil, err
		}
	}
}

func (h *rrHAProxy) address() string        { return h.addr }
func (h *rrHAProxy) kind() string           { return " (haproxy)" }
func (h *rrHAProxy) counts() (int64, int64) { return -1, -1 }
func (h *rrHAProxy) close() {
	_ = h.cmd.Process.Kill()
	<-h.done
}
