package bench

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"
)

func init() {
	Register(&Scenario{
		Name:    "idle",
		Summary: "N idle joined connections: server RSS and heap per connection at each count",
		Targets: []string{TargetHearth, TargetGorilla, TargetSocketIO, TargetLongPoll, TargetSocketIOPolling},
		Run:     runIdle,
	})
}

// idlePoint is one measurement.
type idlePoint struct {
	Target      string `json:"target"`
	Conns       int    `json:"connections"`
	RSSBytes    int64  `json:"rss_bytes"`
	HeapBytes   int64  `json:"heap_bytes"` // -1 when the server exposes none
	RSSPerConn  Float  `json:"rss_per_conn_bytes"`
	HeapPerConn Float  `json:"heap_per_conn_bytes"`
}

// runIdle reads Counts (default 1,000, 5,000, 15,000), Topics (default
// 100; each connection joins one), Heartbeat, Duration (how long the
// connections stay idle before each measurement; 0: once settled). For each target it starts
// one server, measures its baseline, then adds connections up to each
// count and measures again after they settle. Per-connection figures are
// (value - baseline) / connections. RSS comes from /proc/PID/status;
// heap from the server's own figures after a collection (Go: pprof's
// HeapInuse + goroutine stacks; Node: V8 heapUsed + external).
func runIdle(ctx context.Context, env *Env) (*Report, error) {
	o := env.Opts
	counts := o.Counts
	if len(counts) == 0 {
		counts = []int{1000, 5000, 15000}
		if o.Smoke {
			counts = []int{10, 30}
		}
	}
	counts = slices.Clone(counts)
	slices.Sort(counts)
	topics := pick(o.Topics, 100, 4, o.Smoke)
	maxN := counts[len(counts)-1]
	rep := &Report{Params: map[string]any{"counts": counts, "topics": topics, "heartbeat_ms": env.heartbeatMS(), "compress": env.Opts.Compress}}
	tab := &Table{
		Title:  fmt.Sprintf("idle: joined connections (one topic each of %d), memory after settling%s", topics, compressTitle(env.Opts.Compress)),
		Header: []string{"target", "connections", "server RSS", "server heap", "RSS/conn", "heap/conn"},
	}
	rep.Tables = append(rep.Tables, tab)
	var points []idlePoint
	var notes []string
	for _, kind := range o.Targets {
		pts, note, err := idleOne(ctx, env, kind, counts, topics, maxN)
		points = append(points, pts...)
		if note != "" {
			notes = append(notes, note)
		}
		if err != nil {
			rep.Results = points
			return rep, fmt.Errorf("idle against %s: %w", kind, err)
		}
		for _, p := range pts {
			heap, hpc := "-", "-"
			if p.HeapBytes >= 0 {
				heap, hpc = fmib(float64(p.HeapBytes)/(1<<20)), fkib(float64(p.HeapPerConn))
			}
			tab.Add(kind, fint(int64(p.Conns)), fmib(float64(p.RSSBytes)/(1<<20)), heap, fkib(float64(p.RSSPerConn)), hpc)
		}
	}
	rep.Results = points
	rep.Notes = notes
	cats := make([]string, len(counts))
	for i, c := range counts {
		cats[i] = fmt.Sprintf("%d conns", c)
	}
	rssBars := &Chart{Title: "Server RSS per idle joined connection", YLabel: "KiB per connection", Categories: cats}
	heapBars := &Chart{Title: "Server heap per idle joined connection", YLabel: "KiB per connection", Categories: cats}
	for _, kind := range o.Targets {
		rs, hs := BarSeries{Name: kind}, BarSeries{Name: kind}
		for _, c := range counts {
			v, h := math.NaN(), math.NaN()
			for _, p := range points {
				if p.Target == kind && p.Conns == c {
					v = float64(p.RSSPerConn) / 1024
					if p.HeapBytes >= 0 {
						h = float64(p.HeapPerConn) / 1024
					}
				}
			}
			rs.Values, hs.Values = append(rs.Values, Float(v)), append(hs.Values, Float(h))
		}
		rssBars.Bars, heapBars.Bars = append(rssBars.Bars, rs), append(heapBars.Bars, hs)
	}
	rep.Charts = append(rep.Charts, rssBars, heapBars)
	return rep, nil
}

func idleOne(ctx context.Context, env *Env, kind string, counts []int, topics, maxN int) ([]idlePoint, string, error) {
	t, err := env.Target(ctx, kind, "")
	if err != nil {
		return nil, "", err
	}
	servers, addrs, err := startServers(ctx, t, 1)
	if err != nil {
		return nil, "", err
	}
	defer stopServers(servers)
	srv := servers[0]
	fleet, err := env.Fleet(maxN)
	if err != nil {
		return nil, "", err
	}
	defer fleet.Close()
	note := ""
	measure := func() (int64, int64, error) {
		// Duration: the connections stay idle this long first, as
		// sessions that have been open a while (keep-alive connections
		// closed by the server's idle timeout, stacks shrunk by the GC).
		if err := sleepCtx(ctx, env.Opts.Duration); err != nil {
			return 0, 0, err
		}
		// Let the server settle: the RSS must stop moving for a second.
		var rss int64
		for range 20 {
			r1, err := srv.RSS()
			if err != nil {
				return 0, 0, err
			}
			if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
				return 0, 0, err
			}
			r2, err := srv.RSS()
			if err != nil {
				return 0, 0, err
			}
			rss = r2
			if math.Abs(float64(r2-r1)) < 0.002*float64(r1) {
				break
			}
		}
		heap, herr := srv.Heap(ctx)
		if herr != nil {
			heap = -1
			note = fmt.Sprintf("%s: no heap figures (%v); pass the server's pprof flag with --server-arg", kind, herr)
		}
		if err := sleepCtx(ctx, 300*time.Millisecond); err != nil {
			return 0, 0, err
		}
		if r, err := srv.RSS(); err == nil {
			rss = r
		}
		return rss, heap, nil
	}
	baseRSS, baseHeap, err := measure()
	if err != nil {
		return nil, note, err
	}
	var out []idlePoint
	have := 0
	connRate := env.Opts.ConnectRate
	if connRate == 0 {
		connRate = defaultConnectRate
	}
	for i, n := range counts {
		spec := GroupSpec{
			Name: fmt.Sprintf("idle%d", i), Proto: t.Proto(), Addrs: addrs, Policy: "hearth",
			Topics: topicNames("room:idle", topics), TopicsPerClient: 1, Count: n - have,
			SourceIPs: env.SourceIPs(maxN), ConnectRate: connRate, HeartbeatMS: env.heartbeatMS(), EpochNS: env.Epoch.UnixNano(),
			Deflate: env.Opts.Compress, Transport: t.Transport(),
		}
		groups := make([]string, i+1)
		for j := range groups {
			groups[j] = fmt.Sprintf("idle%d", j)
		}
		p := env.progress(fmt.Sprintf("idle %s %d", kind, n), fleet, joinedLine(int64(n), groups...))
		err := fleet.Start(spec)
		if err == nil {
			err = waitJoined(ctx, fleet, int64(n), 5*time.Minute, groups...)
		}
		p.done()
		if err != nil {
			return out, note, err
		}
		have = n
		rss, heap, err := measure()
		if err != nil {
			return out, note, err
		}
		pt := idlePoint{Target: kind, Conns: n, RSSBytes: rss, HeapBytes: heap,
			RSSPerConn: Float(float64(rss-baseRSS) / float64(n)), HeapPerConn: Float(math.NaN())}
		if heap >= 0 && baseHeap >= 0 {
			pt.HeapPerConn = Float(float64(heap-baseHeap) / float64(n))
		}
		out = append(out, pt)
	}
	if srv.Exited() {
		return out, note, fmt.Errorf("bench: the %s server died during the run", kind)
	}
	return out, note, nil
}
