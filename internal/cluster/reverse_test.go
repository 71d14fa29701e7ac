package cluster

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// rawClient is a Phoenix V2 client on a plain connection whose local
// port the test knows (to cut exactly its packets).
type rawClient struct {
	conn net.Conn
	in   chan []any
	ref  int
}

func dialRaw(t *testing.T, addr, token string) *rawClient {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := "vsn=2.0.0"
	if token != "" {
		q += "&token=" + token
	}
	conn, _, _, err := ws.Dial(ctx, "ws://"+addr+"/socket/websocket?"+q)
	if err != nil {
		t.Fatal(err)
	}
	c := &rawClient{conn: conn, in: make(chan []any, 256)}
	go func() {
		defer close(c.in)
		for {
			data, err := wsutil.ReadServerText(conn)
			if err != nil {
				return
			}
			var m []any
			if json.Unmarshal(data, &m) == nil {
				c.in <- m
			}
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return c
}

func (c *rawClient) send(joinRef any, topic, event string, payload any) {
	c.ref++
	b, _ := json.Marshal([]any{joinRef, strconv.Itoa(c.ref), topic, event, payload})
	_ = wsutil.WriteClientText(c.conn, b)
}

// TestClientsCutFromNode is the reverse partition: a signed-in client's
// packets to a node are dropped (no reset) while the node keeps running.
// The node's idle timeout closes the connection, its channel leaves, and
// the other members of the room see its presence end.
func TestClientsCutFromNode(t *testing.T) {
	n, err := NewNetns()
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	addr := net.JoinHostPort(n.NSIP, "4000")
	args := append(n.Wrap(), hearthBin(t), "serve", "--addr", addr, "--log-level", "warn", "--database-url=",
		"--secret", "s3cret-for-the-test", "--idle-timeout", "3s")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for !Ready(context.Background(), addr) {
		if time.Now().After(deadline) {
			t.Fatal("node in the namespace not ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// ada signs in and takes a token.
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	resp, err := hc.Post("http://"+addr+"/login", "application/json", strings.NewReader(`{"user":"ada"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = hc.Get("http://" + addr + "/token")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var tok struct{ Token string }
	if err := json.Unmarshal(body, &tok); err != nil || tok.Token == "" {
		t.Fatalf("GET /token: %s", body)
	}

	// Both keep their heartbeat (every 500 ms, against a 3 s idle
	// timeout): only the cut can make the node close ada.
	stop := make(chan struct{})
	defer close(stop)
	beat := func(c *rawClient) {
		tk := time.NewTicker(500 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				c.send(nil, "phoenix", "heartbeat", map[string]any{})
			}
		}
	}
	obs := dialRaw(t, addr, "")
	obs.send("1", "room:lobby", "phx_join", map[string]any{})
	go beat(obs)
	ada := dialRaw(t, addr, tok.Token)
	ada.send("1", "room:lobby", "phx_join", map[string]any{})
	go beat(ada)
	// The observer sees ada join.
	wait := func(what string, match func(m []any) bool) {
		t.Helper()
		limit := time.After(60 * time.Second)
		for {
			select {
			case m, ok := <-obs.in:
				if !ok {
					t.Fatalf("the observer's connection ended waiting for %s", what)
				}
				if match(m) {
					return
				}
			case <-limit:
				t.Fatalf("no %s within 60 s", what)
			}
		}
	}
	diff := func(kind string) func(m []any) bool {
		return func(m []any) bool {
			if len(m) < 5 || m[3] != "presence_diff" {
				return false
			}
			p, _ := m[4].(map[string]any)
			side, _ := p[kind].(map[string]any)
			_, ok := side["ada"]
			return ok
		}
	}
	wait("ada's join", diff("joins"))
	// Heartbeating, she stays: several idle timeouts pass without a leave.
	quiet := time.After(8 * time.Second)
	for done := false; !done; {
		select {
		case m := <-obs.in:
			if diff("leaves")(m) {
				t.Fatal("ada left while her heartbeats went through")
			}
		case <-quiet:
			done = true
		}
	}

	// Cut ada's packets (her local port) both ways, without a reset.
	port := ada.conn.LocalAddr().(*net.TCPAddr).Port
	if err := n.Cut(port); err != nil {
		t.Fatal(err)
	}
	wait("ada's leave after the idle timeout", diff("leaves"))
}
