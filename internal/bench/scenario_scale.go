package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hearth-rt/hearth/internal/cluster"
)

func init() {
	Register(&Scenario{
		Name:    "scale",
		Summary: "up to 64 broker-only node processes on 1 and 3 private Postgres servers: notifications per message, Postgres CPU per 1k messages, rate and p99 by node count, with and without interest-based listening",
		Targets: []string{TargetHearth},
		Run:     runScale,
	})
}

// Listening modes of the scale scenario.
const (
	ScaleInterest = "interest" // interest-based listening (the default)
	ScaleAll      = "all"      // postgres.Options.ListenAll
)

// scaleStep is one (databases, listening, nodes, offered rate) round.
type scaleStep struct {
	Databases int     `json:"databases"`
	Listen    string  `json:"listen"`
	Nodes     int     `json:"nodes"`
	Topics    int     `json:"topics"`
	Replicas  int     `json:"replicas"`
	Offered   float64 `json:"offered_msgs_per_sec"` // the whole cluster's
	Seconds   float64 `json:"seconds"`

	Published        int64   `json:"published"`
	Failed           int64   `json:"failed"`
	Skipped          int64   `json:"skipped"` // slots more than a second late: the offered rate was not held
	PublishedPerSec  float64 `json:"published_msgs_per_sec"`
	Expected         int64   `json:"expected_deliveries"` // Σ over topics of published × subscribers
	Received         int64   `json:"deliveries"`
	Lost             int64   `json:"lost"`
	Duplicates       int64   `json:"duplicates"`
	Foreign          int64   `json:"foreign"`    // deliveries on topics a node did not subscribe to
	Mismatched       int     `json:"mismatched"` // (topic, subscriber) pairs whose count is not the topic's published count
	Misplaced        int64   `json:"misplaced"`  // Σ over databases of |messages committed there - messages on the topics it owns|
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	CrossPerSec      float64 `json:"cross_node_deliveries_per_sec"` // deliveries on a node other than the publisher's, per second

	NotesReceived  uint64  `json:"notifications_received"`      // Σ over listeners: what Postgres sent
	NotesPerMsg    float64 `json:"notifications_per_msg"`       // NotesReceived / Published
	NotesEstimate  float64 `json:"notifications_per_msg_bound"` // Σ published × listeners of the message's shard / Published
	NotifySent     uint64  `json:"notify_payloads_sent"`        // NOTIFY payloads the publishers sent
	Transactions   uint64  `json:"transactions"`                // publishing transactions (each NOTIFY commit wakes every listener of its database)
	MsgsPerTx      float64 `json:"msgs_per_transaction"`
	MsgsPerNotify  float64 `json:"msgs_per_notify_payload"`       // Published / NotifySent (batching)
	ShardsListened float64 `json:"mean_shards_listened_per_node"` // per node and database

	PGCPUSeconds   float64      `json:"pg_cpu_seconds"`      // all servers, postmaster and backends
	PGBackends     int          `json:"pg_backends"`         // all servers' backends with the nodes connected
	PGBackendKiB   float64      `json:"pg_backend_anon_kib"` // their mean private memory (RssAnon)
	PGIdlePct      float64      `json:"pg_idle_cpu_pct"`     // the same with the nodes up and not publishing, % of a CPU
	PGCPUPer1k     float64      `json:"pg_cpu_ms_per_1k_msgs"`
	NodeCPUSeconds float64      `json:"node_cpu_seconds"`
	NodeCPUPer1k   float64      `json:"node_cpu_ms_per_1k_msgs"`
	PerDB          []scaleDBRun `json:"per_database"`

	P50MS        float64 `json:"p50_ms"`
	P99MS        float64 `json:"p99_ms"`
	MaxMS        float64 `json:"max_ms"`
	DrainSeconds float64 `json:"drain_seconds"`
	KeptUp       bool    `json:"kept_up"`
}

// scaleDBRun is one database's part of a step.
type scaleDBRun struct {
	Published     int64   `json:"published"`
	Share         float64 `json:"share"`
	NotesReceived uint64  `json:"notifications_received"`
	NotesPerMsg   float64 `json:"notifications_per_msg"`
	PGCPUSeconds  float64 `json:"pg_cpu_seconds"`
	PGCPUPer1k    float64 `json:"pg_cpu_ms_per_1k_msgs"`
}

// scaleParams are the run's knobs.
type scaleParams struct {
	NodeCounts []int     `json:"node_counts"`
	Databases  []int     `json:"databases"`
	Listen     []string  `json:"listen"`
	Rates      []float64 `json:"rates"`
	Topics     int       `json:"topics"`
	Replicas   int       `json:"replicas"`
	Size       int       `json:"size"`
	Seconds    float64   `json:"seconds"`
	PoolConns  int       `json:"pool_conns"`
	MaxConns   int       `json:"max_connections"`
}

// runScale reads NodeCounts (default 2,8,16,32,64), DatabaseCounts
// (default 1,3), ListenModes (default interest,all), Rates (the
// cluster's total msg/s; default 1000; a list is a ramp, stopped at the
// first rate not kept up), Topics (default 256), Replicas (subscribers per
// topic, default 3), Size and Duration (default 10 s). It starts its own
// Postgres servers (max(DatabaseCounts) of them) and ignores DatabaseURL.
func runScale(ctx context.Context, env *Env) (*Report, error) {
	o := env.Opts
	p := scaleParams{
		NodeCounts: o.NodeCounts, Databases: o.DatabaseCounts, Listen: o.ListenModes, Rates: o.Rates,
		Topics: pick(o.Topics, 256, 240, o.Smoke), Replicas: pick(o.Replicas, 3, 3, o.Smoke),
		Size: pick(o.Size, 64, 64, o.Smoke), Seconds: pick(o.Duration, 10*time.Second, 2*time.Second, o.Smoke).Seconds(),
		PoolConns: 3,
	}
	if len(p.NodeCounts) == 0 {
		p.NodeCounts = []int{2, 8, 16, 32, 64}
		if o.Smoke {
			p.NodeCounts = []int{2, 4}
		}
	}
	if len(p.Databases) == 0 {
		p.Databases = []int{1, 3}
	}
	if len(p.Listen) == 0 {
		p.Listen = []string{ScaleInterest, ScaleAll}
	}
	for _, m := range p.Listen {
		if m != ScaleInterest && m != ScaleAll {
			return nil, fmt.Errorf("bench: scale: --listen %q: want interest or all", m)
		}
	}
	if len(p.Rates) == 0 {
		// Smoke: 480 msg/s for 2 s is every one of the 240 topics 4 times.
		p.Rates = []float64{pick(o.Rate, 1000, 480, o.Smoke)}
	}
	maxN, maxK := 0, 0
	for _, n := range p.NodeCounts {
		if n < 1 || n > 256 {
			return nil, fmt.Errorf("bench: scale: %d nodes: want 1 to 256", n)
		}
		maxN = max(maxN, n)
	}
	for _, k := range p.Databases {
		if k < 1 || k > 8 {
			return nil, fmt.Errorf("bench: scale: %d databases: want 1 to 8", k)
		}
		maxK = max(maxK, k)
	}
	// Every node holds a pool and a listener on every database.
	p.MaxConns = maxN*(p.PoolConns+1) + 20

	rep := &Report{Params: p}
	var servers []*cluster.Postgres
	defer func() {
		for _, s := range servers {
			s.Remove()
		}
	}()
	for range maxK {
		s, err := cluster.StartPrimaryWith("max_connections=" + strconv.Itoa(p.MaxConns))
		if err != nil {
			return nil, fmt.Errorf("bench: scale: %w", err)
		}
		servers = append(servers, s)
	}
	var steps []*scaleStep
	tab := &Table{
		Title: fmt.Sprintf("scale: broker-only nodes, %d topics on %d nodes each, %v per round, cluster-wide offered rate", p.Topics, p.Replicas, time.Duration(p.Seconds*float64(time.Second))),
		Header: []string{"K", "listen", "nodes", "offered", "published/s", "deliveries/s", "notes/msg", "bound", "msgs/NOTIFY", "msgs/tx", "PG cpu ms/1k", "PG idle", "node cpu ms/1k",
			"p50", "p99", "lost", "dup", "mismatch", "db shares", "kept up"},
	}
	conns := &Table{Title: "scale: Postgres with the nodes connected and idle", Header: []string{"K", "listen", "nodes", "backends", "private KiB/backend", "PG idle cpu"}}
	rep.Tables = append(rep.Tables, tab, conns)
	for _, k := range p.Databases {
		for _, mode := range p.Listen {
			for _, n := range p.NodeCounts {
				if o.Progress != nil {
					fmt.Fprintf(o.Progress, "scale: K=%d listen=%s nodes=%d\n", k, mode, n)
				}
				got, err := scaleConfig(ctx, env, servers[:k], p, n, mode)
				steps = append(steps, got...)
				for _, s := range got {
					tab.Add(strconv.Itoa(s.Databases), s.Listen, strconv.Itoa(s.Nodes), fnum(s.Offered), fnum(s.PublishedPerSec), fnum(s.DeliveriesPerSec),
						fmt.Sprintf("%.2f", s.NotesPerMsg), fmt.Sprintf("%.2f", s.NotesEstimate), fmt.Sprintf("%.2f", s.MsgsPerNotify), fmt.Sprintf("%.1f", s.MsgsPerTx),
						fmt.Sprintf("%.0f", s.PGCPUPer1k), fmt.Sprintf("%.0f%%", s.PGIdlePct), fmt.Sprintf("%.0f", s.NodeCPUPer1k), fms(s.P50MS), fms(s.P99MS),
						fint(s.Lost), fint(s.Duplicates), strconv.Itoa(s.Mismatched), dbShares(s), yesNo(s.KeptUp))
				}
				if len(got) > 0 {
					c := got[0]
					conns.Add(strconv.Itoa(k), mode, strconv.Itoa(n), strconv.Itoa(c.PGBackends), fmt.Sprintf("%.0f", c.PGBackendKiB), fmt.Sprintf("%.1f%%", c.PGIdlePct))
				}
				if err != nil {
					rep.Results = steps
					return rep, fmt.Errorf("bench: scale K=%d listen=%s nodes=%d: %w", k, mode, n, err)
				}
			}
		}
	}
	rep.Results = steps
	rep.Charts = scaleCharts(steps, p)
	rep.Notes = append(rep.Notes,
		"notes/msg: notifications the nodes' listeners received (what Postgres sent) per published message; bound: Σ over messages of the nodes listening to the message's shard, per message (an upper bound: a NOTIFY payload may carry several messages of one shard).",
		"PG cpu: utime+stime of every Postgres server's postmaster and backends (/proc) from the round's start to the end of its drain, per 1,000 published messages; node cpu: the same for the node processes.",
		"kept up: everything offered was published (no slot a second late), every subscriber received every message of its topics exactly once, p99 under 1 s. PG idle: the servers' CPU with the nodes connected and not publishing (2 s before the first round), in % of one CPU; it is included in PG cpu.",
		fmt.Sprintf("the servers and the %d node processes share this machine's %d CPUs: rates are this machine's, not a cluster's.", maxN, env.machineCPUs()))
	return rep, nil
}

func (e *Env) machineCPUs() int { return thisMachine().CPUs }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dbShares(s *scaleStep) string {
	if len(s.PerDB) < 2 {
		return "-"
	}
	var parts []string
	for _, d := range s.PerDB {
		parts = append(parts, fmt.Sprintf("%.2f", d.Share))
	}
	return strings.Join(parts, "/")
}

// scaleProc is a running scale node.
type scaleProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan []byte
	ended chan struct{}
}

func startScaleNode(env *Env, args []string) (*scaleProc, error) {
	cmd := exec.Command(env.Opts.HearthBin, append([]string{"bench", "scale-node"}, args...)...)
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
	p := &scaleProc{cmd: cmd, in: in, lines: make(chan []byte, 16), ended: make(chan struct{})}
	go func() {
		defer close(p.ended)
		sc := newScanner(out)
		for sc.Scan() {
			p.lines <- bytes.Clone(sc.Bytes())
		}
	}()
	return p, nil
}

func (p *scaleProc) send(cmd string) error {
	_, err := io.WriteString(p.in, cmd+"\n")
	return err
}

// read waits up to limit for the node's next line.
func (p *scaleProc) read(limit time.Duration) (scaleNodeResult, error) {
	var r scaleNodeResult
	select {
	case l := <-p.lines:
		if err := json.Unmarshal(l, &r); err != nil {
			return r, fmt.Errorf("scale node said %q: %w", l, err)
		}
		if r.Error != "" {
			return r, errors.New("scale node: " + r.Error)
		}
		return r, nil
	case <-p.ended:
		return r, errors.New("scale node ended (see its log)")
	case <-time.After(limit):
		return r, fmt.Errorf("scale node silent for %v", limit)
	}
}

func (p *scaleProc) kill() {
	_ = p.in.Close()
	_ = p.cmd.Process.Kill()
	_ = p.cmd.Wait()
}

// all runs f on every node at once and returns the first error.
func allNodes(procs []*scaleProc, f func(i int, p *scaleProc) error) error {
	errs := make([]error, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(i, p); err != nil {
				errs[i] = fmt.Errorf("node %d: %w", i, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// scaleConfig starts n nodes on servers and runs the rates, stopping at
// the first one not kept up.
func scaleConfig(ctx context.Context, env *Env, servers []*cluster.Postgres, p scaleParams, n int, mode string) ([]*scaleStep, error) {
	urls := make([]string, len(servers))
	pids := make([]int, len(servers))
	for i, s := range servers {
		urls[i] = s.URL()
		if err := dropScaleSchema(ctx, urls[i]); err != nil {
			return nil, err
		}
		pid, err := s.PID()
		if err != nil {
			return nil, fmt.Errorf("postmaster pid: %w", err)
		}
		pids[i] = pid
	}
	procs := make([]*scaleProc, n)
	defer func() {
		for _, pr := range procs {
			if pr != nil {
				pr.kill()
			}
		}
	}()
	var topicDB []int // from node 0: the database owning each topic
	start := func(i int) error {
		pr, err := startScaleNode(env, scaleNodeArgs(urls, i, n, p.Topics, p.Replicas, p.Size, p.PoolConns, mode == ScaleAll))
		if err != nil {
			return err
		}
		procs[i] = pr
		r, err := pr.read(2 * time.Minute)
		switch {
		case err != nil:
			return err
		case !r.Ready || len(r.TopicDB) != p.Topics:
			return fmt.Errorf("did not say ready with its topics' databases: %+v", r)
		case i == 0:
			topicDB = r.TopicDB
		case !slices.Equal(r.TopicDB, topicDB):
			return errors.New("places the topics on other databases than node 0")
		}
		return nil
	}
	// Node 0 makes the schemas; the others start eight at a time.
	if err := start(0); err != nil {
		return nil, fmt.Errorf("node 0: %w", err)
	}
	sem := make(chan struct{}, 8)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := start(i); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("node %d: %w", i, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	// Placement, for the expected deliveries and the notification bound.
	k := len(servers)
	subs := make([][]int, p.Topics)
	listeners := make([]map[int]map[int]bool, k) // db -> shard -> nodes
	for d := range listeners {
		listeners[d] = map[int]map[int]bool{}
	}
	for t := range subs {
		subs[t] = scaleSubscribers(t, n, p.Replicas)
		d, sh := topicDB[t], scaleShard(t)
		if listeners[d][sh] == nil {
			listeners[d][sh] = map[int]bool{}
		}
		for _, node := range subs[t] {
			listeners[d][sh][node] = true
		}
	}
	fanout := func(t int) int {
		if mode == ScaleAll {
			return n
		}
		return len(listeners[topicDB[t]][scaleShard(t)])
	}

	// What the servers spend with the nodes connected and idle (pings,
	// history trims), measured over two seconds before the first round.
	idle0 := 0.0
	for _, pid := range pids {
		idle0 -= pgTreeCPU(pid)
	}
	t0 := time.Now()
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	for _, pid := range pids {
		idle0 += pgTreeCPU(pid)
	}
	idlePct := max(0, 100*idle0/time.Since(t0).Seconds())
	backends, anonKiB := 0, 0.0
	for _, pid := range pids {
		b, kib := pgBackends(pid)
		backends += b
		anonKiB += kib
	}

	var steps []*scaleStep
	for round, rate := range p.Rates {
		if err := ctx.Err(); err != nil {
			return steps, err
		}
		s, err := scaleRoundRun(ctx, procs, pids, p, round+1, rate, subs, topicDB, fanout)
		if s != nil {
			s.Databases, s.Listen, s.Nodes, s.PGIdlePct = k, mode, n, idlePct
			s.PGBackends = backends
			if backends > 0 {
				s.PGBackendKiB = anonKiB / float64(backends)
			}
			steps = append(steps, s)
		}
		if err != nil {
			return steps, err
		}
		if !s.KeptUp {
			break
		}
	}
	return steps, nil
}

func scaleRoundRun(ctx context.Context, procs []*scaleProc, pgPIDs []int, p scaleParams, round int, rate float64,
	subs [][]int, topicDB []int, fanout func(int) int) (*scaleStep, error) {
	n := len(procs)
	s := &scaleStep{Topics: p.Topics, Replicas: min(p.Replicas, n), Offered: rate, Seconds: p.Seconds}
	pg0 := make([]float64, len(pgPIDs))
	for i, pid := range pgPIDs {
		pg0[i] = pgTreeCPU(pid)
	}
	node0 := nodesCPU(procs)
	perNode := rate / float64(n)
	cmd := fmt.Sprintf("go %d %g %g", round, perNode, p.Seconds)
	pubs := make([]scaleNodeResult, n)
	if err := allNodes(procs, func(_ int, pr *scaleProc) error { return pr.send(cmd) }); err != nil {
		return nil, err
	}
	limit := time.Duration(p.Seconds*float64(time.Second)) + 3*time.Minute
	if err := allNodes(procs, func(i int, pr *scaleProc) (err error) { pubs[i], err = pr.read(limit); return err }); err != nil {
		return nil, err
	}
	stopped := time.Now()
	pubTopics := make([]int64, p.Topics)
	for _, r := range pubs {
		s.Published += r.Published
		s.Failed += r.Failed
		s.Skipped += r.Skipped
		for t, c := range r.PubTopics {
			pubTopics[t] += int64(c)
		}
	}
	var bound float64
	for t, c := range pubTopics {
		s.Expected += c * int64(len(subs[t]))
		bound += float64(c) * float64(fanout(t))
	}
	// Drain: until every delivery arrived, or none for 3 s, or 60 s.
	var last int64 = -1
	progress := time.Now()
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		got := make([]int64, n)
		if err := allNodes(procs, func(i int, pr *scaleProc) error {
			if err := pr.send("stats"); err != nil {
				return err
			}
			r, err := pr.read(30 * time.Second)
			got[i] = r.Received
			return err
		}); err != nil {
			return nil, err
		}
		var total int64
		for _, g := range got {
			total += g
		}
		if total >= s.Expected || time.Since(progress) > 3*time.Second || time.Since(stopped) > settleLimit {
			break
		}
		if total != last {
			last, progress = total, time.Now()
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.DrainSeconds = time.Since(stopped).Seconds()
	for i, pid := range pgPIDs {
		pg0[i] = pgTreeCPU(pid) - pg0[i]
	}
	s.NodeCPUSeconds = nodesCPU(procs) - node0
	ends := make([]scaleNodeResult, n)
	if err := allNodes(procs, func(i int, pr *scaleProc) (err error) {
		if err = pr.send("end"); err == nil {
			ends[i], err = pr.read(30 * time.Second)
		}
		return err
	}); err != nil {
		return nil, err
	}
	var lat Histogram
	var first, lastUS int64
	s.PerDB = make([]scaleDBRun, len(pgPIDs))
	var shards float64
	var cross int64
	for i, e := range ends {
		s.Received += e.Received
		s.Duplicates += e.Duplicates
		s.Foreign += e.Foreign
		lat.Merge(e.Latency)
		if e.FirstUS > 0 && (first == 0 || e.FirstUS < first) {
			first = e.FirstUS
		}
		lastUS = max(lastUS, e.LastUS)
		for d, db := range e.DBs {
			if d >= len(s.PerDB) {
				break
			}
			s.PerDB[d].Published += int64(db.Published)
			s.PerDB[d].NotesReceived += db.NotesReceived
			s.NotesReceived += db.NotesReceived
			s.NotifySent += db.Notifications
			s.Transactions += db.Transactions
			shards += float64(db.Shards)
		}
		for t, c := range e.RecvTopics {
			mine := false
			for _, node := range subs[t] {
				mine = mine || node == i
			}
			if mine && int64(c) != pubTopics[t] || !mine && c != 0 {
				s.Mismatched++
			}
		}
		cross += e.Cross
	}
	s.ShardsListened = shards / float64(n*len(pgPIDs))
	owned := make([]int64, len(pgPIDs))
	for t, c := range pubTopics {
		owned[topicDB[t]] += c
	}
	for d := range owned {
		s.Misplaced += max(owned[d]-s.PerDB[d].Published, s.PerDB[d].Published-owned[d])
	}
	s.Lost = max(0, s.Expected-s.Received)
	s.PublishedPerSec = float64(s.Published) / p.Seconds
	if span := float64(lastUS-first) / 1e6; span > 0 {
		s.DeliveriesPerSec = float64(s.Received) / span
		s.CrossPerSec = float64(cross) / span
	}
	if s.Published > 0 {
		pub := float64(s.Published)
		s.NotesPerMsg = float64(s.NotesReceived) / pub
		s.NotesEstimate = bound / pub
		if s.Transactions > 0 {
			s.MsgsPerTx = pub / float64(s.Transactions)
		}
		if s.NotifySent > 0 {
			s.MsgsPerNotify = pub / float64(s.NotifySent)
		}
		s.NodeCPUPer1k = 1e6 * s.NodeCPUSeconds / pub
		for d := range s.PerDB {
			db := &s.PerDB[d]
			db.Share = float64(db.Published) / pub
			db.PGCPUSeconds = pg0[d]
			s.PGCPUSeconds += pg0[d]
			if db.Published > 0 {
				db.NotesPerMsg = float64(db.NotesReceived) / float64(db.Published)
				db.PGCPUPer1k = 1e6 * pg0[d] / float64(db.Published)
			}
		}
		s.PGCPUPer1k = 1e6 * s.PGCPUSeconds / pub
	}
	s.P50MS, s.P99MS, s.MaxMS = finite(lat.Quantile(0.5)), finite(lat.Quantile(0.99)), finite(lat.Quantile(1))
	s.KeptUp = s.Failed == 0 && s.Skipped == 0 && s.Lost == 0 && s.Duplicates == 0 && s.Mismatched == 0 &&
		float64(s.Published) >= 0.99*float64(n)*math.Floor(perNode*p.Seconds) && s.P99MS < 1000
	return s, nil
}

// finite turns NaN (nothing measured) into -1, which JSON can carry.
func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return -1
	}
	return v
}

// pgTreeCPU returns the CPU seconds of a postmaster and its processes: its
// own and its reaped children's (cutime, cstime), plus its live children's.
func pgTreeCPU(pid int) float64 {
	own, _ := procStatFields(pid)
	total := 0.0
	if len(own) > 16 {
		for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			v, _ := strconv.ParseFloat(own[i], 64)
			total += v
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil || c == pid {
			continue
		}
		f, err := procStatFields(c)
		if err != nil || len(f) < 13 || f[1] != strconv.Itoa(pid) { // ppid
			continue
		}
		for _, i := range []int{11, 12} {
			v, _ := strconv.ParseFloat(f[i], 64)
			total += v
		}
	}
	return total / clkTck
}

// pgBackends counts a postmaster's child processes and sums their private
// resident memory (RssAnon, KiB): what each connection costs the server
// beyond the shared buffers.
func pgBackends(pid int) (n int, anonKiB float64) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil || c == pid {
			continue
		}
		f, err := procStatFields(c)
		if err != nil || len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		if kib, err := procStatusKB(c, "RssAnon:"); err == nil {
			n++
			anonKiB += float64(kib)
		}
	}
	return n, anonKiB
}

// procStatFields returns the fields of /proc/PID/stat after the command
// name: [0] is the state (field 3), [1] the ppid, [11] utime (field 14).
func procStatFields(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, errors.New("bad stat")
	}
	return strings.Fields(string(b[i+1:])), nil
}

// nodesCPU sums the node processes' CPU seconds.
func nodesCPU(procs []*scaleProc) float64 {
	var t float64
	for _, p := range procs {
		if c, _, err := procUsage(p.cmd.Process.Pid); err == nil {
			t += c
		}
	}
	return t
}

// dropScaleSchema drops the scale scenario's schema.
func dropScaleSchema(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("connect to Postgres: %w", err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+scaleSchema+" CASCADE")
	return err
}

// scaleCharts plots, against the node count, one line per (K, listening)
// at the first offered rate, and the highest rate kept up.
func scaleCharts(steps []*scaleStep, p scaleParams) []*Chart {
	type key struct {
		k    int
		mode string
	}
	var keys []key
	for _, k := range p.Databases {
		for _, m := range p.Listen {
			keys = append(keys, key{k, m})
		}
	}
	name := func(k key) string {
		l := "interest-based"
		if k.mode == ScaleAll {
			l = "ListenAll"
		}
		return fmt.Sprintf("K=%d, %s", k.k, l)
	}
	first := p.Rates[0]
	line := func(title, y string, v func(*scaleStep) float64) *Chart {
		c := &Chart{Title: title, XLabel: "nodes", YLabel: y}
		for _, k := range keys {
			sr := Series{Name: name(k)}
			for _, s := range steps {
				if s.Databases == k.k && s.Listen == k.mode && s.Offered == first {
					sr.Points = append(sr.Points, [2]float64{float64(s.Nodes), v(s)})
				}
			}
			c.Lines = append(c.Lines, sr)
		}
		return c
	}
	at := fmt.Sprintf(" (%s msg/s offered)", fnum(first))
	charts := []*Chart{
		line("Notifications Postgres sends per published message"+at, "notifications/msg", func(s *scaleStep) float64 { return s.NotesPerMsg }),
		line("Postgres CPU per 1,000 messages, all servers"+at, "CPU ms / 1k msgs", func(s *scaleStep) float64 { return s.PGCPUPer1k }),
		line("p99 publish-to-delivery latency"+at, "ms", func(s *scaleStep) float64 { return s.P99MS }),
	}
	sus := &Chart{Title: "Highest offered rate kept up (cluster-wide published msg/s)", XLabel: "nodes", YLabel: "msg/s"}
	for _, k := range keys {
		sr := Series{Name: name(k)}
		best := map[int]float64{}
		var order []int
		for _, s := range steps {
			if s.Databases != k.k || s.Listen != k.mode {
				continue
			}
			if _, ok := best[s.Nodes]; !ok {
				order = append(order, s.Nodes)
				best[s.Nodes] = 0
			}
			if s.KeptUp && best[s.Nodes] < s.PublishedPerSec {
				best[s.Nodes] = s.PublishedPerSec
			}
		}
		for _, n := range order {
			sr.Points = append(sr.Points, [2]float64{float64(n), best[n]})
		}
		sus.Lines = append(sus.Lines, sr)
	}
	return append(charts, sus)
}
