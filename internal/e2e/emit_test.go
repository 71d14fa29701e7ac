package e2e

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub/postgres"
)

// TestEmitFromOutside: the Go emitter, the SQL function called from a
// trigger, and `hearth emit` all reach WebSocket clients of the cluster.
func TestEmitFromOutside(t *testing.T) {
	u, schema := pgtest.Schema(t)
	n := startNode(t, u, schema, "n1")
	c := dial(t, n, "watcher")
	c.join("room:ops", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	expect := func(wantEvent string, check func(json.RawMessage) bool) {
		t.Helper()
		_, event, payload := c.next()
		if event != wantEvent || !check(payload) {
			t.Fatalf("want %s, got %s %s", wantEvent, event, payload)
		}
	}

	// 1. The Go emitter: any service with the database URL.
	e, err := postgres.NewEmitter(ctx, postgres.Options{URL: u, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if _, err := e.Emit(ctx, "room:ops", "deploy", map[string]string{"version": "1.2.3"}); err != nil {
		t.Fatal(err)
	}
	expect("deploy", func(p json.RawMessage) bool { return string(p) == `{"version":"1.2.3"}` })

	// 2. SQL, from a trigger.
	q := pgx.Identifier{schema}.Sanitize()
	pgtest.Exec(t, u, `CREATE TABLE `+q+`.orders (id int PRIMARY KEY, total numeric)`)
	pgtest.Exec(t, u, `CREATE FUNCTION `+q+`.orders_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM `+q+`.hearth_broadcast('room:ops', 'order_created', to_jsonb(NEW));
  RETURN NEW;
END $$`)
	pgtest.Exec(t, u, `CREATE TRIGGER orders_notify AFTER INSERT ON `+q+`.orders FOR EACH ROW EXECUTE FUNCTION `+q+`.orders_notify()`)
	pgtest.Exec(t, u, `INSERT INTO `+q+`.orders VALUES (42, 9.5)`)
	expect("order_created", func(p json.RawMessage) bool {
		var o struct {
			ID    int     `json:"id"`
			Total float64 `json:"total"`
		}
		return json.Unmarshal(p, &o) == nil && o.ID == 42 && o.Total == 9.5
	})

	// 3. The CLI.
	bin := buildHearth(t)
	out, err := exec.CommandContext(ctx, bin, "emit", "--database-url", u, "--schema", schema, "room:ops", "cli", `{"from":"shell"}`).CombinedOutput()
	if err != nil {
		t.Fatalf("hearth emit: %v\n%s", err, out)
	}
	expect("cli", func(p json.RawMessage) bool { return string(p) == `{"from":"shell"}` })
}

// buildHearth builds cmd/hearth once into the test's temp dir.
func buildHearth(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	bin := filepath.Join(t.TempDir(), "hearth")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/hearth")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/hearth: %v\n%s", err, out)
	}
	return bin
}
