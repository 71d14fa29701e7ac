package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-rt/hearth/internal/cluster"
)

// soakSample is the cluster's resources at one moment of a soak.
type soakSample struct {
	T          float64   `json:"t"`          // seconds from the start
	RSSMiB     []float64 `json:"rss_mib"`    // per node
	Goroutines []float64 `json:"goroutines"` // per node
	OpenFiles  []float64 `json:"open_files"` // per node
	PGConns    float64   `json:"pg_conns"`   // sessions of the nodes in the database
	History    float64   `json:"history"`    // rows in the history table
	Clients    int64     `json:"clients"`    // load clients connected
	Deploying  bool      `json:"deploying"`  // a deploy was under way
	Err        string    `json:"err,omitempty"`
}

// soakInterval is how often a soak samples.
const soakInterval = 10 * time.Second

// soak runs churn and periodic deploys for the soak's length, sampling.
func (c *chaosCluster) soak(ctx context.Context, env *Env, fleet *Fleet, base GroupSpec, ph *chaosPhase, mark time.Time, drainTimeout time.Duration) error {
	o := env.Opts
	length := pick(o.Duration, time.Hour, 60*time.Second, o.Smoke)
	every := pick(o.DeployEvery, 10*time.Minute, 25*time.Second, o.Smoke)
	churnEvery := pick(time.Duration(0), 5*time.Second, 2*time.Second, o.Smoke)
	churnSize := max(base.Count/20, 5)
	end := mark.Add(length)
	nextDeploy := mark.Add(every)
	nextSample := mark
	nextChurn := mark.Add(churnEvery)
	var live []string // churn groups still connected, oldest first
	deploying := make(chan error, 1)
	inDeploy := false
	for time.Now().Before(end) || inDeploy {
		now := time.Now()
		if !now.Before(nextSample) {
			smp := c.sampleResources(ctx, env, fleet, now.Sub(mark).Seconds())
			smp.Deploying = inDeploy
			ph.Soak = append(ph.Soak, smp)
			nextSample = nextSample.Add(soakInterval)
		}
		if !inDeploy && !now.Before(nextDeploy) && now.Before(end) {
			inDeploy = true
			ph.Deploys++
			go func() { deploying <- c.deploy(ctx, drainTimeout) }()
			nextDeploy = nextDeploy.Add(every)
		}
		select {
		case err := <-deploying:
			inDeploy = false
			if err != nil {
				return fmt.Errorf("deploy %d: %w", ph.Deploys, err)
			}
		default:
		}
		if !now.Before(nextChurn) && now.Before(end) {
			// A new group connects and joins; the one started three rounds
			// ago leaves.
			spec := base
			spec.Name = fmt.Sprintf("churn%d", ph.ChurnGroups)
			spec.Count = churnSize
			spec.SourceIPs = env.SourceIPs(churnSize)
			if err := fleet.Start(spec); err != nil {
				return err
			}
			ph.ChurnGroups++
			ph.ChurnConns += churnSize
			live = append(live, spec.Name)
			if len(live) > 3 {
				if err := fleet.Stop(live[0]); err != nil {
					return err
				}
				live = live[1:]
			}
			nextChurn = nextChurn.Add(churnEvery)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
	for _, g := range live {
		if err := fleet.Stop(g); err != nil {
			return err
		}
	}
	ph.Soak = append(ph.Soak, c.sampleResources(ctx, env, fleet, time.Since(mark).Seconds()))
	return nil
}

// sampleResources reads every node's /metrics and the database's figures.
func (c *chaosCluster) sampleResources(ctx context.Context, env *Env, fleet *Fleet, t float64) soakSample {
	s := soakSample{T: t}
	for i, a := range c.addrs {
		var m map[string]float64
		if c.node(i) != nil {
			m, _ = scrapeMetrics(ctx, a, "process_resident_memory_bytes", "go_goroutines", "process_open_fds")
		}
		s.RSSMiB = append(s.RSSMiB, m["process_resident_memory_bytes"]/(1<<20))
		s.Goroutines = append(s.Goroutines, m["go_goroutines"])
		s.OpenFiles = append(s.OpenFiles, m["process_open_fds"])
	}
	out, err := cluster.Psql(env.Opts.DatabaseURL, "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'hearth%'), (SELECT count(*) FROM public.hearth_messages)")
	if err == nil {
		f := strings.Split(strings.TrimSpace(out), "|")
		if len(f) == 2 {
			s.PGConns, _ = strconv.ParseFloat(f[0], 64)
			s.History, _ = strconv.ParseFloat(f[1], 64)
		}
	} else {
		s.Err = err.Error()
	}
	if st, err := fleet.Stats(); err == nil {
		for _, g := range st {
			s.Clients += g.Connected
		}
	}
	return s
}

// scrapeMetrics reads the named unlabelled metrics from a node's /metrics.
func scrapeMetrics(ctx context.Context, addr string, names ...string) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && want[f[0]] {
			out[f[0]], _ = strconv.ParseFloat(f[1], 64)
		}
	}
	return out, sc.Err()
}

// soakCharts plots a soak's samples.
func soakCharts(ph *chaosPhase) []*Chart {
	if len(ph.Soak) == 0 {
		return nil
	}
	perNode := func(title, unit string, get func(soakSample) []float64) *Chart {
		ch := &Chart{Title: "Soak: " + title, XLabel: "minutes", YLabel: unit}
		for i := range get(ph.Soak[0]) {
			var pts [][2]float64
			for _, s := range ph.Soak {
				if v := get(s); i < len(v) && v[i] > 0 {
					pts = append(pts, [2]float64{s.T / 60, v[i]})
				}
			}
			ch.Lines = append(ch.Lines, Series{Name: backendName(i), Points: pts})
		}
		return ch
	}
	one := func(title, unit string, get func(soakSample) float64) *Chart {
		var pts [][2]float64
		for _, s := range ph.Soak {
			pts = append(pts, [2]float64{s.T / 60, get(s)})
		}
		return &Chart{Title: "Soak: " + title, XLabel: "minutes", YLabel: unit, Lines: []Series{{Name: title, Points: pts}}}
	}
	return []*Chart{
		perNode("RSS per node", "MiB", func(s soakSample) []float64 { return s.RSSMiB }),
		perNode("goroutines per node", "goroutines", func(s soakSample) []float64 { return s.Goroutines }),
		perNode("open files per node", "files", func(s soakSample) []float64 { return s.OpenFiles }),
		one("Postgres sessions of the nodes", "sessions", func(s soakSample) float64 { return s.PGConns }),
		one("history rows", "rows", func(s soakSample) float64 { return s.History }),
		one("load clients connected", "clients", func(s soakSample) float64 { return float64(s.Clients) }),
	}
}
