// Command withpg runs a command with HEARTH_TEST_DATABASE_URL pointing at a
// PostgreSQL server for tests: the one already configured or running, or a
// private cluster it starts in a temporary directory (and stops afterwards),
// found exactly as the Go tests find theirs (package pgtest).
//
//	go run ./internal/pgtest/withpg npm test
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"

	"github.com/hearth-rt/hearth/internal/pgtest"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: withpg COMMAND [ARGS...]")
		os.Exit(2)
	}
	url, stop, err := pgtest.Find()
	if err != nil {
		fmt.Fprintln(os.Stderr, "withpg: no PostgreSQL for the tests:", err)
		os.Exit(1)
	}
	code := run(url, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(url string, args []string) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), pgtest.EnvURL+"="+url)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "withpg:", err)
		return 1
	}
	go func() {
		for s := range sig {
			_ = cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		fmt.Fprintln(os.Stderr, "withpg:", err)
		return 1
	}
}
