//go:build !linux

package bench

import (
	"context"
	"errors"
	"io"
)

var errFloorLinux = errors.New("bench: the floor scenario needs Linux (epoll and raw sockets)")

func floorOne(context.Context, string, int, int, int, int) (*floorRun, error) {
	return nil, errFloorLinux
}

// FloorClient is the floor scenario's client; Linux only.
func FloorClient([]string, io.Writer) error { return errFloorLinux }
