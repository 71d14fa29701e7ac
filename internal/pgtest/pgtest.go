// Package pgtest finds or starts the PostgreSQL server that Hearth's tests
// run against, and gives each test its own schema or database.
//
// The server, in order of preference:
//
//  1. HEARTH_TEST_DATABASE_URL, when set (it must work);
//  2. postgres://postgres@127.0.0.1:5432/test?sslmode=disable, when something
//     answers there (no TLS on loopback: it only costs CPU);
//  3. a private cluster started in a temporary directory with initdb and
//     pg_ctl (from PATH or /usr/lib/postgresql/*/bin) on a free loopback
//     port, run as an unprivileged user when the tests run as root, and
//     stopped by [Shutdown].
//
// When none of these works the test fails with a message saying what was
// tried: a missing database never skips a test.
//
// Packages using it call [Shutdown] from TestMain after m.Run.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvURL names the environment variable that points the tests at a server.
const EnvURL = "HEARTH_TEST_DATABASE_URL"

// DefaultURL is tried when EnvURL is not set.
const DefaultURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

var shared struct {
	once    sync.Once
	url     string
	err     error
	cluster *Cluster
}

// URL returns the URL of the server tests use, finding or starting it on the
// first call. It fails t when there is none.
func URL(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() {
		shared.url, shared.cluster, shared.err = find()
	})
	if shared.err != nil {
		t.Fatalf("pgtest: no PostgreSQL for the tests: %v", shared.err)
	}
	return shared.url
}

// Shutdown stops the private cluster started by URL, if any. Call it from
// TestMain once the tests ran.
func Shutdown() {
	if c := shared.cluster; c != nil {
		_ = c.stop()
		_ = os.RemoveAll(c.Dir)
	}
}

func find() (string, *Cluster, error) {
	if u := os.Getenv(EnvURL); u != "" {
		if err := ping(u); err != nil {
			return "", nil, fmt.Errorf("%s=%s does not answer: %w", EnvURL, redact(u), err)
		}
		return u, nil, nil
	}
	errDefault := ping(DefaultURL)
	if errDefault == nil {
		return DefaultURL, nil, nil
	}
	c, err := startCluster()
	if err != nil {
		return "", nil, fmt.Errorf("%s unset; %s: %v; and no private cluster: %w (install PostgreSQL, or set %s)",
			EnvURL, DefaultURL, errDefault, err, EnvURL)
	}
	return c.URL, c, nil
}

func ping(u string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}

func redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return p.Redacted()
}

// randomName returns prefix followed by 12 random hex digits.
func randomName(prefix string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// Exec runs sql on the database at u.
func Exec(t testing.TB, u, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("pgtest: %s: %v", sql, err)
	}
}

// Schema returns the server's URL and the name of a schema no other test
// uses ("hearth_test_<random>"). The schema does not exist yet (Hearth
// creates its own); it is dropped, with everything in it, when the test
// ends.
func Schema(t testing.TB) (u, schema string) {
	t.Helper()
	u = URL(t)
	schema = randomName("hearth_test_")
	t.Cleanup(func() {
		Exec(t, u, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	})
	return u, schema
}

// Database creates an empty database for the test and returns its URL. It
// is dropped when the test ends.
func Database(t testing.TB) string {
	t.Helper()
	u := URL(t)
	name := randomName("hearth_test_")
	Exec(t, u, "CREATE DATABASE "+name)
	t.Cleanup(func() {
		Exec(t, u, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	p, err := url.Parse(u)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	p.Path = "/" + name
	return p.String()
}

// Cluster is a private PostgreSQL server in a temporary directory.
type Cluster struct {
	// URL reaches the cluster's "postgres" database as user postgres.
	URL string
	// Dir holds the data directory, the socket and the log.
	Dir  string
	Port int

	bin    string   // directory of initdb and pg_ctl
	asUser []string // command prefix that runs as the cluster's owner
}

// StartCluster starts a private cluster for this test, stopped and removed
// when the test ends. Use it for tests that stop or restart the server.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	c, err := startCluster()
	if err != nil {
		t.Fatalf("pgtest: cannot start a private PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := c.stop(); err != nil {
			t.Logf("pgtest: stopping the private cluster: %v", err)
		}
		os.RemoveAll(c.Dir)
	})
	return c
}

// Restart restarts the server (pg_ctl restart, fast mode): every session is
// disconnected, committed data stays. It may be called from any goroutine.
func (c *Cluster) Restart() error {
	if out, err := c.pgctl("restart", "-m", "fast"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl restart: %v\n%s\n%s", err, out, c.logTail())
	}
	return nil
}

// Stop stops the server.
func (c *Cluster) Stop() error { return c.stop() }

// Start starts a stopped server.
func (c *Cluster) Start() error {
	if out, err := c.pgctl("start"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl start: %v\n%s\n%s", err, out, c.logTail())
	}
	return nil
}

func (c *Cluster) stop() error {
	if out, err := c.pgctl("stop", "-m", "fast"); err != nil && !strings.Contains(string(out), "Is server running?") {
		return fmt.Errorf("pgtest: pg_ctl stop: %v: %s", err, out)
	}
	return nil
}

func (c *Cluster) pgctl(action string, args ...string) ([]byte, error) {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", c.Port, c.Dir)
	full := []string{filepath.Join(c.bin, "pg_ctl"), action, "-D", filepath.Join(c.Dir, "data"), "-w", "-t", "60"}
	if action != "stop" {
		full = append(full, "-l", filepath.Join(c.Dir, "log"), "-o", opts)
	}
	full = append(full, args...)
	return c.run(full...)
}

func (c *Cluster) run(args ...string) ([]byte, error) {
	args = append(append([]string(nil), c.asUser...), args...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = c.Dir
	return cmd.CombinedOutput()
}

func (c *Cluster) logTail() string {
	b, _ := os.ReadFile(filepath.Join(c.Dir, "log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// findBin returns the directory holding initdb and pg_ctl.
func findBin() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		dir := filepath.Dir(p)
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			dir = filepath.Dir(resolved)
		}
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err != nil {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("initdb and pg_ctl not found on PATH or under /usr/lib/postgresql/*/bin")
}

func versionOf(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// owner returns the command prefix that runs a command as an unprivileged
// user, and that user's ids; empty when not running as root.
func owner() (prefix []string, uid, gid int, err error) {
	if os.Geteuid() != 0 {
		return nil, -1, -1, nil
	}
	var runner []string
	if p, err := exec.LookPath("runuser"); err == nil {
		runner = []string{p, "-u"}
	} else if p, err := exec.LookPath("setpriv"); err == nil {
		runner = []string{p}
	} else {
		return nil, 0, 0, errors.New("running as root, and neither runuser nor setpriv is available to drop privileges")
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if len(runner) == 2 {
			return append(runner, name, "--"), uid, gid, nil
		}
		return append(runner, "--reuid="+u.Uid, "--regid="+u.Gid, "--clear-groups", "--"), uid, gid, nil
	}
	return nil, 0, 0, errors.New("running as root, and no unprivileged user (postgres, nobody) to run PostgreSQL as")
}

// privateDir makes a temporary directory owned by the user that owner
// runs commands as, and returns it with owner's command prefix.
func privateDir(pattern string) (dir string, asUser []string, err error) {
	prefix, uid, gid, err := owner()
	if err != nil {
		return "", nil, err
	}
	if dir, err = os.MkdirTemp("", pattern); err != nil {
		return "", nil, err
	}
	if uid >= 0 {
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return "", nil, err
		}
	}
	return dir, prefix, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startCluster() (*Cluster, error) {
	bin, err := findBin()
	if err != nil {
		return nil, err
	}
	dir, prefix, err := privateDir("hearth-pg-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	c := &Cluster{Dir: dir, Port: port, bin: bin, asUser: prefix,
		URL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)}
	if out, err := c.run(filepath.Join(bin, "initdb"), "-D", filepath.Join(dir, "data"), "-U", "postgres",
		"-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if out, err := c.pgctl("start"); err != nil {
		tail := c.logTail()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_ctl start: %v\n%s\n%s", err, out, tail)
	}
	if err := ping(c.URL); err != nil {
		c.stop()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("private cluster does not answer: %w", err)
	}
	return c, nil
}
