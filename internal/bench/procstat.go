package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clkTck is the kernel's USER_HZ, 100 on every Linux the tool runs on.
const clkTck = 100

// ProcSample is one reading of a server process.
type ProcSample struct {
	T      float64 `json:"t"` // seconds since the run's epoch
	CPU    float64 `json:"cpu"`
	RSSMiB float64 `json:"rss_mib"`
}

// procUsage reads a process's CPU time (seconds) and resident set (bytes)
// from /proc.
func procUsage(pid int) (cpu float64, rss int64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("bench: unexpected /proc/%d/stat", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("bench: short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseFloat(f[11], 64) // utime (field 14)
	st, _ := strconv.ParseFloat(f[12], 64) // stime (field 15)
	rss, err = procStatusKB(pid, "VmRSS:")
	return (ut + st) / clkTck, rss * 1024, err
}

// procStatusKB reads one "kB" line of /proc/PID/status.
func procStatusKB(pid int, key string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, key) {
			fs := strings.Fields(line[len(key):])
			if len(fs) == 0 {
				break
			}
			return strconv.ParseInt(fs[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("bench: %s not in /proc/%d/status", key, pid)
}

// sampler follows a process's CPU and memory every interval.
type sampler struct {
	mu       sync.Mutex
	samples  []ProcSample
	peakCPU  float64
	peakRSS  float64
	epoch    time.Time
	stop     chan struct{}
	finished chan struct{}
}

func startSampler(pid int, epoch time.Time, every time.Duration) *sampler {
	s := &sampler{epoch: epoch, stop: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(s.finished)
		tk := time.NewTicker(every)
		defer tk.Stop()
		lastCPU, _, err := procUsage(pid)
		if err != nil {
			return
		}
		last := time.Now()
		for {
			select {
			case <-s.stop:
				return
			case now := <-tk.C:
				cpu, rss, err := procUsage(pid)
				if err != nil {
					return
				}
				pct := 100 * (cpu - lastCPU) / now.Sub(last).Seconds()
				lastCPU, last = cpu, now
				mib := float64(rss) / (1 << 20)
				s.mu.Lock()
				s.samples = append(s.samples, ProcSample{T: now.Sub(s.epoch).Seconds(), CPU: pct, RSSMiB: mib})
				s.peakCPU = max(s.peakCPU, pct)
				s.peakRSS = max(s.peakRSS, mib)
				s.mu.Unlock()
			}
		}
	}()
	return s
}

func (s *sampler) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.finished
}

func (s *sampler) snapshot() (samples []ProcSample, peakCPU, peakRSS float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ProcSample(nil), s.samples...), s.peakCPU, s.peakRSS
}
