//go:build linux

package server

import (
	"errors"
	"io"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// epoll is the poller's epoll instance and an eventfd that interrupts its
// wait. Connections are registered one-shot: an event disarms the
// connection until the worker that served it re-arms it, so one
// connection is never served by two workers, and level-triggered: bytes
// left in the socket when it is re-armed signal again at once.
//
// Registering and re-arming go through syscall.RawConn.Control, and reads
// through RawConn.Read: the runtime keeps the descriptor open (and its
// number from being reused) while they run, whatever Close does
// concurrently.
type epoll struct {
	fd  int
	evt int               // eventfd
	raw []unix.EpollEvent // wait's buffer (the poller's goroutine only)
}

// pollEvent is one ready connection.
type pollEvent struct {
	slot int32
	gen  uint32
}

const armEvents = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT

func newEpoll() (*epoll, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, errors.Join(errors.New("server: epoll_create1"), err)
	}
	evt, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(fd)
		return nil, errors.Join(errors.New("server: eventfd"), err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1}
	if err := unix.EpollCtl(fd, unix.EPOLL_CTL_ADD, evt, &ev); err != nil {
		unix.Close(fd)
		unix.Close(evt)
		return nil, errors.Join(errors.New("server: epoll_ctl"), err)
	}
	return &epoll{fd: fd, evt: evt, raw: make([]unix.EpollEvent, 256)}, nil
}

// ctl runs epoll_ctl on rc's descriptor.
func (e *epoll) ctl(rc syscall.RawConn, op int, slot int32, gen uint32) error {
	ev := unix.EpollEvent{Events: armEvents, Fd: slot, Pad: int32(gen)}
	var cerr error
	err := rc.Control(func(fd uintptr) {
		cerr = unix.EpollCtl(e.fd, op, int(fd), &ev)
	})
	if err != nil {
		return err
	}
	return cerr
}

// add registers and arms a connection.
func (e *epoll) add(rc syscall.RawConn, slot int32, gen uint32) error {
	return e.ctl(rc, unix.EPOLL_CTL_ADD, slot, gen)
}

// del removes a connection.
func (e *epoll) del(rc syscall.RawConn) error {
	return e.ctl(rc, unix.EPOLL_CTL_DEL, 0, 0)
}

// wait waits up to d for ready connections.
func (e *epoll) wait(out []pollEvent, d time.Duration) (int, error) {
	raw := e.raw[:min(len(out), len(e.raw))]
	ms := int((d + time.Millisecond - 1) / time.Millisecond)
	n, err := unix.EpollWait(e.fd, raw, ms)
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, err
	}
	k := 0
	for _, ev := range raw[:n] {
		if ev.Fd == -1 {
			var b [8]byte
			_, _ = unix.Read(e.evt, b[:])
			continue
		}
		out[k] = pollEvent{slot: ev.Fd, gen: uint32(ev.Pad)}
		k++
	}
	return k, nil
}

// interrupt ends the current or next wait.
func (e *epoll) interrupt() {
	b := [8]byte{1}
	_, _ = unix.Write(e.evt, b[:])
}

func (e *epoll) close() {
	unix.Close(e.fd)
	unix.Close(e.evt)
}

// workerIO is a worker's read buffer and its prepared calls: the
// functions given to RawConn are made once per worker, so that reading
// and re-arming allocate nothing.
type workerIO struct {
	ep     *epoll
	buf    []byte
	pbuf   *[]byte
	n      int
	err    error
	ev     unix.EpollEvent
	readFn func(fd uintptr) bool
	armFn  func(fd uintptr)
}

func (w *workerIO) init(ep *epoll) {
	w.ep = ep
	w.pbuf = getBuf(readBufSize)
	w.buf = (*w.pbuf)[:readBufSize]
	w.readFn = func(fd uintptr) bool {
		for {
			n, err := unix.Read(int(fd), w.buf)
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.EAGAIN:
				w.n, w.err = 0, errWouldBlock
			case err != nil:
				w.n, w.err = 0, err
			case n == 0:
				w.n, w.err = 0, io.EOF
			default:
				w.n, w.err = n, nil
			}
			return true // never wait: the poller says when to come back
		}
	}
	w.armFn = func(fd uintptr) {
		w.err = unix.EpollCtl(w.ep.fd, unix.EPOLL_CTL_MOD, int(fd), &w.ev)
	}
}

func (w *workerIO) release() {
	putBuf(w.pbuf)
	w.pbuf, w.buf = nil, nil
}

// read reads what rc has without waiting: errWouldBlock when nothing.
func (w *workerIO) read(rc syscall.RawConn) (int, error) {
	if err := rc.Read(w.readFn); err != nil {
		return 0, err
	}
	return w.n, w.err
}

// rearm arms rc again for its next event.
func (w *workerIO) rearm(rc syscall.RawConn, slot int32, gen uint32) error {
	w.ev = unix.EpollEvent{Events: armEvents, Fd: slot, Pad: int32(gen)}
	w.err = nil
	if err := rc.Control(w.armFn); err != nil {
		return err
	}
	return w.err
}
