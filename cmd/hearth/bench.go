package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hearth-rt/hearth/internal/bench"
)

func init() {
	register("bench", "run load scenarios against Hearth and its peers", runBench)
}

func benchUsage(fs *flag.FlagSet) {
	fmt.Fprintln(os.Stderr, "usage: hearth bench <scenario> [flags]\n\nscenarios:")
	for _, s := range bench.Scenarios() {
		fmt.Fprintf(os.Stderr, "  %-11s %s (targets: %s)\n", s.Name, s.Summary, strings.Join(s.Targets, ", "))
	}
	fmt.Fprintln(os.Stderr, "\nflags (zero means the scenario's default; see docs/bench-tool.md):")
	fs.PrintDefaults()
}

// listFlag is a comma-separated list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	*l = nil
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// repeatFlag collects repeated values.
type repeatFlag []string

func (r *repeatFlag) String() string     { return strings.Join(*r, " ") }
func (r *repeatFlag) Set(s string) error { *r = append(*r, s); return nil }

func runBench(args []string) error {
	if len(args) > 0 && args[0] == "worker" || os.Getenv(bench.WorkerEnv) == "1" {
		// Hidden mode: a worker process of a run, driven over stdin/stdout.
		return bench.ServeWorker(os.Stdin, os.Stdout)
	}
	if len(args) > 0 && args[0] == "floor-client" {
		// Hidden mode: a client process of the floor scenario.
		return bench.FloorClient(args[1:], os.Stdout)
	}
	if len(args) > 0 && args[0] == "broker-node" {
		// Hidden mode: a node of the broker scenario.
		return bench.BrokerNode(args[1:], os.Stdin, os.Stdout)
	}
	if len(args) > 0 && args[0] == "scale-node" {
		// Hidden mode: a node of the scale scenario.
		return bench.ScaleNode(args[1:], os.Stdin, os.Stdout)
	}
	var o bench.Options
	var targets, policies, events, counts, chaos listFlag
	var serverArgs repeatFlag
	var timeout time.Duration
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.Usage = func() { benchUsage(fs) }
	fs.Var(&targets, "target", "servers to measure, comma-separated: hearth, gorilla, socketio, hearth-longpoll, socketio-polling (see each scenario)")
	fs.StringVar(&o.Out, "out", "bench-out", "directory for the JSON report, the SVG plot and server logs")
	fs.BoolVar(&o.Smoke, "smoke", false, "tiny counts for a few seconds (CI)")
	fs.IntVar(&o.Clients, "clients", 0, "load clients (storm K, fanout/throughput/cluster subscribers)")
	fs.Var(&counts, "counts", "idle: connection counts to measure at, e.g. 1000,5000,15000")
	fs.IntVar(&o.Topics, "topics", 0, "topics")
	fs.IntVar(&o.TopicsPerClient, "topics-per-client", 0, "topics each subscriber joins")
	fs.IntVar(&o.Publishers, "publishers", 0, "publishing clients")
	var rates listFlag
	fs.Var(&rates, "rate", "messages per second per publisher, or a comma-separated sweep (fanout, throughput, cluster); a Hearth server allows 100 per connection by default")
	fs.IntVar(&o.Size, "size", 0, "payload bytes")
	fs.DurationVar(&o.Duration, "duration", 0, "measured publishing time; idle: how long the connections stay idle before each measurement (0: once settled)")
	fs.DurationVar(&o.Warmup, "warmup", 0, "publishing time before the measurement or the event")
	var nodes, dbs, listen listFlag
	fs.Var(&nodes, "nodes", "cluster: server nodes; scale: node counts to sweep, comma-separated (default 2,8,16,32,64)")
	fs.Var(&dbs, "databases", "scale: database counts (K) to sweep, comma-separated (default 1,3)")
	fs.Var(&listen, "listen", "scale: listening modes, comma-separated: interest (interest-based), all (ListenAll) (default both)")
	fs.IntVar(&o.Replicas, "replicas", 0, "scale: nodes subscribing to each topic (default 3)")
	fs.Var(&policies, "policies", "storm: reconnect policies to compare: hearth,phoenix,socketio")
	fs.Var(&events, "events", "storm: events to run: kill,drain,rolling,expired (clients holding an expired token: upgrades/s)")
	fs.DurationVar(&o.EventTimeout, "event-timeout", 0, "storm: longest wait for every client to rejoin")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", 0, "storm: longest wait for a server to drain and exit after SIGTERM")
	fs.DurationVar(&o.DrainWindow, "drain-window", 0, "hearth servers' --drain-window (default: the server's own; 2s with --smoke)")
	fs.Float64Var(&o.ConnectRate, "connect-rate", 0, "initial connects per second for the whole fleet (default 1500)")
	fs.DurationVar(&o.Heartbeat, "heartbeat", 0, "Phoenix heartbeat interval (default 30s)")
	fs.Var(&chaos, "scenario", "chaos: the scenarios to run, comma-separated: deploy,node-kill")
	fs.DurationVar(&o.DeployEvery, "deploy-every", 0, "chaos soak: a whole rolling deploy this often (default 10m)")
	fs.StringVar(&o.Balancer, "balancer", "", "chaos: the load balancer in front of the nodes: haproxy (default) or nginx; roundrobin: haproxy instead of the bench's own proxy")
	fs.BoolVar(&o.NoRecover, "no-recover", false, "do not ask Hearth to replay missed messages on rejoin")
	fs.BoolVar(&o.Compress, "compress", false, "clients offer permessage-deflate and servers compress every message (fanout, throughput, cluster, idle)")
	fs.IntVar(&o.Workers, "workers", 0, "client worker processes (0: one per 8,000 clients; -1: in-process)")
	fs.IntVar(&o.SourceIPs, "source-ips", 0, "127.0.x.y source addresses for the clients (0: one per 50 clients)")
	fs.StringVar(&o.DatabaseURL, "database-url", os.Getenv("HEARTH_BENCH_DATABASE_URL"), "Postgres URL for cluster runs (env HEARTH_BENCH_DATABASE_URL)")
	fs.StringVar(&o.HearthBin, "hearth-bin", "", "hearth binary to start (default: this executable)")
	fs.StringVar(&o.GorillaBin, "gorilla-bin", "", "gorilla peer binary (default: built from bench/peers/gorilla)")
	fs.StringVar(&o.Repo, "repo", "", "Hearth source tree (default: found from the working directory)")
	fs.Var(&serverArgs, "server-arg", "extra argument for every server process (repeatable)")
	fs.DurationVar(&timeout, "timeout", 0, "abort the run after this long (0: no limit)")

	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		benchUsage(fs)
		return errors.New("name a scenario")
	}
	name := args[0]
	if name == "list" {
		for _, s := range bench.Scenarios() {
			fmt.Printf("%-11s %s\n", s.Name, s.Summary)
		}
		return nil
	}
	if _, ok := bench.Lookup(name); !ok {
		benchUsage(fs)
		return fmt.Errorf("unknown scenario %q", name)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o.Targets, o.Policies, o.Events, o.ServerArgs = targets, policies, events, serverArgs
	o.Chaos = chaos
	for _, r := range rates {
		v, err := strconv.ParseFloat(r, 64)
		if err != nil || v <= 0 {
			return fmt.Errorf("--rate: %q is not a positive number", r)
		}
		o.Rates = append(o.Rates, v)
	}
	if len(o.Rates) == 1 {
		o.Rate, o.Rates = o.Rates[0], nil
	}
	for _, c := range nodes {
		n, err := strconv.Atoi(c)
		if err != nil || n <= 0 {
			return fmt.Errorf("--nodes: %q is not a positive number", c)
		}
		o.NodeCounts = append(o.NodeCounts, n)
	}
	if len(o.NodeCounts) > 0 {
		o.Nodes = o.NodeCounts[0]
	}
	for _, c := range dbs {
		n, err := strconv.Atoi(c)
		if err != nil || n <= 0 {
			return fmt.Errorf("--databases: %q is not a positive number", c)
		}
		o.DatabaseCounts = append(o.DatabaseCounts, n)
	}
	o.ListenModes = listen
	for _, c := range counts {
		n, err := strconv.Atoi(c)
		if err != nil || n <= 0 {
			return fmt.Errorf("--counts: %q is not a positive number", c)
		}
		o.Counts = append(o.Counts, n)
	}
	if o.HearthBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		o.HearthBin = exe
	}
	o.Command = append([]string{"hearth", "bench"}, args...)
	o.Stdout, o.Progress = os.Stdout, os.Stderr

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	_, err := bench.Run(ctx, name, o)
	return err
}
