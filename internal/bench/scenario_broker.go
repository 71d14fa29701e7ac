package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

func init() {
	Register(&Scenario{
		Name:    "broker",
		Summary: "two nodes through Postgres without WebSockets: Hearth's broker against Socket.IO's postgres adapter, cross-node rate and latency",
		Targets: []string{TargetHearth, TargetSocketIO},
		Run:     runBroker,
	})
}

// brokerRun is one target at one offered rate.
type brokerRun struct {
	Target       string  `json:"target"`
	Offered      float64 `json:"offered_msgs_per_sec"`
	Published    int64   `json:"published"`
	Skipped      int64   `json:"skipped"` // slots no publisher could take (offered rate not kept up)
	Failed       int64   `json:"failed"`  // publishes that returned an error
	Received     int64   `json:"received"`
	Lost         int64   `json:"lost"` // published but never received
	CrossPerSec  float64 `json:"cross_node_msgs_per_sec"`
	P50MS        float64 `json:"p50_ms"`
	P99MS        float64 `json:"p99_ms"`
	MaxMS        float64 `json:"max_ms"`
	PubCPUPeak   float64 `json:"pub_cpu_peak_pct"`
	SubCPUPeak   float64 `json:"sub_cpu_peak_pct"`
	Sustained    bool    `json:"sustained"` // everything offered was published and received, at 97% of the offered rate or more, p99 under a second
	DrainSeconds float64 `json:"drain_seconds"`
}

// runBroker reads DatabaseURL (required), Rates (total msg/s offered,
// default 1k to 150k), Topics (default 100), Publishers (Hearth: callers
// of Publish in flight on the pub node, default 2,048: Publish returns once
// the message is committed, so a node needs about rate × commit time of
// them; Socket.IO's emit does not wait at all; -1: none, the node queues
// every message with PublishAsync, which does not wait either),
// Size, Duration (default 10 s). Each target's sweep stops after the first
// rate it did not sustain.
func runBroker(ctx context.Context, env *Env) (*Report, error) {
	o := env.Opts
	if o.DatabaseURL == "" {
		return nil, errors.New("bench: the broker scenario needs Postgres: pass --database-url (or set HEARTH_BENCH_DATABASE_URL)")
	}
	rates := o.Rates
	if len(rates) == 0 && o.Rate > 0 {
		rates = []float64{o.Rate}
	}
	if len(rates) == 0 {
		rates = []float64{1000, 2000, 5000, 10000, 12000, 13000, 14000, 15000, 20000, 50000, 100000, 120000, 130000, 140000, 150000}
		if o.Smoke {
			rates = []float64{200}
		}
	}
	topics := pick(o.Topics, 100, 4, o.Smoke)
	pubs := pick(o.Publishers, 2048, 8, o.Smoke)
	size := pick(o.Size, 64, 64, o.Smoke)
	dur := pick(o.Duration, 10*time.Second, 2*time.Second, o.Smoke)
	rep := &Report{Params: map[string]any{"rates": rates, "topics": topics, "publishers": pubs, "size": size, "seconds": dur.Seconds(), "nodes": 2}}
	tab := &Table{
		Title:  fmt.Sprintf("broker: node 0 publishes, node 1 receives, through Postgres, no WebSockets; %d topics, %v per rate", topics, dur),
		Header: []string{"target", "offered msg/s", "published", "skipped", "failed", "cross-node msg/s", "p50", "p99", "max", "lost", "drain", "pub cpu peak", "sub cpu peak", "sustained"},
	}
	rep.Tables = append(rep.Tables, tab)
	var runs []*brokerRun
	targets := make([]*Target, len(o.Targets))
	for i, kind := range o.Targets {
		t, err := env.Target(ctx, kind, o.DatabaseURL)
		if err != nil {
			return nil, err
		}
		targets[i] = t
	}
	for i, kind := range o.Targets {
		t := targets[i]
		for _, rate := range rates {
			if o.Progress != nil {
				fmt.Fprintf(o.Progress, "broker %s: %.0f msg/s for %v\n", kind, rate, dur)
			}
			r, err := brokerOne(ctx, env, t, rate, topics, pubs, size, dur)
			if err != nil {
				return nil, fmt.Errorf("bench: broker %s at %.0f msg/s: %w", kind, rate, err)
			}
			runs = append(runs, r)
			yes := "yes"
			if !r.Sustained {
				yes = "no"
			}
			tab.Add(kind, fnum(r.Offered), fint(r.Published), fint(r.Skipped), fint(r.Failed), fnum(r.CrossPerSec), fms(r.P50MS), fms(r.P99MS), fms(r.MaxMS),
				fint(r.Lost), fmt.Sprintf("%.1fs", r.DrainSeconds), fmt.Sprintf("%.0f%%", r.PubCPUPeak), fmt.Sprintf("%.0f%%", r.SubCPUPeak), yes)
			if !r.Sustained {
				break // higher rates only fall further behind
			}
		}
	}
	rep.Results = runs
	sum := &Table{Title: "broker: highest sustained and peak cross-node rates", Header: []string{"target", "sustained msg/s", "peak msg/s"}}
	best := map[string][2]float64{}
	for _, r := range runs {
		b := best[r.Target]
		if r.Sustained {
			b[0] = max(b[0], r.CrossPerSec)
		}
		b[1] = max(b[1], r.CrossPerSec)
		best[r.Target] = b
	}
	for _, kind := range o.Targets {
		sum.Add(kind, fnum(best[kind][0]), fnum(best[kind][1]))
	}
	if len(o.Targets) > 1 {
		base := o.Targets[0]
		for _, peer := range o.Targets[1:] {
			sum.Add(base+"/"+peer, fratio(best[base][0], best[peer][0]), fratio(best[base][1], best[peer][1]))
		}
	}
	rep.Tables = append(rep.Tables, sum)
	bars := &Chart{Title: "Cross-node messages per second, node to node through Postgres", YLabel: "msg/s", Categories: []string{"sustained", "peak"}}
	lines := &Chart{Title: "Cross-node rate against the offered rate", XLabel: "offered msg/s", YLabel: "cross-node msg/s"}
	for _, kind := range o.Targets {
		bars.Bars = append(bars.Bars, BarSeries{Name: kind, Values: []Float{Float(best[kind][0]), Float(best[kind][1])}})
		s := Series{Name: kind}
		for _, r := range runs {
			if r.Target == kind {
				s.Points = append(s.Points, [2]float64{r.Offered, r.CrossPerSec})
			}
		}
		lines.Lines = append(lines.Lines, s)
	}
	rep.Charts = append(rep.Charts, bars, lines)
	rep.Notes = append(rep.Notes, "sustained: everything offered was published and received, at 97% or more of the offered rate, with p99 under 1 s; cross-node msg/s = received / (last receipt - first receipt).")
	return rep, nil
}

// brokerProc is a running broker node.
type brokerProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines *bufio.Scanner
	samp  *sampler
	done  chan error
}

func startBrokerNode(t *Target, env *Env, args []string) (*brokerProc, error) {
	var cmd *exec.Cmd
	switch t.Kind() {
	case TargetHearth:
		cmd = exec.Command(t.bin, append([]string{"bench", "broker-node"}, args...)...)
	case TargetSocketIO:
		cmd = exec.Command(t.opts.Node, append([]string{filepath.Join(filepath.Dir(t.bin), "broker-node.js")}, args...)...)
	default:
		return nil, fmt.Errorf("bench: the broker scenario has no %s node", t.Kind())
	}
	cmd.SysProcAttr = childAttr()
	cmd.Stderr = os.Stderr
	if env.workerLog != nil {
		cmd.Stderr = env.workerLog
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &brokerProc{cmd: cmd, in: in, lines: newScanner(out), done: make(chan error, 1)}
	p.samp = startSampler(cmd.Process.Pid, env.Epoch, 500*time.Millisecond)
	r, err := p.read(60 * time.Second)
	if err != nil {
		p.kill()
		return nil, err
	}
	if !r.Ready {
		p.kill()
		return nil, fmt.Errorf("bench: broker node did not say ready: %+v", r)
	}
	return p, nil
}

func (p *brokerProc) send(cmd string) error {
	_, err := io.WriteString(p.in, cmd+"\n")
	return err
}

// read waits up to limit for the node's next line.
func (p *brokerProc) read(limit time.Duration) (brokerNodeResult, error) {
	type line struct {
		r   brokerNodeResult
		err error
	}
	ch := make(chan line, 1)
	go func() {
		if !p.lines.Scan() {
			ch <- line{err: errors.Join(errors.New("bench: broker node ended"), p.lines.Err())}
			return
		}
		var r brokerNodeResult
		err := json.Unmarshal(p.lines.Bytes(), &r)
		if err == nil && r.Error != "" {
			err = errors.New("bench: broker node: " + r.Error)
		}
		ch <- line{r, err}
	}()
	select {
	case l := <-ch:
		return l.r, l.err
	case <-time.After(limit):
		return brokerNodeResult{}, fmt.Errorf("bench: broker node silent for %v", limit)
	}
}

func (p *brokerProc) kill() {
	_ = p.in.Close()
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
	p.samp.close()
}

func brokerOne(ctx context.Context, env *Env, t *Target, rate float64, topics, pubs, size int, dur time.Duration) (*brokerRun, error) {
	url := plainConn(env.Opts.DatabaseURL)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	if t.Kind() == TargetHearth {
		// Every rate starts from empty tables: what earlier runs left (and,
		// where autovacuum is off, their dead rows) must not weigh on this one.
		if err := dropBrokerSchema(ctx, url); err != nil {
			return nil, err
		}
	}
	sub, err := startBrokerNode(t, env, brokerNodeArgs("sub", url, run, topics, rate, dur.Seconds(), size, pubs))
	if err != nil {
		return nil, err
	}
	defer sub.kill()
	pub, err := startBrokerNode(t, env, brokerNodeArgs("pub", url, run, topics, rate, dur.Seconds(), size, pubs))
	if err != nil {
		return nil, err
	}
	defer pub.kill()
	if err := pub.send("go"); err != nil {
		return nil, err
	}
	pr, err := pub.read(dur + 3*time.Minute)
	if err != nil {
		return nil, err
	}
	stopped := time.Now()
	// Wait for the sub node to receive what was published, or to make no
	// progress for 3 s.
	var last int64
	progress := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := sub.send("stats"); err != nil {
			return nil, err
		}
		st, err := sub.read(30 * time.Second)
		if err != nil {
			return nil, err
		}
		if st.Received >= pr.Published || time.Since(progress) > 3*time.Second || time.Since(stopped) > 2*time.Minute {
			break
		}
		if st.Received != last {
			last, progress = st.Received, time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
	drain := time.Since(stopped)
	if err := sub.send("stop"); err != nil {
		return nil, err
	}
	sr, err := sub.read(30 * time.Second)
	if err != nil {
		return nil, err
	}
	_, pubCPU, _ := pub.samp.snapshot()
	_, subCPU, _ := sub.samp.snapshot()
	r := &brokerRun{
		Target: t.Kind(), Offered: rate, Published: pr.Published, Skipped: pr.Skipped, Failed: pr.Failed, Received: sr.Received,
		Lost: max(0, pr.Published-sr.Received), P50MS: sr.P50MS, P99MS: sr.P99MS, MaxMS: sr.MaxMS,
		PubCPUPeak: pubCPU, SubCPUPeak: subCPU, DrainSeconds: drain.Seconds(),
	}
	if span := sr.LastUS - sr.FirstUS; span > 0 && sr.Received > 1 {
		r.CrossPerSec = float64(sr.Received-1) / (float64(span) / 1e6)
	}
	r.Sustained = r.Lost == 0 && r.Skipped == 0 && r.Failed == 0 && r.P99MS < 1000 &&
		float64(r.Published) >= 0.99*rate*dur.Seconds() && r.CrossPerSec >= 0.97*rate
	return r, nil
}

// dropBrokerSchema drops the schema the Hearth broker nodes use.
func dropBrokerSchema(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("bench: connect to Postgres: %w", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+brokerSchema+" CASCADE"); err != nil {
		return fmt.Errorf("bench: drop schema %s: %w", brokerSchema, err)
	}
	return nil
}

// plainConn asks for a connection without TLS when the URL does not say:
// node-postgres (the Socket.IO node) does not use TLS unless told to, while
// pgx prefers it, and the two nodes must talk to Postgres alike.
func plainConn(dsn string) string {
	if strings.Contains(dsn, "sslmode=") {
		return dsn
	}
	if u, err := neturl.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		q := u.Query()
		q.Set("sslmode", "disable")
		u.RawQuery = q.Encode()
		return u.String()
	}
	return dsn + " sslmode=disable"
}
