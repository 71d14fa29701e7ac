package main

import (
	"context"
	"flag"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
)

func TestSplitDatabaseURLs(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"postgres://a/db", []string{"postgres://a/db"}},
		{"host=a dbname=x user=y", []string{"host=a dbname=x user=y"}},
		{"postgres://h1:5432,h2:5432/db?target_session_attrs=read-write", []string{"postgres://h1:5432,h2:5432/db?target_session_attrs=read-write"}},
		{"postgres://a/db postgres://b/db", []string{"postgres://a/db", "postgres://b/db"}},
		{" postgres://a/db\n\tpostgresql://b/db ", []string{"postgres://a/db", "postgresql://b/db"}},
		{"postgres://a/db,postgres://b/db,POSTGRESQL://c/db", []string{"postgres://a/db", "postgres://b/db", "POSTGRESQL://c/db"}},
		{"postgres://h1,h2/db,postgres://h3,h4/db", []string{"postgres://h1,h2/db", "postgres://h3,h4/db"}},
		{"postgres://a/db?options=-c%20x,postgres://b/db", []string{"postgres://a/db?options=-c%20x", "postgres://b/db"}},
	} {
		if got := splitDatabaseURLs(c.in); !slices.Equal(got, c.want) {
			t.Errorf("splitDatabaseURLs(%q) = %q, want %q", c.in, got, c.want)
		}
	}

	// --database-url may be repeated.
	var v string
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.Var(joinFlag{&v}, "database-url", "")
	if err := fs.Parse([]string{"--database-url", "postgres://a/db", "--database-url=postgres://b1,b2/db,postgres://c/db"}); err != nil {
		t.Fatal(err)
	}
	if got := splitDatabaseURLs(v); !slices.Equal(got, []string{"postgres://a/db", "postgres://b1,b2/db", "postgres://c/db"}) {
		t.Errorf("repeated --database-url: %q", got)
	}
}

// TestServeSeveralDatabases: the broker of `hearth serve` with two
// database URLs in --database-url spreads topics over both.
func TestServeSeveralDatabases(t *testing.T) {
	t.Parallel()
	a, b := pgtest.Database(t), pgtest.Database(t)
	pg, err := openBroker(serveConfig{dbURL: a + "," + b}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := 0; i < 40; i++ {
		if _, err := pg.Publish(ctx, pubsub.Message{Topic: "room:" + string(rune('a'+i)), Event: "e", Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	st := pg.Stats()
	if len(st.Databases) != 2 || st.Databases[0].Published == 0 || st.Databases[1].Published == 0 || st.Published != 40 {
		t.Fatalf("stats: %d databases, published %d (%+v)", len(st.Databases), st.Published, st.Databases)
	}
	if _, err := openBroker(serveConfig{dbURL: a + " " + b, listenURL: a}, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("one --listen-url for two databases was accepted")
	}
}
