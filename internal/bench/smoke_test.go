package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hearth-rt/hearth/internal/pgtest"
)

// testDatabaseURL is the Postgres the test suite uses (trust auth).
const testDatabaseURL = "postgres://postgres@127.0.0.1:5432/test"

func TestMain(m *testing.M) {
	if os.Getenv(WorkerEnv) == "1" {
		// This test binary re-executed as a fleet worker.
		if err := ServeWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	pgtest.Shutdown()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	hearthOnce sync.Once
	hearthBin  string
	hearthErr  error
)

// builtHearth builds cmd/hearth once for the package's tests.
func builtHearth(t *testing.T) string {
	t.Helper()
	hearthOnce.Do(func() {
		dir, err := os.MkdirTemp("", "hearth-bench-test")
		if err != nil {
			hearthErr = err
			return
		}
		root, err := repoDir("")
		if err != nil {
			hearthErr = err
			return
		}
		hearthBin = filepath.Join(dir, "hearth")
		cmd := exec.Command("go", "build", "-o", hearthBin, "./cmd/hearth")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			hearthErr = fmt.Errorf("go build ./cmd/hearth: %v\n%s", err, out)
		}
	})
	if hearthErr != nil {
		t.Fatal(hearthErr)
	}
	return hearthBin
}

func smokeOptions(t *testing.T, targets ...string) Options {
	return Options{
		Targets:   targets,
		Out:       t.TempDir(),
		Smoke:     true,
		Workers:   1, // a real worker process: the re-exec path is part of what rots
		HearthBin: builtHearth(t),
		Stdout:    io.Discard,
	}
}

// checkFiles asserts the report was written: a JSON file that decodes and
// names the scenario, and a non-empty SVG.
func checkFiles(t *testing.T, rep *Report, scenario string) map[string]any {
	t.Helper()
	var js, svg string
	for _, f := range rep.Files {
		switch filepath.Ext(f) {
		case ".json":
			js = f
		case ".svg":
			svg = f
		}
	}
	if js == "" || svg == "" {
		t.Fatalf("report files %v: want a .json and a .svg", rep.Files)
	}
	b, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	if doc["scenario"] != scenario || doc["smoke"] != true {
		t.Errorf("%s: scenario %v smoke %v", js, doc["scenario"], doc["smoke"])
	}
	s, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(s), "<svg") || !strings.Contains(string(s), "</svg>") || strings.Contains(string(s), "NaN") {
		t.Errorf("%s is not a clean SVG document", svg)
	}
	// Worker processes report races and panics on their stderr.
	if wl, err := os.ReadFile(filepath.Join(filepath.Dir(js), "workers.log")); err == nil {
		for _, bad := range []string{"DATA RACE", "panic:"} {
			if strings.Contains(string(wl), bad) {
				t.Errorf("workers.log reports %q:\n%s", bad, wl)
			}
		}
	}
	return doc
}

func checkPubsub(t *testing.T, runs []*pubsubRun, wantTargets int) {
	t.Helper()
	if len(runs) != wantTargets {
		t.Fatalf("%d runs, want %d", len(runs), wantTargets)
	}
	for _, r := range runs {
		if r.Published == 0 || r.Received == 0 {
			t.Errorf("%s: published %d received %d", r.Target, r.Published, r.Received)
		}
		// Every subscriber of a topic gets every message: on loopback, with
		// nothing restarting, nothing may be lost or repeated.
		if r.Lost != 0 || r.Duplicates != 0 {
			t.Errorf("%s: lost %d duplicates %d", r.Target, r.Lost, r.Duplicates)
		}
		if r.Received > r.Published*int64(r.Subscribers) {
			t.Errorf("%s: received %d > published %d x %d subscribers", r.Target, r.Received, r.Published, r.Subscribers)
		}
		if n := sumErrors(r.Errors); n != 0 {
			t.Errorf("%s: client errors %v", r.Target, r.Errors)
		}
	}
}

func runSmoke(t *testing.T, name string, opts Options) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, name, opts)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return rep
}

func TestSmokeFanout(t *testing.T) {
	t.Parallel()
	opts := smokeOptions(t, TargetHearth)
	opts.Workers, opts.SourceIPs = 2, 2 // several processes and source addresses
	rep := runSmoke(t, "fanout", opts)
	checkFiles(t, rep, "fanout")
	runs := rep.Results.([]*pubsubRun)
	checkPubsub(t, runs, 1)
	if r := runs[0]; r.CompleteMsgs == 0 || r.IncompleteMsgs != 0 || r.CompleteMsgs != int(r.Published) {
		t.Errorf("per-message accounting: %d complete, %d incomplete, %d published", r.CompleteMsgs, r.IncompleteMsgs, r.Published)
	}
}

func TestSmokeThroughput(t *testing.T) {
	t.Parallel()
	opts := smokeOptions(t, TargetHearth)
	opts.Workers = -1 // in-process: the race detector and the leak check see the clients
	rep := runSmoke(t, "throughput", opts)
	checkFiles(t, rep, "throughput")
	checkPubsub(t, rep.Results.([]*pubsubRun), 1)
}

func TestSmokeIdle(t *testing.T) {
	t.Parallel()
	rep := runSmoke(t, "idle", smokeOptions(t, TargetHearth))
	checkFiles(t, rep, "idle")
	pts := rep.Results.([]idlePoint)
	if len(pts) != 2 {
		t.Fatalf("%d points, want one per smoke count", len(pts))
	}
	for _, p := range pts {
		if p.RSSBytes <= 0 || p.Conns <= 0 {
			t.Errorf("point %+v", p)
		}
	}
}

func TestSmokeStorm(t *testing.T) {
	t.Parallel()
	rep := runSmoke(t, "storm", smokeOptions(t, TargetHearth))
	checkFiles(t, rep, "storm")
	phases := rep.Results.([]*stormPhase)
	if len(phases) != 6 {
		t.Fatalf("%d phases, want 2 events x 3 policies", len(phases))
	}
	for _, ph := range phases {
		// Both events disconnect every client, and every one comes back.
		if ph.Affected != ph.Clients || ph.NotRejoined != 0 {
			t.Errorf("%s/%s: %d of %d affected, %d not back", ph.Event, ph.Policy, ph.Affected, ph.Clients, ph.NotRejoined)
		}
		if ph.PeakAccept <= 0 || ph.Published == 0 || ph.Received == 0 {
			t.Errorf("%s/%s: peak %v published %d received %d", ph.Event, ph.Policy, ph.PeakAccept, ph.Published, ph.Received)
		}
		if ph.ServerCrashed {
			t.Errorf("%s/%s: server crashed", ph.Event, ph.Policy)
		}
		if ph.Event == EventKill && ph.ClientErrors < int64(ph.Clients) {
			t.Errorf("kill/%s: %d client errors, want at least one dropped connection per client", ph.Policy, ph.ClientErrors)
		}
	}
}

// TestSmokeStormExpired runs the expired event: Phoenix-policy clients
// holding an expired token keep trying on their schedule and are never
// upgraded (the server refuses them with 403 before the upgrade).
func TestSmokeStormExpired(t *testing.T) {
	t.Parallel()
	opts := smokeOptions(t, TargetHearth)
	opts.Events, opts.Policies = []string{EventExpired}, []string{"phoenix"}
	rep := runSmoke(t, "storm", opts)
	res := rep.Results.(map[string]any)
	exp := res["expired"].([]*expiredPhase)
	if len(exp) != 1 {
		t.Fatalf("%d expired phases, want 1", len(exp))
	}
	ph := exp[0]
	if ph.AttemptsPerSec <= 0 || ph.UpgradesPerSec != 0 || ph.PeakUpgrades != 0 || ph.Errors["connect_http_403"] == 0 {
		t.Errorf("expired/phoenix: %+v, want attempts, all refused with 403 before the upgrade", ph)
	}
	if len(rep.Tables) != 1 || len(rep.Tables[0].Rows) != 1 {
		t.Errorf("tables %+v", rep.Tables)
	}
}

// TestSmokeCluster runs the cluster scenario against Postgres. Until `hearth
// serve` has --database-url the scenario must refuse with a clear message
// (nothing is stubbed); once it has, the run must be clean.
func TestSmokeCluster(t *testing.T) {
	t.Parallel()
	opts := smokeOptions(t, TargetHearth)
	opts.DatabaseURL = testDatabaseURL
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := Run(ctx, "cluster", opts)
	if err != nil {
		if strings.Contains(err.Error(), "has no --database-url flag") {
			t.Logf("cluster unavailable, refused clearly: %v", err)
			return
		}
		t.Fatal(err)
	}
	checkFiles(t, rep, "cluster")
	var runs []*pubsubRun
	b, _ := json.Marshal(rep.Results)
	if err := json.Unmarshal(b, &runs); err != nil {
		t.Fatal(err)
	}
	checkPubsub(t, runs, 1)
}

func TestClusterNeedsDatabase(t *testing.T) {
	opts := smokeOptions(t, TargetHearth)
	_, err := Run(context.Background(), "cluster", opts)
	if err == nil || !strings.Contains(err.Error(), "--database-url") {
		t.Fatalf("err = %v, want a clear demand for --database-url", err)
	}
}

// TestSmokePeers runs the same load clients against the gorilla and
// Socket.IO peers. The Socket.IO peer's npm packages are installed with
// `npm ci` when missing; without Node the test fails.
func TestSmokePeers(t *testing.T) {
	t.Parallel()
	root, err := repoDir("")
	if err != nil {
		t.Fatal(err)
	}
	installSocketIOPeer(t, root)
	rep := runSmoke(t, "fanout", smokeOptions(t, TargetGorilla, TargetSocketIO))
	checkFiles(t, rep, "fanout")
	checkPubsub(t, rep.Results.([]*pubsubRun), 2)
}

var (
	peerOnce sync.Once
	peerErr  error
)

// installSocketIOPeer runs `npm ci` for the Socket.IO peer once when its
// packages are missing; without Node the test fails.
func installSocketIOPeer(t *testing.T, root string) {
	t.Helper()
	peerOnce.Do(func() {
		peer := filepath.Join(root, "bench", "peers", "socketio")
		if _, err := os.Stat(filepath.Join(peer, "node_modules", "socket.io")); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = peer
		if out, err := cmd.CombinedOutput(); err != nil {
			peerErr = fmt.Errorf("the Socket.IO peer needs Node.js and npm: npm ci in %s: %v\n%s", peer, err, out)
		}
	})
	if peerErr != nil {
		t.Fatal(peerErr)
	}
}

// TestSmokeBroker runs the broker scenario, Hearth's broker and Socket.IO's
// adapter, through Postgres: every message published must arrive.
func TestSmokeBroker(t *testing.T) {
	t.Parallel()
	root, err := repoDir("")
	if err != nil {
		t.Fatal(err)
	}
	installSocketIOPeer(t, root)
	opts := smokeOptions(t, TargetHearth, TargetSocketIO)
	opts.DatabaseURL = testDatabaseURL
	rep := runSmoke(t, "broker", opts)
	checkFiles(t, rep, "broker")
	runs := rep.Results.([]*brokerRun)
	if len(runs) != 2 {
		t.Fatalf("%d runs, want one per target", len(runs))
	}
	for _, r := range runs {
		if r.Published == 0 || r.Received != r.Published || r.Lost != 0 || r.Failed != 0 || r.P50MS <= 0 {
			t.Errorf("%s: published %d received %d lost %d failed %d p50 %.2f ms", r.Target, r.Published, r.Received, r.Lost, r.Failed, r.P50MS)
		}
	}
}

// TestSmokeBrokerAsync runs Hearth's broker node with --publishers -1: no
// publisher goroutines, every message queued with PublishAsync.
func TestSmokeBrokerAsync(t *testing.T) {
	t.Parallel()
	opts := smokeOptions(t, TargetHearth)
	opts.DatabaseURL = testDatabaseURL
	opts.Publishers = -1
	rep := runSmoke(t, "broker", opts)
	runs := rep.Results.([]*brokerRun)
	if len(runs) != 1 {
		t.Fatalf("%d runs, want 1", len(runs))
	}
	if r := runs[0]; r.Published == 0 || r.Received != r.Published || r.Lost != 0 || r.Failed != 0 || r.Skipped != 0 {
		t.Errorf("published %d received %d lost %d failed %d skipped %d", r.Published, r.Received, r.Lost, r.Failed, r.Skipped)
	}
}

func TestBrokerNeedsDatabase(t *testing.T) {
	_, err := Run(context.Background(), "broker", smokeOptions(t, TargetHearth))
	if err == nil || !strings.Contains(err.Error(), "--database-url") {
		t.Fatalf("err = %v, want a clear demand for --database-url", err)
	}
}

func TestSmokeFloor(t *testing.T) {
	t.Parallel()
	rep := runSmoke(t, "floor", smokeOptions(t, TargetFloor))
	checkFiles(t, rep, "floor")
	runs := rep.Results.([]*floorRun)
	if len(runs) == 0 {
		t.Fatal("no floor runs")
	}
	for _, r := range runs {
		if r.Rounds == 0 || len(r.LastReadMS) != r.Rounds || len(r.LastWriteMS) != r.Rounds || len(r.WritesMS) != r.Rounds {
			t.Fatalf("writers %d: %d last-read, %d last-write and %d write times for %d rounds",
				r.Writers, len(r.LastReadMS), len(r.LastWriteMS), len(r.WritesMS), r.Rounds)
		}
		// The last subscriber cannot have read its frame before the last
		// write(2) began (one monotonic clock for every process); how long
		// the writer took to return afterwards depends on the scheduler.
		for i, v := range r.LastReadMS {
			if v <= 0 || v < r.LastWriteMS[i] || r.LastWriteMS[i] > r.WritesMS[i] {
				t.Errorf("writers %d round %d: last read %.3f ms after the first write, last write began at %.3f ms, writes returned at %.3f ms",
					r.Writers, i, v, r.LastWriteMS[i], r.WritesMS[i])
			}
		}
	}
}

// TestSmokeIdleLongPoll: idle sessions over Hearth's long-poll and
// Socket.IO's polling are measured like WebSocket connections.
func TestSmokeIdleLongPoll(t *testing.T) {
	t.Parallel()
	root, err := repoDir("")
	if err != nil {
		t.Fatal(err)
	}
	installSocketIOPeer(t, root)
	rep := runSmoke(t, "idle", smokeOptions(t, TargetLongPoll, TargetSocketIOPolling))
	pts := rep.Results.([]idlePoint)
	if len(pts) != 4 {
		t.Fatalf("%d points, want one per smoke count and target", len(pts))
	}
	for i, p := range pts {
		want := []string{TargetLongPoll, TargetSocketIOPolling}[i/2]
		if p.Target != want || p.RSSBytes <= 0 || p.Conns <= 0 {
			t.Errorf("point %+v", p)
		}
	}
}

// TestSmokeFanoutPolling: fanout to subscribers on Hearth's long-poll and
// on Socket.IO's polling transport, every message to every subscriber.
func TestSmokeFanoutPolling(t *testing.T) {
	t.Parallel()
	root, err := repoDir("")
	if err != nil {
		t.Fatal(err)
	}
	installSocketIOPeer(t, root)
	opts := smokeOptions(t, TargetLongPoll, TargetSocketIOPolling)
	opts.Workers = -1 // in-process: the race detector and the leak check see the polling clients
	rep := runSmoke(t, "fanout", opts)
	checkFiles(t, rep, "fanout")
	runs := rep.Results.([]*pubsubRun)
	checkPubsub(t, runs, 2)
	for _, r := range runs {
		if r.CompleteMsgs == 0 || r.IncompleteMsgs != 0 || r.CompleteMsgs != int(r.Published) {
			t.Errorf("%s: per-message accounting: %d complete, %d incomplete, %d published", r.Target, r.CompleteMsgs, r.IncompleteMsgs, r.Published)
		}
	}
}

// TestSmokeRoundRobin: through a balancer that sends each request to the
// next of two clustered nodes, every Hearth long-poll subscriber joins and
// receives everything; Socket.IO's polling sessions work behind the
// IP-sticky balancer only, and the round-robin one gets HTTP 4xx
// (Engine.IO's "Session ID unknown").
func TestSmokeRoundRobin(t *testing.T) {
	t.Parallel()
	root, err := repoDir("")
	if err != nil {
		t.Fatal(err)
	}
	installSocketIOPeer(t, root)
	opts := smokeOptions(t, TargetLongPoll, TargetSocketIOPolling)
	opts.DatabaseURL = testDatabaseURL
	rep := runSmoke(t, "roundrobin", opts)
	checkFiles(t, rep, "roundrobin")
	runs := rep.Results.([]*rrRun)
	if len(runs) != 4 {
		t.Fatalf("%d runs, want two balancers for each of two targets", len(runs))
	}
	for _, r := range runs {
		if r.Published == 0 || r.Requests == 0 {
			t.Errorf("%s %s: published %d, %d requests through the balancer", r.Target, r.Balancer, r.Published, r.Requests)
		}
		works := r.Target == TargetLongPoll || r.Balancer == rrSticky
		if !works {
			if r.Status4xx == 0 || r.JoinedAtEnd == int64(r.Sessions) {
				t.Errorf("%s %s: %d HTTP 4xx, %d of %d joined: want Engine.IO's 400s", r.Target, r.Balancer, r.Status4xx, r.JoinedAtEnd, r.Sessions)
			}
			continue
		}
		if r.JoinedAtStart != int64(r.Sessions) || r.DeliveredFrac != 1 || r.Status4xx != 0 || r.Drops != 0 {
			t.Errorf("%s %s: joined %d of %d, delivered %.3f, %d HTTP 4xx, %d drops %v", r.Target, r.Balancer,
				r.JoinedAtStart, r.Sessions, r.DeliveredFrac, r.Status4xx, r.Drops, r.Errors)
		}
	}
}
