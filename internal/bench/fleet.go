package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// WorkerEnv is set in a worker process's environment; a binary that finds
// it set serves the worker protocol on stdin/stdout (see [ServeWorker]).
const WorkerEnv = "HEARTH_BENCH_WORKER"

// FleetOptions configures a Fleet.
type FleetOptions struct {
	// Workers is how many worker processes to start. Zero means one worker
	// inside this process (small runs and tests).
	Workers int
	// Command returns the command that starts one worker. Nil means this
	// executable with the arguments "bench worker" and WorkerEnv set.
	Command func() *exec.Cmd
	// Stderr receives the workers' stderr. Nil discards it.
	Stderr io.Writer
}

// Fleet is the coordinator's handle on its load clients, spread over worker
// processes so that no process holds more open files than its limit.
type Fleet struct {
	workers []*workerConn
	next    int // next global client index
}

type workerConn struct {
	samp *sampler // nil for an in-process worker
	mu   sync.Mutex
	cmd  *exec.Cmd // nil for an in-process worker
	enc  *json.Encoder
	dec  *bufio.Scanner
	in   io.Closer
	done chan error
}

// NewFleet starts the workers.
func NewFleet(opts FleetOptions) (*Fleet, error) {
	f := &Fleet{}
	if opts.Workers <= 0 {
		reqR, reqW := io.Pipe()
		respR, respW := io.Pipe()
		wc := &workerConn{enc: json.NewEncoder(reqW), dec: newScanner(respR), in: reqW, done: make(chan error, 1)}
		go func() {
			err := ServeWorker(reqR, respW)
			respW.CloseWithError(io.EOF)
			wc.done <- err
		}()
		f.workers = append(f.workers, wc)
		return f, nil
	}
	for range opts.Workers {
		var cmd *exec.Cmd
		if opts.Command != nil {
			cmd = opts.Command()
		} else {
			exe, err := os.Executable()
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("bench: find own executable: %w", err)
			}
			cmd = exec.Command(exe, "bench", "worker")
		}
		cmd.Env = append(os.Environ(), WorkerEnv+"=1")
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = childAttr()
		}
		cmd.Stderr = opts.Stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			f.Close()
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			f.Close()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			f.Close()
			return nil, fmt.Errorf("bench: start worker: %w", err)
		}
		wc := &workerConn{cmd: cmd, enc: json.NewEncoder(in), dec: newScanner(out), in: in, done: make(chan error, 1)}
		wc.samp = startSampler(cmd.Process.Pid, time.Now(), 500*time.Millisecond)
		go func() { wc.done <- cmd.Wait() }()
		f.workers = append(f.workers, wc)
	}
	return f, nil
}

func newScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	return sc
}

func (w *workerConn) call(req *request) (*response, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.enc.Encode(req); err != nil {
		return nil, fmt.Errorf("bench: worker gone: %w", err)
	}
	if !w.dec.Scan() {
		err := w.dec.Err()
		if err == nil {
			err = errors.New("worker exited")
		}
		return nil, fmt.Errorf("bench: worker gone: %w", err)
	}
	var resp response
	if err := json.Unmarshal(w.dec.Bytes(), &resp); err != nil {
		return nil, fmt.Errorf("bench: worker response: %w", err)
	}
	if resp.Err != "" {
		return &resp, errors.New(resp.Err)
	}
	return &resp, nil
}

// all sends a request to every worker in parallel.
func (f *Fleet) all(mk func(i int) *request) ([]*response, error) {
	out := make([]*response, len(f.workers))
	errs := make([]error, len(f.workers))
	var wg sync.WaitGroup
	for i, w := range f.workers {
		wg.Go(func() {
			out[i], errs[i] = w.call(mk(i))
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// Workers returns the number of workers.
func (f *Fleet) Workers() int { return len(f.workers) }

// Start starts a group of spec.Count clients split over the workers. The
// connect rate, if any, is for the whole group.
func (f *Fleet) Start(spec GroupSpec) error {
	n := len(f.workers)
	total := spec.Count
	first := f.next
	f.next += total
	_, err := f.all(func(i int) *request {
		s := spec
		share := total / n
		if i < total%n {
			share++
		}
		before := i*(total/n) + min(i, total%n)
		s.First, s.Count = first+before, share
		s.ConnectRate = spec.ConnectRate / float64(n)
		return &request{Op: opStart, Spec: &s}
	})
	return err
}

// Stats returns every group's counters, merged over the workers.
func (f *Fleet) Stats() (map[string]GroupStats, error) {
	resps, err := f.all(func(int) *request { return &request{Op: opStats} })
	if err != nil {
		return nil, err
	}
	out := make(map[string]GroupStats)
	for _, r := range resps {
		for name, s := range r.Stats {
			m := out[name]
			m.Merge(s)
			out[name] = m
		}
	}
	return out, nil
}

// Mark sets the event mark on a group (all groups when group is empty):
// clients disconnected after t are followed until they rejoin.
func (f *Fleet) Mark(group string, t time.Time) error {
	_, err := f.all(func(int) *request { return &request{Op: opMark, Group: group, MarkNS: t.UnixNano()} })
	return err
}

// StopPublishers stops every publisher and returns the last sequence
// written per topic.
func (f *Fleet) StopPublishers() (map[string]uint32, error) {
	resps, err := f.all(func(int) *request { return &request{Op: opStopPub} })
	if err != nil {
		return nil, err
	}
	last := make(map[string]uint32)
	for _, r := range resps {
		for k, v := range r.Last {
			last[k] = max(last[k], v)
		}
	}
	return last, nil
}

// Collect returns, per topic, the sequences delivered to or acknowledged
// by anyone, merged over the workers.
func (f *Fleet) Collect() (map[string]*bitset, error) {
	resps, err := f.all(func(int) *request { return &request{Op: opCollect} })
	if err != nil {
		return nil, err
	}
	out := make(map[string]*bitset)
	for _, r := range resps {
		for k, b := range r.Delivered {
			if out[k] == nil {
				out[k] = &bitset{}
			}
			out[k].Or(b)
		}
	}
	return out, nil
}

// Finish computes a group's result, merged over the workers.
func (f *Fleet) Finish(group string, last map[string]uint32, delivered map[string]*bitset) (*GroupResult, error) {
	resps, err := f.all(func(int) *request {
		return &request{Op: opFinish, Group: group, Last: last, Delivered: delivered}
	})
	if err != nil {
		return nil, err
	}
	out := &GroupResult{Latency: &Histogram{}}
	for _, r := range resps {
		out.Merge(r.Result)
	}
	return out, nil
}

// Stop disconnects a group's clients.
func (f *Fleet) Stop(group string) error {
	_, err := f.all(func(int) *request { return &request{Op: opStop, Group: group} })
	return err
}

// ClientUsage returns the worker processes' peak CPU (the sum of each
// worker's peak, % of one core) and peak RSS (sum, MiB). Zero for an
// in-process fleet.
func (f *Fleet) ClientUsage() (cpu, rssMiB float64) {
	for _, w := range f.workers {
		if w.samp != nil {
			_, c, r := w.samp.snapshot()
			cpu += c
			rssMiB += r
		}
	}
	return cpu, rssMiB
}

// Close stops every worker.
func (f *Fleet) Close() error {
	var errs []error
	for _, w := range f.workers {
		if w.samp != nil {
			defer w.samp.close()
		}
		if _, err := w.call(&request{Op: opShutdown}); err != nil {
			errs = append(errs, err)
		}
		w.in.Close()
		select {
		case err := <-w.done:
			if err != nil {
				errs = append(errs, err)
			}
		case <-time.After(10 * time.Second):
			if w.cmd != nil && w.cmd.Process != nil {
				_ = w.cmd.Process.Kill()
			}
			errs = append(errs, errors.New("bench: worker did not exit"))
		}
	}
	return errors.Join(errs...)
}
