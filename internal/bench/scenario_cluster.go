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

// runCluster reads DatabaseURL (required), Nodes (default 2), Clients
// (subscribers, default 1,000), Topics (default 100), Publishers (default
// 20), Rate (per publisher, default 50), Size, Duration (default 20 s).
// Subscribers connect only to nodes 1..N-1, so every delivery crossed
// Postgres.
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
	rate := pick(o.Rate, 50.0, 10.0, o.Smoke)
	size := pick(o.Size, 64, 64, o.Smoke)
	dur := pick(o.Duration, 20*time.Second, 3*time.Second, o.Smoke)
	if (topics+pubs-1)/pubs > maxChannels {
		return nil, fmt.Errorf("bench: %d topics over %d publishers is more than %d channels per publisher socket: add publishers", topics, pubs, maxChannels)
	}
	if pubs > topics {
		return nil, fmt.Errorf("bench: cluster needs at least one topic per publisher (%d publishers, %d topics)", pubs, topics)
	}
	rep := &Report{Params: map[string]any{"nodes": nodes, "subscribers": subs, "topics": topics, "publishers": pubs, "rate_per_publisher": rate, "size": size, "seconds": dur.Seconds()}}
	tab := &Table{
		Title: fmt.Sprintf("cluster: %d nodes through Postgres; %d publishers x %g msg/s on node 0, %d subscribers on the others, %d topics, %v",
			nodes, pubs, rate, subs, topics, dur),
		Header: []string{"target", "published/s", "cross-node msgs/s", "deliveries/s", "p50", "p99", "max", "lost", "errors", "srv cpu peak", "srv rss peak", "client cpu peak"},
	}
	rep.Tables = append(rep.Tables, tab)
	cdf := &Chart{Title: "Cross-node delivery latency", XLabel: "ms (log)", YLabel: "fraction of deliveries", LogX: true}
	var runs []*pubsubRun
	type clusterResult struct {
		*pubsubRun
		CrossNodePerSec float64 `json:"cross_node_msgs_per_sec"`
	}
	var results []clusterResult
	var firstErr error
	for _, kind := range o.Targets {
		t, err := env.Target(ctx, kind, o.DatabaseURL)
		if err != nil {
			firstErr = err
			break
		}
		servers, addrs, err := startServers(ctx, t, nodes)
		if err != nil {
			firstErr = err
			break
		}
		run, err := runPubsub(ctx, env, pubsubSetup{
			kind: kind, subAddrs: addrs[1:], pubAddrs: addrs[:1], topics: topicNames(runTopicPrefix("room:cl"), topics), subs: subs, tpc: 1,
			pubs: pubs, rate: rate, size: size, dur: dur, servers: servers, label: "cluster " + kind, proto: t.Proto(),
		})
		stopServers(servers)
		if err != nil {
			firstErr = fmt.Errorf("cluster against %s: %w", kind, err)
			break
		}
		runs = append(runs, run)
		// Every topic has subscribers on the far nodes (subs >= topics), so a
		// message published is a message that crossed Postgres once it arrived.
		perMsg := float64(subs) / float64(topics)
		cross := run.DeliveriesPerSec / perMsg
		results = append(results, clusterResult{run, cross})
		tab.Add(kind, fnum(run.PublishedPerSec), fnum(cross), fnum(run.DeliveriesPerSec), fms(float64(run.P50)), fms(float64(run.P99)), fms(float64(run.Max)),
			fint(run.Lost), fint(sumErrors(run.Errors)), fmt.Sprintf("%.0f%%", run.ServerPeakCPU), fmib(run.ServerPeakRSS), fmt.Sprintf("%.0f%%", run.ClientPeakCPU))
		cdf.Lines = append(cdf.Lines, Series{Name: kind, Points: run.latency.CDF()})
	}
	rep.Results = results
	rep.Charts = append(rep.Charts, cdf)
	addRatios(rep, runs)
	return rep, firstErr
}
