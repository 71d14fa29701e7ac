package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Target kinds.
const (
	TargetHearth   = "hearth"   // `hearth serve`, the demo app
	TargetGorilla  = "gorilla"  // bench/peers/gorilla, a textbook gorilla/websocket hub
	TargetSocketIO = "socketio" // bench/peers/socketio, Socket.IO 4 on Node
	// TargetLongPoll is `hearth serve` driven over long-poll
	// (/socket/longpoll) by load clients speaking phoenix.js's LongPoll
	// wire (pollconn.go).
	TargetLongPoll = "hearth-longpoll"
	// TargetSocketIOPolling is the Socket.IO peer (serving websocket and
	// polling) driven by load clients with transports: ["polling"]:
	// Engine.IO v4's HTTP long-polling (pollconn.go).
	TargetSocketIOPolling = "socketio-polling"
)

// TargetOptions says how to start the servers under test.
type TargetOptions struct {
	Kind string
	// HearthBin is the hearth binary. Empty means build ./cmd/hearth from
	// RepoDir.
	HearthBin string
	// GorillaBin is the gorilla peer binary. Empty means build it from RepoDir.
	GorillaBin string
	// Node is the node binary for the Socket.IO peer. Empty means "node".
	Node string
	// RepoDir is the Hearth source tree (peers and builds). Empty means
	// found from the working directory upwards.
	RepoDir string
	// DatabaseURL makes the servers a cluster through Postgres.
	DatabaseURL string
	// Args are extra arguments for every server process.
	Args []string
	// LogDir receives each server process's output. Empty discards it.
	LogDir string
	// Epoch is the run's time zero for the /proc samples.
	Epoch time.Time
	// DrainWindow is the hearth servers' --drain-window; zero keeps theirs.
	DrainWindow time.Duration
	// Wrap is a command prefix for hearth servers, e.g. "ip netns exec NS"
	// (the chaos partition runs a node in a network namespace).
	Wrap []string
}

// Target starts and stops server processes of one kind.
type Target struct {
	opts  TargetOptions
	bin   string
	flags map[string]bool // hearth: the flags `serve` accepts
	mu    sync.Mutex
	seq   int
}

// Proto returns the load-client protocol the target speaks.
func (t *Target) Proto() string {
	if isSocketIO(t.opts.Kind) {
		return ProtoSocketIO
	}
	return ProtoPhoenix
}

// Transport returns the transport the target's subscribers use.
func (t *Target) Transport() string { return transportOf(t.opts.Kind) }

func transportOf(kind string) string {
	if kind == TargetLongPoll || kind == TargetSocketIOPolling {
		return TransportPolling
	}
	return TransportWebSocket
}

func isSocketIO(kind string) bool { return kind == TargetSocketIO || kind == TargetSocketIOPolling }

// Kind returns the target kind.
func (t *Target) Kind() string { return t.opts.Kind }

// NewTarget prepares a target: finds or builds its binary and checks its
// dependencies, so a scenario fails before it starts anything.
func NewTarget(ctx context.Context, opts TargetOptions) (*Target, error) {
	t := &Target{opts: opts}
	if opts.Epoch.IsZero() {
		t.opts.Epoch = time.Now()
	}
	switch opts.Kind {
	case TargetHearth, TargetLongPoll:
		t.bin = opts.HearthBin
		if t.bin == "" {
			b, err := buildGo(ctx, opts.RepoDir, "./cmd/hearth", "hearth")
			if err != nil {
				return nil, err
			}
			t.bin = b
		}
	case TargetGorilla:
		if opts.DatabaseURL != "" {
			return nil, errors.New("bench: the gorilla peer is a single-node hub: it has no cluster mode")
		}
		t.bin = opts.GorillaBin
		if t.bin == "" {
			b, err := buildGo(ctx, opts.RepoDir, "./bench/peers/gorilla", "hearth-bench-gorilla")
			if err != nil {
				return nil, err
			}
			t.bin = b
		}
	case TargetSocketIO, TargetSocketIOPolling:
		dir, err := repoDir(opts.RepoDir)
		if err != nil {
			return nil, err
		}
		peer := filepath.Join(dir, "bench", "peers", "socketio")
		if _, err := os.Stat(filepath.Join(peer, "node_modules", "socket.io")); err != nil {
			return nil, fmt.Errorf("bench: the Socket.IO peer is not installed: run `npm ci --prefix %s`", peer)
		}
		t.bin = filepath.Join(peer, "server.js")
		if t.opts.Node == "" {
			t.opts.Node = "node"
		}
		if _, err := exec.LookPath(t.opts.Node); err != nil {
			return nil, fmt.Errorf("bench: the Socket.IO peer needs Node.js: %w", err)
		}
	default:
		return nil, fmt.Errorf("bench: unknown target %q (want hearth, hearth-longpoll, gorilla, socketio or socketio-polling)", opts.Kind)
	}
	if opts.Kind == TargetHearth || opts.Kind == TargetLongPoll {
		// Learn which flags this hearth binary's serve has.
		out, _ := exec.CommandContext(ctx, t.bin, "serve", "-h").CombinedOutput()
		t.flags = map[string]bool{}
		for _, line := range strings.Split(string(out), "\n") {
			line = strings.TrimSpace(line)
			if name, ok := strings.CutPrefix(line, "-"); ok {
				name, _, _ = strings.Cut(name, " ")
				t.flags[strings.TrimPrefix(name, "-")] = true
			}
		}
		if !t.flags["addr"] {
			return nil, fmt.Errorf("bench: %s does not look like a hearth binary (`serve -h` lists no --addr)", t.bin)
		}
		if opts.DatabaseURL != "" && !t.flags["database-url"] {
			return nil, errors.New("bench: this hearth binary's `serve` has no --database-url flag (needed for clusters through Postgres); build one that has it")
		}
		if opts.DrainWindow > 0 && !t.flags["drain-window"] {
			return nil, errors.New("bench: this hearth binary's `serve` has no --drain-window flag")
		}
	}
	return t, nil
}

// repoDir finds the Hearth source tree.
func repoDir(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.Contains(string(b), "module github.com/hearth-rt/hearth\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("bench: not inside the Hearth source tree (use --repo DIR)")
		}
	}
}

// buildGo builds a main package of the repository into the user cache.
func buildGo(ctx context.Context, dir, pkg, name string) (string, error) {
	root, err := repoDir(dir)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out := filepath.Join(cache, "hearth-bench", name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: go build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// FreeAddr returns a loopback address with a port free right now.
func FreeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Server is one running server process.
type Server struct {
	Addr string
	// DebugAddr serves pprof and memory figures when the server has a
	// separate debug listener (hearth serve --pprof); empty otherwise.
	DebugAddr string
	Node      int

	t       *Target
	cmd     *exec.Cmd
	exited  chan struct{}
	err     error
	samp    *sampler
	log     io.Closer
	logPath string
}

// logTail returns the end of the server's log for an error message.
func (s *Server) logTail() string {
	if s.logPath == "" {
		return ""
	}
	b, err := os.ReadFile(s.logPath)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return "; its log (" + s.logPath + ") ends:\n" + strings.TrimSpace(string(b))
}

// PID returns the process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Start starts server process number node on addr and waits until it
// answers /healthz.
func (t *Target) Start(ctx context.Context, node int, addr string) (*Server, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	var debugAddr string
	switch t.opts.Kind {
	case TargetHearth, TargetLongPoll:
		// Always say which broker: serve falls back to $DATABASE_URL.
		args := []string{"serve", "--addr", addr, "--log-level", "warn", "--database-url=" + t.opts.DatabaseURL}
		if t.flags["pprof"] {
			if debugAddr, err = FreeAddr(); err != nil {
				return nil, err
			}
			args = append(args, "--pprof", debugAddr)
		}
		if t.opts.DrainWindow > 0 {
			args = append(args, "--drain-window", t.opts.DrainWindow.String())
		}
		args = append(args, t.opts.Args...)
		if w := t.opts.Wrap; len(w) > 0 {
			cmd = exec.Command(w[0], append(append(w[1:len(w):len(w)], t.bin), args...)...)
		} else {
			cmd = exec.Command(t.bin, args...)
		}
	case TargetGorilla:
		cmd = exec.Command(t.bin, append([]string{"--addr", addr}, t.opts.Args...)...)
	case TargetSocketIO, TargetSocketIOPolling:
		args := []string{"--expose-gc", t.bin, "--host", host, "--port", port}
		if t.opts.DatabaseURL != "" {
			args = append(args, "--database-url", t.opts.DatabaseURL)
		}
		if t.opts.Kind == TargetSocketIOPolling {
			// Publishers stay on WebSockets; subscribers poll.
			args = append(args, "--transports", "websocket,polling")
		}
		cmd = exec.Command(t.opts.Node, append(args, t.opts.Args...)...)
	}
	cmd.SysProcAttr = childAttr()
	t.mu.Lock()
	t.seq++
	seq := t.seq
	t.mu.Unlock()
	s := &Server{Addr: addr, DebugAddr: debugAddr, Node: node, t: t, cmd: cmd, exited: make(chan struct{})}
	if t.opts.LogDir != "" {
		s.logPath = filepath.Join(t.opts.LogDir, fmt.Sprintf("server-%s-node%d-%d.log", t.opts.Kind, node, seq))
		f, err := os.Create(s.logPath)
		if err != nil {
			return nil, err
		}
		cmd.Stdout, cmd.Stderr, s.log = f, f, f
	}
	if err := cmd.Start(); err != nil {
		if s.log != nil {
			s.log.Close()
		}
		return nil, fmt.Errorf("bench: start %s server: %w", t.opts.Kind, err)
	}
	go func() {
		s.err = cmd.Wait()
		if s.log != nil {
			s.log.Close()
		}
		close(s.exited)
	}()
	s.samp = startSampler(s.PID(), t.opts.Epoch, 250*time.Millisecond)
	if err := s.waitReady(ctx, 30*time.Second); err != nil {
		s.Kill()
		return nil, err
	}
	return s, nil
}

func (s *Server) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("bench: %s server on %s exited during startup (%v)%s", s.t.opts.Kind, s.Addr, s.err, s.logTail())
		default:
		}
		resp, err := client.Get("http://" + s.Addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s server on %s not ready after %v", s.t.opts.Kind, s.Addr, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL and waits for the process to go.
func (s *Server) Kill() {
	_ = s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
	s.samp.close()
}

// Terminate sends SIGTERM and waits up to limit for a graceful exit, then
// kills. It reports whether the exit was graceful.
func (s *Server) Terminate(limit time.Duration) bool {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		s.samp.close()
		return true
	case <-time.After(limit):
		s.Kill()
		return false
	}
}

// Exited reports whether the process has ended (for crash detection).
func (s *Server) Exited() bool {
	select {
	case <-s.exited:
		return true
	default:
		return false
	}
}

// Usage returns the process's CPU and RSS samples and peaks so far.
func (s *Server) Usage() (samples []ProcSample, peakCPU, peakRSSMiB float64) {
	return s.samp.snapshot()
}

// RSS returns the current resident set in bytes.
func (s *Server) RSS() (int64, error) {
	_, rss, err := procUsage(s.PID())
	return rss, err
}

// Heap asks the server for its heap after a collection, in bytes: hearth
// through its --pprof listener's /debug/mem (heap in use plus goroutine
// stacks), other Go servers through net/http/pprof (the same figures),
// the Socket.IO peer through /debug/mem (V8 heap used). It returns an
// error when the server exposes neither.
func (s *Server) Heap(ctx context.Context) (int64, error) {
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	base := s.Addr
	if s.DebugAddr != "" {
		base = s.DebugAddr
	}
	get := func(path string) ([]byte, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+base+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("bench: GET %s: HTTP %d", path, resp.StatusCode)
		}
		return io.ReadAll(resp.Body)
	}
	if isSocketIO(s.t.opts.Kind) {
		b, err := get("/debug/mem")
		if err != nil {
			return 0, err
		}
		var m struct {
			HeapUsed int64 `json:"heapUsed"`
			External int64 `json:"external"`
		}
		if err := json.Unmarshal(b, &m); err != nil {
			return 0, err
		}
		return m.HeapUsed + m.External, nil
	}
	if s.DebugAddr != "" {
		// hearth serve --pprof: runtime/metrics figures after a collection.
		if b, err := get("/debug/mem?gc=1"); err == nil {
			var m struct {
				HeapAndStacks int64 `json:"heap_and_stacks"`
			}
			if json.Unmarshal(b, &m) == nil && m.HeapAndStacks > 0 {
				return m.HeapAndStacks, nil
			}
		}
	}
	// gc=1 collects first; debug=1 appends runtime.MemStats as comments.
	b, err := get("/debug/pprof/heap?gc=1&debug=1")
	if err != nil {
		return 0, fmt.Errorf("bench: the server exposes no heap figures (net/http/pprof at /debug/pprof/): %w", err)
	}
	var heap, stack int64
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "# HeapInuse = "); ok {
			heap, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "# Stack = "); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				stack, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	if heap == 0 {
		return 0, errors.New("bench: no HeapInuse in the heap profile")
	}
	return heap + stack, nil
}
