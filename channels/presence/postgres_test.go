package presence_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/presence"
	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub/postgres"
)

// Nodes on a real PostgreSQL: each has its own postgres.Broker (its own
// pool and listener connection), as separate servers would.

// pgBroker starts a PostgreSQL broker on the test's schema, closed when the
// test ends (after the nodes using it).
func pgBroker(t *testing.T, url, schema string) *postgres.Broker {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := postgres.New(ctx, postgres.Options{URL: url, Schema: schema, PingInterval: time.Second})
	if err != nil {
		t.Fatalf("postgres.New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestPostgresJoinUpdateLeave(t *testing.T) {
	u, schema := pgtest.Schema(t)
	n1 := newApp(t, pgBroker(t, u, schema), "", fast)
	n2 := newApp(t, pgBroker(t, u, schema), "", fast)
	testJoinUpdateLeave(t, n1, n2)
}

// TestPostgresLateNodeLearnsState: a node that starts after the others
// receives their presences in a state transfer, in parts that fit in
// notifications.
func TestPostgresLateNodeLearnsState(t *testing.T) {
	u, schema := pgtest.Schema(t)
	n1 := newApp(t, pgBroker(t, u, schema), "", fast)
	c := connect(t, n1)
	const users = 200
	c.join("room:x", map[string]any{"user": "user-", "many": users, "meta": map[string]any{"status": "on", "pad": strings.Repeat("p", 200)}}, "ok")
	n2 := newApp(t, pgBroker(t, u, schema), "", fast)
	want := map[string][]string{}
	for i := range users {
		want["user-"+strconv.Itoa(i)] = []string{"on"}
	}
	waitList(t, n2.p, "room:x", want)
}

// Killed nodes run in a child process (this test binary, started with
// helperEnv set), so that they can be killed with SIGKILL.
const helperEnv = "HEARTH_PRESENCE_HELPER"

// killOpts are the timings of the SIGKILL tests, in parent and children.
var killOpts = presence.Options{
	HeartbeatInterval: 200 * time.Millisecond,
	Timeout:           time.Second,
	DiffInterval:      10 * time.Millisecond,
}

// helperMain runs a child node when the process is one: it joins
// "room:k" as the users named in the environment, prints "ready", and
// serves until killed.
func helperMain() bool {
	spec := os.Getenv(helperEnv)
	if spec == "" {
		return false
	}
	// spec: url|schema|nodeID|user,user,...
	parts := strings.SplitN(spec, "|", 4)
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	if len(parts) != 4 {
		fail(fmt.Errorf("bad %s", helperEnv))
	}
	ctx := context.Background()
	b, err := postgres.New(ctx, postgres.Options{URL: parts[0], Schema: parts[1], PingInterval: time.Second})
	if err != nil {
		fail(err)
	}
	n := channels.New(channels.Options{Broker: b, NodeID: parts[2]})
	p := presence.New(n, killOpts)
	n.Handle("room:*", channels.Handler{
		Join: func(_ context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
			var user string
			if err := json.Unmarshal(ev.Params, &user); err != nil {
				return channels.JoinReply{}, err
			}
			return channels.JoinReply{}, p.Track(c, user, map[string]string{"status": parts[2]})
		},
	})
	for _, user := range strings.Split(parts[3], ",") {
		s, err := n.NewSocket(ctx, channels.ConnectEvent{})
		if err != nil {
			fail(err)
		}
		s.Start(discard{})
		msg := fmt.Sprintf(`["1","1","room:k","phx_join",%q]`, user)
		if err := s.HandleMessage([]byte(msg), false); err != nil {
			fail(err)
		}
	}
	fmt.Println("ready")
	select {} // until SIGKILL
}

type discard struct{}

func (discard) Send([]byte) bool  { return true }
func (discard) Close(int, string) {}

// startHelper starts a child node whose sockets track users in room:k.
func startHelper(t *testing.T, url, schema, nodeID string, users ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+strings.Join([]string{url, schema, nodeID, strings.Join(users, ",")}, "|"))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(out).ReadString('\n')
		if err == nil && line != "ready\n" {
			err = fmt.Errorf("child said %q", line)
		}
		ready <- err
		_, _ = io.Copy(io.Discard, out)
	}()
	select {
	case err := <-ready:
		if err != nil {
			t.Fatalf("child node: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("child node not ready within 30s")
	}
	return cmd
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no cleanup of any kind
		t.Fatal(err)
	}
	_ = cmd.Wait()
}

// TestPostgresKilledNodeLeaves: the presences of a node killed with
// SIGKILL leave every other node's clients within the documented bound.
func TestPostgresKilledNodeLeaves(t *testing.T) {
	u, schema := pgtest.Schema(t)
	n1 := newApp(t, pgBroker(t, u, schema), "", killOpts)
	w := connect(t, n1)
	w.join("room:k", map[string]any{"watch": true}, "ok")
	alice := connect(t, n1)
	alice.join("room:k", userJoin("alice", "n1"), "ok")

	child := startHelper(t, u, schema, "doomed", "bob", "carol")
	w.waitView(map[string][]string{"alice": {"n1"}, "bob": {"doomed"}, "carol": {"doomed"}})

	kill(t, child)
	killed := time.Now()
	w.waitView(map[string][]string{"alice": {"n1"}})
	took := time.Since(killed)
	bound := killOpts.Timeout + killOpts.HeartbeatInterval/5 + killOpts.DiffInterval
	t.Logf("the killed node's presences left after %v (bound: %v after its last message)", took.Round(time.Millisecond), bound)
	if took > bound+2*time.Second {
		t.Fatalf("presences of a killed node left after %v, bound %v", took, bound)
	}
	if took < killOpts.Timeout-killOpts.HeartbeatInterval {
		t.Fatalf("presences left after %v, before the timeout", took)
	}
}

// TestPostgresRestartedNodeNoGhosts: a node killed and restarted with the
// same NodeID replaces its previous run's presences as soon as it is up,
// and one restarted under a new NodeID leaves none behind either.
func TestPostgresRestartedNodeNoGhosts(t *testing.T) {
	u, schema := pgtest.Schema(t)
	opts := killOpts
	opts.Timeout = time.Minute // the restart, not the timeout, must clear them
	n1 := newApp(t, pgBroker(t, u, schema), "", opts)
	w := connect(t, n1)
	w.join("room:k", map[string]any{"watch": true}, "ok")

	first := startHelper(t, u, schema, "web-1", "bob", "carol")
	w.waitView(map[string][]string{"bob": {"web-1"}, "carol": {"web-1"}})
	kill(t, first)
	startHelper(t, u, schema, "web-1", "dave")
	w.waitView(map[string][]string{"dave": {"web-1"}})
}
