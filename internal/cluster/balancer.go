package cluster

import (
	"bufio"
	"bytes"
	"context"
	_ "embed"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// Balancer kinds.
const (
	HAProxy = "haproxy"
	Nginx   = "nginx"
)

//go:embed haproxy.cfg.tmpl
var haproxyTmpl string

//go:embed nginx.conf.tmpl
var nginxTmpl string

var templates = map[string]*template.Template{
	HAProxy: template.Must(template.New(HAProxy).Parse(haproxyTmpl)),
	Nginx:   template.Must(template.New(Nginx).Parse(nginxTmpl)),
}

// Backend is one node behind the balancer.
type Backend struct {
	Name string // HAProxy's server name, e.g. "node0"
	Addr string // host:port
}

// Config is what a balancer configuration is rendered from.
type Config struct {
	// Listen is the frontend's address ("127.0.0.1:8080", ":80").
	Listen  string
	Servers []Backend
	// Dir, when set, is the harness's directory for the balancer's own
	// files (nginx: pid, logs, temporary files). Empty renders the
	// configuration the documentation shows.
	Dir string
	// StatsSocket, when set, is HAProxy's admin socket (the harness reads
	// backend states from it).
	StatsSocket string
}

// Render returns the configuration of a balancer kind.
func Render(kind string, c Config) (string, error) {
	t, ok := templates[kind]
	if !ok {
		return "", fmt.Errorf("cluster: unknown balancer %q (want haproxy or nginx)", kind)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, c); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Balancer is a running load balancer process.
type Balancer struct {
	Kind string
	// Addr is the frontend's host:port: the only address clients use.
	Addr string
	// Config is the configuration file.
	Config string

	cfg    Config
	cmd    *exec.Cmd
	exited chan struct{}
	err    error
	log    *os.File
}

// Options start a balancer.
type Options struct {
	Backends []Backend
	// Dir receives the configuration and the balancer's files. Empty
	// means a new temporary directory (removed by Close).
	Dir string
	// Bin is the balancer binary. Empty means haproxy or nginx from PATH
	// or /usr/sbin.
	Bin string
}

func findBin(name, bin string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	p := "/usr/sbin/" + name
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("cluster: %s is not installed (apt-get install %s)", name, map[string]string{HAProxy: "haproxy", Nginx: "nginx-light"}[name])
}

// StartHAProxy starts HAProxy in front of the backends and waits until
// its frontend accepts connections.
func StartHAProxy(ctx context.Context, o Options) (*Balancer, error) {
	return start(ctx, HAProxy, o)
}

// StartNginx starts nginx in front of the backends and waits until its
// frontend accepts connections.
func StartNginx(ctx context.Context, o Options) (*Balancer, error) {
	return start(ctx, Nginx, o)
}

// Start starts a balancer of the given kind.
func Start(ctx context.Context, kind string, o Options) (*Balancer, error) {
	return start(ctx, kind, o)
}

func start(ctx context.Context, kind string, o Options) (*Balancer, error) {
	bin, err := findBin(kind, o.Bin)
	if err != nil {
		return nil, err
	}
	dir := o.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "hearth-"+kind); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	c := Config{Listen: addr, Servers: o.Backends, Dir: dir}
	if kind == HAProxy {
		c.StatsSocket = filepath.Join(dir, "haproxy.sock")
	}
	text, err := Render(kind, c)
	if err != nil {
		return nil, err
	}
	b := &Balancer{Kind: kind, Addr: addr, cfg: c, exited: make(chan struct{})}
	switch kind {
	case HAProxy:
		b.Config = filepath.Join(dir, "haproxy.cfg")
		b.cmd = exec.Command(bin, "-db", "-f", b.Config)
	case Nginx:
		b.Config = filepath.Join(dir, "nginx.conf")
		b.cmd = exec.Command(bin, "-p", dir, "-c", b.Config)
	}
	if err := os.WriteFile(b.Config, []byte(text), 0o644); err != nil {
		return nil, err
	}
	if b.log, err = os.Create(filepath.Join(dir, kind+".log")); err != nil {
		return nil, err
	}
	b.cmd.Stdout, b.cmd.Stderr = b.log, b.log
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := b.cmd.Start(); err != nil {
		b.log.Close()
		return nil, fmt.Errorf("cluster: start %s: %w", kind, err)
	}
	go func() {
		b.err = b.cmd.Wait()
		b.log.Close()
		close(b.exited)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-b.exited:
			return nil, fmt.Errorf("cluster: %s exited at startup (%v): %s", kind, b.err, b.logTail())
		default:
		}
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return b, nil
		}
		if time.Now().After(deadline) {
			b.Close()
			return nil, fmt.Errorf("cluster: %s does not listen on %s after 20s: %s", kind, addr, b.logTail())
		}
		select {
		case <-ctx.Done():
			b.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (b *Balancer) logTail() string {
	data, _ := os.ReadFile(filepath.Join(b.cfg.Dir, b.Kind+".log"))
	if b.Kind == Nginx {
		e, _ := os.ReadFile(filepath.Join(b.cfg.Dir, "error.log"))
		data = append(data, e...)
	}
	if len(data) > 2000 {
		data = data[len(data)-2000:]
	}
	return strings.TrimSpace(string(data))
}

// Close stops the balancer (its tunnelled connections end with it).
func (b *Balancer) Close() error {
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.exited
	}
	return nil
}

// BackendState is the balancer's view of one backend.
type BackendState struct {
	Name string `json:"name"`
	// Status is HAProxy's: "UP", "DOWN", "UP 1/2" (going down), "DOWN 1/2"
	// (coming up), "MAINT"; "unknown" for nginx.
	Status string `json:"status"`
	// Current is the backend's open sessions (tunnelled WebSockets).
	Current int `json:"current"`
}

// Up reports whether the balancer sends new connections to the backend.
func (s BackendState) Up() bool { return strings.HasPrefix(s.Status, "UP") }

// Backends returns the balancer's backend states, from HAProxy's stats
// socket. nginx reports every backend as "unknown".
func (b *Balancer) Backends() ([]BackendState, error) {
	if b.Kind != HAProxy {
		out := make([]BackendState, len(b.cfg.Servers))
		for i, s := range b.cfg.Servers {
			out[i] = BackendState{Name: s.Name, Status: "unknown"}
		}
		return out, nil
	}
	conn, err := net.DialTimeout("unix", b.cfg.StatsSocket, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "show stat\n"); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(bufio.NewReader(conn))
	if err != nil {
		return nil, err
	}
	return parseStat(data)
}

// parseStat reads the backend servers of "show stat" (CSV, the header
// line starting with "# ").
func parseStat(data []byte) ([]BackendState, error) {
	data = bytes.TrimPrefix(bytes.TrimSpace(data), []byte("# "))
	r := csv.NewReader(bytes.NewReader(data))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("cluster: haproxy show stat: %w", err)
	}
	if len(rows) == 0 {
		return nil, errors.New("cluster: haproxy show stat: empty answer")
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[h] = i
	}
	for _, k := range []string{"pxname", "svname", "status", "scur"} {
		if _, ok := col[k]; !ok {
			return nil, fmt.Errorf("cluster: haproxy show stat: no %q column", k)
		}
	}
	var out []BackendState
	for _, row := range rows[1:] {
		if len(row) < len(rows[0])-1 || row[col["pxname"]] != "hearth_nodes" {
			continue
		}
		name := row[col["svname"]]
		if name == "BACKEND" || name == "FRONTEND" {
			continue
		}
		var cur int
		fmt.Sscan(row[col["scur"]], &cur)
		out = append(out, BackendState{Name: name, Status: row[col["status"]], Current: cur})
	}
	return out, nil
}

// WaitBackend waits until the named backend's Up is want, at most limit.
func (b *Balancer) WaitBackend(ctx context.Context, name string, want bool, limit time.Duration) error {
	if b.Kind != HAProxy {
		return nil // nginx: no view; it learns from failures
	}
	deadline := time.Now().Add(limit)
	for {
		states, err := b.Backends()
		if err == nil {
			for _, s := range states {
				if s.Name == name && s.Up() == want {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster: backend %s not up=%v after %v (states %v, err %v)", name, want, limit, states, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Ready asks a node's /readyz: true on 200.
func Ready(ctx context.Context, addr string) bool {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
	resp, err := readyClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

var readyClient = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// DocConfig is the example the documentation renders: three nodes on a
// private network, the balancer on port 80 (HAProxy) or 8080 (nginx).
func DocConfig(kind string) Config {
	c := Config{Servers: []Backend{{"n1", "10.0.1.10:4000"}, {"n2", "10.0.1.11:4000"}, {"n3", "10.0.1.12:4000"}}}
	c.Listen = ":80"
	if kind == Nginx {
		c.Listen = "8080"
	}
	return c
}
