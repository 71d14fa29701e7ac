package postgres_test

import (
	"context"
	"log"
	"log/slog"
	"os"

	"github.com/hearth-rt/hearth/pubsub/postgres"
)

// A node of a cluster: give the broker to channels.New.
func ExampleNew() {
	ctx := context.Background()
	b, err := postgres.New(ctx, postgres.Options{
		URL:    os.Getenv("DATABASE_URL"),
		Name:   "web-1",
		Logger: slog.Default(),
		OnStateChange: func(s postgres.State) {
			slog.Info("cluster listener", "state", s)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	// node := channels.New(channels.Options{Broker: b})
	// ...
	// Readiness: b.State() == postgres.StateHealthy
}

// Broadcasting from a worker that is not a Hearth node.
func ExampleEmitter() {
	ctx := context.Background()
	e, err := postgres.NewEmitter(ctx, postgres.Options{URL: os.Getenv("DATABASE_URL")})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	pos, err := e.Emit(ctx, "room:42", "new_msg", map[string]string{"body": "the build is green"})
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("broadcast at %v", pos)
}

// A node of a cluster whose topics are spread over three databases. Every
// node (and Emitter) is given the same databases, in any order; each
// database carries about a third of the topics.
func ExampleNew_severalDatabases() {
	ctx := context.Background()
	b, err := postgres.New(ctx, postgres.Options{
		URLs: []string{
			"postgres://hearth@db1/app",
			"postgres://hearth@db2/app",
			// Each URL may name a primary and its standbys.
			"postgres://hearth@db3a,db3b/app?target_session_attrs=read-write",
		},
		Name: "web-1",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	id, i := b.Database("room:42")
	log.Printf("room:42 lives on database %d (%s)", i, id)
	for _, d := range b.Stats().Databases {
		log.Printf("database %s: %d published, listener %v", d.Database, d.Published, d.State)
	}
}
