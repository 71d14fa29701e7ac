package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hearth-rt/hearth/channels/channeltest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if hearthDir != "" {
		os.RemoveAll(hearthDir)
	}
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

var hearthDir string

// hearthBin builds cmd/hearth once.
func hearthBin(t *testing.T) string {
	t.Helper()
	if hearthDir == "" {
		d, err := os.MkdirTemp("", "hearth-cluster-test")
		if err != nil {
			t.Fatal(err)
		}
		hearthDir = d
		cmd := exec.Command("go", "build", "-o", filepath.Join(d, "hearth"), "./cmd/hearth")
		cmd.Dir = "../.."
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/hearth: %v\n%s", err, out)
		}
	}
	return filepath.Join(hearthDir, "hearth")
}

// startNode runs `hearth serve` (in-process pub/sub) on a free port and
// waits for /readyz. It returns the address and the process.
func startNode(t *testing.T, secret string) (string, *exec.Cmd) {
	t.Helper()
	addr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr, startNodeAt(t, secret, addr)
}

// startNodeAt is startNode on a given address.
func startNodeAt(t *testing.T, secret, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(hearthBin(t), "serve", "--addr", addr, "--log-level", "warn", "--database-url=",
		"--secret", secret, "--drain-window", "1s", "--trusted-proxies", "127.0.0.1")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-waited
	})
	deadline := time.Now().Add(30 * time.Second)
	for !Ready(context.Background(), addr) {
		if time.Now().After(deadline) {
			t.Fatalf("node on %s not ready", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cmd
}

// TestBalancersProxyTheApp runs the documented HAProxy and nginx
// configurations in front of two nodes: the pages, the session and /token,
// /readyz and a browser-like WebSocket (with an Origin on the balancer's
// non-default port) all work through them.
func TestBalancersProxyTheApp(t *testing.T) {
	for _, kind := range []string{HAProxy, Nginx} {
		t.Run(kind, func(t *testing.T) {
			a0, _ := startNode(t, "s3cret-for-the-test")
			a1, _ := startNode(t, "s3cret-for-the-test")
			b, err := Start(context.Background(), kind, Options{Backends: []Backend{{"node0", a0}, {"node1", a1}}, Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			base := "http://" + b.Addr
			jar, _ := cookiejar.New(nil)
			hc := &http.Client{Jar: jar, Timeout: 10 * time.Second}
			get := func(path string) (int, string) {
				t.Helper()
				resp, err := hc.Get(base + path)
				if err != nil {
					t.Fatalf("GET %s: %v", path, err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(body)
			}
			if code, body := get("/"); code != 200 || !strings.Contains(body, "<html") {
				t.Errorf("GET / through %s: %d %.80q", kind, code, body)
			}
			if code, _ := get("/readyz"); code != 200 {
				t.Errorf("GET /readyz through %s: %d", kind, code)
			}
			resp, err := hc.Post(base+"/login", "application/json", strings.NewReader(`{"user":"ada"}`))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("POST /login through %s: %d", kind, resp.StatusCode)
			}
			// Twice: with two nodes behind the balancer, at least one
			// /token lands on the node that did not set the cookie.
			for range 2 {
				if code, body := get("/token"); code != 200 || !strings.Contains(body, `"token"`) {
					t.Errorf("GET /token through %s: %d %.80q", kind, code, body)
				}
			}
			// A browser on http://<balancer>:<port>/ sends that Origin: the
			// node's same-origin check needs the port in Host.
			c := channeltest.DialWith(t, "ws://"+b.Addr+"/socket/websocket", channeltest.DialOptions{
				Header: http.Header{"Origin": {base}},
			})
			if r := c.Join("room:lobby", nil); r.Status != "ok" {
				t.Errorf("join through %s: %+v", kind, r)
			}
			c.Close()
		})
	}
}

// TestHAProxyFollowsReadiness: HAProxy's health check sees a draining
// node's /readyz 503 and takes it out; the stats socket says so.
func TestHAProxyFollowsReadiness(t *testing.T) {
	a0, n0 := startNode(t, "s3cret-for-the-test")
	a1, _ := startNode(t, "s3cret-for-the-test")
	b, err := StartHAProxy(context.Background(), Options{Backends: []Backend{{"node0", a0}, {"node1", a1}}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	for _, n := range []string{"node0", "node1"} {
		if err := b.WaitBackend(ctx, n, true, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	// Keep node0 busy draining a socket for a while (1 s window), so
	// that its /readyz says 503 before it exits.
	_ = n0.Process.Signal(syscall.SIGTERM)
	if err := b.WaitBackend(ctx, "node0", false, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	states, err := b.Backends()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range states {
		if s.Name == "node1" && !s.Up() {
			t.Errorf("node1 went down with node0: %+v", states)
		}
	}
	if code := getStatus(t, "http://"+b.Addr+"/readyz"); code != 200 {
		t.Errorf("/readyz through HAProxy with node1 up: %d", code)
	}
}

func getStatus(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestParseStat(t *testing.T) {
	in := "# pxname,svname,qcur,qmax,scur,status,\nhearth,FRONTEND,,,3,OPEN,\nhearth_nodes,node0,0,0,2,UP,\nhearth_nodes,node1,0,0,0,DOWN 1/2,\nhearth_nodes,BACKEND,0,0,2,UP,\n"
	got, err := parseStat([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != (BackendState{"node0", "UP", 2}) || got[1].Status != "DOWN 1/2" || got[1].Up() {
		t.Errorf("parseStat: %+v", got)
	}
}

// TestDocsQuoteTheTemplates: docs/operations.md shows exactly the
// configurations the harness runs (rendered for the documentation's
// example addresses).
func TestDocsQuoteTheTemplates(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{HAProxy, Nginx} {
		text, err := Render(kind, DocConfig(kind))
		if err != nil {
			t.Fatal(err)
		}
		fence := "```" + kind + "\n" + text + "```\n"
		if !strings.Contains(string(doc), fence) {
			t.Errorf("docs/operations.md does not quote the %s template as rendered by DocConfig; want this block:\n%s", kind, fence)
		}
	}
}

// TestNetnsCut: a namespace reaches a host port through its veth pair
// until Cut, which drops the packets (the connect times out, no reset),
// and again after Heal; Close removes the namespace.
func TestNetnsCut(t *testing.T) {
	n, err := NewNetns()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", n.HostIP+":0")
	if err != nil {
		n.Close()
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	reach := func() bool {
		args := append(n.Wrap(), "timeout", "3", "bash", "-c", fmt.Sprintf("exec 3<>/dev/tcp/%s/%d", n.HostIP, port))
		return exec.Command(args[0], args[1:]...).Run() == nil
	}
	if !reach() {
		t.Error("the namespace does not reach the host before the cut")
	}
	if err := n.Cut(port); err != nil {
		t.Fatal(err)
	}
	if reach() {
		t.Error("the namespace still reaches the host after the cut")
	}
	if err := n.Heal(); err != nil {
		t.Fatal(err)
	}
	if !reach() {
		t.Error("the namespace does not reach the host after healing")
	}
	ln.Close()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); strings.Contains(string(out), n.Name) {
		t.Errorf("namespace %s left behind", n.Name)
	}
}

// TestNginxNodeBackAtOnce: nodes that refused connections during a deploy
// (stopped, restarting) must get traffic again as soon as they are back.
// With nginx's max_fails, the refusals marked every node failed for
// fail_timeout and clients got 502 "no live upstreams" meanwhile (found by
// `hearth bench chaos --balancer nginx --scenario deploy`: 410 failed
// connects in a 60-client deploy).
func TestNginxNodeBackAtOnce(t *testing.T) {
	const secret = "s3cret-for-the-test"
	a0, n0 := startNode(t, secret)
	a1, n1 := startNode(t, secret)
	b, err := StartNginx(context.Background(), Options{Backends: []Backend{{"node0", a0}, {"node1", a1}}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, n := range []*exec.Cmd{n0, n1} {
		_ = n.Process.Kill()
	}
	upgrade := func() int {
		req, _ := http.NewRequest(http.MethodGet, "http://"+b.Addr+"/socket/websocket?vsn=2.0.0", nil)
		req.Header.Set("Connection", "Upgrade")
		req.Header.Set("Upgrade", "websocket")
		req.Header.Set("Sec-WebSocket-Version", "13")
		req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 4 { // both refuse: nginx answers 502
		if code := upgrade(); code != http.StatusBadGateway {
			t.Fatalf("with both nodes stopped: %d", code)
		}
	}
	startNodeAt(t, secret, a1) // node 1 is back (waits for its /readyz)
	if code := upgrade(); code != http.StatusSwitchingProtocols {
		t.Errorf("node 1 is back, but an upgrade through nginx got %d", code)
	}
}
