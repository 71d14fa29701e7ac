//go:build unix

package pgtest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// EnvRequirePgBouncer, when set to anything, makes [Bouncer] fail the test
// instead of skipping it when PgBouncer is not installed. CI sets it.
const EnvRequirePgBouncer = "HEARTH_TEST_REQUIRE_PGBOUNCER"

// Bouncer starts a private PgBouncer in transaction mode in front of the
// server that upstream (a URL from [URL], [Schema] or [Database]) reaches,
// and returns upstream's URL with the host and port changed to
// PgBouncer's. Each database is pooled on two server connections, so
// concurrent clients share sessions as they do in production. PgBouncer
// runs as an unprivileged user when the tests run as root, and is killed
// when the test ends.
//
// Without a pgbouncer binary (on PATH or /usr/sbin) the test is skipped
// with a message saying so, unless HEARTH_TEST_REQUIRE_PGBOUNCER is set:
// then it fails.
func Bouncer(t testing.TB, upstream string) string {
	t.Helper()
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/pgbouncer"); serr == nil {
			bin, err = "/usr/sbin/pgbouncer", nil
		}
	}
	if err != nil {
		msg := "pgtest: pgbouncer is not installed (apt-get install pgbouncer)"
		if os.Getenv(EnvRequirePgBouncer) != "" {
			t.Fatalf("%s, and %s is set", msg, EnvRequirePgBouncer)
		}
		t.Skipf("%s; set %s to make this a failure, as CI does", msg, EnvRequirePgBouncer)
	}
	u, err := url.Parse(upstream)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	bu, err := startBouncer(bin, u)
	if err != nil {
		t.Fatalf("pgtest: cannot start PgBouncer: %v", err)
	}
	t.Cleanup(bu.stop)
	out := *u
	out.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(bu.port))
	return out.String()
}

type bouncer struct {
	dir    string
	port   int
	cmd    *exec.Cmd
	exited chan error
}

func startBouncer(bin string, upstream *url.URL) (*bouncer, error) {
	dir, prefix, err := privateDir("hearth-pgbouncer-")
	if err != nil {
		return nil, err
	}
	b := &bouncer{dir: dir}
	fail := func(err error) (*bouncer, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	if b.port, err = freePort(); err != nil {
		return fail(err)
	}
	host, port := upstream.Hostname(), upstream.Port()
	if port == "" {
		port = "5432"
	}
	user := upstream.User.Username()
	if user == "" {
		user = "postgres"
	}
	server := fmt.Sprintf("host=%s port=%s user=%s", host, port, user)
	if pw, ok := upstream.User.Password(); ok {
		server += " password=" + pw
	}
	conf := strings.Join([]string{
		"[databases]",
		"* = " + server,
		"[pgbouncer]",
		"listen_addr = 127.0.0.1",
		"listen_port = " + strconv.Itoa(b.port),
		"unix_socket_dir =",
		"pool_mode = transaction",
		"default_pool_size = 2",
		"max_client_conn = 500",
		"auth_type = trust",
		"auth_file = " + filepath.Join(dir, "users.txt"),
		"logfile = " + filepath.Join(dir, "log"),
		"",
	}, "\n")
	users := fmt.Sprintf("%q \"\"\n", user)
	for name, data := range map[string]string{"pgbouncer.ini": conf, "users.txt": users} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			return fail(err)
		}
	}
	args := append(append([]string(nil), prefix...), bin, filepath.Join(dir, "pgbouncer.ini"))
	b.cmd = exec.Command(args[0], args[1:]...)
	b.cmd.Dir = dir
	b.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // runuser forks: kill the group
	if err := b.cmd.Start(); err != nil {
		return fail(err)
	}
	b.exited = make(chan error, 1)
	go func() { b.exited <- b.cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(b.port)), time.Second)
		if err == nil {
			c.Close()
			return b, nil
		}
		select {
		case werr := <-b.exited:
			tail := b.logTail()
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgbouncer exited: %v\n%s", werr, tail)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tail := b.logTail()
			b.stop()
			return nil, errors.Join(fmt.Errorf("pgbouncer does not accept on port %d after 15 s", b.port), errors.New(tail))
		}
	}
}

func (b *bouncer) stop() {
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-b.exited:
	case <-time.After(10 * time.Second):
	}
	os.RemoveAll(b.dir)
}

func (b *bouncer) logTail() string {
	data, _ := os.ReadFile(filepath.Join(b.dir, "log"))
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}
