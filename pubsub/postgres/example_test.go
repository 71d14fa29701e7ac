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
