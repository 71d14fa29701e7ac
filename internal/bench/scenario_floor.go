package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"time"
)

// TargetFloor is the floor scenario's only target: no WebSocket server at
// all, the least work a fanout can be on this machine.
const TargetFloor = "raw"

func init() {
	Register(&Scenario{
		Name:    "floor",
		Summary: "the machine's floor for a fanout: raw write(2) per subscriber, epoll + read(2) clients, no framework",
		Targets: []string{TargetFloor},
		Run:     runFloor,
	})
}

// floorRun is one writer-count configuration of the floor scenario.
type floorRun struct {
	Writers     int       `json:"writers"`
	Subscribers int       `json:"subscribers"`
	Rounds      int       `json:"rounds"`
	WritesMS    []float64 `json:"writes_ms"`     // per round: first write to last write returned
	LastWriteMS []float64 `json:"last_write_ms"` // per round: first write to the start of the last write
	LastReadMS  []float64 `json:"last_read_ms"`  // per round: first write to the last subscriber's read
	WriteP50    Float     `json:"writes_p50_ms"` // medians and tails of the above
	LastP50     Float     `json:"last_read_p50_ms"`
	LastP99     Float     `json:"last_read_p99_ms"`
	LastMax     Float     `json:"last_read_max_ms"`
	NsPerWrite  Float     `json:"ns_per_write"` // writes p50 × writers / subscribers: one thread's time per write(2)
}

// runFloor measures what no WebSocket server can beat on this machine:
// Clients (default 10,000) TCP connections over loopback, and each round
// one 66-byte frame (a 64-byte payload with its WebSocket header) written
// to every one of them with a bare write(2), by 1 and by GOMAXPROCS writer
// threads, while client processes wait in epoll_wait and read(2) each
// socket as it becomes readable. Rounds are 500 ms apart, as in the fanout
// scenario at 2 msg/s, and the figure is the time from the first write to
// the last subscriber's read: the fanout scenario's "last-sub" latency
// with no framing, no queues, no goroutines and no parsing. Linux only.
func runFloor(ctx context.Context, env *Env) (*Report, error) {
	o := env.Opts
	subs := pick(o.Clients, 10000, 20, o.Smoke)
	rounds := pick(int(o.Duration/(500*time.Millisecond)), 40, 4, o.Smoke)
	procs := 2
	if o.Workers < 0 || subs < 2 {
		procs = 0 // in-process clients (tests)
	}
	writers := []int{1}
	if n := runtime.GOMAXPROCS(0); n > 1 {
		writers = append(writers, n)
	}
	rep := &Report{Params: map[string]any{"subscribers": subs, "rounds": rounds, "writers": writers, "client_processes": procs, "interval_ms": 500}}
	tab := &Table{
		Title:  fmt.Sprintf("floor: one raw write(2) per subscriber to %d loopback sockets, epoll + read(2) clients, %d rounds", subs, rounds),
		Header: []string{"writers", "subscribers", "writes p50", "per write (one thread)", "last-read p50", "last-read p99", "last-read max"},
	}
	rep.Tables = append(rep.Tables, tab)
	cdf := &Chart{Title: "Floor: first write to the last subscriber's read (per round)", XLabel: "ms (log)", YLabel: "fraction of rounds", LogX: true}
	var runs []*floorRun
	for _, w := range writers {
		if env.Opts.Progress != nil {
			fmt.Fprintf(env.Opts.Progress, "floor: %d subscribers, %d writer thread(s), %d rounds\n", subs, w, rounds)
		}
		r, err := floorOne(ctx, o.HearthBin, subs, w, rounds, procs)
		if err != nil {
			return nil, err
		}
		runs = append(runs, r)
		tab.Add(fint(int64(w)), fint(int64(subs)), fms(float64(r.WriteP50)), fmt.Sprintf("%.1f µs", float64(r.NsPerWrite)/1000),
			fms(float64(r.LastP50)), fms(float64(r.LastP99)), fms(float64(r.LastMax)))
		cdf.Lines = append(cdf.Lines, Series{Name: fmt.Sprintf("%d writer(s)", w), Points: sortedCDF(r.LastReadMS)})
	}
	rep.Results = runs
	rep.Charts = append(rep.Charts, cdf)
	rep.Notes = append(rep.Notes, "No server can deliver one frame to every subscriber faster than this on this machine: compare the fanout scenario's last-sub latencies with it.")
	return rep, nil
}

// summarize fills the medians and tails.
func (r *floorRun) summarize() {
	r.WriteP50 = Float(quantileOf(r.WritesMS, 0.5))
	r.LastP50 = Float(quantileOf(r.LastReadMS, 0.5))
	r.LastP99 = Float(quantileOf(r.LastReadMS, 0.99))
	r.LastMax = Float(slices.Max(r.LastReadMS))
	r.NsPerWrite = Float(float64(r.WriteP50) * 1e6 * float64(r.Writers) / float64(r.Subscribers))
}

// sortedCDF turns values into CDF points.
func sortedCDF(vs []float64) [][2]float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	pts := make([][2]float64, len(s))
	for i, v := range s {
		pts[i] = [2]float64{v, float64(i+1) / float64(len(s))}
	}
	return pts
}
