//go:build !linux

package server

import (
	"errors"
	"syscall"
	"time"
)

// Without epoll every connection has a reader goroutine: newEpoll fails,
// and the rest is never called.

type epoll struct{}

type pollEvent struct {
	slot int32
	gen  uint32
}

func newEpoll() (*epoll, error) {
	return nil, errors.New("server: no epoll on this system")
}

func (e *epoll) add(syscall.RawConn, int32, uint32) error     { return errors.ErrUnsupported }
func (e *epoll) del(syscall.RawConn) error                    { return errors.ErrUnsupported }
func (e *epoll) wait([]pollEvent, time.Duration) (int, error) { return 0, errors.ErrUnsupported }
func (e *epoll) interrupt()                                   {}
func (e *epoll) close()                                       {}

type workerIO struct{ buf []byte }

func (w *workerIO) init(*epoll) {}
func (w *workerIO) release()    {}
func (w *workerIO) read(syscall.RawConn) (int, error) {
	return 0, errors.ErrUnsupported
}
func (w *workerIO) rearm(syscall.RawConn, int32, uint32) error { return errors.ErrUnsupported }
