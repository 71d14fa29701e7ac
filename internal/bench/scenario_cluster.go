package bench

import (
	"context"
	"errors"
	"fmt"
	"time"
)

func init() {
	Register(&Scenario{
		Name:    "cluster",
		Summary: "publishers on node 0, subscribers on the other nodes, through Postgres: cross-node rate and latency",
		Targets: []string{TargetHearth, TargetSocketIO},
		Run:     runCluster,
	})
}

// clusterResult is a cluster run with its cross-node rate.
type clusterResult struct {
	*pubsubRun
	CrossNodePerSec float64 `json:"cross_node_msgs_per_sec"`
}

// runCluster reads DatabaseURL (required), Nodes (default 2), Clients
// (subscribers, default 1,000), Topics (default 100), Publishers (default
// 20), Rate or Rates (per publisher, default 50), Size, Duration (default
// 20 s). Subscribers connect only to nodes 1..N-1, so every delivery
// crossed Postgres.
func runCluster(ctx context.Context, env *Env) (*Report, error) {
	o := env.Opts
	if o.DatabaseURL == "" {
		return nil, errors.New("bench: the cluster scenario needs Postgres: pass --database-url (or set HEARTH_BENCH_DATABASE_URL)")
	}
	nodes := pick(o.Nodes, 2, 2, o.Smoke)
	if nodes < 2 {
		return nil, errors.New("bench: a cluster needs at least 2 nodes")
	}
	subs := pick(o.Clients, 1000, 20, o.Smoke)
	topics := pick(o.Topics, 100, 4, o.Smoke)
	pubs := pick(o.Publishers, 20, 2, o.Smoke)
	rates := env.rates(50, 10)
	size := pick(o.Size, 64, 64, o.Smoke)
	dur := pick(o.Duration, 20*time.Second, 3*time.Second, o.Smoke)
	if (topics+pubs-1)/pubs > maxChannels {
		return nil, fmt.Errorf("bench: %d topics over %d publishers is more than %d channels per publisher socket: add publishers", topics, pubs, maxChannels)
	}
	if pubs > topics {
		return nil, fmt.Errorf("bench: cluster needs at least one topic per publisher (%d publishers, %d topics)", pubs, topics)
	}
	if subs < topics {
		return nil, fmt.Errorf("bench: cluster needs a subscriber on every topic (%d subscribers, %d topics)", subs, topics)
	}
	rep := &Report{Params: map[string]any{"nodes": nodes, "subscribers": subs, "topics": topics, "publishers": pubs, "rates_per_publisher": rates, "size": size, "seconds": dur.Seconds()}}
	tab := &Table{
		Title: fmt.Sprintf("cluster: %d nodes through Postgres; %d publishers on node 0, %d subscribers on the others, %d topics, %v",
			nodes, pubs, subs, topics, dur),
		Header: []string{"target", "msg/s/pub", "published/s", "cross-node msgs/s", "deliveries/s", "backlog", "p50", "p99", "max", "lost", "errors", "srv cpu peak", "srv rss peak", "client cpu peak"},
	}
	rep.Tables = append(rep.Tables, tab)
	topicList := topicNames(runTopicPrefix("room:cl"), topics)
	runs, err := sweep(o.Targets, rates, "cluster", func(kind string, rate float64) (*pubsubRun, error) {
		t, err := env.Target(ctx, kind, o.DatabaseURL)
		if err != nil {
			return nil, err
		}
		servers, addrs, err := startServers(ctx, t, nodes)
		if err != nil {
			return nil, err
		}
		defer stopServers(servers)
		return runPubsub(ctx, env, pubsubSetup{
			kind: kind, subAddrs: addrs[1:], pubAddrs: addrs[:1], topics: topicList, subs: subs, tpc: 1,
			pubs: pubs, rate: rate, size: size, dur: dur, servers: servers, label: "cluster " + kind, proto: t.Proto(),
		})
	})
	sweeping := len(rates) > 1
	cdf := &Chart{Title: "Cross-node delivery latency", XLabel: "ms (log)", YLabel: "fraction of deliveries", LogX: true}
	var results []clusterResult
	// Every topic has subscribers on the far nodes, so a message that
	// arrived crossed Postgres: cross-node messages = deliveries / (subscribers per topic).
	perMsg := float64(subs) / float64(topics)
	for _, run := range runs {
		cross := run.DeliveriesPerSec / perMsg
		results = append(results, clusterResult{run, cross})
		tab.Add(run.Target, fnum(run.RatePerPub), fnum(run.PublishedPerSec), fnum(cross), fnum(run.DeliveriesPerSec), fint(run.Backlog), fms(float64(run.P50)), fms(float64(run.P99)), fms(float64(run.Max)),
			fint(run.Lost), fint(sumErrors(run.Errors)), fmt.Sprintf("%.0f%%", run.ServerPeakCPU), fmib(run.ServerPeakRSS), fmt.Sprintf("%.0f%%", run.ClientPeakCPU))
		cdf.Lines = append(cdf.Lines, Series{Name: runLabel(run, sweeping), Points: run.latency.CDF()})
	}
	rep.Results = results
	rep.Charts = append(rep.Charts, cdf)
	if sweeping {
		rep.Charts = append(rep.Charts, sweepCharts(runs, o.Targets, func(r *pubsubRun) float64 { return r.RatePerPub * float64(r.Publishers) },
			func(r *pubsubRun) float64 { return float64(r.P99) }, "Cross-node p99")...)
	}
	addSweepRatios(rep, runs, rates)
	unsettledNotes(rep, runs)
	return rep, err
}
