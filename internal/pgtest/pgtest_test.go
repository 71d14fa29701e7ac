package pgtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	code := m.Run()
	Shutdown()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

func query(t *testing.T, u, sql string, dst ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if err := conn.QueryRow(ctx, sql).Scan(dst...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func TestSchemaIsFreshAndDropped(t *testing.T) {
	var u, schema string
	t.Run("use", func(t *testing.T) {
		u, schema = Schema(t)
		Exec(t, u, "CREATE SCHEMA "+schema)
		Exec(t, u, "CREATE TABLE "+schema+".x (id int)")
	})
	var n int
	query(t, u, "SELECT count(*) FROM pg_namespace WHERE nspname = '"+schema+"'", &n)
	if n != 0 {
		t.Fatalf("schema %s still exists after its test", schema)
	}
}

func TestDatabase(t *testing.T) {
	var name string
	t.Run("use", func(t *testing.T) {
		u := Database(t)
		query(t, u, "SELECT current_database()", &name)
	})
	var n int
	query(t, URL(t), "SELECT count(*) FROM pg_database WHERE datname = '"+name+"'", &n)
	if n != 0 {
		t.Fatalf("database %s still exists after its test", name)
	}
}

func TestPrivateClusterRestart(t *testing.T) {
	c := StartCluster(t)
	Exec(t, c.URL, "CREATE TABLE kept (v int)")
	Exec(t, c.URL, "INSERT INTO kept VALUES (42)")
	var pid1, pid2 int
	query(t, c.URL, "SELECT pg_postmaster_start_time()::text <> '', pg_backend_pid()", new(bool), &pid1)
	var start1, start2 time.Time
	query(t, c.URL, "SELECT pg_postmaster_start_time()", &start1)
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	query(t, c.URL, "SELECT pg_postmaster_start_time(), pg_backend_pid()", &start2, &pid2)
	if !start2.After(start1) {
		t.Fatalf("server start time %v not after %v: not restarted", start2, start1)
	}
	var v int
	query(t, c.URL, "SELECT v FROM kept", &v)
	if v != 42 {
		t.Fatalf("kept = %d after restart", v)
	}
}
