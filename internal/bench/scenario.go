package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"
)

// Options are the knobs of every scenario. A zero field takes the
// scenario's default (a smaller one in smoke mode); each scenario documents
// which fields it reads.
type Options struct {
	// Targets are the servers to measure, in order: hearth, gorilla, socketio.
	Targets []string
	// Out is the directory for the JSON report, the plot and server logs.
	Out string
	// Smoke runs tiny counts for a few seconds: CI keeps the tool alive with it.
	Smoke bool

	Clients         int           // load clients (storm K, fanout subscribers, ...)
	Counts          []int         // idle: connection counts to measure at
	Topics          int           // topics in use
	TopicsPerClient int           // topics each subscriber joins
	Publishers      int           // publishing clients
	Rate            float64       // messages per second per publisher
	Rates           []float64     // fanout, throughput, cluster: a sweep of rates (overrides Rate)
	Size            int           // payload bytes
	Duration        time.Duration // measured publishing time
	Warmup          time.Duration // publishing before the measurement or event
	Nodes           int           // cluster: server nodes
	NodeCounts      []int         // scale: node counts to sweep
	DatabaseCounts  []int         // scale: database counts (K) to sweep
	ListenModes     []string      // scale: "interest" (interest-based listening), "all" (ListenAll)
	Replicas        int           // scale: nodes subscribing to each topic
	Policies        []string      // storm: reconnect policies to compare
	Events          []string      // storm: kill, drain, rolling
	EventTimeout    time.Duration // storm: longest wait for everyone to rejoin
	DrainTimeout    time.Duration // storm: longest wait for a SIGTERMed server to exit
	DrainWindow     time.Duration // hearth servers' --drain-window (smoke: 2s); zero keeps the server's default
	ConnectRate     float64       // initial connects per second (whole fleet)
	Heartbeat       time.Duration // Phoenix heartbeat interval
	NoRecover       bool          // do not ask Hearth to replay missed messages on rejoin
	Chaos           []string      // chaos: the scenarios to run (deploy, node-kill, pg-failover, partition, soak)
	Balancer        string        // chaos: the load balancer, haproxy (default) or nginx
	DeployEvery     time.Duration // chaos soak: a whole deploy this often (default 10 min)
	// Compress has the clients offer permessage-deflate (without context
	// takeover) and every target accept it, compressing every message
	// (see compress.go).
	Compress bool

	Workers   int // worker processes; zero picks one per 8,000 clients; -1 runs in-process
	SourceIPs int // 127.0.x.y source addresses; zero picks one per 50 clients

	DatabaseURL string   // Postgres for clusters
	HearthBin   string   // hearth binary; empty: this executable if it is hearth, else built
	GorillaBin  string   // gorilla peer binary; empty: built from the repository
	Repo        string   // Hearth source tree; empty: found from the working directory
	ServerArgs  []string // extra arguments for every server process

	// Command is recorded in the report.
	Command []string
	// Stdout receives the tables, Progress the progress line. Nil means
	// os.Stdout / no progress.
	Stdout, Progress io.Writer
	// WorkerCommand starts a worker process; nil means this executable
	// with "bench worker".
	WorkerCommand func() *exec.Cmd
}

// defaultConnectRate is the fleet's initial connects per second: under a
// Hearth server's default admission rate on a 2-core machine (1,000 per
// CPU), so that setting up a run is not itself a storm.
const defaultConnectRate = 1500

// maxChannels is how many topics one client may join (Phoenix's and
// Hearth's default per-socket channel limit).
const maxChannels = 100

// Scenario is a registered load scenario.
type Scenario struct {
	Name    string
	Summary string
	// Targets lists the targets the scenario supports, the default first.
	Targets []string
	Run     func(ctx context.Context, env *Env) (*Report, error)
}

var registry = map[string]*Scenario{}

// Register adds a scenario. It panics on a duplicate name.
func Register(s *Scenario) {
	if _, dup := registry[s.Name]; dup {
		panic("bench: scenario " + s.Name + " registered twice")
	}
	registry[s.Name] = s
}

// Scenarios returns the registered scenarios sorted by name.
func Scenarios() []*Scenario {
	out := make([]*Scenario, 0, len(registry))
	for _, s := range registry {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Lookup returns the named scenario.
func Lookup(name string) (*Scenario, bool) {
	s, ok := registry[name]
	return s, ok
}

// Env is what a scenario runs with: the options, the run's clock, output
// paths and helpers to start targets and fleets.
type Env struct {
	Opts  Options
	Epoch time.Time
	out   io.Writer

	workerLog *os.File // the workers' stderr, shared by the run's fleets
}

// Run runs a scenario with opts, prints its tables and writes its files.
func Run(ctx context.Context, name string, opts Options) (*Report, error) {
	s, ok := Lookup(name)
	if !ok {
		return nil, fmt.Errorf("bench: unknown scenario %q", name)
	}
	if len(opts.Targets) == 0 {
		opts.Targets = []string{s.Targets[0]}
	}
	for _, t := range opts.Targets {
		if !slices.Contains(s.Targets, t) {
			return nil, fmt.Errorf("bench: scenario %s does not support target %q (supported: %s)", name, t, strings.Join(s.Targets, ", "))
		}
	}
	if opts.Out == "" {
		opts.Out = "bench-out"
	}
	if opts.Stdout == nil {
		opts.Stdout = os.Stdout
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, err
	}
	env := &Env{Opts: opts, Epoch: time.Now(), out: opts.Stdout}
	rep, err := s.Run(ctx, env)
	if env.workerLog != nil {
		env.workerLog.Close()
	}
	if rep == nil {
		return nil, err
	}
	rep.Scenario, rep.Targets, rep.Smoke, rep.Command = name, opts.Targets, opts.Smoke, opts.Command
	rep.Started, rep.Seconds, rep.Machine = env.Epoch, time.Since(env.Epoch).Seconds(), thisMachine()
	if werr := rep.Write(opts.Out); werr != nil {
		err = errors.Join(err, werr)
	}
	rep.Print(opts.Stdout)
	return rep, err
}

// pick returns v, or smoke in smoke mode, or def.
func pick[T comparable](v, def, smoke T, isSmoke bool) T {
	var zero T
	if v != zero {
		return v
	}
	if isSmoke {
		return smoke
	}
	return def
}

// Target prepares a target of the given kind.
func (e *Env) Target(ctx context.Context, kind string, databaseURL string) (*Target, error) {
	o := e.Opts
	bin := o.HearthBin
	return NewTarget(ctx, TargetOptions{
		Kind: kind, HearthBin: bin, GorillaBin: o.GorillaBin, RepoDir: o.Repo,
		DatabaseURL: databaseURL, Args: append(compressArgs(kind, o.Compress), o.ServerArgs...), LogDir: e.Opts.Out, Epoch: e.Epoch,
		DrainWindow: e.drainWindow(kind),
	})
}

// drainWindow is the --drain-window for hearth servers: the option, or
// 2 s in smoke mode so a drain does not take the server's default 30 s.
func (e *Env) drainWindow(kind string) time.Duration {
	if kind != TargetHearth && kind != TargetLongPoll {
		return 0
	}
	if e.Opts.DrainWindow > 0 {
		return e.Opts.DrainWindow
	}
	if e.Opts.Smoke {
		return 2 * time.Second
	}
	return 0
}

// Fleet starts worker processes for about clients load clients.
func (e *Env) Fleet(clients int) (*Fleet, error) {
	n := e.Opts.Workers
	switch {
	case n < 0:
		n = 0
	case n == 0:
		n = (clients + 7999) / 8000
	}
	var logw io.Writer
	if e.workerLog == nil {
		if f, err := os.OpenFile(filepath.Join(e.Opts.Out, "workers.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
			e.workerLog = f
		}
	}
	if e.workerLog != nil {
		logw = e.workerLog
	}
	return NewFleet(FleetOptions{Workers: n, Command: e.Opts.WorkerCommand, Stderr: logw})
}

// SourceIPs returns the client source addresses for clients load clients:
// 127.0.0.1, 127.0.0.2, ... 127.0.0.254, 127.0.1.1, ... (all of 127/8 is
// loopback). By default one address per 50 clients, as if they came from
// many networks: a server's per-IP limits then act as they would in
// production, and each address has its own ephemeral ports.
func (e *Env) SourceIPs(clients int) []string {
	n := e.Opts.SourceIPs
	if n == 0 {
		n = (clients + 49) / 50
	}
	n = max(1, min(n, 254*254))
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.%d.%d", i/254, i%254+1)
	}
	return out
}

// rates returns the publishing rates to run: Rates, else Rate, else the
// scenario's default.
func (e *Env) rates(def, smoke float64) []float64 {
	if len(e.Opts.Rates) > 0 {
		return e.Opts.Rates
	}
	return []float64{pick(e.Opts.Rate, def, smoke, e.Opts.Smoke)}
}

// heartbeatMS returns the Phoenix heartbeat interval in milliseconds.
func (e *Env) heartbeatMS() int {
	if e.Opts.Heartbeat > 0 {
		return int(e.Opts.Heartbeat.Milliseconds())
	}
	return 30000
}

// progress starts a progress line for a phase.
func (e *Env) progress(label string, f *Fleet, line func(map[string]GroupStats) (int64, int64, string)) *progress {
	return startProgress(e.Opts.Progress, label, f, line)
}

// joinedLine is a progress line counting joined clients of some groups.
func joinedLine(want int64, groups ...string) func(map[string]GroupStats) (int64, int64, string) {
	return func(st map[string]GroupStats) (int64, int64, string) {
		var s GroupStats
		for _, g := range groups {
			s.Merge(st[g])
		}
		return s.Joined, want, fmt.Sprintf("joined  recv %s  err %d", fnum(float64(s.Counters["received"])), s.ErrorTotal())
	}
}

// waitJoined waits until the groups have want clients joined.
func waitJoined(ctx context.Context, f *Fleet, want int64, limit time.Duration, groups ...string) error {
	deadline := time.Now().Add(limit)
	for {
		st, err := f.Stats()
		if err != nil {
			return err
		}
		var s GroupStats
		for _, g := range groups {
			s.Merge(st[g])
		}
		if s.Joined >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: only %d of %d clients joined after %v (errors: %s)", s.Joined, want, limit, s.ErrorSummary())
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// quiesce waits until the received and acknowledged counters of the groups
// stop moving (one quiet second), at most limit. It reports whether they did.
func quiesce(ctx context.Context, f *Fleet, limit time.Duration, groups ...string) (bool, error) {
	deadline := time.Now().Add(limit)
	last, stable := int64(-1), 0
	for time.Now().Before(deadline) {
		st, err := f.Stats()
		if err != nil {
			return false, err
		}
		var n int64
		for _, g := range groups {
			s := st[g]
			n += s.Counters["received"] + s.Counters["pub_acked"] + s.Counters["pub_failed"]
		}
		if n == last {
			stable++
			if stable >= 5 {
				return true, nil
			}
		} else {
			stable = 0
		}
		last = n
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return false, err
		}
	}
	return false, nil
}

// settleLimit is how long the tool waits, after the publishers stop, for
// messages still in flight. What has not arrived by then counts as lost.
const settleLimit = 60 * time.Second

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// finishAll stops the publishers, waits for the last messages (at most
// settleLimit), and returns each named group's result, and whether the
// deliveries had stopped by then.
func finishAll(ctx context.Context, f *Fleet, groups ...string) (map[string]*GroupResult, bool, error) {
	last, err := f.StopPublishers()
	if err != nil {
		return nil, false, err
	}
	settled, err := quiesce(ctx, f, settleLimit, groups...)
	if err != nil {
		return nil, false, err
	}
	deliv, err := f.Collect()
	if err != nil {
		return nil, false, err
	}
	out := make(map[string]*GroupResult, len(groups))
	for _, g := range groups {
		r, err := f.Finish(g, last, deliv)
		if err != nil {
			return nil, false, err
		}
		out[g] = r
	}
	return out, settled, nil
}

// seriesPoints turns a 100 ms bin series into (seconds, per-second rate)
// points over [from, to) seconds, smoothed over window bins.
func seriesPoints(m map[int]int64, from, to float64, window int) [][2]float64 {
	b0, b1 := int(math.Floor(from*1000/binMS)), int(math.Ceil(to*1000/binMS))
	window = max(window, 1)
	var out [][2]float64
	for b := b0; b < b1; b++ {
		var sum int64
		for k := b - window + 1; k <= b; k++ {
			sum += m[k]
		}
		out = append(out, [2]float64{float64(b+1) * binMS / 1000, float64(sum) * 1000 / binMS / float64(window)})
	}
	return out
}

// peakRate is the highest count over any one-second window of a series, per second.
func peakRate(m map[int]int64, from, to float64) float64 {
	best := 0.0
	for _, p := range seriesPoints(m, from, to, 1000/binMS) {
		best = max(best, p[1])
	}
	return best
}

// quantileOf returns the q-quantile of vs (NaN if empty); negative values
// (never happened) count as +Inf.
func quantileOf(vs []float64, q float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := make([]float64, len(vs))
	for i, v := range vs {
		if v < 0 {
			v = math.Inf(1)
		}
		s[i] = v
	}
	sort.Float64s(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	i = max(0, min(i, len(s)-1))
	return s[i]
}

// cdfPoints returns the cumulative fraction of vs over time (non-negative
// values only; never-rejoined clients keep the curve below 1).
func cdfPoints(vs []float64, scale float64) [][2]float64 {
	s := make([]float64, 0, len(vs))
	for _, v := range vs {
		if v >= 0 {
			s = append(s, v)
		}
	}
	sort.Float64s(s)
	out := [][2]float64{{0, 0}}
	for i, v := range s {
		out = append(out, [2]float64{v * scale, float64(i+1) / float64(len(vs))})
	}
	return out
}

// hist returns a histogram that is never nil.
func hist(h *Histogram) *Histogram {
	if h == nil {
		return &Histogram{}
	}
	return h
}

// runTopicPrefix makes topic names unique to this run, for scenarios whose
// servers share a database with other runs.
func runTopicPrefix(prefix string) string {
	return fmt.Sprintf("%s%x-", prefix, rand.Uint32())
}

// topicNames returns n topics named prefix0..prefix(n-1).
func topicNames(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}
