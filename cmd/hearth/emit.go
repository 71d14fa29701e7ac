package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hearth-rt/hearth/pubsub"
	"github.com/hearth-rt/hearth/pubsub/postgres"
)

func init() {
	register("emit", "broadcast from outside through Postgres", func(args []string) error {
		return runEmit(args, os.Stdin, os.Stdout)
	})
}

const emitUsage = `usage: hearth emit [flags] TOPIC EVENT PAYLOAD

Broadcasts EVENT with PAYLOAD (JSON text; "-" reads it from standard input)
on TOPIC to every subscriber on every node of the Hearth cluster that uses
the database. Prints the message's position as "epoch:offset".

flags:
`

// runEmit is "hearth emit".
func runEmit(args []string, stdin io.Reader, stdout io.Writer) error {
	fs := flag.NewFlagSet("emit", flag.ContinueOnError)
	// Not os.Getenv as the flag's default: -h would print the password.
	dbURL := fs.String("database-url", "", "PostgreSQL URL (default $DATABASE_URL); several, separated by spaces or by commas before postgres://, for a cluster on several databases")
	schema := fs.String("schema", "", "schema holding Hearth's tables (default public)")
	binary := fs.Bool("binary", false, "send PAYLOAD as raw bytes rather than JSON")
	exclude := fs.String("exclude", "", "connection id that must not receive the message")
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), emitUsage)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() != 3 {
		fs.Usage()
		return errors.New("want TOPIC EVENT PAYLOAD")
	}
	if *dbURL == "" {
		*dbURL = os.Getenv("DATABASE_URL")
	}
	if *dbURL == "" {
		return errors.New("no database: pass --database-url or set DATABASE_URL")
	}
	topic, event, payload := fs.Arg(0), fs.Arg(1), []byte(fs.Arg(2))
	if fs.Arg(2) == "-" {
		var err error
		if payload, err = io.ReadAll(stdin); err != nil {
			return fmt.Errorf("reading the payload: %w", err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	e, err := postgres.NewEmitter(ctx, postgres.Options{URLs: splitDatabaseURLs(*dbURL), Schema: *schema, Name: "emit"})
	if err != nil {
		return err
	}
	defer e.Close()
	var pos pubsub.Position
	if *binary || *exclude != "" {
		if !*binary && !json.Valid(payload) {
			return errors.New("PAYLOAD is not valid JSON (use --binary for raw bytes)")
		}
		pos, err = e.Publish(ctx, pubsub.Message{Topic: topic, Event: event, Payload: payload, Binary: *binary, Exclude: *exclude})
	} else {
		pos, err = e.Emit(ctx, topic, event, payload)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, pos)
	return nil
}
