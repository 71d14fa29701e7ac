package pgtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// StartStandby makes a streaming standby of primary (a [Cluster] from
// [StartCluster]) with pg_basebackup -R, starts it on its own port, and
// stops and removes it when the test ends. With synchronous set, the
// primary waits for the standby at every commit (synchronous_standby_names
// = '*'), so an acknowledged commit survives a failover; otherwise
// replication is asynchronous.
func StartStandby(t testing.TB, primary *Cluster, synchronous bool) *Cluster {
	t.Helper()
	s, err := startStandby(primary, synchronous)
	if err != nil {
		t.Fatalf("pgtest: cannot start a standby: %v", err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Logf("pgtest: stopping the standby: %v", err)
		}
		os.RemoveAll(s.Dir)
	})
	return s
}

func startStandby(primary *Cluster, synchronous bool) (*Cluster, error) {
	dir, prefix, err := privateDir("hearth-pg-standby-")
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s := &Cluster{Dir: dir, Port: port, bin: primary.bin, asUser: prefix,
		URL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)}
	if out, err := s.run(filepath.Join(s.bin, "pg_basebackup"), "-h", "127.0.0.1", "-p", fmt.Sprint(primary.Port), "-U", "postgres",
		"-D", filepath.Join(dir, "data"), "-R", "-X", "stream", "--no-sync", "-c", "fast"); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_basebackup: %v\n%s", err, out)
	}
	if out, err := s.pgctl("start"); err != nil {
		tail := s.logTail()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pg_ctl start (standby): %v\n%s\n%s", err, out, tail)
	}
	if err := ping(s.URL); err != nil {
		s.stop()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("the standby does not answer: %w", err)
	}
	if synchronous {
		for _, q := range []string{"ALTER SYSTEM SET synchronous_standby_names = '*'", "SELECT pg_reload_conf()"} {
			if err := execURL(primary.URL, q); err != nil {
				s.stop()
				os.RemoveAll(dir)
				return nil, err
			}
		}
	}
	return s, nil
}

// Promote makes a standby the primary (pg_ctl promote, waiting until it
// accepts writes): it moves to a new timeline.
func (c *Cluster) Promote() error {
	if out, err := c.run(filepath.Join(c.bin, "pg_ctl"), "promote", "-D", filepath.Join(c.Dir, "data"), "-w", "-t", "60"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl promote: %v\n%s\n%s", err, out, c.logTail())
	}
	return nil
}

// Crash stops the server at once, as a crash does (pg_ctl stop -m
// immediate): no shutdown checkpoint, sessions cut.
func (c *Cluster) Crash() error {
	if out, err := c.run(filepath.Join(c.bin, "pg_ctl"), "stop", "-D", filepath.Join(c.Dir, "data"), "-m", "immediate", "-w"); err != nil {
		return fmt.Errorf("pgtest: pg_ctl stop -m immediate: %v\n%s", err, out)
	}
	return nil
}

func execURL(u, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}
