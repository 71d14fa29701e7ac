package server

import (
	"fmt"
	"os"
)

// The suite runs in one reader mode per `go test` run, chosen by
// HEARTH_SERVER_READER: "poll" (the default: the epoll poller where the
// system has it) or "goroutine" (a reader goroutine per connection).
// CI runs both.
func init() {
	switch m := os.Getenv("HEARTH_SERVER_READER"); m {
	case "", "poll":
	case "goroutine":
		netpollDisabled = true
	default:
		panic(fmt.Sprintf("server tests: HEARTH_SERVER_READER=%q: want poll or goroutine", m))
	}
}
