//go:build linux

package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// floorFrame is a WebSocket text frame with a 64-byte payload, as the
// fanout scenario sends by default.
var floorFrame = func() []byte {
	f := make([]byte, 66)
	f[0], f[1] = 0x81, 64
	for i := 2; i < len(f); i++ {
		f[i] = 'x'
	}
	return f
}()

// floorOne runs one configuration: subs connections accepted with raw
// system calls (no Go netpoller), clients in procs processes of the hearth
// binary exe ("": this executable; procs 0: in this process), writers
// threads writing each round.
func floorOne(ctx context.Context, exe string, subs, writers, rounds, procs int) (*floorRun, error) {
	lfd, port, err := rawListen()
	if err != nil {
		return nil, err
	}
	defer unix.Close(lfd)
	parts := max(procs, 1)
	var lines []*bufio.Scanner
	var cmds []*exec.Cmd
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	for p := range parts {
		n := subs / parts
		if p == parts-1 {
			n = subs - n*(parts-1)
		}
		args := []string{strconv.Itoa(port), strconv.Itoa(n), strconv.Itoa(p), strconv.Itoa(rounds)}
		if procs == 0 {
			pr, pw := io.Pipe()
			go func() { pw.CloseWithError(FloorClient(args, pw)) }()
			lines = append(lines, bufio.NewScanner(pr))
			continue
		}
		if exe == "" {
			if exe, err = os.Executable(); err != nil {
				return nil, err
			}
		}
		cmd := exec.Command(exe, "bench", "floor-client")
		cmd.Args = append(cmd.Args, args...)
		cmd.Stderr = os.Stderr
		cmd.SysProcAttr = childAttr()
		out, err := cmd.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("bench: start floor client: %w", err)
		}
		cmds = append(cmds, cmd)
		lines = append(lines, bufio.NewScanner(out))
	}
	fds := make([]int, 0, subs)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for len(fds) < subs {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("bench: floor accept: %w", err)
		}
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		fds = append(fds, fd)
	}
	// Every client says "ready" once connected and registered with epoll.
	next := func() (int64, error) {
		got := make(chan error, len(lines))
		vals := make([]int64, len(lines))
		for i, sc := range lines {
			go func() {
				if !sc.Scan() {
					got <- errors.Join(errors.New("bench: floor client ended early"), sc.Err())
					return
				}
				v, err := strconv.ParseInt(sc.Text(), 10, 64)
				vals[i] = v
				got <- err
			}()
		}
		deadline := time.After(30 * time.Second)
		for range lines {
			select {
			case err := <-got:
				if err != nil {
					return 0, err
				}
			case <-deadline:
				return 0, errors.New("bench: floor clients did not report within 30 s")
			case <-ctx.Done():
				return 0, ctx.Err()
			}
		}
		var last int64
		for _, v := range vals {
			last = max(last, v)
		}
		return last, nil
	}
	if _, err := next(); err != nil {
		return nil, err
	}
	r := &floorRun{Writers: writers, Subscribers: subs, Rounds: rounds}
	for range rounds {
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		t0 := monoNow()
		var wg sync.WaitGroup
		var werr error
		var emu sync.Mutex
		lastStart := make([]int64, writers) // per thread: when its last write(2) began
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < len(fds); i += writers {
					if i+writers >= len(fds) {
						lastStart[w] = monoNow()
					}
					if _, err := unix.Write(fds[i], floorFrame); err != nil {
						emu.Lock()
						werr = fmt.Errorf("bench: floor write: %w", err)
						emu.Unlock()
						return
					}
				}
			}()
		}
		wg.Wait()
		tw := monoNow() - t0
		if werr != nil {
			return nil, werr
		}
		last, err := next()
		if err != nil {
			return nil, err
		}
		r.WritesMS = append(r.WritesMS, float64(tw)/1e6)
		r.LastWriteMS = append(r.LastWriteMS, float64(slices.Max(lastStart)-t0)/1e6)
		r.LastReadMS = append(r.LastReadMS, float64(last-t0)/1e6)
	}
	r.summarize()
	return r, nil
}

// monoNow reads CLOCK_MONOTONIC in nanoseconds. It is one clock for every
// process on the machine, so the writer and the client processes can compare
// their readings, and no wall-clock step can reorder them.
func monoNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err) // cannot fail on Linux with a valid clock id
	}
	return ts.Nano()
}

// rawListen opens a blocking listening socket on 127.0.0.1 with a raw
// system call, outside Go's netpoller.
func rawListen() (fd, port int, err error) {
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, 0, err
	}
	if err = unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err == nil {
		err = unix.Listen(fd, 4096)
	}
	if err != nil {
		unix.Close(fd)
		return 0, 0, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return 0, 0, err
	}
	return fd, sa.(*unix.SockaddrInet4).Port, nil
}

// FloorClient is a floor scenario client ("hearth bench floor-client PORT
// N ID ROUNDS"): it opens N connections to 127.0.0.1:PORT from 127.0.(20+ID).y
// with raw system calls, writes "0" once they are all registered with its
// epoll instance, then, for each of ROUNDS rounds, reads one frame from every
// connection as epoll reports it readable and writes the time of the
// round's last read in CLOCK_MONOTONIC nanoseconds.
func FloorClient(args []string, out io.Writer) error {
	if len(args) != 4 {
		return errors.New("usage: hearth bench floor-client PORT N ID ROUNDS")
	}
	var v [4]int
	for i, a := range args {
		n, err := strconv.Atoi(a)
		if err != nil {
			return fmt.Errorf("floor-client: %q: %w", a, err)
		}
		v[i] = n
	}
	port, n, id, rounds := v[0], v[1], v[2], v[3]
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	defer unix.Close(ep)
	fds := make([]int, 0, n)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for i := range n {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		fds = append(fds, fd)
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		src := &unix.SockaddrInet4{Addr: [4]byte{127, 0, byte(20 + id), byte(1 + i/200)}}
		if err := unix.Bind(fd, src); err != nil {
			return fmt.Errorf("floor-client: bind: %w", err)
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			return fmt.Errorf("floor-client: connect: %w", err)
		}
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			return err
		}
	}
	w := bufio.NewWriter(out)
	report := func(v int64) error {
		w.WriteString(strconv.FormatInt(v, 10))
		w.WriteByte('\n')
		return w.Flush()
	}
	if err := report(0); err != nil {
		return err
	}
	evs := make([]unix.EpollEvent, 512)
	buf := make([]byte, 64<<10)
	want := len(floorFrame)
	got := make(map[int32]int, n) // bytes read per connection
	for round := 1; round <= rounds; round++ {
		done := 0 // connections that have this round's frame
		for _, b := range got {
			if b >= round*want {
				done++ // a late read took two rounds at once
			}
		}
		var last int64
		for done < n {
			k, err := unix.EpollWait(ep, evs, -1)
			if err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				return err
			}
			for _, e := range evs[:k] {
				m, err := unix.Read(int(e.Fd), buf)
				if err != nil || m == 0 {
					return fmt.Errorf("floor-client: read: %v (%d bytes)", err, m)
				}
				before := got[e.Fd]
				got[e.Fd] = before + m
				if before < round*want && before+m >= round*want {
					done++
				}
			}
			last = monoNow()
		}
		if err := report(last); err != nil {
			return err
		}
	}
	return nil
}
