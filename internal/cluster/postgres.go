package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Postgres is a private PostgreSQL server the harness made (initdb, or
// pg_basebackup from a primary), in a temporary directory on a free
// loopback port, run as an unprivileged user when the harness is root.
type Postgres struct {
	Port int
	Dir  string
	bin  string
	as   []string
	// settings are extra "name=value" server settings (-c), after the
	// harness's own: a later one wins.
	settings []string
}

// URL is the server's own URL (database postgres, user postgres).
func (p *Postgres) URL() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", p.Port)
}

// FailoverURL is the multi-host URL the nodes use: libpq/pgx try the
// hosts in order and keep the one that accepts writes.
func FailoverURL(servers ...*Postgres) string {
	var hosts []string
	for _, s := range servers {
		hosts = append(hosts, fmt.Sprintf("127.0.0.1:%d", s.Port))
	}
	return "postgres://postgres@" + strings.Join(hosts, ",") + "/postgres?sslmode=disable&target_session_attrs=read-write&connect_timeout=3"
}

// StartPrimary initdbs and starts a server that accepts streaming
// replication from loopback.
func StartPrimary() (*Postgres, error) { return StartPrimaryWith() }

// StartPrimaryWith is StartPrimary with extra server settings, each
// "name=value" (passed as -c name=value after the harness's own, such as
// max_connections=300, which they may override).
func StartPrimaryWith(settings ...string) (*Postgres, error) {
	p, err := newPostgres("hearth-primary-")
	if err != nil {
		return nil, err
	}
	p.settings = settings
	if out, err := p.run(filepath.Join(p.bin, "initdb"), "-D", p.data(), "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"); err != nil {
		p.Remove()
		return nil, fmt.Errorf("cluster: initdb: %v\n%s", err, out)
	}
	return p, p.Start()
}

// StartStandby makes a streaming standby of primary (pg_basebackup -R)
// and starts it. With synchronous set, the primary then waits for it at
// every commit (synchronous_standby_names = '*').
func StartStandby(primary *Postgres, synchronous bool) (*Postgres, error) {
	s, err := newPostgres("hearth-standby-")
	if err != nil {
		return nil, err
	}
	if out, err := s.run(filepath.Join(s.bin, "pg_basebackup"), "-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port), "-U", "postgres",
		"-D", s.data(), "-R", "-X", "stream", "--no-sync", "-c", "fast"); err != nil {
		s.Remove()
		return nil, fmt.Errorf("cluster: pg_basebackup: %v\n%s", err, out)
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	if synchronous {
		if out, err := primary.run(filepath.Join(primary.bin, "psql"), "-h", "127.0.0.1", "-p", strconv.Itoa(primary.Port), "-U", "postgres", "-d", "postgres",
			"-c", "ALTER SYSTEM SET synchronous_standby_names = '*'", "-c", "SELECT pg_reload_conf()"); err != nil {
			s.Remove()
			return nil, fmt.Errorf("cluster: configuring synchronous replication: %v\n%s", err, out)
		}
	}
	return s, nil
}

// Start starts the server and waits until it accepts connections.
func (p *Postgres) Start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300", p.Port, p.Dir)
	for _, s := range p.settings {
		opts += " -c " + s
	}
	if out, err := p.run(filepath.Join(p.bin, "pg_ctl"), "start", "-D", p.data(), "-w", "-t", "60", "-l", filepath.Join(p.Dir, "log"), "-o", opts); err != nil {
		tail, _ := os.ReadFile(filepath.Join(p.Dir, "log"))
		p.Remove()
		return fmt.Errorf("cluster: pg_ctl start: %v\n%s\n%s", err, out, tail)
	}
	return nil
}

// Crash stops the server at once (pg_ctl stop -m immediate): what a crash
// or a lost machine does to its sessions.
func (p *Postgres) Crash() error {
	if out, err := p.run(filepath.Join(p.bin, "pg_ctl"), "stop", "-D", p.data(), "-m", "immediate", "-w"); err != nil {
		return fmt.Errorf("cluster: pg_ctl stop -m immediate: %v\n%s", err, out)
	}
	return nil
}

// Promote makes a standby the primary, on a new timeline.
func (p *Postgres) Promote() error {
	if out, err := p.run(filepath.Join(p.bin, "pg_ctl"), "promote", "-D", p.data(), "-w", "-t", "60"); err != nil {
		return fmt.Errorf("cluster: pg_ctl promote: %v\n%s", err, out)
	}
	return nil
}

// Remove stops the server (if running) and deletes its directory.
func (p *Postgres) Remove() {
	_, _ = p.run(filepath.Join(p.bin, "pg_ctl"), "stop", "-D", p.data(), "-m", "immediate", "-w")
	os.RemoveAll(p.Dir)
}

// PID returns the postmaster's process id (the first line of
// postmaster.pid): its backends are its children.
func (p *Postgres) PID() (int, error) {
	b, err := os.ReadFile(filepath.Join(p.data(), "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}

func (p *Postgres) data() string { return filepath.Join(p.Dir, "data") }

func (p *Postgres) run(args ...string) ([]byte, error) {
	args = append(append([]string(nil), p.as...), args...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = p.Dir
	return cmd.CombinedOutput()
}

func newPostgres(pattern string) (*Postgres, error) {
	bin, err := pgBin()
	if err != nil {
		return nil, err
	}
	var as []string
	uid, gid := -1, -1
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			return nil, errors.New("cluster: running as root, and there is no postgres user to run PostgreSQL as")
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		r, err := exec.LookPath("runuser")
		if err != nil {
			return nil, errors.New("cluster: running as root without runuser to drop privileges")
		}
		as = []string{r, "-u", "postgres", "--"}
	}
	dir, err := os.MkdirTemp("", pattern)
	if err != nil {
		return nil, err
	}
	if uid >= 0 {
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return &Postgres{Port: port, Dir: dir, bin: bin, as: as}, nil
}

// pgBin finds the newest PostgreSQL server binaries.
func pgBin() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "initdb")); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return ver(dirs[i]) > ver(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_basebackup")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("cluster: initdb, pg_ctl and pg_basebackup not found on PATH or under /usr/lib/postgresql/*/bin (apt-get install postgresql)")
}

func ver(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

// Psql runs one SQL command with psql against url and returns its
// unaligned, tuples-only output (fields separated by "|").
func Psql(url, sql string) (string, error) {
	bin, err := pgBin()
	if err != nil {
		return "", err
	}
	out, err := exec.Command(filepath.Join(bin, "psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("cluster: psql: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
