package bench

import (
	"context"
	"fmt"
	"time"
)

func init() {
	Register(&Scenario{
		Name:    "throughput",
		Summary: "many topics, many publishers on one node: messages and deliveries per second, latency",
		Targets: []string{TargetHearth, TargetGorilla, TargetSocketIO},
		Run:     runThroughput,
	})
}

// runThroughput reads Clients (subscribers, default 2,000), Topics
// (default 100), TopicsPerClient (default 1), Publishers (default 20),
// Rate or Rates (per publisher, default 50), Size, Duration (default 20 s).
func runThroughput(ctx context.Context, env *Env) (*Report, error) {
	o := env.Opts
	subs := pick(o.Clients, 2000, 20, o.Smoke)
	topics := pick(o.Topics, 100, 4, o.Smoke)
	tpc := pick(o.TopicsPerClient, 1, 1, o.Smoke)
	pubs := pick(o.Publishers, 20, 2, o.Smoke)
	rates := env.rates(50, 10)
	size := pick(o.Size, 64, 64, o.Smoke)
	dur := pick(o.Duration, 20*time.Second, 3*time.Second, o.Smoke)
	if (topics+pubs-1)/pubs > maxChannels {
		return nil, fmt.Errorf("bench: %d topics over %d publishers is more than %d channels per publisher socket: add publishers", topics, pubs, maxChannels)
	}
	if pubs > topics {
		return nil, fmt.Errorf("bench: throughput needs at least one topic per publisher (%d publishers, %d topics)", pubs, topics)
	}
	rep := &Report{Params: map[string]any{"subscribers": subs, "topics": topics, "topics_per_client": tpc, "publishers": pubs, "rates_per_publisher": rates, "size": size, "seconds": dur.Seconds()}}
	tab := &Table{
		Title:  fmt.Sprintf("throughput: %d publishers over %d topics, %d subscribers x %d topics, %v", pubs, topics, subs, tpc, dur),
		Header: []string{"target", "msg/s/pub", "published/s", "deliveries/s", "backlog", "p50", "p99", "max", "lost", "dup", "errors", "srv cpu peak", "srv rss peak", "client cpu peak"},
	}
	rep.Tables = append(rep.Tables, tab)
	runs, err := sweep(o.Targets, rates, "throughput", func(kind string, rate float64) (*pubsubRun, error) {
		t, err := env.Target(ctx, kind, "")
		if err != nil {
			return nil, err
		}
		servers, addrs, err := startServers(ctx, t, 1)
		if err != nil {
			return nil, err
		}
		defer stopServers(servers)
		return runPubsub(ctx, env, pubsubSetup{
			kind: kind, subAddrs: addrs, pubAddrs: addrs, topics: topicNames("room:tp", topics), subs: subs, tpc: tpc,
			pubs: pubs, rate: rate, size: size, dur: dur, servers: servers, label: "throughput " + kind, proto: t.Proto(),
		})
	})
	sweeping := len(rates) > 1
	cdf := &Chart{Title: "Delivery latency", XLabel: "ms (log)", YLabel: "fraction of deliveries", LogX: true}
	cpu := &Chart{Title: "Server CPU", XLabel: "seconds since start of run", YLabel: "% of one core"}
	for _, run := range runs {
		tab.Add(run.Target, fnum(run.RatePerPub), fnum(run.PublishedPerSec), fnum(run.DeliveriesPerSec), fint(run.Backlog), fms(float64(run.P50)), fms(float64(run.P99)), fms(float64(run.Max)),
			fint(run.Lost), fint(run.Duplicates), fint(sumErrors(run.Errors)), fmt.Sprintf("%.0f%%", run.ServerPeakCPU), fmib(run.ServerPeakRSS), fmt.Sprintf("%.0f%%", run.ClientPeakCPU))
		cdf.Lines = append(cdf.Lines, Series{Name: runLabel(run, sweeping), Points: run.latency.CDF()})
		var pts [][2]float64
		for _, s := range run.usage {
			pts = append(pts, [2]float64{s.T, s.CPU})
		}
		cpu.Lines = append(cpu.Lines, Series{Name: runLabel(run, sweeping), Points: pts})
	}
	rep.Results = runs
	rep.Charts = append(rep.Charts, cdf, cpu)
	if sweeping {
		rep.Charts = append(rep.Charts, sweepCharts(runs, o.Targets, func(r *pubsubRun) float64 { return r.RatePerPub * float64(r.Publishers) },
			func(r *pubsubRun) float64 { return float64(r.P99) }, "Delivery p99")...)
	}
	addSweepRatios(rep, runs, rates)
	unsettledNotes(rep, runs)
	return rep, err
}
