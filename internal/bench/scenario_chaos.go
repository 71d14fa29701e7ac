package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hearth-rt/hearth/internal/cluster"
)

func init() {
	Register(&Scenario{
		Name:    "chaos",
		Summary: "production topology: hearth nodes on Postgres behind HAProxy; --scenario deploy,node-kill,pg-failover,pg-failover-async,partition,soak",
		Targets: []string{TargetHearth},
		Run:     runChaos,
	})
}

// Chaos scenarios.
const (
	ChaosDeploy   = "deploy"    // every node in turn SIGTERM-drained and replaced
	ChaosNodeKill = "node-kill" // SIGKILL one of three nodes, not replaced
	// The nodes on a private primary with a synchronous standby (and
	// --synchronous-failover); the primary crashes mid-stream, the standby
	// is promoted.
	ChaosPGFailover = "pg-failover"
	// The same with asynchronous replication: the topics move to a new
	// epoch, and what the last commits carried may be lost.
	ChaosPGFailoverAsync = "pg-failover-async"
	// Churn (groups of clients connecting, joining and leaving), the
	// publisher throughout, a whole deploy every DeployEvery; every node's
	// RSS, goroutines and open files, the Postgres connections and the
	// history size sampled every 10 s.
	ChaosSoak = "soak"
	// Node 1 runs in a network namespace; its Postgres traffic is dropped
	// (no reset) for a while, then let through again.
	ChaosPartition = "partition"
)

// chaosScenarios are the ones this tool runs, in order.
var chaosScenarios = []string{ChaosDeploy, ChaosNodeKill, ChaosPGFailover, ChaosPGFailoverAsync, ChaosPartition, ChaosSoak}

// chaosDefault is what runs without --scenario.
var chaosDefault = []string{ChaosDeploy, ChaosNodeKill, ChaosPGFailover, ChaosPartition}

func isPGFailover(name string) bool { return name == ChaosPGFailover || name == ChaosPGFailoverAsync }

// chaosPhase is one chaos scenario under one client reconnect policy.
type chaosPhase struct {
	Scenario string `json:"scenario"`
	Policy   string `json:"policy"`
	Balancer string `json:"balancer"`
	Nodes    int    `json:"nodes"`
	Clients  int    `json:"clients"`
	Affected int    `json:"affected"`
	// Rejoin99 is the time from the event until 99% of the affected
	// clients were joined again (ms; the deploy's event is its start).
	Rejoin99    Float `json:"rejoin_99_ms"`
	Rejoin100   Float `json:"rejoin_100_ms"`
	NotRejoined int   `json:"not_rejoined"`
	EventMS     Float `json:"event_ms"` // how long the server side took (the whole deploy)
	// ReadyAgainMS is the time from the event until every running node's
	// /readyz said 200 again (pg-failover: the listeners reconnected), from
	// the twice-a-second samples.
	ReadyAgainMS Float `json:"ready_again_ms"`
	// Partition: from the cut until the node's /readyz said 503, and until
	// the balancer had it down; how long the cut lasted.
	NoticedMS   Float `json:"noticed_ms"`
	LBOutMS     Float `json:"balancer_out_ms"`
	PartitionMS Float `json:"partition_ms"`
	// Soak: the samples, the deploys made, the churn clients started.
	Soak        []soakSample `json:"soak,omitempty"`
	Deploys     int          `json:"deploys,omitempty"`
	ChurnGroups int          `json:"churn_groups,omitempty"`
	ChurnConns  int          `json:"churn_clients,omitempty"`
	PeakAccept  float64      `json:"peak_accept_per_sec"`
	PeakRejoin  float64      `json:"peak_rejoin_per_sec"`
	Shed        int64        `json:"shed"`
	// ClientErrors counts client-visible errors: failed attempts and
	// closes other than the announced restart/retry ones.
	ClientErrors int64            `json:"client_errors"`
	Errors       map[string]int64 `json:"errors"`
	Published    int64            `json:"published"`
	PubFailed    int64            `json:"pub_failed"`
	Received     int64            `json:"received"`
	Lost         int64            `json:"lost"`
	Duplicates   int64            `json:"duplicated"`
	Reordered    int64            `json:"reordered"`
	Recovered    int64            `json:"recovered"`
	NotRecovered int64            `json:"not_recovered"`
	Unsettled    bool             `json:"unsettled,omitempty"`
	Timeline     []chaosSample    `json:"timeline"`
	// Tokens: the clients were signed in (deploy); nil when anonymous.
	Tokens *chaosTokens `json:"tokens,omitempty"`

	connects, joins [][2]float64 // per second, seconds from the event
}

// chaosTokens is what signed-in clients asked of the token service.
type chaosTokens struct {
	// Strategy is the clients' token strategy under the phase's policy:
	// channel-refresh (Hearth) or fetch-each (Phoenix).
	Strategy string `json:"strategy"`
	// ServiceTTL is the lifetime of the service's tokens (s); the nodes
	// refresh them over the socket with tokens of their own --token-ttl.
	ServiceTTL Float `json:"service_token_ttl_s"`
	// SetupCalls counts the calls before the event: each client's first
	// token, and another for any reconnect before its first refresh.
	SetupCalls int64 `json:"setup_calls"`
	// Refreshed is how many clients had received a token over the socket
	// when the event started.
	Refreshed int `json:"refreshed_before_event"`
	// Calls counts the clients' GET /token from the event to the end (all
	// rejoined, plus 2 s); Answered is the token service's own count
	// (hearth_demo_token_requests_total) over the same span.
	Calls    int64 `json:"calls"`
	Answered int64 `json:"answered"`
	// PeakPerSec is the most calls in any one second of that span.
	PeakPerSec float64 `json:"peak_calls_per_sec"`
	// Pushed counts the tokens the nodes pushed over the sockets in the
	// span (channel refresh).
	Pushed int64 `json:"pushed"`
	// RevokedRefused is how many nodes refused, before the event, a token
	// whose session had been logged out at the token service (the
	// connect's session re-check, token.ConnectOptions.Session), of
	// RevokedProbed.
	RevokedRefused int `json:"revoked_refused"`
	RevokedProbed  int `json:"revoked_probed"`
	// PerSec is the calls per second (1 s window, every 100 ms), seconds
	// from the event, from 3 s before it to the end.
	PerSec [][2]float64 `json:"calls_per_sec"`
}

// tokenStrategy is the token strategy of a reconnect policy's client:
// Hearth's reuses the token refreshed over the socket; phoenix.js and
// socket.io apps compute their params (auth) again on every connect.
func tokenStrategy(policy string) string {
	if policy == "hearth" {
		return tokensRefresh
	}
	return tokensFetch
}

// chaosSample is the cluster's state at one moment.
type chaosSample struct {
	T       float64  `json:"t"`       // seconds from the event
	Ready   []bool   `json:"ready"`   // each node's /readyz
	Backend []string `json:"backend"` // the balancer's view of each node
	Current []int    `json:"current"` // the balancer's sessions per node
}

// runChaos reads DatabaseURL (required), Chaos (default deploy,
// node-kill), Clients (default 3,000), Topics (default 30), Rate (the
// publisher's, default 20 msg/s), Warmup, Policies (deploy: default
// hearth,phoenix; node-kill: hearth), DrainWindow, EventTimeout,
// DrainTimeout, ConnectRate, Balancer (haproxy, nginx). The deploy's
// clients are signed in at a token service beside the balancer and reuse
// the tokens refreshed over the socket (hearth policy) or fetch one before
// every connect (the others); the service's calls are counted.
func runChaos(ctx context.Context, env *Env) (*Report, error) {
	o := env.Opts
	names := o.Chaos
	if len(names) == 0 {
		names = chaosDefault
	}
	for _, n := range names {
		if !slices.Contains(chaosScenarios, n) {
			return nil, fmt.Errorf("bench: unknown chaos scenario %q (this tool runs %s)", n, strings.Join(chaosScenarios, ", "))
		}
		if o.DatabaseURL == "" && !isPGFailover(n) {
			return nil, fmt.Errorf("bench: the %s scenario runs nodes on Postgres: pass --database-url (or set HEARTH_BENCH_DATABASE_URL)", n)
		}
	}
	for _, p := range o.Policies {
		if _, err := PolicyByName(p); err != nil {
			return nil, err
		}
	}
	lb := o.Balancer
	if lb == "" {
		lb = cluster.HAProxy
	}
	if lb != cluster.HAProxy && lb != cluster.Nginx {
		return nil, fmt.Errorf("bench: --balancer %q: want haproxy or nginx", lb)
	}
	k := pick(o.Clients, 3000, 60, o.Smoke)
	topics := pick(o.Topics, 30, 6, o.Smoke)
	if topics > maxChannels {
		return nil, fmt.Errorf("bench: the chaos publisher joins every topic: at most %d topics", maxChannels)
	}
	rep := &Report{Params: map[string]any{"scenarios": names, "clients": k, "topics": topics, "balancer": lb,
		"rate": pick(o.Rate, 20.0, 20.0, o.Smoke), "recover": !o.NoRecover}}
	tab := &Table{
		Title: fmt.Sprintf("chaos: %d clients on %d topics through %s, a publisher through it too", k, topics, lb),
		Header: []string{"scenario", "policy", "nodes", "affected", "event took", "ready again", "99% back", "100% back", "peak conn/s", "peak rejoin/s",
			"shed", "client errors", "token calls", "peak token calls/s", "published", "pub failed", "lost", "duplicated", "reordered", "not recovered"},
	}
	rep.Tables = append(rep.Tables, tab)
	var phases []*chaosPhase
	var firstErr error
	for _, name := range names {
		pols := o.Policies
		if len(pols) == 0 {
			pols = []string{"hearth"}
			if name == ChaosDeploy {
				pols = []string{"hearth", "phoenix"}
			}
		}
		for _, pol := range pols {
			ph, err := chaosOne(ctx, env, name, pol, lb, k, topics)
			if ph != nil {
				phases = append(phases, ph)
				calls, peakCalls := "-", "-" // anonymous clients
				if tk := ph.Tokens; tk != nil {
					calls, peakCalls = fint(tk.Calls), fnum(tk.PeakPerSec)
				}
				tab.Add(name, pol, fint(int64(ph.Nodes)), fint(int64(ph.Affected)), fms(float64(ph.EventMS)), fms(float64(ph.ReadyAgainMS)), fms(float64(ph.Rejoin99)), fms(float64(ph.Rejoin100)),
					fnum(ph.PeakAccept), fnum(ph.PeakRejoin), fint(ph.Shed), fint(ph.ClientErrors), calls, peakCalls, fint(ph.Published), fint(ph.PubFailed),
					fint(ph.Lost), fint(ph.Duplicates), fint(ph.Reordered), fint(ph.NotRecovered))
				extra := ""
				switch {
				case ph.Tokens != nil:
					tk := ph.Tokens
					extra = fmt.Sprintf("signed in (%s tokens; %d setup calls, %d of %d refreshed over the socket, a logged-out session refused by %d of %d nodes), token-service calls during the deploy %d (peak %s/s; the service answered %d), ",
						tk.Strategy, tk.SetupCalls, tk.Refreshed, ph.Clients, tk.RevokedRefused, tk.RevokedProbed, tk.Calls, fnum(tk.PeakPerSec), tk.Answered)
				case name == ChaosPartition:
					extra = fmt.Sprintf("node noticed (/readyz 503) after %s, balancer out after %s, cut for %s, ", fms(float64(ph.NoticedMS)), fms(float64(ph.LBOutMS)), fms(float64(ph.PartitionMS)))
				case name == ChaosSoak && len(ph.Soak) > 1:
					a, z := ph.Soak[0], ph.Soak[len(ph.Soak)-1]
					extra = fmt.Sprintf("%.0f s, %d deploys, %d churn clients; first/last sample: RSS %s/%s MiB, goroutines %s/%s, open files %s/%s, PG sessions %.0f/%.0f, history %.0f/%.0f rows; ",
						z.T, ph.Deploys, ph.ChurnConns, joinNums(a.RSSMiB), joinNums(z.RSSMiB), joinNums(a.Goroutines), joinNums(z.Goroutines),
						joinNums(a.OpenFiles), joinNums(z.OpenFiles), a.PGConns, z.PGConns, a.History, z.History)
				case isPGFailover(name):
					extra = fmt.Sprintf("nodes ready again after %s, %d publishes refused, ", fms(float64(ph.ReadyAgainMS)), ph.PubFailed)
				}
				fmt.Fprintf(env.out, "chaos %s (%s policy, %d nodes behind %s, %d clients): %s99%% rejoined in %s, peak %s connects/s, shed %d, client errors %d, lost %d, duplicated %d, reordered %d\n",
					name, pol, ph.Nodes, lb, ph.Clients, extra, fms(float64(ph.Rejoin99)), fnum(ph.PeakAccept), ph.Shed, ph.ClientErrors, ph.Lost, ph.Duplicates, ph.Reordered)
				if ph.Unsettled {
					rep.Notes = append(rep.Notes, fmt.Sprintf("%s/%s: deliveries were still arriving %v after publishing stopped; what had not arrived counts as lost", name, pol, settleLimit))
				}
			}
			if err != nil {
				firstErr = fmt.Errorf("chaos %s/%s: %w", name, pol, err)
				break
			}
		}
		if firstErr != nil {
			break
		}
	}
	rep.Results = phases
	errTab := &Table{Title: "chaos: what the clients saw (counts by kind)", Header: []string{"scenario", "policy", "errors and closes"}}
	for _, ph := range phases {
		errTab.Add(ph.Scenario, ph.Policy, GroupStats{Errors: ph.Errors}.ErrorSummary())
	}
	rep.Tables = append(rep.Tables, errTab)
	rep.Charts = chaosCharts(phases)
	return rep, firstErr
}

func chaosCharts(phases []*chaosPhase) []*Chart {
	var charts []*Chart
	for _, ph := range phases {
		title := ph.Scenario + " (" + ph.Policy + " policy)"
		rate := &Chart{Title: "Connects and joins per second through the balancer: " + title, XLabel: "seconds from the event", YLabel: "per second (1 s window)",
			Lines: []Series{{Name: "connects", Points: ph.connects}, {Name: "joined", Points: ph.joins}}}
		ready := &Chart{Title: "Nodes ready (/readyz 200) and up in the balancer: " + title, XLabel: "seconds from the event", YLabel: "nodes"}
		var rd, up [][2]float64
		for _, s := range ph.Timeline {
			var r, u float64
			for i := range s.Ready {
				if s.Ready[i] {
					r++
				}
				if strings.HasPrefix(s.Backend[i], "UP") {
					u++
				}
			}
			rd, up = append(rd, [2]float64{s.T, r}), append(up, [2]float64{s.T, u})
		}
		ready.Lines = []Series{{Name: "ready", Points: rd}, {Name: "balancer UP", Points: up}}
		charts = append(charts, rate, ready)
		charts = append(charts, soakCharts(ph)...)
	}
	calls := &Chart{Title: "Token-service calls per second, signed-in clients", XLabel: "seconds from the event", YLabel: "GET /token per second (1 s window)"}
	callBars := &Chart{Title: "Token-service calls from the event until every client rejoined", YLabel: "GET /token"}
	total := BarSeries{Name: "token-service calls"}
	for _, ph := range phases {
		if ph.Tokens != nil {
			calls.Lines = append(calls.Lines, Series{Name: ph.Scenario + " " + ph.Policy + " (" + ph.Tokens.Strategy + ")", Points: ph.Tokens.PerSec})
			callBars.Categories = append(callBars.Categories, ph.Scenario+" "+ph.Policy)
			total.Values = append(total.Values, Float(ph.Tokens.Calls))
		}
	}
	if len(calls.Lines) > 0 {
		callBars.Bars = []BarSeries{total}
		charts = append(charts, calls, callBars)
	}
	if len(phases) > 0 {
		var cats []string
		bars := BarSeries{Name: "peak connects/s"}
		for _, ph := range phases {
			cats = append(cats, ph.Scenario+" "+ph.Policy)
			bars.Values = append(bars.Values, Float(ph.PeakAccept))
		}
		charts = append(charts, &Chart{Title: "Peak connects per second on the surviving nodes", YLabel: "connects/s", Categories: cats, Bars: []BarSeries{bars}})
	}
	return charts
}

// chaosCluster is a running cluster: nodes on Postgres behind a balancer.
type chaosCluster struct {
	t     *Target
	lb    *cluster.Balancer
	addrs []string
	// The partition scenario's node: in a network namespace, reaching
	// Postgres through a forwarder on the host the namespace can be cut
	// from.
	isolated int // its slot, -1 for none
	iso      *Target
	ns       *cluster.Netns
	fwd      *cluster.Forwarder

	mu    sync.Mutex
	nodes []*Server // current process per slot (nil: none)
	all   []*Server

	// The token service (a `hearth serve` beside the balancer, on the same
	// database and secret; nil when the clients are anonymous).
	secret string
	dbURL  string
	dir    string
	tokens *Server
}

func (c *chaosCluster) node(i int) *Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

func (c *chaosCluster) setNode(i int, s *Server) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[i] = s
	if s != nil {
		c.all = append(c.all, s)
	}
}

func (c *chaosCluster) close() {
	if c.lb != nil {
		_ = c.lb.Close()
	}
	if c.tokens != nil {
		c.tokens.Kill()
	}
	c.mu.Lock()
	stopServers(slices.DeleteFunc(slices.Clone(c.nodes), func(s *Server) bool { return s == nil }))
	c.mu.Unlock()
	if c.fwd != nil {
		_ = c.fwd.Close()
	}
	if c.ns != nil {
		_ = c.ns.Close()
	}
}

// target returns the target that starts slot i.
func (c *chaosCluster) target(i int) *Target {
	if i == c.isolated {
		return c.iso
	}
	return c.t
}

// isolate prepares slot i to run in a network namespace: its Postgres
// traffic goes through a forwarder on the namespace's host address.
func (c *chaosCluster) isolate(ctx context.Context, i int, dbURL string, topts TargetOptions) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil || u.Host == "" || strings.Contains(u.Host, ",") {
		return "", fmt.Errorf("bench: the partition scenario needs a single-host --database-url (got %q)", dbURL)
	}
	pgAddr := u.Host
	if u.Port() == "" {
		pgAddr = net.JoinHostPort(u.Hostname(), "5432")
	}
	if c.ns, err = cluster.NewNetns(); err != nil {
		return "", err
	}
	if c.fwd, err = cluster.Forward(c.ns.HostIP+":0", pgAddr); err != nil {
		return "", err
	}
	u.Host = c.fwd.Addr()
	topts.DatabaseURL = u.String()
	topts.Wrap = c.ns.Wrap()
	// Clients reach it through the balancer, whose address on the pair is
	// the host's: trust that one for X-Forwarded-For too.
	topts.Args = append(slices.Clone(topts.Args), "--trusted-proxies", c.ns.HostIP)
	if c.iso, err = NewTarget(ctx, topts); err != nil {
		return "", err
	}
	c.isolated = i
	return net.JoinHostPort(c.ns.NSIP, "4000"), nil
}

func backendName(i int) string { return fmt.Sprintf("node%d", i) }

// startChaosCluster starts n hearth nodes on Postgres and a balancer in
// front of them, and waits until the balancer has every node up.
// Node isolate (-1: none) runs in a network namespace (partition).
func startChaosCluster(ctx context.Context, env *Env, lbKind string, n int, dir, dbURL string, isolate int, extra ...string) (*chaosCluster, error) {
	o := env.Opts
	// Behind the balancer every connection comes from its address: the
	// nodes read the client's from X-Forwarded-For.
	// One secret for every node (and the token service): a token from one
	// is good on all.
	var sb [16]byte
	_, _ = rand.Read(sb[:])
	secret := hex.EncodeToString(sb[:])
	args := append(slices.Clone(o.ServerArgs), "--trusted-proxies", "127.0.0.1", "--secret", secret)
	args = append(args, extra...)
	topts := TargetOptions{
		Kind: TargetHearth, HearthBin: o.HearthBin, RepoDir: o.Repo, DatabaseURL: dbURL,
		Args: args, LogDir: dir, Epoch: env.Epoch, DrainWindow: env.drainWindow(TargetHearth),
	}
	t, err := NewTarget(ctx, topts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	c := &chaosCluster{t: t, nodes: make([]*Server, n), addrs: make([]string, n), isolated: -1, secret: secret, dbURL: dbURL, dir: dir}
	for i := range n {
		if i == isolate {
			c.addrs[i], err = c.isolate(ctx, i, dbURL, topts)
		} else {
			c.addrs[i], err = FreeAddr()
		}
		if err == nil {
			var srv *Server
			if srv, err = c.target(i).Start(ctx, i, c.addrs[i]); err == nil {
				c.setNode(i, srv)
			}
		}
		if err != nil {
			c.close()
			return nil, err
		}
	}
	addrs := c.addrs
	var backends []cluster.Backend
	for i, a := range addrs {
		backends = append(backends, cluster.Backend{Name: backendName(i), Addr: a})
	}
	if c.lb, err = cluster.Start(ctx, lbKind, cluster.Options{Backends: backends, Dir: dir}); err != nil {
		c.close()
		return nil, err
	}
	for i := range n {
		if err := c.lb.WaitBackend(ctx, backendName(i), true, 30*time.Second); err != nil {
			c.close()
			return nil, err
		}
	}
	return c, nil
}

// startTokenService starts the token service: a `hearth serve` on the
// cluster's database and secret, beside the balancer (not behind it, not
// part of the deploy), whose POST /login and GET /token the clients use;
// its tokens live ttl. Being on the database, its logouts reach every node.
func (c *chaosCluster) startTokenService(ctx context.Context, env *Env, ttl time.Duration) error {
	t, err := NewTarget(ctx, TargetOptions{
		Kind: TargetHearth, HearthBin: env.Opts.HearthBin, RepoDir: env.Opts.Repo, DatabaseURL: c.dbURL,
		Args: []string{"--secret", c.secret, "--token-ttl", ttl.String()}, LogDir: filepath.Join(c.dir, "token-service"), Epoch: env.Epoch,
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(c.dir, "token-service"), 0o755); err != nil {
		return err
	}
	addr, err := FreeAddr()
	if err != nil {
		return err
	}
	c.tokens, err = t.Start(ctx, 0, addr)
	return err
}

// tokenCount reads the token service's count of GET /token answered.
func (c *chaosCluster) tokenCount() int64 {
	return scrapeCounter("http://"+c.tokens.Addr+"/metrics", "hearth_demo_token_requests_total")
}

// probeRevoked checks the nodes' session re-check at connect: a user
// signs in at the token service and gets a token, which node 0 accepts;
// then logs out (the token service announces it to every node through
// Postgres), and each node must refuse the same, still valid token (HTTP
// 403 before the upgrade: a client that cannot read close codes). It
// returns how many nodes refused it within 10 s.
func (c *chaosCluster) probeRevoked(ctx context.Context) (int, error) {
	ts := newTokenService(c.tokens.Addr)
	defer ts.close()
	cookie, err := ts.login(ctx, "", "chaos-probe")
	if err != nil {
		return 0, fmt.Errorf("probe login: %w", err)
	}
	tok, _, err := ts.token(ctx, "", cookie)
	if err != nil {
		return 0, fmt.Errorf("probe token: %w", err)
	}
	d := &dialer{timeout: 5 * time.Second}
	path := "/socket/websocket?vsn=2.0.0&token=" + url.QueryEscape(tok)
	conn, err := d.dialWS(ctx, "", c.addrs[0], path, false)
	if err != nil {
		return 0, fmt.Errorf("a fresh token refused by node 0 before the logout: %w", err)
	}
	conn.c.Close()
	if err := ts.logout(ctx, cookie); err != nil {
		return 0, err
	}
	refused := 0
	for i, a := range c.addrs {
		if c.node(i) == nil {
			continue
		}
		limit := time.Now().Add(10 * time.Second)
		for time.Now().Before(limit) {
			conn, err := d.dialWS(ctx, "", a, path, false)
			if err == nil {
				conn.c.Close() // the logout has not reached this node yet
				if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
					return refused, err
				}
				continue
			}
			var he *HandshakeError
			if errors.As(err, &he) && he.Status == http.StatusForbidden {
				refused++
			}
			break
		}
	}
	return refused, nil
}

// deploy replaces every node in turn: SIGTERM (it turns unready, the
// balancer takes it out, its sockets move over the drain window), wait for
// its exit, start the new version on the same address, wait until the
// balancer has it up again.
func (c *chaosCluster) deploy(ctx context.Context, drainTimeout time.Duration) error {
	for i := range c.addrs {
		old := c.node(i)
		if !old.Terminate(drainTimeout) {
			return fmt.Errorf("node %d did not exit within %v of SIGTERM (killed)", i, drainTimeout)
		}
		c.setNode(i, nil)
		srv, err := c.target(i).Start(ctx, i, c.addrs[i])
		if err != nil {
			return err
		}
		c.setNode(i, srv)
		if err := c.lb.WaitBackend(ctx, backendName(i), true, 60*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// allReady reports whether every running node answers /readyz with 200.
func (c *chaosCluster) allReady(ctx context.Context) bool {
	for i, a := range c.addrs {
		if c.node(i) != nil && !cluster.Ready(ctx, a) {
			return false
		}
	}
	return true
}

// sample records the cluster's state.
func (c *chaosCluster) sample(ctx context.Context, since time.Time) chaosSample {
	s := chaosSample{T: time.Since(since).Seconds()}
	states, _ := c.lb.Backends()
	for i, a := range c.addrs {
		s.Ready = append(s.Ready, c.node(i) != nil && cluster.Ready(ctx, a))
		st, cur := "?", 0
		for _, b := range states {
			if b.Name == backendName(i) {
				st, cur = b.Status, b.Current
			}
		}
		s.Backend, s.Current = append(s.Backend, st), append(s.Current, cur)
	}
	return s
}

// chaosOne runs one chaos scenario with one client policy.
func chaosOne(ctx context.Context, env *Env, name, pol, lbKind string, k, topics int) (*chaosPhase, error) {
	o := env.Opts
	nodes := pick(o.Nodes, 3, 3, o.Smoke)
	if nodes < 2 {
		return nil, errors.New("bench: a chaos cluster needs at least 2 nodes")
	}
	rate := pick(o.Rate, 20.0, 20.0, o.Smoke)
	warmup := pick(o.Warmup, 5*time.Second, 2*time.Second, o.Smoke)
	evTimeout := pick(o.EventTimeout, 120*time.Second, 60*time.Second, o.Smoke)
	var err error
	hold := pick(o.Duration, 30*time.Second, 5*time.Second, o.Smoke) // partition: how long the cut lasts after the balancer took the node out
	if name == ChaosSoak {
		evTimeout += pick(o.Duration, time.Hour, 60*time.Second, o.Smoke)
	}
	window := env.drainWindow(TargetHearth)
	if window == 0 {
		window = 30 * time.Second // hearth serve's default
	}
	drainTimeout := pick(o.DrainTimeout, window+15*time.Second, window+15*time.Second, o.Smoke)
	if name == ChaosDeploy {
		evTimeout += time.Duration(nodes) * (window + 10*time.Second)
	}
	dbURL := o.DatabaseURL
	var extra []string
	var primary, standby *cluster.Postgres
	if isPGFailover(name) {
		// A private primary and its streaming standby; the nodes follow the
		// writable one through a multi-host URL.
		if primary, err = cluster.StartPrimary(); err != nil {
			return nil, err
		}
		defer primary.Remove()
		if standby, err = cluster.StartStandby(primary, name == ChaosPGFailover); err != nil {
			return nil, err
		}
		defer standby.Remove()
		dbURL = cluster.FailoverURL(primary, standby)
		if name == ChaosPGFailover {
			extra = append(extra, "--synchronous-failover")
		}
	}
	isolate := -1
	if name == ChaosPartition {
		// Node 1 in a namespace; a node cut off from Postgres for 2 s moves
		// its clients to the others.
		isolate = 1
		extra = append(extra, "--evacuate-after", "2s")
	}
	c, err := startChaosCluster(ctx, env, lbKind, nodes, filepath.Join(o.Out, fmt.Sprintf("chaos-%s-%s", name, pol)), dbURL, isolate, extra...)
	if err != nil {
		return nil, err
	}
	defer c.close()
	// The deploy's clients are signed in: each gets its tokens from a
	// token service shared by the cluster, the nodes verify them.
	var tokens *chaosTokens
	if name == ChaosDeploy {
		// The service's tokens live briefly so that every client receives
		// its first refresh over the socket (a token of the nodes'
		// --token-ttl, 10 minutes) within the warm-up, as a client
		// connected for a while has; a Hearth client that reconnected with
		// the service's token instead would find it expired.
		tokens = &chaosTokens{Strategy: tokenStrategy(pol), ServiceTTL: Float(pick(0, 20*time.Second, 6*time.Second, o.Smoke).Seconds())}
		if err := c.startTokenService(ctx, env, time.Duration(float64(tokens.ServiceTTL)*float64(time.Second))); err != nil {
			return nil, err
		}
	}

	fleet, err := env.Fleet(k + 1)
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	connRate := o.ConnectRate
	if connRate == 0 {
		connRate = defaultConnectRate
	}
	epoch := env.Epoch.UnixNano()
	recov := !o.NoRecover
	label := fmt.Sprintf("chaos %s %s", name, pol)
	lbAddr := []string{c.lb.Addr}
	sub := GroupSpec{
		Name: "subs", Proto: ProtoPhoenix, Addrs: lbAddr, Failover: true, Policy: pol,
		Topics: topicNames(runTopicPrefix("room:chaos"), topics), TopicsPerClient: 1, Count: k, SourceIPs: env.SourceIPs(k),
		ConnectRate: connRate, HeartbeatMS: env.heartbeatMS(), Recover: recov, EpochNS: epoch,
	}
	if tokens != nil {
		sub.Auth = &AuthSpec{Service: c.tokens.Addr, Strategy: tokens.Strategy, UserPrefix: "u"}
	}
	p := env.progress(label+" connect", fleet, joinedLine(int64(k), "subs"))
	err = fleet.Start(sub)
	if err == nil {
		err = waitJoined(ctx, fleet, int64(k), 10*time.Minute, "subs")
	}
	p.done()
	if err != nil {
		return nil, err
	}
	pub := GroupSpec{
		Name: "pubs", Proto: ProtoPhoenix, Addrs: lbAddr, Failover: true, Policy: "hearth",
		Topics: sub.Topics, Count: 1, HeartbeatMS: env.heartbeatMS(), Recover: recov, EpochNS: epoch,
		Publish: &PublishSpec{Total: 1, Rate: rate, Size: 64},
	}
	if err := fleet.Start(pub); err != nil {
		return nil, err
	}
	if err := waitJoined(ctx, fleet, 1, time.Minute, "pubs"); err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, warmup); err != nil {
		return nil, err
	}
	var callsAt, pushedAt, answeredAt int64
	if tokens != nil {
		// Every client holds a token refreshed over the socket (Phoenix's
		// too, which ignore it); the session re-check refuses a logged-out
		// session's token on every node.
		limit := time.Now().Add(time.Duration(float64(tokens.ServiceTTL)*float64(time.Second)) + 30*time.Second)
		for {
			st, err := fleet.Stats()
			if err != nil {
				return nil, err
			}
			if n := st["subs"].Counters["refreshed_clients"]; n >= int64(k) {
				break
			} else if time.Now().After(limit) {
				return nil, fmt.Errorf("bench: %d of %d signed-in clients received a token over the socket", n, k)
			}
			if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
				return nil, err
			}
		}
		tokens.RevokedProbed = nodes
		if tokens.RevokedRefused, err = c.probeRevoked(ctx); err != nil {
			return nil, err
		}
		st, err := fleet.Stats()
		if err != nil {
			return nil, err
		}
		sc := st["subs"].Counters
		callsAt, pushedAt, tokens.Refreshed = sc["token_calls"], sc["token_refreshes"], int(sc["refreshed_clients"])
		tokens.SetupCalls = callsAt
		answeredAt = c.tokenCount()
	}

	ph := &chaosPhase{Scenario: name, Policy: pol, Balancer: lbKind, Nodes: nodes, Clients: k, EventMS: Float(math.NaN()), Tokens: tokens}
	mark := time.Now()
	// The timeline: every node's /readyz and the balancer's view, twice a
	// second, from a few seconds before the event to the end.
	var tl []chaosSample
	var tlMu sync.Mutex
	tlCtx, tlStop := context.WithCancel(ctx)
	tlDone := make(chan struct{})
	go func() {
		defer close(tlDone)
		tk := time.NewTicker(500 * time.Millisecond)
		defer tk.Stop()
		for {
			s := c.sample(tlCtx, mark)
			tlMu.Lock()
			tl = append(tl, s)
			tlMu.Unlock()
			select {
			case <-tlCtx.Done():
				return
			case <-tk.C:
			}
		}
	}()
	defer func() { tlStop(); <-tlDone }()
	if err := fleet.Mark("", mark); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	switch name {
	case ChaosDeploy:
		go func() {
			err := c.deploy(ctx, drainTimeout)
			ph.EventMS = Float(float64(time.Since(mark).Microseconds()) / 1000)
			done <- err
		}()
	case ChaosSoak:
		go func() {
			done <- c.soak(ctx, env, fleet, sub, ph, mark, drainTimeout)
		}()
	case ChaosNodeKill:
		victim := 1
		c.node(victim).Kill()
		c.setNode(victim, nil)
		ph.EventMS = Float(float64(time.Since(mark).Microseconds()) / 1000)
		done <- nil
	case ChaosPartition:
		// Cut node 1 from Postgres without a reset; wait until it notices
		// (/readyz 503) and the balancer takes it out; hold the cut a while;
		// heal.
		go func() {
			v := c.isolated
			if err := c.ns.Cut(c.fwd.Port()); err != nil {
				done <- err
				return
			}
			limit := time.Now().Add(2 * time.Minute)
			for cluster.Ready(ctx, c.addrs[v]) {
				if time.Now().After(limit) {
					_ = c.ns.Heal()
					done <- fmt.Errorf("node %d still ready 2 minutes after its Postgres traffic was cut", v)
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			ph.NoticedMS = Float(float64(time.Since(mark).Microseconds()) / 1000)
			if err := c.lb.WaitBackend(ctx, backendName(v), false, time.Minute); err != nil {
				_ = c.ns.Heal()
				done <- err
				return
			}
			ph.LBOutMS = Float(float64(time.Since(mark).Microseconds()) / 1000)
			_ = sleepCtx(ctx, hold)
			ph.PartitionMS = Float(float64(time.Since(mark).Microseconds()) / 1000)
			if err := c.ns.Heal(); err != nil {
				done <- err
				return
			}
			if err := c.lb.WaitBackend(ctx, backendName(v), true, 2*time.Minute); err != nil {
				done <- err
				return
			}
			ph.EventMS = Float(float64(time.Since(mark).Microseconds()) / 1000)
			done <- nil
		}()
	case ChaosPGFailover, ChaosPGFailoverAsync:
		// The primary dies mid-stream; the standby is promoted (what a
		// managed Postgres does, minus its detection delay).
		go func() {
			if err := primary.Crash(); err != nil {
				done <- err
				return
			}
			if err := standby.Promote(); err != nil {
				done <- err
				return
			}
			ph.EventMS = Float(float64(time.Since(mark).Microseconds()) / 1000)
			done <- nil
		}()
	}

	p = env.progress(label+" event", fleet, joinedLine(int64(k), "subs"))
	deadline := time.Now().Add(evTimeout)
	var evErr error
	evDone := false
	for {
		if !evDone {
			select {
			case evErr = <-done:
				evDone = true
			default:
			}
		}
		st, err := fleet.Stats()
		if err != nil {
			p.done()
			return nil, err
		}
		if evDone && st["subs"].Joined >= int64(k) && st["pubs"].Joined >= 1 && time.Since(mark) > 3*time.Second && c.allReady(ctx) {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			p.done()
			return nil, err
		}
	}
	p.done()
	if !evDone {
		return nil, fmt.Errorf("bench: the %s did not finish within %v", name, evTimeout)
	}
	if evErr != nil {
		return nil, evErr
	}
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	end := time.Now()
	res, settled, err := finishAll(ctx, fleet, "subs", "pubs")
	if err != nil {
		return nil, err
	}
	tlStop()
	<-tlDone
	ph.Timeline = tl
	// Ready again: the first sample after the last one with a running
	// node unready (0 when none ever was).
	for i, smp := range tl {
		for j, r := range smp.Ready {
			if !r && c.node(j) != nil && i+1 < len(tl) {
				ph.ReadyAgainMS = Float(tl[i+1].T * 1000)
			}
		}
	}
	ph.Unsettled = !settled
	sr, pr := res["subs"], res["pubs"]
	ph.Affected = sr.Affected
	for _, v := range sr.Rejoin {
		if v < 0 {
			ph.NotRejoined++
		}
	}
	ph.Rejoin99, ph.Rejoin100 = Float(quantileOf(sr.Rejoin, 0.99)), Float(quantileOf(sr.Rejoin, 1))
	from, to := mark.Sub(env.Epoch).Seconds(), end.Sub(env.Epoch).Seconds()
	ph.PeakAccept = peakRate(sr.Series[seriesConnect], from, to)
	ph.PeakRejoin = peakRate(sr.Series[seriesJoined], from, to)
	for _, pt := range seriesPoints(sr.Series[seriesConnect], from-3, to, 1000/binMS) {
		ph.connects = append(ph.connects, [2]float64{pt[0] - from, pt[1]})
	}
	for _, pt := range seriesPoints(sr.Series[seriesJoined], from-3, to, 1000/binMS) {
		ph.joins = append(ph.joins, [2]float64{pt[0] - from, pt[1]})
	}
	ph.Shed = sr.Stats.Counters["shed"]
	ph.Errors = sr.Stats.Errors
	ph.ClientErrors = sr.Stats.ErrorTotal() + pr.Stats.ErrorTotal()
	ph.Published = pr.Stats.Counters["published"]
	ph.PubFailed = pr.Stats.Counters["pub_failed"]
	ph.Received = sr.Stats.Counters["received"]
	ph.Lost = sr.Lost
	ph.Duplicates = sr.Stats.Counters["duplicates"]
	ph.Reordered = sr.Stats.Counters["late"]
	ph.Recovered, ph.NotRecovered = sr.Stats.Counters["recovered"], sr.Stats.Counters["not_recovered"]
	if tokens != nil {
		tokens.Calls = sr.Stats.Counters["token_calls"] - callsAt
		tokens.Pushed = sr.Stats.Counters["token_refreshes"] - pushedAt
		tokens.Answered = c.tokenCount() - answeredAt
		tokens.PeakPerSec = peakRate(sr.Series[seriesToken], from, to)
		for _, pt := range seriesPoints(sr.Series[seriesToken], from-3, to, 1000/binMS) {
			tokens.PerSec = append(tokens.PerSec, [2]float64{pt[0] - from, pt[1]})
		}
	}
	if ph.NotRejoined > 0 {
		return ph, fmt.Errorf("bench: %d of %d affected clients were not joined again within %v (errors: %s)",
			ph.NotRejoined, ph.Affected, evTimeout, strings.TrimSpace(sr.Stats.ErrorSummary()))
	}
	return ph, nil
}

// joinNums formats per-node figures as "a,b,c".
func joinNums(vs []float64) string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = fmt.Sprintf("%.0f", v)
	}
	return strings.Join(out, ",")
}
