package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"expvar"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"time"
)

// serveDebug serves the Go profiler and memory figures on their own
// listener (--pprof ADDR), away from the public address:
//
//	/debug/pprof/   net/http/pprof (heap, goroutine, profile, trace...)
//	/debug/vars     expvar (memstats, cmdline)
//	/debug/mem      memory figures as JSON (runtime/metrics and VmRSS);
//	                ?gc=1 collects first (twice, emptying sync.Pools)
//
// It returns a function that closes the listener.
func serveDebug(addr string, log *slog.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/vars", expvar.Handler())
	mux.HandleFunc("/debug/mem", serveMem)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("pprof listener failed", "err", err)
		}
	}()
	log.Info("pprof listening", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	return func() { _ = hs.Close() }, nil
}

// memFigures is the JSON of /debug/mem, in bytes.
type memFigures struct {
	HeapObjects int64 `json:"heap_objects"` // live objects and not yet swept garbage
	HeapInuse   int64 `json:"heap_inuse"`   // spans in use (objects plus their free slots), like MemStats.HeapInuse
	Stacks      int64 `json:"stacks"`       // goroutine stacks
	HeapAndStk  int64 `json:"heap_and_stacks"`
	Total       int64 `json:"total"`    // everything the runtime mapped and did not release
	Released    int64 `json:"released"` // heap returned to the OS
	RSS         int64 `json:"rss"`      // VmRSS of the process (Linux; -1 elsewhere)
	Goroutines  int64 `json:"goroutines"`
	GCCycles    int64 `json:"gc_cycles"`
}

func serveMem(w http.ResponseWriter, r *http.Request) {
	if r.URL.Query().Get("gc") == "1" {
		// Twice: the first collection moves sync.Pool caches (net/http's
		// bufio buffers, say) to their victim lists, the second frees them.
		runtime.GC()
		runtime.GC()
	}
	names := []string{
		"/memory/classes/heap/objects:bytes",
		"/memory/classes/heap/unused:bytes",
		"/memory/classes/heap/stacks:bytes",
		"/memory/classes/total:bytes",
		"/memory/classes/heap/released:bytes",
		"/sched/goroutines:goroutines",
		"/gc/cycles/total:gc-cycles",
	}
	s := make([]metrics.Sample, len(names))
	for i, n := range names {
		s[i].Name = n
	}
	metrics.Read(s)
	v := func(i int) int64 {
		if s[i].Value.Kind() == metrics.KindUint64 {
			return int64(s[i].Value.Uint64())
		}
		return 0
	}
	f := memFigures{
		HeapObjects: v(0),
		HeapInuse:   v(0) + v(1),
		Stacks:      v(2),
		Total:       v(3) - v(4),
		Released:    v(4),
		RSS:         vmRSS(),
		Goroutines:  v(5),
		GCCycles:    v(6),
	}
	f.HeapAndStk = f.HeapInuse + f.Stacks
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(f)
}

// vmRSS reads the process's resident set from /proc, or returns -1.
func vmRSS() int64 {
	fh, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer fh.Close()
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return -1
			}
			return kb << 10
		}
	}
	return -1
}
